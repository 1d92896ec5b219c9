//! One batch of an eviction: the statements per resource type, a transaction that deletes up
//! to a batch of rows and is cancelled past the time limit, the sizing that keeps batches
//! inside it, and the removal of the files of blobs the batch freed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;

use super::{EvictionError, EvictionSettings, ResourceType};

/// Rows to evict at the start, per resource type: the weights of the progress bar.
pub(super) async fn count_due(
    pool: &PgPool,
    table: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1"
    ))
    .bind(cutoff)
    .fetch_one(pool)
    .await
}

/// The first `$2` rows due for eviction at or after the cursor `$3`, oldest first. Starting at
/// the cursor skips the index entries of rows that earlier batches deleted and vacuum has not
/// yet removed; a row soft-deleted later is newer than the cutoff, so nothing due is passed by.
macro_rules! due {
    ($table:literal) => {
        concat!(
            "c AS (SELECT id, deleted_at FROM ",
            $table,
            " WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
             AND deleted_at >= COALESCE($3, '-infinity'::timestamptz) \
             ORDER BY deleted_at LIMIT $2)"
        )
    };
}

/// Takes one reference off each blob of the deleted attachments `a`, returning the blobs touched.
macro_rules! release_blobs {
    () => {
        "r AS (UPDATE blobs b SET refcount = GREATEST(b.refcount - x.n, 0) \
         FROM (SELECT blob_id, count(*)::int AS n FROM a WHERE blob_id IS NOT NULL GROUP BY blob_id) x \
         WHERE b.id = x.blob_id RETURNING b.id)"
    };
}
pub(super) use release_blobs;

/// Each batch deletes the candidates that are still due when the delete reaches them: a row
/// restored or changed since the candidates were read is rechecked by the `WHERE` (PostgreSQL
/// re-evaluates it for a row updated concurrently), and kept. Children go only with a parent
/// that went. Columns: candidates seen, the cursor for the next batch, rows, entries,
/// attachments, and blobs that lost references.
const CONVERSATIONS_BATCH: &str = concat!(
    "WITH ",
    due!("conversations"),
    ", d AS (DELETE FROM conversations WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING id), \
e AS (DELETE FROM conversation_entries WHERE conversation_id IN (SELECT id FROM d) RETURNING 1), \
a AS (DELETE FROM attachments WHERE conversation_id IN (SELECT id FROM d) RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), (SELECT count(*) FROM d), \
       (SELECT count(*) FROM e), (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')"
);

const ATTACHMENTS_BATCH: &str = concat!(
    "WITH ",
    due!("attachments"),
    ", a AS (DELETE FROM attachments WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), 0::bigint, 0::bigint, \
       (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')"
);

const MEMORIES_BATCH: &str = concat!(
    "WITH ",
    due!("memories"),
    ", m AS (DELETE FROM memories WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING 1) \
     SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), (SELECT count(*) FROM m), \
       0::bigint, 0::bigint, '{}'::uuid[]"
);

/// Reads, without locks, the rows the next batch will delete, children included.
const CONVERSATIONS_WARM: &str = concat!(
    "WITH ",
    due!("conversations"),
    " SELECT (SELECT count(role) FROM conversation_entries WHERE conversation_id IN (SELECT id FROM c)), \
       (SELECT count(blob_id) FROM attachments WHERE conversation_id IN (SELECT id FROM c))"
);

const ATTACHMENTS_WARM: &str = concat!(
    "WITH ",
    due!("attachments"),
    " SELECT count(refcount) FROM blobs \
     WHERE id IN (SELECT blob_id FROM attachments WHERE id IN (SELECT id FROM c))"
);

const MEMORIES_WARM: &str = concat!(
    "WITH ",
    due!("memories"),
    " SELECT (SELECT count(model) FROM memory_embeddings WHERE memory_id IN (SELECT id FROM c)), \
       (SELECT count(value) FROM memory_entities WHERE memory_id IN (SELECT id FROM c))"
);

/// What eviction runs for one resource type.
pub(super) struct Statements {
    pub(super) table: &'static str,
    pub(super) warm: &'static str,
    pub(super) batch: &'static str,
}

impl ResourceType {
    pub(super) fn statements(self) -> Statements {
        match self {
            ResourceType::Conversations => Statements {
                table: "conversations",
                warm: CONVERSATIONS_WARM,
                batch: CONVERSATIONS_BATCH,
            },
            ResourceType::Attachments => Statements {
                table: "attachments",
                warm: ATTACHMENTS_WARM,
                batch: ATTACHMENTS_BATCH,
            },
            ResourceType::Memories => Statements {
                table: "memories",
                warm: MEMORIES_WARM,
                batch: MEMORIES_BATCH,
            },
        }
    }
}

/// Blobs left with no reference among `ids`: their rows go in the same transaction, and their
/// keys come back so the files can go after it commits.
const FREE_BLOBS: &str = "\
DELETE FROM blobs WHERE id = ANY($1) AND refcount = 0 RETURNING storage_key, size_bytes";

/// SQLSTATE of a statement cancelled by `statement_timeout`.
pub(super) const QUERY_CANCELED: &str = "57014";

/// How often a one-row batch may hit the limit in a row before eviction gives up.
pub(super) const OVERRUNS_ALLOWED: u32 = 5;

/// What one batch did.
pub(super) struct Batch {
    /// Candidates read; fewer than asked means the last due row has been reached.
    pub(super) seen: i64,
    pub(super) cursor: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) rows: i64,
    pub(super) entries: i64,
    pub(super) attachments: i64,
    pub(super) freed: Vec<(String, i64)>,
}

/// One batch in one transaction, under a `statement_timeout` of `max_transaction`: on timeout
/// PostgreSQL cancels it and everything in it rolls back.
pub(super) async fn run_batch(
    pool: &PgPool,
    statements: &Statements,
    cutoff: chrono::DateTime<chrono::Utc>,
    size: i64,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    settings: &EvictionSettings,
) -> Result<Batch, sqlx::Error> {
    // The batch statements keep the session's cached plans: planned anew on every batch they
    // halved the rate. A plan made at the start of a run, when the tables are at their
    // largest, stays right as they shrink.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", settings.max_transaction.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    let (seen, cursor, rows, entries, attachments, touched): (
        i64,
        Option<chrono::DateTime<chrono::Utc>>,
        i64,
        i64,
        i64,
        Vec<uuid::Uuid>,
    ) = sqlx::query_as(statements.batch)
        .bind(cutoff)
        .bind(size)
        .bind(cursor)
        .fetch_one(&mut *tx)
        .await?;
    let freed = free_and_commit(tx, &touched).await?;
    Ok(Batch {
        seen,
        cursor,
        rows,
        entries,
        attachments,
        freed,
    })
}

/// Ends a transaction that took references off the blobs `touched`: the blobs left with none
/// lose their rows in it, and their keys and sizes come back for `remove_files` once it has
/// committed.
pub(super) async fn free_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    touched: &[uuid::Uuid],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let freed: Vec<(String, i64)> = if touched.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(FREE_BLOBS)
            .bind(touched)
            .fetch_all(&mut *tx)
            .await?
    };
    // The runtime runs handlers with asynchronous commit, which releases a batch's locks
    // without waiting for the WAL flush (a busy disk can stretch that to hundreds of
    // milliseconds); a batch lost in a crash is harmless, its rows are still due. A
    // transaction that frees blobs commits synchronously, because its files are removed once
    // it has.
    if !freed.is_empty() {
        sqlx::query("SELECT set_config('synchronous_commit', 'on', true)")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(freed)
}

/// Sizes batches to a time budget of a quarter of the transaction limit, so that a batch that
/// meets a checkpoint or a slow disk still finishes inside the limit. It halves after a batch
/// over budget, grows by a quarter after one under half of it, and never exceeds the ceiling.
pub(super) struct BatchSizer {
    size: i64,
    ceiling: i64,
    budget: Duration,
    overruns_in_a_row: u32,
}

impl BatchSizer {
    pub(super) fn new(ceiling: i64, limit: Duration) -> Self {
        let ceiling = ceiling.max(1);
        BatchSizer {
            // Starts small and grows, rather than learning the budget from an overrun.
            size: (ceiling / 8).max(1),
            ceiling,
            budget: limit / 4,
            overruns_in_a_row: 0,
        }
    }

    pub(super) fn size(&self) -> i64 {
        self.size
    }

    pub(super) fn record(&mut self, took: Duration) {
        self.overruns_in_a_row = 0;
        if took > self.budget {
            self.size = (self.size / 2).max(1);
        } else if took < self.budget / 2 {
            self.size = (self.size + self.size / 4 + 1).min(self.ceiling);
        }
    }

    /// After a batch cancelled at the limit: a quarter of the rows next time. False once a
    /// one-row batch has overrun `OVERRUNS_ALLOWED` times in a row.
    pub(super) fn overran(&mut self) -> bool {
        if self.size == 1 {
            self.overruns_in_a_row += 1;
        }
        self.size = (self.size / 4).max(1);
        self.overruns_in_a_row < OVERRUNS_ALLOWED
    }
}

/// Removes the files of the blobs a committed batch freed.
pub(super) fn remove_files(dir: &Path, freed: &[(String, i64)]) -> Result<(), EvictionError> {
    for (key, _) in freed {
        // Keys are names inside the blob directory, never paths out of it.
        let name = Path::new(key)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EvictionError::Blob { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_over_budget_grow_under_it_and_give_up_at_one_row() {
        let mut sizer = BatchSizer::new(800, Duration::from_millis(100));
        assert_eq!(sizer.size(), 100, "starts at an eighth of the ceiling");
        sizer.record(Duration::from_millis(30));
        assert_eq!(sizer.size(), 50, "over the 25 ms budget: halved");
        sizer.record(Duration::from_millis(20));
        assert_eq!(sizer.size(), 50, "within the budget: kept");
        for _ in 0..30 {
            sizer.record(Duration::from_millis(5));
        }
        assert_eq!(sizer.size(), 800, "grows, never past the ceiling");
        assert!(sizer.overran());
        assert_eq!(sizer.size(), 200, "an overrun quarters it");
        while sizer.size() > 1 {
            assert!(sizer.overran());
        }
        for _ in 1..OVERRUNS_ALLOWED {
            assert!(sizer.overran());
        }
        assert!(!sizer.overran(), "one row over the limit, again and again");
        sizer.record(Duration::from_millis(1));
        assert!(sizer.overran(), "a batch that fits resets the streak");
    }
}
