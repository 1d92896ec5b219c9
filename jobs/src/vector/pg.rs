//! The built-in index over `memory_embeddings`: its SQL, which backend it searches with, and
//! how the array backend reads through its cache (why it has one is in the parent module's
//! docs). Apart from the interface, which the rest of the domain uses without knowing where
//! vectors live.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::backend::{self, Backend, IndexBuild};
use super::cache::VectorCache;
use super::{
    hnsw, top_k, EmbeddingRecord, IndexError, Neighbour, NeighbourQuery, StoredEmbedding,
    VectorIndex,
};
use crate::embedding::cosine;

/// The built-in index over `memory_embeddings`. Clones share the pool, the cache and what
/// they learned of the backend.
#[derive(Debug, Clone)]
pub struct PgVectorIndex {
    pool: PgPool,
    cache: Option<Arc<Mutex<VectorCache>>>,
    /// Read from the column's type on first use (see `backend`).
    backend: Arc<tokio::sync::OnceCell<Backend>>,
    /// Sizes whose HNSW index is known to exist, or is being built.
    indexed: Arc<Mutex<HashSet<usize>>>,
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
        PgVectorIndex {
            pool,
            cache: None,
            backend: Arc::default(),
            indexed: Arc::default(),
        }
    }

    /// An index that keeps up to `capacity_bytes` of vectors in memory (see the module
    /// documentation); build one per process and share it.
    pub fn with_cache(pool: PgPool, capacity_bytes: usize) -> Self {
        PgVectorIndex {
            cache: Some(Arc::new(Mutex::new(VectorCache::new(capacity_bytes)))),
            ..PgVectorIndex::new(pool)
        }
    }

    /// How the stored vectors are kept, read once from the column's type.
    pub async fn backend(&self) -> Result<Backend, IndexError> {
        self.backend
            .get_or_try_init(|| backend::current(&self.pool))
            .await
            .copied()
            .map_err(db("reading the vector backend"))
    }

    /// After vectors of a size this process has not written before: starts building that
    /// size's HNSW index if it has none (a model changed size). Searches of the size are exact
    /// until it is built.
    async fn index_new_sizes(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError> {
        let new: Vec<usize> = {
            let mut indexed = self.indexed.lock().unwrap_or_else(|e| e.into_inner());
            let sizes: HashSet<usize> = records.iter().map(EmbeddingRecord::dims).collect();
            sizes.into_iter().filter(|d| indexed.insert(*d)).collect()
        };
        for dims in new {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND indisvalid)",
            )
            .bind(backend::index_name(dims))
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading an HNSW index"))?;
            if !exists && backend::IndexedAs::for_dims(dims).is_some() {
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    if let Err(e) = backend::ensure_index(&pool, dims, &IndexBuild::default()).await
                    {
                        tracing::warn!(dims, error = %e, "building an HNSW index failed; the next start builds it");
                    }
                });
            }
        }
        Ok(())
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
            .owner_rows(q, "e.embedding::real[]", "reading the owner's embeddings")
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
                "SELECT memory_id, embedding::real[], embedded_at FROM memory_embeddings \
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
        if self.backend().await? == Backend::Pgvector {
            self.index_new_sizes(records).await?;
        }
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
            "SELECT model, dims, content_hash, embedding::real[], embedded_at \
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
        if self.backend().await? == Backend::Pgvector {
            return hnsw::nearest(&self.pool, query)
                .await
                .map_err(db("searching the HNSW index"));
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
