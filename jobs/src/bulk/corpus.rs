//! What bulk embedding works over: a corpus of texts, each with an id and a content hash, and
//! the embeddings kept for them. memwarden's own store is one ([`MemoryCorpus`]: `memories`
//! and the vector index); a Memory Service database is another
//! (`memory_service::EntryCorpus`). `reembed` and `sync` are written once, against this.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

use super::Selection;
use crate::drift::Scan;
use crate::vector::{EmbeddingRecord, IndexError, VectorIndex};

/// A text that needs an embedding.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Embeddable {
    pub id: Uuid,
    pub content: String,
    pub content_hash: String,
}

#[async_trait]
pub trait Corpus: Send + Sync {
    /// How many texts a walk with this selection would take, from the start.
    async fn count(&self, selection: &Selection) -> Result<u64, sqlx::Error>;

    /// The next `limit` selected texts after `cursor`, in id order.
    async fn page(
        &self,
        selection: &Selection,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Embeddable>, sqlx::Error>;

    /// Stores these embeddings, replacing what each text had.
    async fn write(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError>;

    /// Drift against this model and size (0: any size), in one set-based statement.
    async fn scan(&self, model: &str, dims: usize) -> Result<Scan, sqlx::Error>;

    /// Removes the orphans among the next embeddings after `cursor` (in id order): the ids
    /// removed, and the last id looked at (none when the embeddings are done).
    async fn remove_orphans(
        &self,
        cursor: Option<Uuid>,
    ) -> Result<(Vec<Uuid>, Option<Uuid>), sqlx::Error>;

    /// After a repair: records what the corpus needs to judge the embeddings it did not write
    /// (a Memory Service database stores no content hashes); how many it recorded.
    async fn adopt(&self, _model: &str) -> Result<u64, sqlx::Error> {
        Ok(0)
    }
}

/// memwarden's own store: live `memories`, and the vector index their embeddings live in.
pub struct MemoryCorpus {
    pool: PgPool,
    index: Arc<dyn VectorIndex>,
}

impl MemoryCorpus {
    pub fn new(pool: PgPool, index: Arc<dyn VectorIndex>) -> Self {
        MemoryCorpus { pool, index }
    }
}

/// Embeddings looked at per statement of the orphan removal (a short transaction each).
pub(crate) const ORPHAN_SCAN_BATCH: i64 = 10_000;

#[async_trait]
impl Corpus for MemoryCorpus {
    async fn count(&self, selection: &Selection) -> Result<u64, sqlx::Error> {
        selection.count(&self.pool).await
    }

    async fn page(
        &self,
        selection: &Selection,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Embeddable>, sqlx::Error> {
        selection.page(&self.pool, cursor, limit).await
    }

    async fn write(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError> {
        self.index.upsert(records).await
    }

    async fn scan(&self, model: &str, dims: usize) -> Result<Scan, sqlx::Error> {
        crate::drift::scan(&self.pool, model, dims).await
    }

    async fn remove_orphans(
        &self,
        cursor: Option<Uuid>,
    ) -> Result<(Vec<Uuid>, Option<Uuid>), sqlx::Error> {
        sqlx::query_as(
            "WITH candidates AS ( \
               SELECT e.memory_id, m.id IS NULL OR m.deleted_at IS NOT NULL AS orphan \
               FROM memory_embeddings e LEFT JOIN memories m ON m.id = e.memory_id \
               WHERE $1::uuid IS NULL OR e.memory_id > $1 \
               ORDER BY e.memory_id LIMIT $2), \
             gone AS (DELETE FROM memory_embeddings WHERE memory_id IN \
               (SELECT memory_id FROM candidates WHERE orphan) RETURNING memory_id) \
             SELECT COALESCE((SELECT array_agg(memory_id) FROM gone), '{}'), \
                    (SELECT memory_id FROM candidates ORDER BY memory_id DESC LIMIT 1)",
        )
        .bind(cursor)
        .bind(ORPHAN_SCAN_BATCH)
        .fetch_one(&self.pool)
        .await
    }
}
