//! apalis-postgres measured the way benches/queue-vs-graphile.sh measures memwarden and
//! graphile-worker (shared/bench/peers/gw.js): on an empty database of its own,
//!
//! (a) burn-down: N no-op jobs inserted first (in statements of 10,000), then one worker with
//!     concurrency C started; jobs/s from the worker's start (so startup is included) until
//!     every job is finished in the table, as memwarden counts it: the handler's run count
//!     reaches N, then the table confirms no job is left unfinished;
//! (b) light load: S jobs enqueued one at a time, 5-15 ms apart, each timed from just before
//!     its INSERT to the moment its handler starts (enqueue to start, as the peers' figure is).
//!
//!   DATABASE_URL=postgres://.../bench_apalis N=20000 C=24 S=300 target/release/apalis-bench
//!
//! Env: BATCH (jobs fetched per claim, default 500 like the peers' batched configurations;
//! apalis's own default is 10), LOCK (1, apalis's default: each task is marked Running before
//! it runs; 0 skips that write). Prints the peers' two lines, then `rss_mb` from /proc.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use rand::Rng;
use tokio::sync::Notify;

const QUEUE: &str = "bench";

/// What the handler records: the burn-down's run count, and when each probe started.
struct Seen {
    ran: AtomicUsize,
    starts: Mutex<HashMap<u64, Instant>>,
    notify: Notify,
    n: u64,
}

static SEEN: OnceLock<Seen> = OnceLock::new();

/// The job: nothing, but counted; a probe (an id at or past N) notes when it started.
async fn noop(id: u64) -> Result<(), BoxDynError> {
    let now = Instant::now();
    let seen = SEEN.get().expect("set before the worker starts");
    if id >= seen.n {
        seen.starts.lock().expect("starts").insert(id, now);
        seen.notify.notify_waiters();
    } else {
        seen.ran.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn task(id: u64) -> apalis_postgres::PgTask {
    TaskBuilder::new(serde_json::to_vec(&id).expect("json")).build()
}

/// VmHWM (peak) and VmRSS of this process, in MiB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(rank).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let (n, c, s): (u64, usize, u64) = (env("N", 20_000), env("C", 24), env("S", 300));
    let (batch, lock): (usize, u8) = (env("BATCH", 500), env("LOCK", 1));
    SEEN.set(Seen {
        ran: AtomicUsize::new(0),
        starts: Mutex::new(HashMap::new()),
        notify: Notify::new(),
        n,
    })
    .map_err(|_| "set twice")?;
    let seen = SEEN.get().expect("just set");

    // Like the peers' pools: room for the C workers and the bench's own statements.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(c as u32 + 5)
        .test_before_acquire(false)
        .connect(&url)
        .await?;
    PostgresStorage::setup(&pool).await?;
    for start in (0..n).step_by(10_000) {
        let tasks = (start..n.min(start + 10_000)).map(task).collect();
        let mut conn = pool.acquire().await?;
        apalis_postgres::queries::push_tasks(&mut *conn, QUEUE, tasks).await?;
    }
    sqlx::query("VACUUM ANALYZE apalis.jobs")
        .execute(&pool)
        .await?;

    // The peak from here on, as memwarden's bench reports it: the worker's, not the enqueue's.
    std::fs::write("/proc/self/clear_refs", "5").ok();
    let t0 = Instant::now();
    let config = Config::default()
        .queue(QUEUE)
        .batch_size(batch)
        .lock_tasks(lock != 0);
    // LISTEN/NOTIFY wakes the worker on an insert, and a poll every second is the fallback,
    // as in graphile-worker's (pollInterval 1000) and memwarden's (queue.poll_interval_ms).
    let backend = PostgresStorage::<u64>::new(&pool)
        .with_config(config)
        .with_pubsub()
        .poll_with_interval(Duration::from_secs(1));
    let ctx = WorkerContext::new("apalis-bench");
    let worker = WorkerBuilder::new(&ctx)
        .backend(backend)
        .concurrency(c)
        .parallelize(tokio::spawn)
        .build(noop);
    let running = tokio::spawn(worker.run());

    let mut rss_burn_down = rss_mb().1;
    loop {
        rss_burn_down = rss_burn_down.max(rss_mb().1);
        if seen.ran.load(Ordering::Relaxed) as u64 >= n {
            let left: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status <> 'Done')",
            )
            .bind(QUEUE)
            .fetch_one(&pool)
            .await?;
            if !left {
                break;
            }
        }
        if running.is_finished() {
            return Err(format!("the worker stopped: {:?}", running.await).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
    )
    .bind(QUEUE)
    .fetch_one(&pool)
    .await?;
    if done as u64 != n {
        return Err(format!("expected {n} jobs Done, found {done}").into());
    }
    println!(
        "apalis-postgres 1.0.0 batch={batch} lock={lock} N={n} C={c}: {:.0} jobs/s ({dt:.2} s incl. startup)",
        n as f64 / dt
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = Vec::with_capacity(s as usize);
    for id in n..n + s {
        let notified = seen.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let t = Instant::now();
        let mut conn = pool.acquire().await?;
        apalis_postgres::queries::push_tasks(&mut *conn, QUEUE, vec![task(id)]).await?;
        drop(conn);
        let started = loop {
            if let Some(at) = seen.starts.lock().expect("starts").get(&id).copied() {
                break at;
            }
            if tokio::time::timeout(Duration::from_secs(5), notified.as_mut())
                .await
                .is_err()
            {
                return Err(format!("latency sample {id} did not start within 5 s").into());
            }
            notified.set(seen.notify.notified());
            notified.as_mut().enable();
        };
        lat.push(started.saturating_duration_since(t).as_secs_f64() * 1000.0);
        let pause = rand::thread_rng().gen_range(5.0..15.0);
        tokio::time::sleep(Duration::from_secs_f64(pause / 1000.0)).await;
    }
    lat.sort_by(f64::total_cmp);
    let within = |lo: f64, hi: f64| lat.iter().filter(|&&ms| ms >= lo && ms < hi).count();
    println!(
        "probes started within <5 ms: {}, 5-50 ms: {}, 50-500 ms: {}, >=500 ms: {}",
        within(0.0, 5.0),
        within(5.0, 50.0),
        within(50.0, 500.0),
        within(500.0, f64::INFINITY)
    );
    println!(
        "latency ms p50={:.2} p99={:.2} max={:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    let (hwm, rss) = rss_mb();
    println!(
        "rss_mb apalis N={n} C={c}: peak={hwm:.1} now={rss:.1} burn_down_max={rss_burn_down:.1} (VmHWM, VmRSS, polled VmRSS)"
    );

    ctx.stop()?;
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    pool.close().await;
    Ok(())
}
