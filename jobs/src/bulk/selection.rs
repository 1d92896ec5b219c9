//! Which memories a walk takes, and the SQL that finds them: kept apart from the walk, which
//! only pages through them in id order.

use sqlx::PgPool;
use uuid::Uuid;

use super::Embeddable;

/// Which memories a walk takes.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Every live memory, fresh or not; otherwise only those whose embedding is missing,
    /// stale, or of another model or size.
    pub force: bool,
    pub model: String,
    /// 0: any size is accepted (an embedder that has not learned its size yet).
    pub dims: usize,
}

/// A live memory that needs an embedding: none, one of older content, or one of another model
/// or size. `$1` takes them all (force), `$2` is the model, `$3` the size (0: any).
pub(crate) const NEEDS_EMBEDDING: &str = "m.deleted_at IS NULL AND ($1 OR e.memory_id IS NULL \
     OR e.content_hash <> m.content_hash OR e.model <> $2 OR ($3 > 0 AND e.dims <> $3))";

impl Selection {
    /// How many memories the walk would take, from the start.
    pub(super) async fn count(&self, pool: &PgPool) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM memories m LEFT JOIN memory_embeddings e ON e.memory_id = m.id \
             WHERE {NEEDS_EMBEDDING}"
        ))
        .bind(self.force)
        .bind(&self.model)
        .bind(self.dims as i32)
        .fetch_one(pool)
        .await?;
        Ok(n as u64)
    }

    /// The next `limit` memories after `cursor`, in id order.
    pub(super) async fn page(
        &self,
        pool: &PgPool,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Embeddable>, sqlx::Error> {
        if self.force {
            // Every live memory: no need to look at the embeddings.
            return sqlx::query_as(
                "SELECT m.id, m.content, m.content_hash FROM memories m \
                 WHERE m.deleted_at IS NULL AND ($1::uuid IS NULL OR m.id > $1) \
                 ORDER BY m.id LIMIT $2",
            )
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await;
        }
        // The cursor bounds the embeddings too, not only the memories: without it the merge
        // join read memory_embeddings from its first row for every page, so a walk cost grew
        // with the square of the store (1.4 s a page at 800k of 1M memories, 14 ms with it).
        // Planned for each page (unnamed), so that `$4 IS NULL` folds and the bound is an
        // index condition.
        sqlx::query_as(&format!(
            "SELECT m.id, m.content, m.content_hash FROM memories m \
             LEFT JOIN memory_embeddings e ON e.memory_id = m.id \
                  AND ($4::uuid IS NULL OR e.memory_id > $4) \
             WHERE {NEEDS_EMBEDDING} AND ($4::uuid IS NULL OR m.id > $4) \
             ORDER BY m.id LIMIT $5"
        ))
        .bind(self.force)
        .bind(&self.model)
        .bind(self.dims as i32)
        .bind(cursor)
        .bind(limit)
        .persistent(false)
        .fetch_all(pool)
        .await
    }
}
