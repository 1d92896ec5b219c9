//! `memwarden bench sync`: a dry-run scan of N memories with DRIFT missing, stale and
//! orphaned embeddings, then the repair.

use std::time::Duration;

use anyhow::Result;
use memwarden::startup::Kinds;
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::JobArgs;

use super::support::{
    bench_settings, in_fresh_database, insert_memories, migrated_pool, run_job, start_daemon,
    JobRun,
};

pub async fn sync(server_url: &str, n: i64, drift: i64) -> Result<()> {
    in_fresh_database(server_url, "sync", |url| run(url, n, drift)).await
}

async fn run(url: String, n: i64, drift: i64) -> Result<()> {
    let pool = migrated_pool(&url).await?;
    insert_memories(&pool, n).await?;
    let daemon = start_daemon(bench_settings("", &url)?, Kinds::Daemon).await?;
    run_job(
        &daemon,
        ReembedArgs::KIND,
        serde_json::json!({"batch_size": 256}),
    )
    .await?;
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
    let JobRun {
        report: dry,
        secs: dry_secs,
        peak_rss: dry_rss,
    } = run_job(
        &daemon,
        SyncArgs::KIND,
        serde_json::json!({"dry_run": true}),
    )
    .await?;
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
    let JobRun {
        report: real,
        secs,
        peak_rss: rss,
    } = run_job(&daemon, SyncArgs::KIND, serde_json::json!({})).await?;
    println!(
        "memwarden sync repair: {:.2} s ({} re-embedded, {} orphans removed); drift left: {}, rss_mb peak {rss:.1}",
        secs,
        real["repair"]["reembedded"],
        real["repair"]["orphans_removed"],
        counts(&real["remaining"]),
    );
    daemon.stop(Duration::from_secs(10)).await?;
    Ok(())
}
