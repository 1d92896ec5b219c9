//! `memwarden bench queue`: throughput and enqueue-to-start latency of the real daemon (the
//! same startup as `memwarden run`) on a fresh database, printed in the two lines of
//! spec/performance.md, then the memory line (`rss_line`): the process's peak from the daemon's
//! start to the end of the latency samples. The polled RSS and the startup time go to stderr.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use memwarden::lifecycle::State;
use memwarden::queue::{enqueue, Handler, JobContext, NewJob, Outcome, Registry};
use memwarden::startup::{Application, Build, Kinds};
use rand::Rng;
use tokio::sync::Notify;

use super::support::{
    bench_settings, default_queue, in_fresh_database, percentile, reset_peak_rss, rss_line, rss_mb,
};

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
pub(super) struct CountedNoop(pub(super) Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Handler for CountedNoop {
    async fn run(&self, _job: JobContext) -> Outcome {
        self.0.fetch_add(1, Ordering::Relaxed);
        Outcome::Succeeded(serde_json::Value::Null)
    }
}

/// The queue benchmarks' daemon settings: batched claims and completions, `concurrency`
/// workers on `default`, then MEMWARDEN_* from the environment.
pub(super) fn queue_settings(url: &str, concurrency: u32) -> Result<memwarden::config::Settings> {
    let mut settings = bench_settings("[queue]\nclaim_batch = 500\ncomplete_batch = 1000\n", url)?;
    // Like graphile-worker's batched configuration (a 500-job local queue), claim far ahead.
    let prefetch = settings
        .queues
        .get("default")
        .and_then(|q| q.prefetch)
        .or(Some(500));
    default_queue(&mut settings, concurrency, prefetch)?;
    Ok(settings)
}

/// Rows already in the table when the measured jobs arrive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefill {
    /// Succeeded jobs of the last day, each with its attempt row, as memwarden keeps them
    /// until `job-purge` takes them.
    pub history: i64,
    /// Pending jobs of the same queue, due in an hour: claimable rows the claim must pass by.
    pub backlog: i64,
}

pub async fn queue(
    server_url: &str,
    n: usize,
    concurrency: u32,
    samples: usize,
    prefill: Prefill,
) -> Result<()> {
    in_fresh_database(server_url, "queue", |url| {
        run(url, n, concurrency, samples, prefill)
    })
    .await
}

/// `n` no-op jobs on the default queue, inserted 10,000 per statement, then the table
/// vacuumed and analysed: the burn-down that `queue` and `replicas` time.
pub(super) async fn enqueue_noops(pool: &sqlx::PgPool, n: usize) -> Result<()> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob {
            queue: Some("default".into()),
            max_attempts: Some(25),
            ..NewJob::new("bench-noop", serde_json::json!({ "i": i }))
        })
        .collect();
    for chunk in jobs.chunks(10_000) {
        enqueue::insert_jobs(pool, chunk).await?;
    }
    sqlx::query("VACUUM ANALYZE jobs").execute(pool).await?;
    Ok(())
}

/// Writes the prefill in statements of 1,000,000 rows, then vacuums and analyzes.
pub(super) async fn prefill_table(pool: &sqlx::PgPool, prefill: Prefill) -> Result<()> {
    let t = Instant::now();
    let step = 1_000_000i64;
    let mut done = 0;
    while done < prefill.history {
        let rows = step.min(prefill.history - done);
        sqlx::query(
            "WITH j AS (INSERT INTO jobs (id, kind, queue, args, status, attempt, run_at, created_at, \
                                  started_at, finished_at, lease_owner) \
               SELECT uuid_v7(at), 'bench-history', 'default', jsonb_build_object('i', g), 'succeeded', 1, \
                      at, at, at, at + interval '3 ms', NULL \
               FROM generate_series(1, $1) g, LATERAL (SELECT now() - interval '1 day' * random() AS at) t \
               RETURNING id, started_at, finished_at) \
             INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome) \
             SELECT id, 1, 'history', started_at, finished_at, 'succeeded' FROM j",
        )
        .bind(rows)
        .execute(pool)
        .await?;
        done += rows;
    }
    done = 0;
    while done < prefill.backlog {
        let rows = step.min(prefill.backlog - done);
        sqlx::query(
            "INSERT INTO jobs (kind, queue, args, run_at) \
             SELECT 'bench-noop', 'default', jsonb_build_object('later', g), now() + interval '1 hour' \
             FROM generate_series(1, $1) g",
        )
        .bind(rows)
        .execute(pool)
        .await?;
        done += rows;
    }
    eprintln!(
        "prefill: {} succeeded jobs with attempts, {} pending due in an hour, written in {:.1} s",
        prefill.history,
        prefill.backlog,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(
    url: String,
    n: usize,
    concurrency: u32,
    samples: usize,
    prefill: Prefill,
) -> Result<()> {
    let settings = queue_settings(&url, concurrency)?;

    // The enqueuing client, configured like the peers' (node-postgres): no liveness round trip
    // of its own before each statement, so the latency is enqueue plus pickup, as theirs is.
    let schema = memwarden::config::Schema::default();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .test_before_acquire(false)
        .connect_with(memwarden::db::in_schema(url.parse()?, &schema))
        .await?;
    memwarden::db::migrate(&pool, &schema).await?;
    prefill_table(&pool, prefill).await?;
    enqueue_noops(&pool, n).await?;

    let starts = Starts::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new()
        .register("bench-noop", CountedNoop(ran.clone()))
        .register("bench-latency", LatencyHandler(starts.clone()));

    // The peak from here on is the daemon's and the measuring, not the bench's N-job buffer.
    let from = reset_peak_rss();
    let t0 = Instant::now();
    let build = Build {
        kinds: Kinds::Custom(registry),
        ..Build::default()
    };
    let daemon = Application::build(settings, build).await?.spawn()?;
    let app = daemon.app.clone();
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
                // Each half on its own partial index: with history in the table, one `status IN`
                // over all three was a sequential scan.
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = 'default' \
                   AND status IN ('available', 'retryable') AND run_at <= now()) \
                 OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running')",
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
                daemon.stop(Duration::from_secs(1)).await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) - $1 FROM job_attempts")
        .bind(prefill.history)
        .fetch_one(&pool)
        .await?;
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND kind = 'bench-noop'",
    )
    .fetch_one(&pool)
    .await?;
    if succeeded as usize != n || attempts as usize != n {
        bail!(
            "expected {n} succeeded jobs with {n} attempt rows, found {succeeded} and {attempts}"
        );
    }
    let prefilled = if prefill.history > 0 || prefill.backlog > 0 {
        format!(" history={} backlog={}", prefill.history, prefill.backlog)
    } else {
        String::new()
    };
    println!(
        "memwarden N={n} C={concurrency}{prefilled}: {:.0} jobs/s ({dt:.2} s incl. startup)",
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
        sqlx::query("SELECT enqueue('bench-latency', jsonb_build_object('i', $1::bigint))")
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
    println!(
        "{}",
        rss_line(&format!("queue N={n} C={concurrency}{prefilled}"), from)
    );
    eprintln!(
        "rss_mb idle={idle_rss:.1} peak_under_load={peak_rss:.1} attempts_recorded={attempts} ready_after_ms={:.0}",
        ready_after.unwrap_or_default().as_secs_f64() * 1000.0
    );

    daemon.stop(Duration::from_secs(10)).await?;
    pool.close().await;
    Ok(())
}
