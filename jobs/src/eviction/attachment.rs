//! Deleting one attachment now, whatever its state (Memory Service's
//! `DELETE /v1/admin/attachments/{id}`), with eviction's rule for its blob: the blob loses one
//! reference, and its row and file go only when that was the last one.

use std::path::Path;

use sqlx::PgPool;

use super::batch::{free_and_commit, release_blobs, remove_files};
use super::EvictionError;

const DELETE_ATTACHMENT: &str = concat!(
    "WITH a AS (DELETE FROM attachments WHERE id = $1 RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')"
);

/// What deleting an attachment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentDeleted {
    /// There was no such attachment (never created, or already deleted or evicted).
    Missing,
    /// The attachment went; `blob_freed` says whether its blob's file went with it.
    Deleted { blob_freed: bool },
}

/// Deletes the attachment `id` in one transaction, then the file of a blob it freed.
pub async fn delete_attachment(
    pool: &PgPool,
    blobs_dir: &Path,
    id: uuid::Uuid,
) -> Result<AttachmentDeleted, EvictionError> {
    let mut tx = pool.begin().await?;
    let (deleted, touched): (i64, Vec<uuid::Uuid>) = sqlx::query_as(DELETE_ATTACHMENT)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let freed = free_and_commit(tx, &touched).await?;
    if deleted == 0 {
        return Ok(AttachmentDeleted::Missing);
    }
    remove_files(blobs_dir, &freed)?;
    Ok(AttachmentDeleted::Deleted {
        blob_freed: !freed.is_empty(),
    })
}
