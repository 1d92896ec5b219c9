//! `memwarden bench reembed`: N memories re-embedded with the configured embedder (`hash` by
//! default), end to end through the daemon's queue.

use std::time::Duration;

use anyhow::{bail, Result};
use memwarden::startup::Kinds;
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::JobArgs;

use super::support::{
    bench_settings, in_fresh_database, insert_memories, migrated_pool, rss_mb, run_job,
    start_daemon, JobRun,
};

pub async fn reembed(server_url: &str, n: i64, batch_size: u32) -> Result<()> {
    in_fresh_database(server_url, "reembed", |url| run(url, n, batch_size)).await
}

async fn run(url: String, n: i64, batch_size: u32) -> Result<()> {
    let pool = migrated_pool(&url).await?;
    insert_memories(&pool, n).await?;
    let daemon = start_daemon(bench_settings("", &url)?, Kinds::Daemon).await?;
    let idle_rss = rss_mb();
    let JobRun {
        report,
        secs,
        peak_rss,
    } = run_job(
        &daemon,
        ReembedArgs::KIND,
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
    daemon.stop(Duration::from_secs(10)).await?;
    if report["processed"].as_i64() != Some(n) || embedded != n {
        bail!("the reembed did not embed every memory: {report}");
    }
    Ok(())
}
