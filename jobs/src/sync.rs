//! `sync` (AutoMem's `/admin/sync`): finds drift between a [`Corpus`]'s texts (memories, or a
//! Memory Service database's entries) and their embeddings, and repairs it.
//!
//! The kinds of drift:
//! - `missing`: a live memory with no embedding;
//! - `stale`: an embedding computed from other content (its `content_hash` differs);
//! - `model_mismatch`: an embedding of another model, or another size, than configured;
//! - `orphaned`: an embedding whose memory is gone or soft-deleted.
//!
//! The scan is one set-based statement (a full join of the two tables, classified and counted
//! in one pass), not a walk. Repair removes orphans in id-ordered batches, then re-embeds the
//! rest with the same walk as `reembed`. It never writes the texts. Each corpus reads its own
//! embeddings table directly: an external index would bring its own scan.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bulk::{
    BulkError, BulkSettings, Corpus, FailedBatch, Selection, Walk, WalkEnd, WalkState,
};
pub use crate::drift::{scan, scan_hashing_content, Drift, DriftKind, Scan};
use crate::embedding::Embedder;
use crate::reembed::DEFAULT_BATCH_SIZE;
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

/// What a repair did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Repair {
    pub reembedded: u64,
    pub failed: u64,
    pub orphans_removed: u64,
    /// Embeddings written by someone else whose content hash was recorded, so that a later
    /// scan can tell when they go stale (a Memory Service store; always 0 on memwarden's).
    #[serde(default)]
    pub adopted: u64,
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

    /// A provider's 429: see [`crate::embedding::EmbedError::is_rate_limited`].
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, SyncError::Walk(e) if e.is_rate_limited())
    }
}

/// Scans, and unless `dry_run`, repairs. A retried sync simply scans again: what was repaired
/// is no longer drift.
pub async fn sync(
    corpus: Arc<dyn Corpus>,
    embedder: Arc<dyn Embedder>,
    args: &SyncArgs,
    settings: &BulkSettings,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<SyncReport, SyncError> {
    let model = embedder.model().to_string();
    let dims = embedder.dims();
    let found = corpus.scan(&model, dims).await.map_err(SyncError::Scan)?;
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
            let (removed, last) = corpus
                .remove_orphans(cursor)
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
            corpus: corpus.clone(),
            embedder: embedder.clone(),
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
    if !interrupted {
        repair.adopted = corpus.adopt(&model).await.map_err(SyncError::Scan)?;
    }
    report.repair = Some(repair);
    report.remaining = corpus
        .scan(&model, dims)
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
