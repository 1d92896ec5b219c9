//! `memwarden bench store`: the memory store at scale, on both vector backends side by side.
//!
//! Each size (10k, 100k and 1M memories by default) gets one database, filled once: one owner
//! holds a tenth of the memories (100,000 of 1M), the rest belong to owners of 100 each, and
//! every memory is embedded by a `reembed` job of the real daemon (on arrays) and marked
//! enriched. Then, on arrays and then on pgvector (the daemon converts the store and builds
//! the HNSW index as it starts; both are timed), it measures:
//! - enrichment: new memories of the large owner, inserted with plain SQL as the memory
//!   service writes them, enriched by the daemon: memories/s;
//! - the neighbour query enrichment runs for SIMILAR_TO, through the domain's own index, for
//!   random memories of the large owner and of small owners: p50 and p99, and how many of the
//!   large owner's searches the HNSW index served;
//! - the sync scan (the dry run's one statement), and the same scan hashing each memory's
//!   content instead of reading the stored generated column.
//!
//! The new memories are deleted after each backend's turn, so both backends see the same store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use memwarden::config::Settings;
use memwarden::startup::{Kinds, Running};
use memwarden_jobs::enrichment::EnrichmentSettings;
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::vector::{Backend, NeighbourQuery};
use memwarden_jobs::{HashEmbedder, JobArgs, PgVectorIndex, VectorIndex};
use sqlx::PgPool;

mod fill;
mod report;

use fill::fill;
use report::{print_table, Row};

use super::support::{
    bench_settings, in_fresh_database, migrated_pool, percentile, rss_mb, run_job, start_daemon,
    start_daemon_within,
};

/// What to measure: the sizes, how long each part may take, and the daemon's concurrency.
#[derive(Debug, Clone)]
pub struct StoreBench {
    pub sizes: Vec<i64>,
    /// New memories of the large owner to enrich, on each backend.
    pub enrich: i64,
    /// Enrichment stops after this long even if not all are done (arrays at 1M are slow).
    pub enrich_limit: Duration,
    pub queries: usize,
    pub query_limit: Duration,
    pub concurrency: u32,
}

const LARGE_OWNER: &str = "owner-large";
const MODEL: &str = "hash-v1";
const DIMS: usize = HashEmbedder::DEFAULT_DIMS;

pub async fn store(server_url: &str, bench: StoreBench) -> Result<()> {
    let mut rows = Vec::new();
    for &size in &bench.sizes {
        let b = bench.clone();
        let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = found.clone();
        in_fresh_database(server_url, &format!("store{size}"), |url| async move {
            let rows = one_size(url, size, &b).await?;
            sink.lock().expect("rows").extend(rows);
            Ok(())
        })
        .await?;
        rows.extend(found.lock().expect("rows").drain(..));
    }
    print_table(&rows, &bench);
    Ok(())
}

fn settings(url: &str, backend: Backend, concurrency: u32) -> Result<Settings> {
    let backend = match backend {
        Backend::Pgvector => "pgvector",
        Backend::Array => "array",
    };
    let toml = format!(
        "[vector]\nbackend = \"{backend}\"\nindex_build_memory_mb = 2048\n\
         [queues.default]\nconcurrency = {concurrency}\n"
    );
    bench_settings(&toml, url)
}

async fn one_size(url: String, size: i64, bench: &StoreBench) -> Result<Vec<Row>> {
    let pool = migrated_pool(&url).await?;
    let large = fill(&pool, size).await?;
    let t0 = Instant::now();
    let mut daemon = start_daemon(
        settings(&url, Backend::Array, bench.concurrency)?,
        Kinds::Daemon,
    )
    .await?;
    let array_start = t0.elapsed().as_secs_f64();
    let reembed = run_job(
        &daemon,
        ReembedArgs::KIND,
        serde_json::json!({"batch_size": 256}),
    )
    .await?;
    println!(
        "store N={size}: {size} memories ({large} of {LARGE_OWNER}) embedded in {:.1} s by reembed",
        reembed.secs
    );
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;

    let mut rows = Vec::new();
    let mut row = measure(&daemon, &pool, size, Backend::Array, bench).await?;
    row.start_secs = array_start;
    rows.push(row);

    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(&pool)
    .await?;
    if available {
        daemon.stop(Duration::from_secs(30)).await?;
        let t0 = Instant::now();
        daemon = start_daemon_within(
            settings(&url, Backend::Pgvector, bench.concurrency)?,
            Kinds::Daemon,
            Duration::from_secs(3 * 3600),
        )
        .await?;
        let start_secs = t0.elapsed().as_secs_f64();
        println!(
            "store N={size}: the daemon converted the store to pgvector and built the HNSW index in {start_secs:.1} s"
        );
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let mut row = measure(&daemon, &pool, size, Backend::Pgvector, bench).await?;
        row.start_secs = start_secs;
        rows.push(row);
    } else {
        println!("store N={size}: pgvector is not available on this server; arrays only");
    }
    daemon.stop(Duration::from_secs(30)).await?;
    pool.close().await;
    Ok(rows)
}

async fn measure(
    daemon: &Running,
    pool: &PgPool,
    size: i64,
    backend: Backend,
    bench: &StoreBench,
) -> Result<Row> {
    let work = memwarden::db::work_pool(
        &daemon.app.settings(),
        daemon.app.settings().database_url().unwrap_or_default(),
    )?;
    let index =
        PgVectorIndex::with_cache(work.clone(), memwarden_jobs::vector::DEFAULT_CACHE_BYTES);
    let found = index.backend().await?;
    if found != backend {
        bail!("the store keeps its vectors as {found}, not {backend}");
    }
    let mut row = Row {
        size,
        backend: backend.to_string(),
        ..Row::default()
    };
    let (enriched, rate, rss) = enrichment(pool, bench).await?;
    row.enriched = enriched;
    row.enrich_rate = rate;
    row.peak_rss = rss;

    let scans_before = hnsw_scans(pool).await?;
    let (large_ms, large_queries) = neighbour_queries(pool, &index, true, bench).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await; // statistics are flushed each second
    let scans_after = hnsw_scans(pool).await?;
    row.large_p50_ms = percentile(&large_ms, 0.5);
    row.large_p99_ms = percentile(&large_ms, 0.99);
    row.large_queries = large_queries;
    row.hnsw_scans = (backend == Backend::Pgvector).then_some(scans_after - scans_before);
    let (small_ms, _) = neighbour_queries(pool, &index, false, bench).await?;
    row.small_p99_ms = percentile(&small_ms, 0.99);

    row.scan_rate = best_of_3(|| memwarden_jobs::sync::scan(&work, MODEL, DIMS)).await?;
    row.scan_hashing_rate =
        best_of_3(|| memwarden_jobs::sync::scan_hashing_content(&work, MODEL, DIMS)).await?;
    println!(
        "store N={size} {backend}: enrichment {rate:.0} memories/s ({enriched} enriched); neighbours of {LARGE_OWNER} p50 {:.2} ms p99 {:.2} ms ({large_queries} queries{}), small owners p99 {:.2} ms; sync scan {:.0}/s, hashing in the scan {:.0}/s",
        row.large_p50_ms,
        row.large_p99_ms,
        row.hnsw_scans
            .map(|s| format!(", {s} HNSW index scans"))
            .unwrap_or_default(),
        row.small_p99_ms,
        row.scan_rate,
        row.scan_hashing_rate,
    );
    work.close().await;
    Ok(row)
}

/// Inserts `bench.enrich` memories of the large owner (the trigger enqueues each), waits for
/// their enrichment (or the limit), then removes them: enriched count, rate, peak RSS.
async fn enrichment(pool: &PgPool, bench: &StoreBench) -> Result<(i64, f64, f64)> {
    let t0 = Instant::now();
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, tags) \
         SELECT $2, 'Decision', 'Fresh note ' || g || ': Alice Walker moved the postgres queue of the ' || \
                (ARRAY['billing','search','agent','deploy'])[1 + g % 4] || ' service to rust', '{bench-new}' \
         FROM generate_series(1, $1) g",
    )
    .bind(bench.enrich)
    .bind(LARGE_OWNER)
    .execute(pool)
    .await?;
    let mut peak = rss_mb();
    let pending =
        "SELECT count(*) FROM memories WHERE 'bench-new' = ANY(tags) AND enriched_at IS NULL";
    loop {
        let left: i64 = sqlx::query_scalar(pending).fetch_one(pool).await?;
        peak = peak.max(rss_mb());
        if left == 0 || t0.elapsed() > bench.enrich_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memories WHERE 'bench-new' = ANY(tags) AND enriched_at IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    // What the limit left: no longer claimable, then the running ones finish.
    sqlx::query(
        "DELETE FROM jobs WHERE kind = 'enrichment' AND status IN ('available', 'retryable')",
    )
    .execute(pool)
    .await?;
    for _ in 0..600 {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'enrichment' AND status = 'running'",
        )
        .fetch_one(pool)
        .await?;
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("DELETE FROM memories WHERE 'bench-new' = ANY(tags)")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM jobs").execute(pool).await?;
    sqlx::query("VACUUM ANALYZE memories, memory_embeddings, memory_edges")
        .execute(pool)
        .await?;
    Ok((done, done as f64 / secs, peak))
}

/// The SIMILAR_TO search for random memories of the large owner (or of small owners), as
/// enrichment runs it: times in ms, sorted, and how many ran within the limit.
async fn neighbour_queries(
    pool: &PgPool,
    index: &PgVectorIndex,
    large: bool,
    bench: &StoreBench,
) -> Result<(Vec<f64>, usize)> {
    let owner_filter = if large {
        "m.owner_id = $1"
    } else {
        "m.owner_id <> $1"
    };
    let sample: Vec<(uuid::Uuid, String, Vec<f32>)> = sqlx::query_as(&format!(
        "SELECT m.id, m.owner_id, e.embedding::real[] \
         FROM (SELECT id, owner_id FROM memories m WHERE {owner_filter} ORDER BY random() LIMIT $2) m \
         JOIN memory_embeddings e ON e.memory_id = m.id"
    ))
    .bind(LARGE_OWNER)
    .bind(bench.queries as i64)
    .fetch_all(pool)
    .await
    .context("sampling query vectors")?;
    let defaults = EnrichmentSettings::default();
    let t0 = Instant::now();
    let mut ms = Vec::with_capacity(sample.len());
    for (id, owner, vector) in &sample {
        let q = NeighbourQuery {
            owner_id: owner,
            model: MODEL,
            vector,
            exclude: Some(*id),
            threshold: defaults.similarity_threshold,
            k: defaults.top_k,
        };
        let t = Instant::now();
        index.nearest(&q).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if t0.elapsed() > bench.query_limit {
            break;
        }
    }
    let n = ms.len();
    ms.sort_by(f64::total_cmp);
    Ok((ms, n))
}

async fn hnsw_scans(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
         WHERE indexrelname LIKE 'memory_embeddings_hnsw_%'",
    )
    .fetch_one(pool)
    .await?)
}

/// The best of three scans, in memories/s (the first may read from disk).
async fn best_of_3<F, Fut>(scan: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<memwarden_jobs::sync::Scan, sqlx::Error>>,
{
    let mut best = 0.0f64;
    for _ in 0..3 {
        best = best.max(scan().await?.memories_per_second);
    }
    Ok(best)
}
