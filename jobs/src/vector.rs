//! The vector index: one embedding per memory, and the nearest neighbours of a vector among
//! one owner's live memories.
//!
//! [`VectorIndex`] keeps the rest of the domain independent of where vectors live, so that an
//! external index (Qdrant, pgvector) can be added later. [`PgVectorIndex`] is the built-in one:
//! `memory_embeddings` with `real[]` vectors, and cosine computed here over the owner's
//! embeddings, fetched in one query (an owner has hundreds or thousands of memories, not
//! millions, so an exact scan beats maintaining an ANN structure).
//!
//! Sending a `real[]` costs PostgreSQL a function call per element (about 25 µs per 384-d
//! vector), which made reading an owner's vectors the largest cost of an enrichment. So
//! [`PgVectorIndex::with_cache`] keeps recently read or written vectors in memory: a search
//! still lists the owner's live embeddings (ids and `embedded_at` only), and reads just the
//! vectors it does not hold at that `embedded_at`. A cached vector is never used once its
//! row has been rewritten, on this replica or another.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::embedding::cosine;

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

/// The built-in index over `memory_embeddings`. Clones share the pool and the cache.
#[derive(Debug, Clone)]
pub struct PgVectorIndex {
    pool: PgPool,
    cache: Option<Arc<Mutex<VectorCache>>>,
}

/// The default vector cache: 32 MiB, about 21,000 vectors of 384 dimensions.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// The owner's live memories other than `$2`, each with its embedding for model `$3` and size
/// `$4` (as `e`): the tail of the statements that list SIMILAR_TO candidates.
///
/// Sent unnamed, so it is planned for each call: `memory_embeddings` grows from nothing as a
/// store is enriched, and a plan cached while it was nearly empty scans the whole table on
/// every call once it is not. As a plain join, 2 of 9 runs of `memwarden bench enrich` with
/// cached plans fell from about 600 to 160 memories/s that way. The embedding is looked up in
/// a subquery the planner cannot flatten (`OFFSET 0`), which leaves one join order to
/// consider: that made planning a third cheaper than the plain join's (0.17 against 0.26 ms
/// a call). A cached plan of this form is not safe either: planned while the table was
/// analyzed empty, it scans it once per memory of the owner.
const OWNER_EMBEDDINGS: &str = "FROM memories m \
     CROSS JOIN LATERAL (SELECT e.embedding, e.embedded_at FROM memory_embeddings e \
                         WHERE e.memory_id = m.id AND e.model = $3 AND e.dims = $4 OFFSET 0) e \
     WHERE m.owner_id = $1 AND m.deleted_at IS NULL AND m.id IS DISTINCT FROM $2";

impl PgVectorIndex {
    /// An index that reads every searched vector from the database.
    pub fn new(pool: PgPool) -> Self {
        PgVectorIndex { pool, cache: None }
    }

    /// An index that keeps up to `capacity_bytes` of vectors in memory (see the module
    /// documentation); build one per process and share it.
    pub fn with_cache(pool: PgPool, capacity_bytes: usize) -> Self {
        PgVectorIndex {
            pool,
            cache: Some(Arc::new(Mutex::new(VectorCache::new(capacity_bytes)))),
        }
    }

    fn cache(&self) -> Option<std::sync::MutexGuard<'_, VectorCache>> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters (entries are validated on use), so a poisoned lock is used as is.
        self.cache
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `m.id` and `column` of every candidate of the query (see [`OWNER_EMBEDDINGS`]).
    async fn owner_rows<T>(
        &self,
        q: &NeighbourQuery<'_>,
        column: &str,
        what: &'static str,
    ) -> Result<Vec<T>, IndexError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let sql = format!("SELECT m.id, {column} {OWNER_EMBEDDINGS}");
        sqlx::query_as(&sql)
            .bind(q.owner_id)
            .bind(q.exclude)
            .bind(q.model)
            .bind(q.vector.len() as i32)
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(db(what))
    }

    /// The owner's candidate vectors, read in full (no cache).
    async fn owner_vectors(
        &self,
        q: &NeighbourQuery<'_>,
    ) -> Result<Vec<(Uuid, Arc<[f32]>)>, IndexError> {
        let rows: Vec<(Uuid, Vec<f32>)> = self
            .owner_rows(q, "e.embedding", "reading the owner's embeddings")
            .await?;
        Ok(rows.into_iter().map(|(id, v)| (id, v.into())).collect())
    }

    /// The owner's candidate vectors: listed cheaply, then only the uncached ones read.
    async fn owner_vectors_cached(
        &self,
        q: &NeighbourQuery<'_>,
    ) -> Result<Vec<(Uuid, Arc<[f32]>)>, IndexError> {
        let listed: Vec<(Uuid, DateTime<Utc>)> = self
            .owner_rows(q, "e.embedded_at", "listing the owner's embeddings")
            .await?;
        let mut found = Vec::with_capacity(listed.len());
        let mut missing = Vec::new();
        {
            let cache = self.cache();
            for (id, at) in &listed {
                match cache.as_ref().and_then(|c| c.get(id, at)) {
                    Some(v) => found.push((*id, v)),
                    None => missing.push(*id),
                }
            }
        }
        if !missing.is_empty() {
            // Read again with model and size: a row rewritten since the listing is taken as
            // it is now (or dropped, if it no longer matches).
            let rows: Vec<(Uuid, Vec<f32>, DateTime<Utc>)> = sqlx::query_as(
                "SELECT memory_id, embedding, embedded_at FROM memory_embeddings \
                 WHERE memory_id = ANY($1) AND model = $2 AND dims = $3",
            )
            .bind(&missing)
            .bind(q.model)
            .bind(q.vector.len() as i32)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the owner's embeddings"))?;
            let mut cache = self.cache();
            for (id, vector, at) in rows {
                let vector: Arc<[f32]> = vector.into();
                if let Some(c) = cache.as_mut() {
                    c.insert(id, at, vector.clone());
                }
                found.push((id, vector));
            }
        }
        Ok(found)
    }
}

/// Vectors by memory, each valid for one `embedded_at`, evicted oldest-inserted first once
/// their total size passes the capacity.
#[derive(Debug)]
struct VectorCache {
    entries: HashMap<Uuid, CachedVector>,
    /// Insertion order, for eviction; a stale stamp means the entry was replaced since.
    order: VecDeque<(Uuid, u64)>,
    next_stamp: u64,
    bytes: usize,
    capacity_bytes: usize,
}

#[derive(Debug)]
struct CachedVector {
    embedded_at: DateTime<Utc>,
    vector: Arc<[f32]>,
    stamp: u64,
}

impl VectorCache {
    fn new(capacity_bytes: usize) -> Self {
        VectorCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            bytes: 0,
            capacity_bytes,
        }
    }

    fn get(&self, id: &Uuid, embedded_at: &DateTime<Utc>) -> Option<Arc<[f32]>> {
        self.entries
            .get(id)
            .filter(|e| e.embedded_at == *embedded_at)
            .map(|e| e.vector.clone())
    }

    fn insert(&mut self, id: Uuid, embedded_at: DateTime<Utc>, vector: Arc<[f32]>) {
        let size = std::mem::size_of_val(&*vector);
        if size > self.capacity_bytes {
            return;
        }
        self.remove(&id);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.bytes += size;
        self.entries.insert(
            id,
            CachedVector {
                embedded_at,
                vector,
                stamp,
            },
        );
        self.order.push_back((id, stamp));
        while self.bytes > self.capacity_bytes {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.stamp == stamp) {
                self.remove(&old);
            }
        }
        // Replaced entries leave stale stamps behind; compact before they outnumber the live.
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|(id, stamp)| entries.get(id).is_some_and(|e| e.stamp == *stamp));
        }
    }

    fn remove(&mut self, id: &Uuid) {
        if let Some(e) = self.entries.remove(id) {
            self.bytes -= std::mem::size_of_val(&*e.vector);
        }
    }
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> IndexError {
    move |source| IndexError::Database { context, source }
}

#[async_trait]
impl VectorIndex for PgVectorIndex {
    async fn upsert(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch: the vectors travel as one flat real[] and each
        // row takes its slice, since PostgreSQL cannot unnest an array of arrays into rows.
        let mut ids = Vec::with_capacity(records.len());
        let mut models = Vec::with_capacity(records.len());
        let mut hashes = Vec::with_capacity(records.len());
        let mut starts = Vec::with_capacity(records.len());
        let mut dims = Vec::with_capacity(records.len());
        let mut flat = Vec::with_capacity(records.iter().map(EmbeddingRecord::dims).sum());
        for r in records {
            ids.push(r.memory_id);
            models.push(r.model.as_str());
            hashes.push(r.content_hash.as_str());
            starts.push(flat.len() as i32);
            dims.push(r.dims() as i32);
            flat.extend_from_slice(&r.vector);
        }
        let written: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO memory_embeddings (memory_id, model, dims, embedding, content_hash, embedded_at) \
             SELECT u.memory_id, u.model, u.dims, ($6::real[])[u.start + 1 : u.start + u.dims], u.hash, now() \
             FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::text[]) \
                  AS u(memory_id, model, start, dims, hash) \
             ORDER BY u.memory_id \
             ON CONFLICT (memory_id) DO UPDATE SET model = EXCLUDED.model, dims = EXCLUDED.dims, \
                 embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash, \
                 embedded_at = EXCLUDED.embedded_at \
             RETURNING memory_id, embedded_at",
        )
        .bind(&ids)
        .bind(&models)
        .bind(&starts)
        .bind(&dims)
        .bind(&hashes)
        .bind(&flat)
        .fetch_all(&self.pool)
        .await
        .map_err(db("upserting embeddings"))?;
        if let Some(mut cache) = self.cache() {
            // What was just written is what the next searches of this owner will want.
            let vectors: HashMap<Uuid, &EmbeddingRecord> =
                records.iter().map(|r| (r.memory_id, r)).collect();
            for (id, at) in written {
                if let Some(r) = vectors.get(&id) {
                    cache.insert(id, at, r.vector.as_slice().into());
                }
            }
        }
        Ok(())
    }

    async fn get(&self, memory_id: Uuid) -> Result<Option<StoredEmbedding>, IndexError> {
        let row: Option<(String, i32, String, Vec<f32>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT model, dims, content_hash, embedding, embedded_at \
             FROM memory_embeddings WHERE memory_id = $1",
        )
        .bind(memory_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an embedding"))?;
        Ok(row.map(
            |(model, dims, content_hash, vector, embedded_at)| StoredEmbedding {
                memory_id,
                model,
                dims: dims as usize,
                content_hash,
                vector,
                embedded_at,
            },
        ))
    }

    async fn nearest(&self, query: &NeighbourQuery<'_>) -> Result<Vec<Neighbour>, IndexError> {
        if query.k == 0 || query.vector.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = if self.cache.is_some() {
            self.owner_vectors_cached(query).await?
        } else {
            self.owner_vectors(query).await?
        };
        Ok(top_k(
            candidates
                .iter()
                .map(|(id, v)| (*id, cosine(query.vector, v))),
            query.threshold,
            query.k,
        ))
    }

    async fn delete(&self, memory_id: Uuid) -> Result<bool, IndexError> {
        let done = sqlx::query("DELETE FROM memory_embeddings WHERE memory_id = $1")
            .bind(memory_id)
            .execute(&self.pool)
            .await
            .map_err(db("deleting an embedding"))?;
        if let Some(mut cache) = self.cache() {
            cache.remove(&memory_id);
        }
        Ok(done.rows_affected() > 0)
    }
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
    fn cache_validates_by_embedded_at_and_evicts_oldest() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let v = |x: f32| -> Arc<[f32]> { vec![x; 4].into() }; // 16 bytes each
        let mut c = VectorCache::new(40);
        let (a, b, d) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        c.insert(a, at(1), v(1.0));
        c.insert(b, at(1), v(2.0));
        assert_eq!(c.get(&a, &at(1)).unwrap()[0], 1.0);
        assert!(c.get(&a, &at(2)).is_none(), "rewritten since: not used");
        c.insert(a, at(2), v(3.0)); // replaces a; b is now the oldest
        c.insert(d, at(1), v(4.0)); // 48 bytes > 40: b goes
        assert!(c.get(&b, &at(1)).is_none());
        assert_eq!(c.get(&a, &at(2)).unwrap()[0], 3.0);
        assert_eq!(c.get(&d, &at(1)).unwrap()[0], 4.0);
        assert_eq!(c.bytes, 32);
        c.remove(&a);
        assert_eq!(c.bytes, 16);
        c.insert(a, at(3), vec![0.0; 100].into()); // larger than the whole cache: not kept
        assert!(c.get(&a, &at(3)).is_none());
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
