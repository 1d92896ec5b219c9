//! memwarden-jobs: what the work of a memory store is. The memory-store domain and its kinds of
//! work live here as plain async functions over a `PgPool`, each taking typed parameters, a
//! cancellation token and a progress sink, and returning a typed report.
//!
//! Nothing here knows about the queue, the lifecycle, HTTP or signals: the runtime (`src/`)
//! maps each job kind to a function here.
//!
//! - [`embedding`]: the [`Embedder`] trait, [`HashEmbedder`] (offline default) and
//!   [`OpenAiEmbedder`] (any OpenAI-compatible endpoint).
//! - [`extraction`]: the [`Extractor`] trait, [`RuleExtractor`] (default) and [`LlmExtractor`].
//! - [`vector`]: the [`VectorIndex`] trait and [`PgVectorIndex`] over `memory_embeddings`.
//! - [`enrichment`]: the `enrichment` job: [`Enricher`] (or [`enrich`]), its args, settings,
//!   report and error, and [`memories_needing_enrichment`] for the catch-up schedule.
//! - [`reembed`]: bulk re-embedding in id order, resumable from a [`Checkpoint`].
//! - [`sync`]: drift between `memories` and the vector index, found set-based and repaired.
//! - [`eviction`]: permanent deletion of soft-deleted rows past a retention period.
//! - [`retrieve_logs`]: retention of GoodMem's RetrieveMemory log rows, in short batches.
//! - [`memories`]: the store read as an operator does: memories and their enrichment state.
//! - [`memory_config`]: Compozy's memory configurations: their shape and their checks.
//! - [`memory_policies`]: the work they drive: flush (trim or summarise), expiry and privacy.
//! - [`memory_service`]: Memory Service's own database, evicted, re-embedded and repaired in
//!   place.

pub mod args;
mod batched_delete;
pub mod bulk;
mod drift;
pub mod embedding;
pub mod enrichment;
pub mod eviction;
pub mod extraction;
pub mod memories;
pub mod memory_config;
pub mod memory_policies;
pub mod memory_service;
pub mod reembed;
pub mod retrieve_logs;
pub mod sync;
mod text;
pub mod vector;

pub use args::JobArgs;
pub use embedding::{EmbedError, Embedder, HashEmbedder, OpenAiEmbedder, OpenAiEmbeddingConfig};
pub use enrichment::{
    enrich, enrich_with_index, memories_needing_enrichment, CatchUpArgs, EnrichError, Enricher,
    EnrichmentArgs, EnrichmentReport, EnrichmentSettings, EnrichmentStatus, NEEDS_ENRICHMENT,
};
pub use extraction::{
    Category, Entity, ExtractError, Extractor, LlmExtractionConfig, LlmExtractor, RuleExtractor,
};
pub use vector::{PgVectorIndex, VectorIndex};

/// Where a long operation reports how far it has got, from 0 to 100.
pub trait Progress: Send + Sync {
    fn report(&self, percent: u8);
}

/// `done` out of `total` as a percentage, 0 to 100 (100 when there is nothing to do).
pub(crate) fn percent_of(done: u64, total: u64) -> u8 {
    (done.min(total) * 100)
        .checked_div(total)
        .map_or(100, |p| p as u8)
}

/// A progress sink that discards reports, for callers that do not follow progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _percent: u8) {}
}

/// Where a long, resumable operation keeps its state between attempts: the runtime stores it
/// with the job, so a retried job (after a drain, a crash or a failure) continues from the
/// last saved state instead of starting over.
#[async_trait::async_trait]
pub trait Checkpoint: Send + Sync {
    /// The state saved by an earlier attempt of this job, if any.
    async fn load(&self) -> Result<Option<serde_json::Value>, CheckpointError>;
    /// Saves the state; fails if the job is no longer this worker's to write.
    async fn save(&self, state: &serde_json::Value) -> Result<(), CheckpointError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint: {0}")]
    Database(#[from] sqlx::Error),
    /// Another worker holds the job now (the lease expired): stop without writing more.
    #[error("checkpoint not saved: the job's lease is no longer held by this worker")]
    LeaseLost,
}

impl CheckpointError {
    pub fn is_retryable(&self) -> bool {
        match self {
            CheckpointError::Database(e) => db_error_is_retryable(e),
            CheckpointError::LeaseLost => true,
        }
    }
}

/// A checkpoint that keeps nothing: every run starts from the beginning.
pub struct NoCheckpoint;

#[async_trait::async_trait]
impl Checkpoint for NoCheckpoint {
    async fn load(&self) -> Result<Option<serde_json::Value>, CheckpointError> {
        Ok(None)
    }
    async fn save(&self, _state: &serde_json::Value) -> Result<(), CheckpointError> {
        Ok(())
    }
}

/// Whether a database error can go away by itself, so the job is worth retrying: lost
/// connections, pool exhaustion, deadlocks, serialization failures, lock timeouts, a server
/// shutting down. Bad data (SQLSTATE class 22), bad SQL or a missing table (42), unsupported
/// features (0A) and decoding errors are bugs or misconfiguration, and retrying repeats them.
pub fn db_error_is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => !matches!(
            db.code().as_deref().map(|c| c.get(..2).unwrap_or(c)),
            Some("22" | "42" | "0A")
        ),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}
