//! Eviction (Memory Service's `/v1/admin/evict`): permanently delete soft-deleted
//! conversations, attachments and memories whose `deleted_at` is older than a retention
//! period. Rows that are not soft-deleted are never touched, whatever the retention. On a
//! Memory Service database ([`EvictionStore::MemoryService`]) the same loop evicts archived
//! conversation groups and orphaned attachments, with that store's statements.
//!
//! It works in batches of short transactions with a pause between them, so no lock is held
//! for long. A conversation takes its entries and attachments with it. An attachment's blob
//! loses one reference; the blob's row and file go only when no reference is left. Files are
//! removed after the transaction that removed their rows commits, so a failed batch never
//! leaves a row pointing at a missing file (a crash in between can leave an orphan file,
//! which nothing references).

mod attachment;
mod batch;
mod input;
mod memory_service;
mod native;
mod release;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Progress;
pub use attachment::{delete_attachment, AttachmentDeleted};
use batch::{count_due, run_batch, BatchSizer, Statements, OVERRUNS_ALLOWED, QUERY_CANCELED};
pub use input::{parse_resource_types, EvictionInputError, ResourceType, RetentionPeriod};
use release::remove_after_commit;

/// The `eviction` job's args, as they are stored on the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvictionArgs {
    pub retention_period: String,
    #[serde(default)]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Carried for the audit trail; eviction itself does not read it.
    #[serde(default)]
    pub justification: Option<String>,
}

impl crate::JobArgs for EvictionArgs {
    const KIND: &'static str = "eviction";
}

#[derive(Debug, Clone)]
pub struct EvictionSettings {
    /// The most rows a batch takes; batches shrink below it to stay inside `max_transaction`.
    pub batch_size: i64,
    pub pause: Duration,
    /// The longest a batch transaction may hold its locks. A batch that reaches it is cancelled
    /// by PostgreSQL (`statement_timeout`), rolled back whole, and retried smaller.
    pub max_transaction: Duration,
    pub blobs_dir: PathBuf,
    pub store: EvictionStore,
}

/// The database eviction works on.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum EvictionStore {
    /// memwarden's own tables, by `deleted_at`; blob files in `blobs_dir`.
    #[default]
    Native,
    /// A Memory Service database, by `archived_at` (`store.kind = "memory-service"`).
    MemoryService(crate::memory_service::MemoryServiceStore),
}

impl EvictionSettings {
    fn statements(&self, t: ResourceType) -> Result<Statements, EvictionInputError> {
        match &self.store {
            EvictionStore::Native => Ok(native::statements(t, &self.blobs_dir)),
            EvictionStore::MemoryService(store) => memory_service::statements(t, store),
        }
    }
}

impl Default for EvictionSettings {
    fn default() -> Self {
        EvictionSettings {
            batch_size: 1000,
            pause: Duration::from_millis(100),
            max_transaction: Duration::from_millis(100),
            blobs_dir: PathBuf::from("blobs"),
            store: EvictionStore::Native,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvictionReport {
    pub retention_period: String,
    pub cutoff: Option<chrono::DateTime<chrono::Utc>>,
    pub dry_run: bool,
    pub conversations: i64,
    /// Memory Service's unit of deletion: a conversation and its forks (0 on memwarden's store).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conversation_groups: i64,
    pub conversation_entries: i64,
    pub attachments: i64,
    pub memories: i64,
    pub blobs_freed: i64,
    pub bytes_freed: i64,
    pub batches: i64,
    /// The longest single batch transaction, in milliseconds, cancelled ones included.
    pub longest_batch_ms: f64,
    /// Batches cancelled at `max_transaction` and retried with fewer rows.
    pub batches_over_limit: i64,
    /// Stopped early by its cancellation token (a drain); run it again to finish.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    #[error(transparent)]
    Input(#[from] EvictionInputError),
    #[error("database error during eviction: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "a batch of one row still exceeded the {limit_ms} ms transaction limit \
         {OVERRUNS_ALLOWED} times in a row; something else holds that row's locks"
    )]
    TooSlow { limit_ms: u128 },
    #[error("blob file {path}: {source}")]
    Blob {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Evicts what is due. Stops at a batch boundary when `cancel` fires (the report says so).
pub async fn evict(
    pool: &PgPool,
    retention: &RetentionPeriod,
    types: &[ResourceType],
    dry_run: bool,
    settings: &EvictionSettings,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<EvictionReport, EvictionError> {
    let cutoff = retention.cutoff(chrono::Utc::now())?;
    let mut report = EvictionReport {
        retention_period: retention.as_str().to_string(),
        cutoff: Some(cutoff),
        dry_run,
        ..Default::default()
    };
    let mut due = Vec::new();
    for t in types {
        let statements = settings.statements(*t)?;
        let counted = count_due(pool, &statements, cutoff).await?;
        due.push((*t, statements, counted));
    }
    let total: i64 = due.iter().map(|(_, _, (n, _))| *n).sum();
    if dry_run {
        for (t, statements, (n, conversations)) in &due {
            match t {
                ResourceType::Conversations if statements.grouped => {
                    report.conversation_groups = *n;
                    report.conversations = *conversations;
                }
                ResourceType::Conversations => report.conversations = *n,
                ResourceType::Attachments => report.attachments = *n,
                ResourceType::Memories => report.memories = *n,
            }
        }
        progress.report(100);
        return Ok(report);
    }
    progress.report(0);
    let mut done = 0i64;
    let mut sizer = BatchSizer::new(settings.batch_size, settings.max_transaction);
    'types: for (t, statements, _) in &due {
        let mut cursor = None;
        loop {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break 'types;
            }
            let size = sizer.size();
            // The batch's rows are read once before its transaction, so that the transaction
            // finds their pages in shared buffers instead of waiting on the disk while it
            // holds locks.
            sqlx::query(&statements.warm)
                .bind(cutoff)
                .bind(size)
                .bind(cursor)
                .execute(pool)
                .await?;
            let started = Instant::now();
            let outcome = run_batch(pool, statements, cutoff, size, cursor, settings).await;
            let took = started.elapsed();
            report.longest_batch_ms = report.longest_batch_ms.max(took.as_secs_f64() * 1000.0);
            let batch = match outcome {
                Ok(batch) => batch,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(QUERY_CANCELED) => {
                    report.batches_over_limit += 1;
                    if !sizer.overran() {
                        return Err(EvictionError::TooSlow {
                            limit_ms: settings.max_transaction.as_millis(),
                        });
                    }
                    tracing::warn!(
                        rows = size,
                        limit_ms = settings.max_transaction.as_millis() as u64,
                        "eviction batch hit its time limit; retrying smaller"
                    );
                    pause(settings.pause, cancel).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            sizer.record(took);
            report.batches += 1;
            remove_after_commit(&statements.release, &batch.freed)?;
            report.blobs_freed += batch.freed.len() as i64;
            report.bytes_freed += batch.freed.iter().map(|(_, size)| *size).sum::<i64>();
            report.conversation_entries += batch.entries;
            match t {
                ResourceType::Conversations => {
                    report.conversations += batch.conversations;
                    if statements.grouped {
                        report.conversation_groups += batch.rows;
                    }
                    report.attachments += batch.attachments;
                }
                ResourceType::Attachments => report.attachments += batch.attachments,
                ResourceType::Memories => report.memories += batch.rows,
            }
            done += if *t == ResourceType::Attachments {
                batch.attachments
            } else {
                batch.rows
            };
            if total > 0 {
                progress.report(((done.min(total) * 100) / total) as u8);
            }
            if batch.seen < size {
                break;
            }
            cursor = batch.cursor;
            pause(settings.pause, cancel).await;
        }
    }
    if !report.interrupted {
        progress.report(100);
    }
    tracing::info!(
        conversation_groups = report.conversation_groups,
        conversations = report.conversations,
        entries = report.conversation_entries,
        attachments = report.attachments,
        memories = report.memories,
        blobs_freed = report.blobs_freed,
        longest_batch_ms = report.longest_batch_ms,
        "eviction done"
    );
    Ok(report)
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The pause between batches, cut short by `cancel`.
async fn pause(length: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(length) => {}
        _ = cancel.cancelled() => {}
    }
}
