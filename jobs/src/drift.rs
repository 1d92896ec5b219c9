//! Drift between a store's texts and their embeddings, as `sync` reports it: four kinds,
//! counted with their first ids by one set-based statement over a `pairs` relation that each
//! store defines (one row per text or embedding, with its `kind`), summarised here the same
//! way for every store.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// One kind of drift: how many, and the first ids (at most 10, in id order).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DriftKind {
    pub count: i64,
    pub sample: Vec<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    pub missing: DriftKind,
    pub stale: DriftKind,
    pub model_mismatch: DriftKind,
    pub orphaned: DriftKind,
}

impl Drift {
    /// The kinds with their names, in a fixed order (the gauge's labels).
    pub fn kinds(&self) -> [(&'static str, &DriftKind); 4] {
        [
            ("missing", &self.missing),
            ("stale", &self.stale),
            ("model_mismatch", &self.model_mismatch),
            ("orphaned", &self.orphaned),
        ]
    }

    pub fn total(&self) -> i64 {
        self.kinds().iter().map(|(_, k)| k.count).sum()
    }

    /// The texts a repair re-embeds.
    pub(crate) fn to_reembed(&self) -> i64 {
        self.missing.count + self.stale.count + self.model_mismatch.count
    }
}

/// A scan's findings and its cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Scan {
    pub drift: Drift,
    /// Memories (or entries) compared, live or not.
    pub memories: i64,
    pub embeddings: i64,
    pub scan_ms: f64,
    /// Memories compared per second.
    pub memories_per_second: f64,
}

/// Summarises `pairs (id, has_memory, has_embedding, kind)`, defined by the statement before it.
pub(crate) const SUMMARY: &str = "\
SELECT count(*) FILTER (WHERE has_memory), count(*) FILTER (WHERE has_embedding), \
  count(*) FILTER (WHERE kind = 'missing'), \
  COALESCE((array_agg(id ORDER BY id) FILTER (WHERE kind = 'missing'))[1:10], '{}'), \
  count(*) FILTER (WHERE kind = 'stale'), \
  COALESCE((array_agg(id ORDER BY id) FILTER (WHERE kind = 'stale'))[1:10], '{}'), \
  count(*) FILTER (WHERE kind = 'model_mismatch'), \
  COALESCE((array_agg(id ORDER BY id) FILTER (WHERE kind = 'model_mismatch'))[1:10], '{}'), \
  count(*) FILTER (WHERE kind = 'orphaned'), \
  COALESCE((array_agg(id ORDER BY id) FILTER (WHERE kind = 'orphaned'))[1:10], '{}') \
FROM pairs";

/// memwarden's own store: `memories` against `memory_embeddings`.
const NATIVE_PAIRS: &str = "\
WITH pairs AS ( \
  SELECT COALESCE(m.id, e.memory_id) AS id, m.id IS NOT NULL AS has_memory, \
         e.memory_id IS NOT NULL AS has_embedding, \
         CASE \
           WHEN e.memory_id IS NULL THEN CASE WHEN m.deleted_at IS NULL THEN 'missing' END \
           WHEN m.id IS NULL OR m.deleted_at IS NOT NULL THEN 'orphaned' \
           WHEN e.model <> $1 OR ($2 > 0 AND e.dims <> $2) THEN 'model_mismatch' \
           WHEN e.content_hash <> m.content_hash THEN 'stale' \
         END AS kind \
  FROM memories m FULL JOIN memory_embeddings e ON e.memory_id = m.id) ";

type ScanRow = (
    i64,
    i64,
    i64,
    Vec<Uuid>,
    i64,
    Vec<Uuid>,
    i64,
    Vec<Uuid>,
    i64,
    Vec<Uuid>,
);

/// Compares every memory with its embedding, against this model and size (0: any size).
pub async fn scan(pool: &PgPool, model: &str, dims: usize) -> Result<Scan, sqlx::Error> {
    scan_with(pool, &format!("{NATIVE_PAIRS}{SUMMARY}"), model, dims).await
}

/// [`scan`] with each memory's content hashed in the scan instead of read from the stored
/// generated column: what finding drift independently of triggers would cost without that
/// column. Only for the benchmark's comparison (docs/performance.md, "Sync scan").
pub async fn scan_hashing_content(
    pool: &PgPool,
    model: &str,
    dims: usize,
) -> Result<Scan, sqlx::Error> {
    let sql =
        format!("{NATIVE_PAIRS}{SUMMARY}").replace("m.content_hash", "content_sha256(m.content)");
    scan_with(pool, &sql, model, dims).await
}

/// Runs a scan statement (`$1` the model, `$2` the size) and times it.
pub(crate) async fn scan_with(
    pool: &PgPool,
    sql: &str,
    model: &str,
    dims: usize,
) -> Result<Scan, sqlx::Error> {
    let started = Instant::now();
    let row: ScanRow = sqlx::query_as(sql)
        .bind(model)
        .bind(dims as i32)
        .fetch_one(pool)
        .await?;
    let took = started.elapsed().as_secs_f64();
    let kind = |count, sample| DriftKind { count, sample };
    Ok(Scan {
        drift: Drift {
            missing: kind(row.2, row.3),
            stale: kind(row.4, row.5),
            model_mismatch: kind(row.6, row.7),
            orphaned: kind(row.8, row.9),
        },
        memories: row.0,
        embeddings: row.1,
        scan_ms: took * 1000.0,
        memories_per_second: if took > 0.0 { row.0 as f64 / took } else { 0.0 },
    })
}
