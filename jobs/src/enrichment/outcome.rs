//! What an enrichment comes to: the report a finished job stores, and the error a failed one
//! gives the queue, with how to retry it. Kept apart from the pipeline, which only fills them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::MAX_CONTENT_RACES;
use crate::embedding::EmbedError;
use crate::extraction::ExtractError;
use crate::vector::IndexError;

/// How the job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichmentStatus {
    Enriched,
    /// The memory is gone or soft-deleted: nothing to do, and not a failure.
    Skipped,
}

/// Why a memory was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReason {
    /// No row with this id.
    Missing,
    /// The row is soft-deleted.
    Deleted,
}

/// The job's result (stored as the job's `result` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentReport {
    pub memory_id: Uuid,
    pub status: EnrichmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// Whether a new embedding was computed (false when the stored one was fresh).
    pub embedded: bool,
    /// Entities found.
    pub entities: usize,
    /// PRECEDED_BY edges from this memory.
    pub preceded_by: usize,
    /// SIMILAR_TO neighbours (each linked both ways).
    pub similar_to: usize,
    /// The pattern this memory exemplifies.
    pub pattern: Option<Uuid>,
}

impl EnrichmentReport {
    pub(super) fn skipped(memory_id: Uuid, reason: SkipReason) -> Self {
        EnrichmentReport {
            memory_id,
            status: EnrichmentStatus::Skipped,
            reason: Some(reason),
            embedded: false,
            entities: 0,
            preceded_by: 0,
            similar_to: 0,
            pattern: None,
        }
    }
}

/// Why an enrichment failed. [`EnrichError::is_retryable`] and [`EnrichError::retry_after`]
/// tell the queue what to do with the job.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The memory's content kept changing while it was being enriched.
    #[error("memory {memory_id} changed {MAX_CONTENT_RACES} times during its enrichment")]
    ContentChanging { memory_id: Uuid },
}

impl EnrichError {
    /// Whether retrying the job later can succeed: provider rate limits and outages, and
    /// database errors other than bad data or bad SQL, are retryable; an exhausted quota or
    /// a refused request is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnrichError::Embed(e) => e.is_retryable(),
            EnrichError::Extract(e) => e.is_retryable(),
            EnrichError::Index(e) => e.is_retryable(),
            EnrichError::Database { source, .. } => crate::db_error_is_retryable(source),
            EnrichError::ContentChanging { .. } => true,
        }
    }

    /// The earliest sensible retry, when a provider said (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EnrichError::Embed(e) => e.retry_after(),
            EnrichError::Extract(e) => e.retry_after(),
            _ => None,
        }
    }

    /// A provider's 429: see [`EmbedError::is_rate_limited`].
    pub fn is_rate_limited(&self) -> bool {
        match self {
            EnrichError::Embed(e) => e.is_rate_limited(),
            EnrichError::Extract(e) => e.is_rate_limited(),
            _ => false,
        }
    }

    pub(super) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> EnrichError {
        move |source| EnrichError::Database { context, source }
    }

    /// A write that lost a race that a second try wins: a deadlock or serialization failure
    /// between neighbours' enrichments, two first enrichments of a type creating its pattern
    /// at once, or a neighbour hard-deleted (eviction) between the read and the write.
    pub(super) fn is_lost_race(&self) -> bool {
        match self {
            EnrichError::Database {
                source: sqlx::Error::Database(e),
                ..
            } => matches!(
                e.code().as_deref(),
                Some("40P01" | "40001" | "23505" | "23503")
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_serialises_as_documented() {
        let r = EnrichmentReport::skipped(Uuid::nil(), SkipReason::Deleted);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "skipped");
        assert_eq!(v["reason"], "deleted");
        assert_eq!(v["pattern"], serde_json::Value::Null);
    }

    #[test]
    fn error_classification() {
        let quota: EnrichError = EmbedError::QuotaExceeded("no credit".into()).into();
        assert!(!quota.is_retryable());
        assert!(quota.to_string().contains("insufficient_quota"));
        let limited: EnrichError = EmbedError::RateLimited {
            retry_after: Some(Duration::from_secs(9)),
            message: "m".into(),
        }
        .into();
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(9)));
        let pool_gone = EnrichError::Database {
            context: "x",
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(pool_gone.is_retryable());
    }
}
