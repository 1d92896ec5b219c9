//! `memwarden bench purge`: how fast `job-purge` removes finished jobs with their attempts, so
//! that it can be compared with the queue's throughput: a purge that removes jobs faster than
//! the queue finishes them keeps up, whatever the retention. N succeeded jobs of the last day,
//! each with an attempt row (as `bench queue --history` writes them), are purged with the
//! hourly schedule's batch size, in a `memwarden-work` session as the daemon runs it, twice.

use std::time::Instant;

use anyhow::Result;
use memwarden::config::Settings;
use memwarden::queue::purge::{purge, PurgeCutoff, PurgeReport, PurgeRequest};

use super::queue::{prefill_table, Prefill};
use super::support::{in_fresh_database, migrated_pool, rss_mb, work_pool};

pub async fn purge_bench(server_url: &str, jobs: i64) -> Result<()> {
    in_fresh_database(server_url, "purge", |url| run(url, jobs)).await
}

async fn run(url: String, jobs: i64) -> Result<()> {
    let pool = migrated_pool(&url).await?;
    let batch = i64::from(Settings::default().purge.batch_size.get());
    let work = work_pool(&url).await?;
    for _ in 0..2 {
        prefill_table(
            &pool,
            Prefill {
                history: jobs,
                backlog: 0,
            },
        )
        .await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let t = Instant::now();
        let request = PurgeRequest::new(
            PurgeCutoff::from_retention(std::time::Duration::ZERO, chrono::Utc::now()),
            &[],
            None,
            false,
        )?;
        let report: PurgeReport = purge(&work, &request, batch).await?;
        let seconds = t.elapsed().as_secs_f64();
        println!(
            "purge of {} jobs and {} attempts in {seconds:.2} s: {:.0} jobs/s (batch {batch})",
            report.jobs_purged,
            report.attempts_purged,
            report.jobs_purged as f64 / seconds,
        );
    }
    println!("rss_mb={:.1}", rss_mb());
    work.close().await;
    pool.close().await;
    Ok(())
}
