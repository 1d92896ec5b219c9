//! `memwarden bench replicas`: 1, 2, 4... daemons (each the same startup as `memwarden run`,
//! each with its own worker id and `--concurrency` workers) on one database. Prints their
//! aggregate throughput on N jobs, then the rescue: how long after the leases of a crashed
//! replica's 1,000 jobs expire until the live replicas have run them all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use memwarden::queue::Registry;
use memwarden::startup::{Application, Build, Kinds, Running};

use super::queue::{enqueue_noops, queue_settings, CountedNoop};
use super::support::{in_fresh_database, reset_peak_rss, rss_line, rss_mb};

const ORPHANS: i64 = 1000;

pub async fn replicas(
    server_url: &str,
    n: usize,
    concurrency: u32,
    counts: &[usize],
) -> Result<()> {
    for &k in counts {
        let line = Arc::new(std::sync::Mutex::new(String::new()));
        let out = line.clone();
        in_fresh_database(server_url, "replicas", |url| async move {
            *out.lock().expect("line") = run(url, n, concurrency, k).await?;
            Ok(())
        })
        .await?;
        println!("{}", line.lock().expect("line"));
    }
    Ok(())
}

async fn until(what: &str, pool: &sqlx::PgPool, sql: &str, limit: Duration) -> Result<Duration> {
    let t = Instant::now();
    loop {
        let done: bool = sqlx::query_scalar(sql).fetch_one(pool).await?;
        if done {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(url: String, n: usize, concurrency: u32, k: usize) -> Result<String> {
    let settings = queue_settings(&url, concurrency)?;
    let pool = memwarden::db::connect(&settings, &url).await?;
    memwarden::db::migrate(&pool, &settings.database.schema).await?;
    enqueue_noops(&pool, n).await?;

    // The peak from here on is the replicas' and the rescue's, not the bench's N-job buffer.
    let from = reset_peak_rss();
    let ran = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut daemons: Vec<Running> = Vec::new();
    for _ in 0..k {
        let build = Build {
            kinds: Kinds::Custom(Registry::new().register("bench-noop", CountedNoop(ran.clone()))),
            ..Build::default()
        };
        daemons.push(Application::build(settings.clone(), build).await?.spawn()?);
    }
    let mut peak_rss = rss_mb();
    while ran.load(Ordering::Relaxed) < n {
        if daemons.iter().any(Running::is_finished) {
            bail!("a replica stopped during the benchmark");
        }
        peak_rss = peak_rss.max(rss_mb());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let workers: i64 = sqlx::query_scalar("SELECT count(DISTINCT worker) FROM job_attempts")
        .fetch_one(&pool)
        .await?;

    // A crashed replica's jobs: running, leased to a worker that is gone, the leases just out.
    sqlx::query(
        "INSERT INTO jobs (kind, queue, args, status, attempt, started_at, lease_owner, lease_expires_at) \
         SELECT 'bench-noop', 'default', jsonb_build_object('orphan', g), 'running', 1, now(), 'crashed:1:0', now() \
         FROM generate_series(1, $1) g",
    )
    .bind(ORPHANS)
    .execute(&pool)
    .await?;
    let rescue = until(
        "the rescue",
        &pool,
        "SELECT NOT EXISTS (SELECT 1 FROM jobs WHERE args ? 'orphan' AND status <> 'succeeded')",
        Duration::from_secs(120),
    )
    .await?;
    for d in daemons {
        d.stop(Duration::from_secs(10)).await?;
    }
    pool.close().await;
    Ok(format!(
        "memwarden replicas={k} N={n} C={concurrency} each: {:.0} jobs/s ({dt:.2} s incl. startup, {workers} workers ran jobs); \
         {ORPHANS} expired leases rescued and run in {:.2} s; peak rss_mb {peak_rss:.1} (all replicas, one process)\n{}",
        n as f64 / dt,
        rescue.as_secs_f64(),
        rss_line(&format!("replicas={k} N={n} C={concurrency}"), from)
    ))
}
