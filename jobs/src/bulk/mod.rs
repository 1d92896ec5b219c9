//! Bulk re-embedding, shared by `reembed` and `sync`: a walk over a [`Corpus`] (live memories,
//! or a Memory Service database's entries) in id order that re-embeds the texts selected and
//! writes their vectors back to it.
//!
//! Three stages overlap, so neither the database nor the provider waits on the other:
//! - a reader task reads pages of memories after the cursor and cuts them into provider
//!   batches;
//! - up to `concurrency` provider requests run at once, each its own task, paced to at most
//!   `requests_per_minute` when the provider is remote (`buffered` keeps their answers in id
//!   order, so the cursor only ever moves forward);
//! - the walk itself gathers the vectors and writes them in large upserts, then saves its
//!   state as the checkpoint. A crash between the two redoes at most one write, and the
//!   counts come from the checkpoint, so they count each memory once.

mod corpus;
mod selection;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use crate::embedding::pacer::Pacer;
use crate::embedding::{EmbedError, Embedder};
use crate::vector::{EmbeddingRecord, IndexError};
use crate::{Checkpoint, CheckpointError};

pub(crate) use corpus::ORPHAN_SCAN_BATCH;
pub use corpus::{Corpus, Embeddable, MemoryCorpus};
pub use selection::Selection;

/// How many ids of a failed batch the report keeps.
const FAILED_IDS_KEPT: usize = 10;
/// How many failed batches the report lists (the count of failed memories is always exact).
const FAILED_BATCHES_KEPT: usize = 100;

/// How bulk embedding runs: the runtime builds this from `[embedding]`.
#[derive(Debug, Clone)]
pub struct BulkSettings {
    /// Provider requests in flight at once.
    pub concurrency: usize,
    /// At most this many provider requests per minute; `None` for a local embedder.
    pub requests_per_minute: Option<u32>,
    /// Memories per database read, and per write of vectors (with its checkpoint).
    pub rows_per_write: usize,
    /// Write (and checkpoint) at least this often, so a slow provider loses little on a crash.
    pub write_every: Duration,
    /// Consecutive failed batches after which the provider is taken to be down and the walk
    /// ends with its error, instead of marking every remaining memory failed.
    pub max_consecutive_failures: u32,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            concurrency: 4,
            requests_per_minute: None,
            rows_per_write: 1024,
            write_every: Duration::from_secs(1),
            max_consecutive_failures: 3,
        }
    }
}

/// A batch the provider could not embed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedBatch {
    /// Its first ids (at most 10).
    pub ids: Vec<Uuid>,
    pub size: usize,
    pub error: String,
}

/// One attempt's part of a walk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalkRun {
    /// The cursor this run started from: the last memory of the run before (none: the start).
    pub started_after: Option<Uuid>,
    /// The last memory this run wrote or marked failed.
    pub last_id: Option<Uuid>,
    pub processed: u64,
    pub failed: u64,
}

/// A walk's state, saved as the checkpoint after every write.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalkState {
    /// Memories selected when the walk first started (capped by its limit).
    pub total: u64,
    /// The last memory done; the walk continues after it.
    pub cursor: Option<Uuid>,
    pub processed: u64,
    pub failed: u64,
    pub failed_batches: Vec<FailedBatch>,
    pub runs: Vec<WalkRun>,
    /// Batches failed since the last one that succeeded, across runs: a retry of a walk
    /// stopped by a failing provider probes it with one batch, not three.
    #[serde(default)]
    pub failed_in_a_row: u32,
}

impl WalkState {
    pub fn done(&self) -> u64 {
        self.processed + self.failed
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("reading memories: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The provider failed this many batches in a row; its last error.
    #[error("{failed_in_a_row} batches in a row failed: {error}")]
    Provider {
        error: EmbedError,
        failed_in_a_row: u32,
    },
    /// The walk reached its end without embedding anything: the provider refused it all.
    #[error("every batch failed ({failed} memories); the last error: {error}")]
    EveryBatchFailed { failed: u64, error: String },
    #[error("an embedding task panicked: {0}")]
    Panicked(String),
}

impl BulkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            BulkError::Database(e) => crate::db_error_is_retryable(e),
            BulkError::Index(e) => e.is_retryable(),
            BulkError::Checkpoint(e) => e.is_retryable(),
            BulkError::Provider { error, .. } => error.is_retryable(),
            BulkError::EveryBatchFailed { .. } | BulkError::Panicked(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BulkError::Provider { error, .. } => error.retry_after(),
            _ => None,
        }
    }

    /// A provider's 429: see [`EmbedError::is_rate_limited`].
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, BulkError::Provider { error, .. } if error.is_rate_limited())
    }
}

/// What one provider batch came to.
enum Step {
    Embedded(Vec<Embeddable>, Result<Vec<Vec<f32>>, EmbedError>),
    ReadFailed(sqlx::Error),
    Panicked(String),
}

/// How a walk ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// Every selected memory was taken (or the limit reached).
    Finished,
    /// Stopped by its token after saving its state; a later run continues from there.
    Interrupted,
}

/// One walk: the selection, in batches of `batch_size`, after `state.cursor`.
pub struct Walk<'a> {
    pub corpus: Arc<dyn Corpus>,
    pub embedder: Arc<dyn Embedder>,
    pub selection: Selection,
    pub batch_size: usize,
    /// Stop after this many memories in all (processed or failed), across runs.
    pub limit: Option<u64>,
    pub settings: &'a BulkSettings,
}

impl Walk<'_> {
    /// Continues the walk from `state`, saving it to `checkpoint` after every write, and
    /// calling `on_progress` with the memories done so far.
    pub async fn run(
        &self,
        state: &mut WalkState,
        checkpoint: &dyn Checkpoint,
        cancel: &CancellationToken,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<WalkEnd, BulkError> {
        state.runs.push(WalkRun {
            started_after: state.cursor,
            ..WalkRun::default()
        });
        let left = self.limit.map(|l| l.saturating_sub(state.done()));
        if left == Some(0) {
            return Ok(WalkEnd::Finished);
        }
        let batch_size = self.batch_size.max(1);
        let (tx, rx) = mpsc::channel(self.settings.concurrency.max(1) * 2);
        let reader = AbortOnDropHandle::new(tokio::spawn(read_batches(
            self.corpus.clone(),
            self.selection.clone(),
            state.cursor,
            left,
            self.settings.rows_per_write.max(batch_size),
            batch_size,
            tx,
        )));
        let pacer = self
            .settings
            .requests_per_minute
            .map(|rpm| Arc::new(Pacer::new(rpm)));
        let embedder = self.embedder.clone();
        let batches = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        let mut steps = batches
            .map(move |read: Result<Vec<Embeddable>, sqlx::Error>| {
                let embedder = embedder.clone();
                let pacer = pacer.clone();
                async move {
                    let batch = match read {
                        Ok(b) => b,
                        Err(e) => return Step::ReadFailed(e),
                    };
                    let task = AbortOnDropHandle::new(tokio::spawn(async move {
                        if let Some(p) = pacer {
                            p.wait().await;
                        }
                        let texts: Vec<String> = batch.iter().map(|m| m.content.clone()).collect();
                        let result = embedder.embed(&texts).await;
                        (batch, result)
                    }));
                    match task.await {
                        Ok((batch, result)) => Step::Embedded(batch, result),
                        Err(e) => Step::Panicked(e.to_string()),
                    }
                }
            })
            .buffered(self.settings.concurrency.max(1))
            .boxed();

        let mut pending: Vec<EmbeddingRecord> = Vec::new();
        let mut last_write = Instant::now();
        let model = self.embedder.model().to_string();
        let end = loop {
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => break WalkEnd::Interrupted,
                step = steps.next() => step,
            };
            let Some(step) = step else {
                break WalkEnd::Finished;
            };
            let (batch, result) = match step {
                Step::Embedded(batch, result) => (batch, result),
                Step::ReadFailed(e) => {
                    self.write(state, &mut pending, checkpoint, on_progress)
                        .await?;
                    return Err(BulkError::Database(e));
                }
                Step::Panicked(e) => {
                    self.write(state, &mut pending, checkpoint, on_progress)
                        .await?;
                    return Err(BulkError::Panicked(e));
                }
            };
            let n = batch.len() as u64;
            let run = state.runs.last_mut().expect("pushed above");
            run.last_id = batch.last().map(|m| m.id);
            state.cursor = run.last_id.or(state.cursor);
            match result {
                Ok(vectors) => {
                    state.failed_in_a_row = 0;
                    run.processed += n;
                    state.processed += n;
                    pending.extend(batch.into_iter().zip(vectors).map(|(m, vector)| {
                        EmbeddingRecord {
                            memory_id: m.id,
                            model: model.clone(),
                            content_hash: m.content_hash,
                            vector,
                        }
                    }));
                }
                Err(error) => {
                    state.failed_in_a_row += 1;
                    run.failed += n;
                    state.failed += n;
                    tracing::warn!(size = n, first = ?batch.first().map(|m| m.id), %error, "embedding batch failed");
                    if state.failed_batches.len() < FAILED_BATCHES_KEPT {
                        state.failed_batches.push(FailedBatch {
                            ids: batch.iter().take(FAILED_IDS_KEPT).map(|m| m.id).collect(),
                            size: batch.len(),
                            error: error.to_string(),
                        });
                    }
                    if state.failed_in_a_row >= self.settings.max_consecutive_failures.max(1) {
                        self.write(state, &mut pending, checkpoint, on_progress)
                            .await?;
                        return Err(BulkError::Provider {
                            error,
                            failed_in_a_row: state.failed_in_a_row,
                        });
                    }
                }
            }
            if pending.len() >= self.settings.rows_per_write
                || last_write.elapsed() >= self.settings.write_every
            {
                self.write(state, &mut pending, checkpoint, on_progress)
                    .await?;
                last_write = Instant::now();
            }
        };
        drop(steps);
        drop(reader);
        self.write(state, &mut pending, checkpoint, on_progress)
            .await?;
        if end == WalkEnd::Finished && state.processed == 0 && state.failed > 0 {
            return Err(BulkError::EveryBatchFailed {
                failed: state.failed,
                error: state
                    .failed_batches
                    .last()
                    .map(|b| b.error.clone())
                    .unwrap_or_default(),
            });
        }
        Ok(end)
    }

    /// Writes the gathered vectors, then saves the state that counts them.
    async fn write(
        &self,
        state: &WalkState,
        pending: &mut Vec<EmbeddingRecord>,
        checkpoint: &dyn Checkpoint,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), BulkError> {
        self.corpus.write(pending).await?;
        pending.clear();
        let saved = serde_json::to_value(state).unwrap_or_default();
        checkpoint.save(&saved).await?;
        on_progress(state.done());
        Ok(())
    }
}

/// The reader: pages after `cursor`, cut into provider batches, until the selection (or the
/// limit) runs out or the walk stops listening.
async fn read_batches(
    corpus: Arc<dyn Corpus>,
    selection: Selection,
    mut cursor: Option<Uuid>,
    mut left: Option<u64>,
    page_size: usize,
    batch_size: usize,
    tx: mpsc::Sender<Result<Vec<Embeddable>, sqlx::Error>>,
) {
    loop {
        let want = left.map_or(page_size, |l| l.min(page_size as u64) as usize);
        if want == 0 {
            return;
        }
        let page = match corpus.page(&selection, cursor, want as i64).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = page.len() == want;
        cursor = page.last().map(|m| m.id).or(cursor);
        if let Some(l) = left.as_mut() {
            *l -= page.len() as u64;
        }
        let mut rows = page.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<Embeddable> = rows.by_ref().take(batch_size).collect();
            if tx.send(Ok(batch)).await.is_err() {
                return;
            }
        }
        if !full {
            return;
        }
    }
}
