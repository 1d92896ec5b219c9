//! What the benchmarks share: a database of their own, the real daemon started through the
//! one startup path, memories to work on, a job followed to its end, and the figures' sums.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use memwarden::config::{Overrides, QueueConfig, Settings};
use memwarden::queue::{NewJob, Status};
use memwarden::startup::{Application, Build, Kinds, Running};
use sqlx::PgPool;

/// A field of /proc/self/status given in kB (`VmRSS:`, `VmHWM:`), in MiB; 0 off Linux.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// This process's resident set, in MiB.
pub fn rss_mb() -> f64 {
    status_mib("VmRSS:")
}

/// Starts this process's peak resident set (VmHWM) again from its current resident set, so
/// that [`rss_line`] reports the peak of what follows (Linux: `5` into /proc/self/clear_refs;
/// where that fails the peak is the process's whole life, which is only ever more). Returns the
/// resident set it starts from, which [`rss_line`] prints as `from`.
pub fn reset_peak_rss() -> f64 {
    std::fs::write("/proc/self/clear_refs", "5").ok();
    rss_mb()
}

/// The memory line every bench prints last: the kernel's peak resident set (VmHWM) since the
/// last [`reset_peak_rss`] and the resident set now (VmRSS), of the bench process, which holds
/// the daemon (or every replica) and the bench's own client; `from` is the resident set when the
/// peak was reset, heap the bench freed but the allocator kept included.
pub fn rss_line(load: &str, from: f64) -> String {
    format!(
        "rss_mb {load}: peak={:.1} now={:.1} from={from:.1} (VmHWM, VmRSS of the bench process, daemon included)",
        status_mib("VmHWM:"),
        rss_mb()
    )
}

/// The `p` quantile (0 to 1) of `sorted`, by nearest rank; 0 when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(rank).copied().unwrap_or(0.0)
}

/// The 99th percentile of `ms` (0 when empty).
pub fn p99(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.99)
}

/// Runs `bench` in a fresh database `memwarden_bench_<what>_<pid>` on the server of
/// `server_url`, and drops the database afterwards, whether the bench succeeded or not.
pub async fn in_fresh_database<F, Fut>(server_url: &str, what: &str, bench: F) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let name = format!("memwarden_bench_{what}_{}", std::process::id());
    let url = memwarden::db::fresh_database(server_url, &name).await?;
    let result = bench(url).await;
    memwarden::db::drop_database(server_url, &name).await.ok();
    result
}

/// A connected pool on `url` with memwarden's sessions, its schema migrated: the bench's
/// own reads and writes, beside the daemon's.
pub async fn migrated_pool(url: &str) -> Result<PgPool> {
    let settings = Settings::default();
    let pool = memwarden::db::connect(&settings, url).await?;
    memwarden::db::migrate(&pool, &settings.database.schema).await?;
    Ok(pool)
}

/// Two connections in `memwarden-work` sessions, as the daemon's handlers run (asynchronous
/// commit, their statement timeout): what a bench runs a domain function in.
pub async fn work_pool(url: &str) -> Result<PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(memwarden::db::work_session_options(
            url.parse()?,
            &Settings::default(),
        ))
        .await?)
}

/// A bench measures a database at rest, not one whose bulk load the checkpointer is still
/// writing out; CHECKPOINT needs a superuser or pg_checkpoint, so it is best effort.
pub async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        eprintln!("bench: CHECKPOINT after the load failed ({e}); figures include its writes");
    }
}

/// The settings a bench starts from: the defaults with no default schedule (a catch-up or an
/// hourly sync firing mid-run would work beside the measurement, as it did in a 1M reembed),
/// then `defaults`, then `MEMWARDEN_*` from the environment (so a setting can be tried without
/// a rebuild), on `url`, the control port on a free port.
pub fn bench_settings(defaults: &str, url: &str) -> Result<Settings> {
    let mut toml: String = memwarden::config::DEFAULT_NAMES
        .iter()
        .map(|name| format!("[[schedules]]\nname = \"{name}\"\nenabled = false\n"))
        .collect();
    toml.push_str(defaults);
    let defaults = toml.as_str();
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MEMWARDEN_"))
        .collect();
    let overrides = Overrides {
        database_url: Some(url.to_string()),
        control_addr: Some("127.0.0.1:0".into()),
        require_justification: false,
    };
    Ok(Settings::from_parts(defaults, None, &env, &overrides)?)
}

/// The `default` queue with `concurrency` workers and `prefetch`.
pub fn default_queue(
    settings: &mut Settings,
    concurrency: u32,
    prefetch: Option<u32>,
) -> Result<()> {
    let concurrency = NonZeroU32::new(concurrency).context("--concurrency must be at least 1")?;
    settings.queues.insert(
        "default".into(),
        QueueConfig {
            concurrency,
            prefetch,
        },
    );
    Ok(())
}

/// Starts the real daemon (the same startup as `memwarden run`) and waits until it is READY.
pub async fn start_daemon(settings: Settings, kinds: Kinds) -> Result<Running> {
    start_daemon_within(settings, kinds, Duration::from_secs(60)).await
}

/// [`start_daemon`] for a start that does real work first (converting a large store to
/// pgvector and building its HNSW index), allowed `limit`.
pub async fn start_daemon_within(
    settings: Settings,
    kinds: Kinds,
    limit: Duration,
) -> Result<Running> {
    let build = Build {
        kinds,
        ..Build::default()
    };
    let running = Application::build(settings, build).await?.spawn()?;
    running.ready(limit).await?;
    Ok(running)
}

/// `n` memories over 100 owners, inserted without their enrichment jobs (the bench measures
/// only the kind under test).
pub async fn insert_memories(pool: &PgPool, n: i64) -> Result<()> {
    insert_without_jobs(
        pool,
        sqlx::query(
            "INSERT INTO memories (owner_id, memory_type, content) \
             SELECT 'owner-' || (g % 100), 'Context', \
                    'Memory ' || g || ': the team discussed postgres queues, rust services and deploys; topic ' || (g % 37) \
             FROM generate_series(1, $1) g",
        )
        .bind(n),
    )
    .await
}

/// Runs `insert` into memories with the enrichment trigger off (the bench, not the trigger,
/// decides which jobs exist), then analyzes the table so the plans see its size.
pub async fn insert_without_jobs(
    pool: &PgPool,
    insert: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<()> {
    sqlx::query("ALTER TABLE memories DISABLE TRIGGER memories_enqueue_enrichment_insert")
        .execute(pool)
        .await?;
    insert.execute(pool).await?;
    sqlx::query("ALTER TABLE memories ENABLE TRIGGER memories_enqueue_enrichment_insert")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE memories").execute(pool).await?;
    Ok(())
}

/// What `run_job` found: the job's report, the seconds from enqueue to its end, and the peak
/// RSS meanwhile.
pub struct JobRun {
    pub report: serde_json::Value,
    pub secs: f64,
    pub peak_rss: f64,
}

/// Enqueues a job on the running daemon and waits for it to succeed.
pub async fn run_job(daemon: &Running, kind: &str, args: serde_json::Value) -> Result<JobRun> {
    let queue = daemon.app.queue();
    let t0 = Instant::now();
    let id = queue.enqueue(NewJob::new(kind, args)).await?.id;
    let mut peak_rss = rss_mb();
    loop {
        let (status, result, error): (Status, Option<serde_json::Value>, Option<String>) =
            sqlx::query_as("SELECT status, result, last_error FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(queue.pool())
                .await?;
        peak_rss = peak_rss.max(rss_mb());
        match status {
            Status::Succeeded => {
                return Ok(JobRun {
                    report: result.unwrap_or_default(),
                    secs: t0.elapsed().as_secs_f64(),
                    peak_rss,
                })
            }
            Status::Failed | Status::Canceled | Status::Retryable => {
                bail!(
                    "the {kind} job ended {status}: {}",
                    error.unwrap_or_default()
                )
            }
            Status::Available | Status::Running => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
        }
    }
}
