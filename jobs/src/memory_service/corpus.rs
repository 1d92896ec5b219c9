//! A Memory Service database as a corpus for `reembed` and `sync`: its entries'
//! `indexed_content`, embedded into its `entry_embeddings` (pgvector, one row per entry, with
//! a `model` column and no size or content hash).
//!
//! - An entry is live while its conversation group is not archived. Embeddings of an
//!   archived group are eviction's to remove (with the group, by cascade), not drift.
//! - `missing`: a live entry with `indexed_content` and no embedding.
//! - `orphaned`: an embedding whose entry is gone or no longer has `indexed_content`.
//! - `model_mismatch`: another `model`, or another size (`vector_dims`).
//! - `stale`: the entry's content hash differs from the one memwarden recorded when it
//!   wrote or adopted the embedding (`memory_service_embedding_hashes`, in memwarden's
//!   schema). An embedding memwarden has no hash for is not judged: a repair adopts it,
//!   recording the hash of the entry's content as it is then, since Memory Service's indexer
//!   wrote it from that content.
//!
//! It writes only `entry_embeddings`, and never an entry (`indexed_at` included: that is
//! Memory Service's indexer's mark).

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

use super::{content_hash_sql, MemoryServiceStore};
use crate::bulk::{Corpus, Embeddable, Selection, ORPHAN_SCAN_BATCH};
use crate::drift::{scan_with, Scan, SUMMARY};
use crate::vector::{EmbeddingRecord, IndexError};

/// The entries of a Memory Service database and their embeddings.
pub struct EntryCorpus {
    pool: PgPool,
    /// Statements, built once with the schema's name in them.
    sql: Statements,
}

struct Statements {
    count: String,
    page: String,
    page_all: String,
    write: String,
    scan: String,
    remove_orphans: String,
    adopt: String,
    forget: String,
}

impl EntryCorpus {
    pub fn new(pool: PgPool, store: &MemoryServiceStore) -> Self {
        EntryCorpus {
            pool,
            sql: Statements::new(store.schema.as_str()),
        }
    }
}

impl Statements {
    fn new(s: &str) -> Self {
        let hash = content_hash_sql("e.indexed_content");
        // `$1` force, `$2` model, `$3` size (0: any).
        let selected = format!(
            "FROM {s}.entries e \
             JOIN {s}.conversation_groups g ON g.id = e.conversation_group_id AND g.archived_at IS NULL \
             LEFT JOIN {s}.entry_embeddings v \
                  ON v.entry_id = e.id AND v.conversation_group_id = e.conversation_group_id \
             LEFT JOIN memory_service_embedding_hashes h \
                  ON h.entry_id = e.id AND h.conversation_group_id = e.conversation_group_id \
             WHERE e.indexed_content IS NOT NULL AND ($1 OR v.entry_id IS NULL OR v.model <> $2 \
                OR ($3 > 0 AND vector_dims(v.embedding) <> $3) OR h.content_hash <> {hash})"
        );
        Statements {
            count: format!("SELECT count(*) {selected}"),
            page: format!(
                "SELECT e.id, e.indexed_content AS content, {hash} AS content_hash {selected} \
                 AND ($4::uuid IS NULL OR e.id > $4) ORDER BY e.id LIMIT $5"
            ),
            page_all: format!(
                "SELECT e.id, e.indexed_content AS content, {hash} AS content_hash \
                 FROM {s}.entries e \
                 JOIN {s}.conversation_groups g ON g.id = e.conversation_group_id AND g.archived_at IS NULL \
                 WHERE e.indexed_content IS NOT NULL AND ($1::uuid IS NULL OR e.id > $1) \
                 ORDER BY e.id LIMIT $2"
            ),
            // The entry's conversation and group come from the entry itself, so an entry
            // evicted since it was read is simply not written.
            write: format!(
                "WITH t AS (SELECT e.id, e.conversation_id, e.conversation_group_id, v.model, v.hash, v.vec \
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS v(id, model, hash, vec) \
                   JOIN {s}.entries e ON e.id = v.id), \
                 w AS (INSERT INTO {s}.entry_embeddings \
                         (entry_id, conversation_id, conversation_group_id, embedding, model) \
                       SELECT id, conversation_id, conversation_group_id, vec::vector, model FROM t \
                       ON CONFLICT (entry_id, conversation_group_id) DO UPDATE \
                       SET embedding = EXCLUDED.embedding, model = EXCLUDED.model, created_at = now() \
                       RETURNING 1) \
                 INSERT INTO memory_service_embedding_hashes \
                   (entry_id, conversation_group_id, content_hash, model) \
                 SELECT id, conversation_group_id, hash, model FROM t \
                 ON CONFLICT (entry_id, conversation_group_id) DO UPDATE \
                 SET content_hash = EXCLUDED.content_hash, model = EXCLUDED.model, recorded_at = now()"
            ),
            scan: format!(
                "WITH l AS (SELECT e.id, e.conversation_group_id, e.indexed_content, \
                                   g.archived_at IS NULL AS live \
                            FROM {s}.entries e JOIN {s}.conversation_groups g ON g.id = e.conversation_group_id \
                            WHERE e.indexed_content IS NOT NULL), \
                 pairs AS ( \
                   SELECT COALESCE(l.id, v.entry_id) AS id, l.id IS NOT NULL AS has_memory, \
                          v.entry_id IS NOT NULL AS has_embedding, \
                          CASE \
                            WHEN v.entry_id IS NULL THEN CASE WHEN l.live THEN 'missing' END \
                            WHEN l.id IS NULL THEN 'orphaned' \
                            WHEN NOT l.live THEN NULL \
                            WHEN v.model <> $1 OR ($2 > 0 AND vector_dims(v.embedding) <> $2) THEN 'model_mismatch' \
                            WHEN h.content_hash <> {} THEN 'stale' \
                          END AS kind \
                   FROM l FULL JOIN {s}.entry_embeddings v \
                        ON v.entry_id = l.id AND v.conversation_group_id = l.conversation_group_id \
                   LEFT JOIN memory_service_embedding_hashes h \
                        ON h.entry_id = v.entry_id AND h.conversation_group_id = v.conversation_group_id) \
                 {SUMMARY}",
                content_hash_sql("l.indexed_content")
            ),
            remove_orphans: format!(
                "WITH c AS ( \
                   SELECT v.entry_id, v.conversation_group_id, e.id IS NULL AS orphan \
                   FROM {s}.entry_embeddings v LEFT JOIN {s}.entries e \
                        ON e.id = v.entry_id AND e.conversation_group_id = v.conversation_group_id \
                       AND e.indexed_content IS NOT NULL \
                   WHERE $1::uuid IS NULL OR v.entry_id > $1 \
                   ORDER BY v.entry_id LIMIT $2), \
                 gone AS (DELETE FROM {s}.entry_embeddings v USING c \
                   WHERE c.orphan AND v.entry_id = c.entry_id \
                     AND v.conversation_group_id = c.conversation_group_id \
                   RETURNING v.entry_id, v.conversation_group_id), \
                 forgot AS (DELETE FROM memory_service_embedding_hashes h USING gone \
                   WHERE h.entry_id = gone.entry_id AND h.conversation_group_id = gone.conversation_group_id \
                   RETURNING 1) \
                 SELECT COALESCE((SELECT array_agg(entry_id) FROM gone), '{{}}'), \
                        (SELECT entry_id FROM c ORDER BY entry_id DESC LIMIT 1)"
            ),
            adopt: format!(
                "INSERT INTO memory_service_embedding_hashes \
                   (entry_id, conversation_group_id, content_hash, model) \
                 SELECT v.entry_id, v.conversation_group_id, {hash}, v.model \
                 FROM {s}.entry_embeddings v JOIN {s}.entries e \
                      ON e.id = v.entry_id AND e.conversation_group_id = v.conversation_group_id \
                 WHERE e.indexed_content IS NOT NULL AND v.model = $1 \
                   AND NOT EXISTS (SELECT 1 FROM memory_service_embedding_hashes h \
                     WHERE h.entry_id = v.entry_id AND h.conversation_group_id = v.conversation_group_id) \
                 ON CONFLICT DO NOTHING"
            ),
            // Hashes of embeddings that went another way (Memory Service's own cleanup).
            forget: format!(
                "DELETE FROM memory_service_embedding_hashes h WHERE NOT EXISTS \
                   (SELECT 1 FROM {s}.entry_embeddings v \
                    WHERE v.entry_id = h.entry_id AND v.conversation_group_id = h.conversation_group_id)"
            ),
        }
    }
}

/// pgvector's text form of a vector: `[0.1,0.2]` (Rust's shortest round-trip float text).
fn vector_text(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 10 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

fn index_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> IndexError {
    move |source| IndexError::Database { context, source }
}

#[async_trait]
impl Corpus for EntryCorpus {
    async fn count(&self, selection: &Selection) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(&self.sql.count)
            .bind(selection.force)
            .bind(&selection.model)
            .bind(selection.dims as i32)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn page(
        &self,
        selection: &Selection,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Embeddable>, sqlx::Error> {
        if selection.force {
            return sqlx::query_as(&self.sql.page_all)
                .bind(cursor)
                .bind(limit)
                .fetch_all(&self.pool)
                .await;
        }
        // Planned for each page, so that `$4 IS NULL` folds and the cursor bounds the scan.
        sqlx::query_as(&self.sql.page)
            .bind(false)
            .bind(&selection.model)
            .bind(selection.dims as i32)
            .bind(cursor)
            .bind(limit)
            .persistent(false)
            .fetch_all(&self.pool)
            .await
    }

    async fn write(&self, records: &[EmbeddingRecord]) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = records.iter().map(|r| r.memory_id).collect();
        let models: Vec<&str> = records.iter().map(|r| r.model.as_str()).collect();
        let hashes: Vec<&str> = records.iter().map(|r| r.content_hash.as_str()).collect();
        let vectors: Vec<String> = records.iter().map(|r| vector_text(&r.vector)).collect();
        sqlx::query(&self.sql.write)
            .bind(&ids)
            .bind(&models)
            .bind(&hashes)
            .bind(&vectors)
            .execute(&self.pool)
            .await
            .map_err(index_error("writing Memory Service entry embeddings"))?;
        Ok(())
    }

    async fn scan(&self, model: &str, dims: usize) -> Result<Scan, sqlx::Error> {
        scan_with(&self.pool, &self.sql.scan, model, dims).await
    }

    async fn remove_orphans(
        &self,
        cursor: Option<Uuid>,
    ) -> Result<(Vec<Uuid>, Option<Uuid>), sqlx::Error> {
        sqlx::query_as(&self.sql.remove_orphans)
            .bind(cursor)
            .bind(ORPHAN_SCAN_BATCH)
            .fetch_one(&self.pool)
            .await
    }

    async fn adopt(&self, model: &str) -> Result<u64, sqlx::Error> {
        sqlx::query(&self.sql.forget).execute(&self.pool).await?;
        let adopted = sqlx::query(&self.sql.adopt)
            .bind(model)
            .execute(&self.pool)
            .await?;
        Ok(adopted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_written_in_pgvector_text_form() {
        assert_eq!(vector_text(&[0.5, -1.0, 0.25]), "[0.5,-1,0.25]");
        assert_eq!(vector_text(&[]), "[]");
    }
}
