//! `memwarden bench queue`: throughput and enqueue-to-start latency of the real daemon (the
//! same `daemon::run` as `memwarden run`) on a fresh database, printed in the two lines of
//! spec/performance.md. Memory (RSS) goes to stderr, so stdout stays exactly two lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::Notify;

use crate::app::App;
use crate::config::{Overrides, QueueConfig, Settings};
use crate::lifecycle::State;
use crate::queue::{enqueue, Handler, JobContext, NewJob, Outcome, Registry};
use crate::signals::Command;
use crate::telemetry::LogControl;

/// Records when each latency probe started, keyed by its sample number.
#[derive(Clone, Default)]
struct Starts {
    at: Arc<Mutex<HashMap<u64, Instant>>>,
    notify: Arc<Notify>,
}

struct LatencyHandler(Starts);

#[async_trait::async_trait]
impl Handler for LatencyHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let now = Instant::now();
        if let Some(i) = job.args.get("i").and_then(|v| v.as_u64()) {
            self.0.at.lock().expect("starts lock").insert(i, now);
            self.0.notify.notify_waiters();
        }
        Outcome::Succeeded(serde_json::Value::Null)
    }
}

/// The benchmark's job: nothing, but counted, so the bench knows when to look at the table.
struct CountedNoop(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Handler for CountedNoop {
    async fn run(&self, _job: JobContext) -> Outcome {
        self.0.fetch_add(1, Ordering::Relaxed);
        Outcome::Succeeded(serde_json::Value::Null)
    }
}

pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Creates `name` on the server of `url` (dropping any old one) and returns its URL.
pub async fn fresh_database(url: &str, name: &str) -> Result<String> {
    let opts: PgConnectOptions = url.parse().context("DATABASE_URL is not a postgres URL")?;
    let mut admin = opts
        .clone()
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{base}/{name}{query}"))
}

pub async fn drop_database(url: &str, name: &str) -> Result<()> {
    let opts: PgConnectOptions = url.parse()?;
    let mut admin = opts.connect().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

pub async fn queue(server_url: &str, n: usize, concurrency: u32, samples: usize) -> Result<()> {
    let name = format!("memwarden_bench_{}", std::process::id());
    let url = fresh_database(server_url, &name).await?;
    let result = run_queue_bench(&url, n, concurrency, samples).await;
    drop_database(server_url, &name).await.ok();
    result
}

async fn run_queue_bench(url: &str, n: usize, concurrency: u32, samples: usize) -> Result<()> {
    // Defaults, then the bench's own choices, then MEMWARDEN_* from the environment (so a
    // setting can be tried without a rebuild).
    let defaults = "[queue]\nclaim_batch = 500\ncomplete_batch = 1000\n";
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MEMWARDEN_"))
        .collect();
    let mut settings = Settings::from_parts(defaults, None, &env, &Overrides::default())
        .map_err(anyhow::Error::msg)?;
    settings.database.url = Some(url.to_string());
    // Like graphile-worker's batched configuration (a 500-job local queue), claim far ahead.
    let prefetch = settings
        .queues
        .get("default")
        .and_then(|q| q.prefetch)
        .or(Some(500));
    settings.queues.insert(
        "default".into(),
        QueueConfig {
            concurrency,
            prefetch,
        },
    );
    settings.schedules.clear();

    // The enqueuing client, configured like the peers' (node-postgres): no liveness round trip
    // of its own before each statement, so the latency is enqueue plus pickup, as theirs is.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .test_before_acquire(false)
        .connect(url)
        .await?;
    crate::db::migrate(&pool).await?;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob {
            queue: Some("default".into()),
            max_attempts: Some(25),
            ..NewJob::new("bench-noop", serde_json::json!({ "i": i }))
        })
        .collect();
    for chunk in jobs.chunks(10_000) {
        enqueue::insert_jobs(&pool, chunk).await?;
    }
    sqlx::query("VACUUM ANALYZE memwarden.jobs")
        .execute(&pool)
        .await?;

    let starts = Starts::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new()
        .register("bench-noop", CountedNoop(ran.clone()))
        .register("bench-latency", LatencyHandler(starts.clone()));
    let app = App::new(settings, None, Overrides::default(), LogControl::detached());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;

    let t0 = Instant::now();
    let daemon = tokio::spawn(crate::daemon::run(app.clone(), listener, registry));
    let mut peak_rss = rss_mb();
    let mut ready_after = None;
    loop {
        if ready_after.is_none() && app.lifecycle().state() == State::Ready {
            ready_after = Some(t0.elapsed());
        }
        peak_rss = peak_rss.max(rss_mb());
        // Follow the handler's run count (free), and confirm in the table once it says all ran:
        // polling the table every 20 ms would tax the database being measured.
        if ran.load(Ordering::Relaxed) >= n {
            let left: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM memwarden.jobs WHERE status IN ('available', 'retryable', 'running'))",
            )
            .fetch_one(&pool)
            .await?;
            if !left {
                break;
            }
        }
        if daemon.is_finished() {
            bail!(
                "the daemon stopped during the benchmark: {:?}",
                daemon.await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM memwarden.job_attempts")
        .fetch_one(&pool)
        .await?;
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memwarden.jobs WHERE status = 'succeeded'")
            .fetch_one(&pool)
            .await?;
    if succeeded as usize != n || attempts as usize != n {
        bail!(
            "expected {n} succeeded jobs with {n} attempt rows, found {succeeded} and {attempts}"
        );
    }
    println!(
        "memwarden N={n} C={concurrency}: {:.0} jobs/s ({dt:.2} s incl. startup)",
        n as f64 / dt
    );

    // Light load: one job at a time through the SQL enqueue function, 5-15 ms apart.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = rss_mb();
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let notified = starts.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let t = Instant::now();
        sqlx::query(
            "SELECT memwarden.enqueue('bench-latency', jsonb_build_object('i', $1::bigint))",
        )
        .bind(i as i64)
        .execute(&pool)
        .await?;
        let started = loop {
            if let Some(at) = starts.at.lock().expect("starts lock").get(&i).copied() {
                break at;
            }
            if tokio::time::timeout(Duration::from_secs(5), notified.as_mut())
                .await
                .is_err()
            {
                bail!("latency sample {i} did not start within 5 s");
            }
            notified.set(starts.notify.notified());
            notified.as_mut().enable();
        };
        let ms = started.saturating_duration_since(t).as_secs_f64() * 1000.0;
        if ms > 50.0 && std::env::var_os("MEMWARDEN_BENCH_TRACE").is_some() {
            eprintln!(
                "slow sample {i}: {ms:.1} ms at {}",
                chrono::Utc::now().format("%H:%M:%S%.3f")
            );
        }
        lat.push(ms);
        let pause = rand::thread_rng().gen_range(5.0..15.0);
        tokio::time::sleep(Duration::from_secs_f64(pause / 1000.0)).await;
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "latency ms p50={:.2} p99={:.2} max={:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    eprintln!(
        "rss_mb idle={idle_rss:.1} peak_under_load={peak_rss:.1} attempts_recorded={attempts} ready_after_ms={:.0}",
        ready_after.unwrap_or_default().as_secs_f64() * 1000.0
    );

    app.command(Command::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon).await;
    pool.close().await;
    Ok(())
}

/// `memwarden bench evict`: N soft-deleted conversations with 4 entries each, evicted by the
/// real `eviction` domain function while a writer inserts and reads live conversations.
///
/// Eviction runs in windows of `window`, alternating with windows where it is stopped, so the
/// writer's latency with and without it is compared over the same minute. This VM's speed
/// drifts more between two quarter-hours than eviction moves the writer, so a baseline taken
/// once before eviction (still printed, for comparison) says more about the hour than about
/// eviction.
pub async fn evict(
    server_url: &str,
    conversations: i64,
    settings: memwarden_jobs::eviction::EvictionSettings,
    window: Duration,
) -> Result<()> {
    let name = format!("memwarden_bench_evict_{}", std::process::id());
    let url = fresh_database(server_url, &name).await?;
    let result = run_evict_bench(&url, conversations, settings, window).await;
    drop_database(server_url, &name).await.ok();
    result
}

/// One write-and-read of a live conversation: when it started, and how long it took (ms).
type WriterOp = (Instant, f64);

async fn live_writer(
    pool: PgPool,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<WriterOp>> {
    let mut ops = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO conversations (owner_id, title) VALUES ('live', 'w') RETURNING id",
        )
        .fetch_one(&pool)
        .await?;
        sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) VALUES ($1, 'user', 'hello')")
            .bind(id)
            .execute(&pool)
            .await?;
        let _: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversation_entries WHERE conversation_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await?;
        ops.push((t, t.elapsed().as_secs_f64() * 1000.0));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(ops)
}

/// The `p` quantile (0 to 1) of `sorted`, by nearest rank; 0 when it is empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// The 99th percentile of `ms` (0 when empty).
fn p99(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.99)
}

/// A stretch of the bench: eviction running in it, or stopped.
struct Span {
    from: Instant,
    to: Instant,
    evicting: bool,
}

/// After eviction stops, the writer's first ops still meet its last commits being flushed: a
/// stopped window is counted from this long after it starts.
const SETTLE: Duration = Duration::from_millis(250);

async fn run_evict_bench(
    url: &str,
    n: i64,
    settings: memwarden_jobs::eviction::EvictionSettings,
    window: Duration,
) -> Result<()> {
    use memwarden_jobs::eviction::{evict, ResourceType, RetentionPeriod};
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await?;
    crate::db::migrate(&pool).await?;
    sqlx::query("ALTER TABLE conversation_entries SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO conversations (owner_id, title, created_at, deleted_at) \
         SELECT 'owner-' || (g % 100), 'c', now() - interval '60 days', now() - interval '40 days' - (g || ' seconds')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content) \
         SELECT c.id, 'user', 'entry ' || e FROM conversations c, generate_series(1, 4) e",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO conversations (owner_id, title) SELECT 'live', 'keep' FROM generate_series(1, 1000)")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    // Eviction runs against a database at rest, not one whose bulk load the checkpointer is
    // still writing out; CHECKPOINT needs a superuser or pg_checkpoint, so it is best effort.
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&pool).await {
        eprintln!("bench: CHECKPOINT after the load failed ({e}); figures include its writes");
    }
    let live_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversations WHERE deleted_at IS NULL")
            .fetch_one(&pool)
            .await?;

    // The writer alone before eviction: the baseline of earlier versions of this bench.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = tokio::spawn(live_writer(pool.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let before = w.await??;
    let before_n = before.len();
    let before_p99 = p99(before.into_iter().map(|(_, ms)| ms).collect());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = tokio::spawn(live_writer(pool.clone(), stop.clone()));
    // Eviction runs as the daemon's handlers do, in a `memwarden-work` session; the writer
    // stands for the application and commits synchronously.
    let work = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(crate::db::work_session_options(url.parse()?))
        .await?;
    let retention = RetentionPeriod::parse(Some("P30D"))?;
    let mut spans = Vec::new();
    let mut total = memwarden_jobs::eviction::EvictionReport::default();
    loop {
        // A window ends the way a drain does: the token stops eviction at a batch boundary,
        // and the next window's run takes up what is still due.
        let cancel = tokio_util::sync::CancellationToken::new();
        let timer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep(window).await;
                cancel.cancel();
            }
        });
        let from = Instant::now();
        let report = evict(
            &work,
            &retention,
            &[ResourceType::Conversations],
            false,
            &settings,
            &cancel,
            &memwarden_jobs::NoProgress,
        )
        .await?;
        timer.abort();
        spans.push(Span {
            from,
            to: Instant::now(),
            evicting: true,
        });
        total.conversations += report.conversations;
        total.conversation_entries += report.conversation_entries;
        total.batches += report.batches;
        total.batches_over_limit += report.batches_over_limit;
        total.longest_batch_ms = total.longest_batch_ms.max(report.longest_batch_ms);
        if !report.interrupted {
            break;
        }
        let from = Instant::now();
        tokio::time::sleep(window).await;
        spans.push(Span {
            from: from + SETTLE,
            to: Instant::now(),
            evicting: false,
        });
    }
    stop.store(true, Ordering::Relaxed);
    let ops = w.await??;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (at, ms) in ops {
        match spans.iter().find(|s| s.from <= at && at < s.to) {
            Some(s) if s.evicting => with.push(ms),
            Some(_) => without.push(ms),
            None => {}
        }
    }
    let (with_n, without_n) = (with.len(), without.len());
    let (with_p99, without_p99) = (p99(with), p99(without));
    let live_after: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations WHERE deleted_at IS NULL AND owner_id = 'live' AND title = 'keep'")
        .fetch_one(&pool)
        .await?;
    let rows = total.conversations + total.conversation_entries;
    let evicting_spans = || spans.iter().filter(|s| s.evicting);
    let windows = evicting_spans().count();
    let evicting: Duration = evicting_spans().map(|s| s.to - s.from).sum();
    println!(
        "memwarden evict N={n} conversations ({rows} rows) batch<={} pause={}ms limit={}ms: {:.0} rows/s ({:.2} s evicting, in {windows} windows of {} ms), {} batches, longest batch {:.1} ms, {} over the limit",
        settings.batch_size,
        settings.pause.as_millis(),
        settings.max_transaction.as_millis(),
        rows as f64 / evicting.as_secs_f64(),
        evicting.as_secs_f64(),
        window.as_millis(),
        total.batches,
        total.longest_batch_ms,
        total.batches_over_limit,
    );
    let ratio = if without_n == 0 || with_n == 0 {
        "n/a (eviction ended inside its first window)".to_string()
    } else {
        format!("{:.2}", with_p99 / without_p99.max(0.001))
    };
    println!(
        "live writer p99 ms: eviction stopped {without_p99:.2} ({without_n} ops), evicting {with_p99:.2} ({with_n} ops), ratio {ratio}; before eviction {before_p99:.2} ({before_n} ops)"
    );
    println!(
        "live conversations kept: {live_after} of 1000 (live before: {live_before}); rss_mb={:.1}",
        rss_mb()
    );
    work.close().await;
    pool.close().await;
    Ok(())
}

/// `memwarden bench enrich`: N memories over `owners` owners inserted with one plain SQL
/// `INSERT` (the trigger enqueues each), enriched by the real daemon with the configured
/// embedder (`hash` by default); timed from the insert until every memory is enriched.
pub async fn enrich(server_url: &str, n: i64, owners: i64, concurrency: u32) -> Result<()> {
    let name = format!("memwarden_bench_enrich_{}", std::process::id());
    let url = fresh_database(server_url, &name).await?;
    let result = run_enrich_bench(&url, n, owners, concurrency).await;
    drop_database(server_url, &name).await.ok();
    result
}

async fn run_enrich_bench(url: &str, n: i64, owners: i64, concurrency: u32) -> Result<()> {
    let pool = PgPool::connect(url).await?;
    crate::db::migrate(&pool).await?;
    let (app, daemon, port) = start_daemon(url, |settings| {
        settings.queues.insert(
            "default".into(),
            QueueConfig {
                concurrency,
                prefetch: None,
            },
        );
    })
    .await?;
    let t0 = Instant::now();
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at) \
         SELECT 'owner-' || (g % $2), (ARRAY['Decision','Preference','Insight','Context','Pattern'])[1 + g % 5], \
                'Memory ' || g || ': the team discussed postgres queues, rust services and deploys with Alice Walker; ' || \
                'topic ' || (g % 37) || ' #memwarden', now() - ((g % 600) || ' minutes')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .bind(owners)
    .execute(&pool)
    .await?;
    let mut peak_rss = rss_mb();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE enriched_at IS NULL")
                .fetch_one(&pool)
                .await?;
        peak_rss = peak_rss.max(rss_mb());
        if left == 0 {
            break;
        }
        if daemon.is_finished() {
            bail!("the daemon stopped during the benchmark");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'enrichment' AND status = 'failed'",
    )
    .fetch_one(&pool)
    .await?;
    let (edges, entities): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM memory_edges), (SELECT count(*) FROM memory_entities)",
    )
    .fetch_one(&pool)
    .await?;
    println!("memwarden enrich N={n} owners={owners} C={concurrency}: {:.0} memories/s ({dt:.2} s from insert to all enriched)", n as f64 / dt);
    println!("failed jobs {failed}, edges {edges}, entities {entities}, peak rss_mb {peak_rss:.1}");
    // The check, as an AutoMem client makes it: the status route drains to 0.
    let status = drained_enrichment_status(port).await?;
    println!("GET /enrichment/status: {status}");
    app.command(Command::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon).await;
    Ok(())
}

/// AutoMem's `GET /enrichment/status` from the daemon's control port, once its `queue_depth`
/// is 0 (within 10 s: the last completions are written in batches).
async fn drained_enrichment_status(port: ControlPort) -> Result<serde_json::Value> {
    let url = format!("http://{port}/enrichment/status");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value =
            reqwest::get(&url).await?.error_for_status()?.json().await?;
        if status["queue_depth"] == 0 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("/enrichment/status still reports work 10 s after every memory was enriched: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon's control port, for the benches that read it over HTTP.
type ControlPort = std::net::SocketAddr;

/// Starts the real daemon (the same `daemon::run` as `memwarden run`) on `url`, with the
/// `MEMWARDEN_*` settings of the environment.
async fn start_daemon(
    url: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Result<(
    App,
    tokio::task::JoinHandle<anyhow::Result<crate::daemon::Exit>>,
    ControlPort,
)> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MEMWARDEN_"))
        .collect();
    let mut settings =
        Settings::from_parts("", None, &env, &Overrides::default()).map_err(anyhow::Error::msg)?;
    settings.database.url = Some(url.to_string());
    adjust(&mut settings);
    let app = App::new(settings, None, Overrides::default(), LogControl::detached());
    let registry = crate::kinds::registry(app.watch_settings())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?;
    let daemon = tokio::spawn(crate::daemon::run(app.clone(), listener, registry));
    while app.lifecycle().state() != State::Ready {
        if daemon.is_finished() {
            bail!("the daemon stopped while starting");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((app, daemon, port))
}

/// `n` memories over 100 owners, inserted without their enrichment jobs (the bench measures
/// only the kind under test).
async fn insert_memories(pool: &PgPool, n: i64) -> Result<()> {
    sqlx::query("ALTER TABLE memories DISABLE TRIGGER memories_enqueue_enrichment_insert")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content) \
         SELECT 'owner-' || (g % 100), 'Context', \
                'Memory ' || g || ': the team discussed postgres queues, rust services and deploys; topic ' || (g % 37) \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query("ALTER TABLE memories ENABLE TRIGGER memories_enqueue_enrichment_insert")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE memories").execute(pool).await?;
    Ok(())
}

/// Enqueues a job on the running daemon and waits for it, sampling this process's RSS: the
/// job's result, the seconds from enqueue to its end, and the peak RSS.
async fn run_job(
    app: &App,
    kind: &str,
    args: serde_json::Value,
) -> Result<(serde_json::Value, f64, f64)> {
    let queue = app.queue().context("the daemon has no queue")?;
    let t0 = Instant::now();
    let id = queue.enqueue(NewJob::new(kind, args)).await?.id;
    let mut peak_rss = rss_mb();
    loop {
        let (status, result, error): (String, Option<serde_json::Value>, Option<String>) =
            sqlx::query_as("SELECT status, result, last_error FROM memwarden.jobs WHERE id = $1")
                .bind(id)
                .fetch_one(queue.pool())
                .await?;
        peak_rss = peak_rss.max(rss_mb());
        match status.as_str() {
            "succeeded" => {
                return Ok((
                    result.unwrap_or_default(),
                    t0.elapsed().as_secs_f64(),
                    peak_rss,
                ))
            }
            "failed" | "canceled" | "retryable" => {
                bail!(
                    "the {kind} job ended {status}: {}",
                    error.unwrap_or_default()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub async fn reembed(server_url: &str, n: i64, batch_size: u32) -> Result<()> {
    let name = format!("memwarden_bench_reembed_{}", std::process::id());
    let url = fresh_database(server_url, &name).await?;
    let result = run_reembed_bench(&url, n, batch_size).await;
    drop_database(server_url, &name).await.ok();
    result
}

async fn run_reembed_bench(url: &str, n: i64, batch_size: u32) -> Result<()> {
    let pool = PgPool::connect(url).await?;
    crate::db::migrate(&pool).await?;
    insert_memories(&pool, n).await?;
    let (app, daemon, _) = start_daemon(url, |_| {}).await?;
    let idle_rss = rss_mb();
    let (report, secs, peak_rss) = run_job(
        &app,
        "reembed",
        serde_json::json!({"batch_size": batch_size}),
    )
    .await?;
    let embedded: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_embeddings")
        .fetch_one(&pool)
        .await?;
    println!(
        "memwarden reembed N={n} batch_size={batch_size} provider=hash: {:.0} memories/s end to end ({secs:.2} s from enqueue to succeeded; the job's own rate {:.0}/s)",
        n as f64 / secs,
        report["memories_per_second"].as_f64().unwrap_or(0.0),
    );
    println!(
        "processed {}, failed {}, embeddings {embedded}, rss_mb idle {idle_rss:.1} peak {peak_rss:.1}",
        report["processed"], report["failed"]
    );
    app.command(Command::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon).await;
    if report["processed"].as_i64() != Some(n) || embedded != n {
        bail!("the reembed did not embed every memory: {report}");
    }
    Ok(())
}

pub async fn sync(server_url: &str, n: i64, drift: i64) -> Result<()> {
    let name = format!("memwarden_bench_sync_{}", std::process::id());
    let url = fresh_database(server_url, &name).await?;
    let result = run_sync_bench(&url, n, drift).await;
    drop_database(server_url, &name).await.ok();
    result
}

async fn run_sync_bench(url: &str, n: i64, drift: i64) -> Result<()> {
    let pool = PgPool::connect(url).await?;
    crate::db::migrate(&pool).await?;
    insert_memories(&pool, n).await?;
    let (app, daemon, _) = start_daemon(url, |_| {}).await?;
    run_job(&app, "reembed", serde_json::json!({"batch_size": 256})).await?;
    // `drift` of each kind but model_mismatch: embeddings deleted, contents changed, and
    // memories soft-deleted, on disjoint memories.
    sqlx::query("ALTER TABLE memories DISABLE TRIGGER memories_enqueue_enrichment_update")
        .execute(&pool)
        .await?;
    sqlx::query(
        "WITH m AS (SELECT id, row_number() OVER (ORDER BY id) AS r FROM memories), \
         d AS (DELETE FROM memory_embeddings WHERE memory_id IN (SELECT id FROM m WHERE r <= $1) RETURNING 1), \
         c AS (UPDATE memories SET content = content || ' (edited)' WHERE id IN (SELECT id FROM m WHERE r > $1 AND r <= 2 * $1) RETURNING 1) \
         UPDATE memories SET deleted_at = now() WHERE id IN (SELECT id FROM m WHERE r > 2 * $1 AND r <= 3 * $1)",
    )
    .bind(drift)
    .execute(&pool)
    .await?;
    sqlx::query("ALTER TABLE memories ENABLE TRIGGER memories_enqueue_enrichment_update")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    let (dry, dry_secs, dry_rss) =
        run_job(&app, "sync", serde_json::json!({"dry_run": true})).await?;
    let scan = &dry["scan"];
    println!(
        "memwarden sync dry run N={n}: scan {:.0} memories/s ({} memories and {} embeddings compared in {:.1} ms; job {:.0} ms from enqueue to succeeded)",
        scan["memories_per_second"].as_f64().unwrap_or(0.0),
        scan["memories"],
        scan["embeddings"],
        scan["scan_ms"].as_f64().unwrap_or(0.0),
        dry_secs * 1000.0,
    );
    let counts = |d: &serde_json::Value| {
        ["missing", "stale", "model_mismatch", "orphaned"]
            .iter()
            .map(|k| format!("{k}={}", d[k]["count"]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "drift found: {}, rss_mb peak {dry_rss:.1}",
        counts(&scan["drift"])
    );
    let (real, secs, rss) = run_job(&app, "sync", serde_json::json!({})).await?;
    println!(
        "memwarden sync repair: {:.2} s ({} re-embedded, {} orphans removed); drift left: {}, rss_mb peak {rss:.1}",
        secs,
        real["repair"]["reembedded"],
        real["repair"]["orphans_removed"],
        counts(&real["remaining"]),
    );
    app.command(Command::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon).await;
    Ok(())
}
