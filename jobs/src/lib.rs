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

pub mod args;
pub mod embedding;
pub mod enrichment;
pub mod eviction;
pub mod extraction;
mod text;
pub mod vector;

pub use args::JobArgs;
pub use embedding::{EmbedError, Embedder, HashEmbedder, OpenAiEmbedder, OpenAiEmbeddingConfig};
pub use enrichment::{
    enrich, enrich_with_index, memories_needing_enrichment, EnrichError, Enricher, EnrichmentArgs,
    EnrichmentReport, EnrichmentSettings, EnrichmentStatus,
};
pub use extraction::{
    Category, Entity, ExtractError, Extractor, LlmExtractionConfig, LlmExtractor, RuleExtractor,
};
pub use vector::{PgVectorIndex, VectorIndex};

/// Where a long operation reports how far it has got, from 0 to 100.
pub trait Progress: Send + Sync {
    fn report(&self, percent: u8);
}

/// A progress sink that discards reports, for callers that do not follow progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _percent: u8) {}
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
