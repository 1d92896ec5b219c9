//! `sync` (AutoMem's `/admin/sync`): finds drift between `memories` and the vector index and
//! repairs it.
//!
//! The kinds of drift:
//! - `missing`: a live memory with no embedding;
//! - `stale`: an embedding computed from other content (its `content_hash` differs);
//! - `model_mismatch`: an embedding of another model, or another size, than configured;
//! - `orphaned`: an embedding whose memory is gone or soft-deleted.
//!
//! The scan is one set-based statement (a full join of the two tables, classified and counted
//! in one pass), not a walk. Repair removes orphans in id-ordered batches, then re-embeds the
//! rest with the same walk as `reembed`. It never writes `memories`. It reads the built-in
//! index's table directly: an external index would bring its own scan.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bulk::{BulkError, BulkSettings, FailedBatch, Selection, Walk, WalkEnd, WalkState};
use crate::embedding::Embedder;
use crate::reembed::DEFAULT_BATCH_SIZE;
use crate::vector::VectorIndex;
use crate::{percent_of, NoCheckpoint, Progress};

/// The `sync` job's args, as stored on the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default)]
    pub dry_run: bool,
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

impl Default for SyncArgs {
    fn default() -> Self {
        SyncArgs {
            batch_size: DEFAULT_BATCH_SIZE,
            dry_run: false,
        }
    }
}

impl crate::JobArgs for SyncArgs {
    const KIND: &'static str = "sync";
}

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

    /// The memories a repair re-embeds.
    fn to_reembed(&self) -> i64 {
        self.missing.count + self.stale.count + self.model_mismatch.count
    }
}

/// A scan's findings and its cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Scan {
    pub drift: Drift,
    /// Memories compared (live or not).
    pub memories: i64,
    pub embeddings: i64,
    pub scan_ms: f64,
    /// Memories compared per second.
    pub memories_per_second: f64,
}

const SCAN: &str = "\
WITH pairs AS ( \
  SELECT COALESCE(m.id, e.memory_id) AS id, m.id IS NOT NULL AS has_memory, \
         e.memory_id IS NOT NULL AS has_embedding, \
         CASE \
           WHEN e.memory_id IS NULL THEN CASE WHEN m.deleted_at IS NULL THEN 'missing' END \
           WHEN m.id IS NULL OR m.deleted_at IS NOT NULL THEN 'orphaned' \
           WHEN e.model <> $1 OR ($2 > 0 AND e.dims <> $2) THEN 'model_mismatch' \
           WHEN e.content_hash <> m.content_hash THEN 'stale' \
         END AS kind \
  FROM memories m FULL JOIN memory_embeddings e ON e.memory_id = m.id) \
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
    scan_with(pool, SCAN, model, dims).await
}

/// [`scan`] with each memory's content hashed in the scan instead of read from the stored
/// generated column: what finding drift independently of triggers would cost without that
/// column. Only for the benchmark's comparison (docs/performance.md, "Sync scan").
pub async fn scan_hashing_content(
    pool: &PgPool,
    model: &str,
    dims: usize,
) -> Result<Scan, sqlx::Error> {
    let sql = SCAN.replace("m.content_hash", "content_sha256(m.content)");
    scan_with(pool, &sql, model, dims).await
}

async fn scan_with(
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

/// Embeddings looked at per statement of the orphan removal (a short transaction each).
const ORPHAN_SCAN_BATCH: i64 = 10_000;

/// Removes the orphans among the next embeddings after `cursor` (in memory id order): the ids
/// removed, and the last id looked at (none when the table is done).
async fn remove_orphans(
    pool: &PgPool,
    cursor: Option<Uuid>,
) -> Result<(Vec<Uuid>, Option<Uuid>), sqlx::Error> {
    let (removed, last): (Vec<Uuid>, Option<Uuid>) = sqlx::query_as(
        "WITH candidates AS ( \
           SELECT e.memory_id, m.id IS NULL OR m.deleted_at IS NOT NULL AS orphan \
           FROM memory_embeddings e LEFT JOIN memories m ON m.id = e.memory_id \
           WHERE $1::uuid IS NULL OR e.memory_id > $1 \
           ORDER BY e.memory_id LIMIT $2), \
         gone AS (DELETE FROM memory_embeddings WHERE memory_id IN \
           (SELECT memory_id FROM candidates WHERE orphan) RETURNING memory_id) \
         SELECT COALESCE((SELECT array_agg(memory_id) FROM gone), '{}'), \
                (SELECT memory_id FROM candidates ORDER BY memory_id DESC LIMIT 1)",
    )
    .bind(cursor)
    .bind(ORPHAN_SCAN_BATCH)
    .fetch_one(pool)
    .await?;
    Ok((removed, last))
}

/// What a repair did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Repair {
    pub reembedded: u64,
    pub failed: u64,
    pub orphans_removed: u64,
    pub failed_batches: Vec<FailedBatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncReport {
    /// `complete`, `dry_run`, or `interrupted` (stopped by its token; the retry rescans).
    pub status: String,
    pub dry_run: bool,
    pub batch_size: u32,
    pub model: String,
    /// The drift found before any repair, with the scan's cost.
    pub scan: Scan,
    /// What the repair did (none on a dry run).
    pub repair: Option<Repair>,
    /// Drift left after the repair (a new scan); on a dry run, the drift found.
    pub remaining: Drift,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync: scanning for drift: {0}")]
    Scan(sqlx::Error),
    #[error("sync: removing orphaned embeddings: {0}")]
    Orphans(sqlx::Error),
    #[error("sync: {0}")]
    Walk(#[from] BulkError),
}

impl SyncError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Scan(e) | SyncError::Orphans(e) => crate::db_error_is_retryable(e),
            SyncError::Walk(e) => e.is_retryable(),
        }
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SyncError::Walk(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Scans, and unless `dry_run`, repairs. A retried sync simply scans again: what was repaired
/// is no longer drift.
#[allow(clippy::too_many_arguments)]
pub async fn sync(
    pool: &PgPool,
    embedder: Arc<dyn Embedder>,
    index: &dyn VectorIndex,
    args: &SyncArgs,
    settings: &BulkSettings,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<SyncReport, SyncError> {
    let model = embedder.model().to_string();
    let dims = embedder.dims();
    let found = scan(pool, &model, dims).await.map_err(SyncError::Scan)?;
    let mut report = SyncReport {
        status: "dry_run".into(),
        dry_run: args.dry_run,
        batch_size: args.batch_size,
        model: model.clone(),
        remaining: found.drift.clone(),
        scan: found,
        repair: None,
    };
    if args.dry_run {
        progress.report(100);
        return Ok(report);
    }
    progress.report(0);
    let orphans = report.scan.drift.orphaned.count.max(0) as u64;
    let weight = orphans + report.scan.drift.to_reembed().max(0) as u64;
    let percent = move |done: u64| percent_of(done, weight);
    let mut repair = Repair::default();
    let mut interrupted = false;
    if orphans > 0 {
        let mut cursor = None;
        loop {
            if cancel.is_cancelled() {
                interrupted = true;
                break;
            }
            let (removed, last) = remove_orphans(pool, cursor)
                .await
                .map_err(SyncError::Orphans)?;
            repair.orphans_removed += removed.len() as u64;
            progress.report(percent(repair.orphans_removed));
            match last {
                Some(id) => cursor = Some(id),
                None => break,
            }
        }
    }
    if !interrupted && report.scan.drift.to_reembed() > 0 {
        let mut state = WalkState::default();
        let walk = Walk {
            pool,
            embedder: embedder.clone(),
            index,
            selection: Selection {
                force: false,
                model: model.clone(),
                dims,
            },
            batch_size: args.batch_size as usize,
            limit: None,
            settings,
        };
        let removed = repair.orphans_removed;
        let end = walk
            .run(&mut state, &NoCheckpoint, cancel, &|done| {
                progress.report(percent(removed + done))
            })
            .await?;
        interrupted = end == WalkEnd::Interrupted;
        repair.reembedded = state.processed;
        repair.failed = state.failed;
        repair.failed_batches = state.failed_batches;
    }
    report.repair = Some(repair);
    report.remaining = scan(pool, &model, dims)
        .await
        .map_err(SyncError::Scan)?
        .drift;
    report.status = if interrupted {
        "interrupted"
    } else {
        "complete"
    }
    .into();
    if !interrupted {
        progress.report(100);
    }
    tracing::info!(
        status = %report.status,
        found = report.scan.drift.total(),
        remaining = report.remaining.total(),
        "sync done"
    );
    Ok(report)
}
