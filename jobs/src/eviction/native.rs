//! memwarden's own store: the statements that evict its conversations (with their entries
//! and attachments), attachments and memories, by `deleted_at`.

use super::batch::Statements;
use super::release::Release;
use super::ResourceType;

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

/// The blobs `r` touched, as the batch's last two columns (their ids; sizes come from the
/// blob rows when they are freed).
macro_rules! touched_blobs {
    () => {
        "COALESCE((SELECT array_agg(id::text) FROM r), '{}'), '{}'::bigint[]"
    };
}
pub(super) use touched_blobs;

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
       (SELECT count(*) FROM d), (SELECT count(*) FROM e), (SELECT count(*) FROM a), ",
    touched_blobs!()
);

const ATTACHMENTS_BATCH: &str = concat!(
    "WITH ",
    due!("attachments"),
    ", a AS (DELETE FROM attachments WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), 0::bigint, 0::bigint, \
       0::bigint, (SELECT count(*) FROM a), ",
    touched_blobs!()
);

const MEMORIES_BATCH: &str = concat!(
    "WITH ",
    due!("memories"),
    ", m AS (DELETE FROM memories WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING 1) \
     SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), (SELECT count(*) FROM m), \
       0::bigint, 0::bigint, 0::bigint, '{}'::text[], '{}'::bigint[]"
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

/// What eviction runs for one resource type on memwarden's store; blob files are in `dir`.
pub(super) fn statements(t: ResourceType, dir: &std::path::Path) -> Statements {
    let (table, warm, batch) = match t {
        ResourceType::Conversations => ("conversations", CONVERSATIONS_WARM, CONVERSATIONS_BATCH),
        ResourceType::Attachments => ("attachments", ATTACHMENTS_WARM, ATTACHMENTS_BATCH),
        ResourceType::Memories => ("memories", MEMORIES_WARM, MEMORIES_BATCH),
    };
    Statements {
        count: format!(
            "SELECT count(*), count(*) FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1"
        ),
        warm: warm.into(),
        batch: batch.into(),
        grouped: false,
        release: Release::Blobs {
            dir: dir.to_path_buf(),
        },
    }
}
