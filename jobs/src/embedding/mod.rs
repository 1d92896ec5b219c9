//! Embedding providers: text in, one vector per text out.
//!
//! Two providers implement [`Embedder`]: [`HashEmbedder`], the offline default, and
//! [`OpenAiEmbedder`], for any OpenAI-compatible `/embeddings` endpoint. A provider either
//! returns exactly one vector of [`Embedder::dims`] floats per input, in input order, or an
//! [`EmbedError`]; a short or malformed answer is never passed on, so it is never stored.

mod coalesce;
mod hash;
mod openai;
mod openai_wire;
pub(crate) mod pacer;

use std::time::Duration;

use async_trait::async_trait;

pub use coalesce::{CoalesceSettings, CoalescingEmbedder};
pub use hash::HashEmbedder;
pub use openai::{
    estimate_tokens, native_dims, plan_batches, OpenAiEmbedder, OpenAiEmbeddingConfig,
};

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The provider's short name, for metrics and logs: `hash`, `openai`.
    fn provider(&self) -> &str;

    /// The model identity stored with each embedding. An embedding made with another model is
    /// stale and is recomputed.
    fn model(&self) -> &str;

    /// The length of every vector this embedder returns. `0` means "not known yet": an
    /// OpenAI-compatible model with no configured `dimensions` and no known native size
    /// learns it from its first answer, and is held to it from then on.
    fn dims(&self) -> usize;

    /// One vector per text, in the same order. An empty slice gives an empty answer.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why an embedding request failed, in the terms the queue needs: retry (maybe after a given
/// delay) or give up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// 429 that outlasted the retries (or asked for a longer wait than is worth holding a
    /// worker for): retry the job, not before `retry_after` when the provider said so.
    #[error("embedding provider rate limited the request: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// The account is out of credit (`insufficient_quota`). Retrying cannot help until a
    /// person acts, so the job fails at once instead of looping.
    #[error("embedding provider quota exhausted (insufficient_quota): {0}")]
    QuotaExceeded(String),
    /// 5xx, timeouts and connection failures that outlasted the retries.
    #[error("embedding provider unavailable: {0}")]
    Transient(String),
    /// An answer that is not one vector of the expected size per input.
    #[error("embedding provider answered wrongly: {0}")]
    BadResponse(String),
    /// A request the provider refuses as such (4xx other than 429): bad model, bad key,
    /// input too long. The same request will be refused again.
    #[error("embedding provider refused the request: {0}")]
    Permanent(String),
}

impl EmbedError {
    /// Whether the job should be retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EmbedError::RateLimited { .. } | EmbedError::Transient(_) | EmbedError::BadResponse(_)
        )
    }

    /// The earliest time a retry makes sense, when the provider said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmbedError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider is pacing us (a 429 that is not `insufficient_quota`): the job waits
    /// without using an attempt.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, EmbedError::RateLimited { .. })
    }

    /// The `status` label of `memwarden_embedding_requests_total` for this failure.
    pub fn status_label(&self) -> &'static str {
        match self {
            EmbedError::RateLimited { .. } => "rate_limited",
            EmbedError::QuotaExceeded(_) => "quota",
            EmbedError::BadResponse(_) => "bad_response",
            EmbedError::Transient(_) | EmbedError::Permanent(_) => "error",
        }
    }
}

/// Checks an answer against the request: one vector per input, each of `dims` floats (any
/// one consistent length when `dims` is 0), all finite. Shared by every provider so that no
/// malformed answer leaves this module.
pub fn validate_vectors(
    inputs: usize,
    dims: usize,
    vectors: &[Vec<f32>],
) -> Result<(), EmbedError> {
    if vectors.len() != inputs {
        return Err(EmbedError::BadResponse(format!(
            "{} vectors for {inputs} inputs",
            vectors.len()
        )));
    }
    let expected = if dims == 0 {
        vectors.first().map_or(0, Vec::len)
    } else {
        dims
    };
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != expected || v.is_empty() {
            return Err(EmbedError::BadResponse(format!(
                "vector {i} has {} dimensions, expected {expected}",
                v.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::BadResponse(format!(
                "vector {i} has a non-finite component"
            )));
        }
    }
    Ok(())
}

/// Cosine similarity; 0 when either vector is all zeros (an empty text's hash embedding).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Requests to the embedding provider, by provider and status (the runtime describes it).
pub const EMBEDDING_REQUESTS: &str = "memwarden_embedding_requests_total";
/// Texts sent to the embedding provider, by provider.
pub const EMBEDDING_INPUTS: &str = "memwarden_embedding_inputs_total";

pub(crate) fn count_request(provider: &str, status: &'static str) {
    metrics::counter!(EMBEDDING_REQUESTS, "provider" => provider.to_string(), "status" => status)
        .increment(1);
}

pub(crate) fn count_inputs(provider: &str, n: usize) {
    metrics::counter!(EMBEDDING_INPUTS, "provider" => provider.to_string()).increment(n as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_wrong_count_and_dims() {
        let v = vec![vec![0.1, 0.2], vec![0.3, 0.4]];
        assert!(validate_vectors(2, 2, &v).is_ok());
        assert!(validate_vectors(2, 0, &v).is_ok());
        assert!(matches!(
            validate_vectors(3, 2, &v),
            Err(EmbedError::BadResponse(_))
        ));
        assert!(matches!(
            validate_vectors(2, 3, &v),
            Err(EmbedError::BadResponse(_))
        ));
        let ragged = vec![vec![0.1, 0.2], vec![0.3]];
        assert!(validate_vectors(2, 0, &ragged).is_err());
        assert!(validate_vectors(1, 1, &[vec![f32::NAN]]).is_err());
    }

    #[test]
    fn classification() {
        let rl = EmbedError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            message: "slow down".into(),
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
        assert!(!EmbedError::QuotaExceeded("x".into()).is_retryable());
        assert!(!EmbedError::Permanent("x".into()).is_retryable());
        assert!(EmbedError::Transient("x".into()).is_retryable());
    }

    #[test]
    fn cosine_of_zero_vector_is_zero() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    }
}
