//! The vector index: one embedding per memory, and the nearest neighbours of a vector among
//! one owner's live memories.
//!
//! [`VectorIndex`] keeps the rest of the domain independent of where vectors live, so that an
//! external index (Qdrant) can be added later. [`PgVectorIndex`] is the built-in one, over
//! `memory_embeddings`, in one of two backends ([`backend`]): pgvector's `vector` with HNSW
//! indexes, searched in the database ([`hnsw`]), or `real[]`, searched by an exact cosine
//! scan of the owner's embeddings computed here, fetched in one query.
//!
//! For the array backend, sending a `real[]` costs PostgreSQL a function call per element
//! (about 25 µs per 384-d vector), which made reading an owner's vectors the largest cost of
//! an enrichment. So
//! [`PgVectorIndex::with_cache`] keeps recently read or written vectors in memory: a search
//! still lists the owner's live embeddings (ids and `embedded_at` only), and reads just the
//! vectors it does not hold at that `embedded_at`. A cached vector is never used once its
//! row has been rewritten, on this replica or another.

pub mod backend;
mod cache;
mod hnsw;
mod pg;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use backend::{Backend, BackendChoice};
pub use pg::{PgVectorIndex, DEFAULT_CACHE_BYTES};

/// Session settings the vector index's searches rely on, for every pool that runs them: an
/// HNSW scan filtered to one owner goes on past `hnsw.ef_search` candidates until it has
/// enough (pgvector 0.8; without pgvector the setting is an unused placeholder).
pub const SESSION_SETTINGS: [(&str, &str); 1] = [("hnsw.iterative_scan", "relaxed_order")];

/// An embedding to store: the vector, and what it was computed from and with.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRecord {
    pub memory_id: Uuid,
    pub model: String,
    /// The memory's `content_hash` at the time the vector was computed.
    pub content_hash: String,
    pub vector: Vec<f32>,
}

impl EmbeddingRecord {
    /// The stored dimension count: the vector's length.
    pub fn dims(&self) -> usize {
        self.vector.len()
    }
}

/// A stored embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEmbedding {
    pub memory_id: Uuid,
    pub model: String,
    pub dims: usize,
    pub content_hash: String,
    pub vector: Vec<f32>,
    pub embedded_at: DateTime<Utc>,
}

impl StoredEmbedding {
    /// Whether this embedding stands for `content_hash` under this model and size (a `dims`
    /// of 0 accepts any size: an embedder that has not learned its size yet).
    pub fn is_fresh(&self, content_hash: &str, model: &str, dims: usize) -> bool {
        self.content_hash == content_hash
            && self.model == model
            && (dims == 0 || self.dims == dims)
            && self.vector.len() == self.dims
    }
}

/// A neighbour search: the `k` most similar live memories of `owner_id` with an embedding of
/// the same model and size, at cosine ≥ `threshold`, other than `exclude`.
#[derive(Debug, Clone)]
pub struct NeighbourQuery<'a> {
    pub owner_id: &'a str,
    pub model: &'a str,
    pub vector: &'a [f32],
    pub exclude: Option<Uuid>,
    pub threshold: f32,
    pub k: usize,
}

/// A neighbour and its cosine similarity to the query vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub memory_id: Uuid,
    pub similarity: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector index: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// For external indexes: the service could not be reached.
    #[error("vector index unavailable: {0}")]
    Unavailable(String),
}

impl IndexError {
    pub fn is_retryable(&self) -> bool {
        match self {
            IndexError::Database { source, .. } => crate::db_error_is_retryable(source),
            IndexError::Unavailable(_) => true,
        }
    }
}

/// Where embeddings are stored and searched.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Inserts or replaces the embeddings of these memories (one row per memory).
    async fn upsert(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError>;

    /// The stored embedding of a memory, if any.
    async fn get(&self, memory_id: Uuid) -> Result<Option<StoredEmbedding>, IndexError>;

    /// The nearest neighbours, most similar first (ties by id, so results are stable).
    async fn nearest(&self, query: &NeighbourQuery<'_>) -> Result<Vec<Neighbour>, IndexError>;

    /// Removes a memory's embedding; whether there was one.
    async fn delete(&self, memory_id: Uuid) -> Result<bool, IndexError>;
}

/// The `k` best candidates at or above `threshold`, most similar first, ties by id.
pub fn top_k(
    candidates: impl Iterator<Item = (Uuid, f32)>,
    threshold: f32,
    k: usize,
) -> Vec<Neighbour> {
    let mut hits: Vec<Neighbour> = candidates
        .filter(|(_, s)| *s >= threshold)
        .map(|(memory_id, similarity)| Neighbour {
            memory_id,
            similarity,
        })
        .collect();
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.memory_id.cmp(&b.memory_id))
    });
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_filters_sorts_and_caps() {
        let id = |n: u128| Uuid::from_u128(n);
        let hits = top_k(
            [
                (id(1), 0.5),
                (id(2), 0.9),
                (id(3), 0.95),
                (id(4), 0.9),
                (id(5), 0.8),
            ]
            .into_iter(),
            0.8,
            3,
        );
        let ids: Vec<_> = hits.iter().map(|h| h.memory_id).collect();
        assert_eq!(ids, vec![id(3), id(2), id(4)]);
        assert!(top_k([(id(1), 0.5)].into_iter(), 0.8, 5).is_empty());
    }

    #[test]
    fn freshness() {
        let e = StoredEmbedding {
            memory_id: Uuid::nil(),
            model: "hash-v1".into(),
            dims: 2,
            content_hash: "h".into(),
            vector: vec![0.0, 1.0],
            embedded_at: Utc::now(),
        };
        assert!(e.is_fresh("h", "hash-v1", 2));
        assert!(e.is_fresh("h", "hash-v1", 0));
        assert!(!e.is_fresh("other", "hash-v1", 2));
        assert!(!e.is_fresh("h", "other", 2));
        assert!(!e.is_fresh("h", "hash-v1", 3));
    }
}
