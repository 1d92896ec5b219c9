//! Deleting one attachment now, whatever its state (Memory Service's
//! `DELETE /v1/admin/attachments/{id}`), with eviction's rule for its blob: the blob loses one
//! reference, and its row and file go only when that was the last one.

use std::path::Path;

use sqlx::PgPool;

use super::native::{release_blobs, touched_blobs};
use super::release::{free_and_commit, remove_after_commit, Release, Touched};
use super::EvictionError;

const DELETE_ATTACHMENT: &str = concat!(
    "WITH a AS (DELETE FROM attachments WHERE id = $1 RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM a), ",
    touched_blobs!()
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
    let (deleted, keys, sizes): (i64, Vec<String>, Vec<i64>) = sqlx::query_as(DELETE_ATTACHMENT)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let release = Release::Blobs {
        dir: blobs_dir.to_path_buf(),
    };
    let freed = free_and_commit(tx, &release, &Touched { keys, sizes }).await?;
    if deleted == 0 {
        return Ok(AttachmentDeleted::Missing);
    }
    remove_after_commit(&release, &freed)?;
    Ok(AttachmentDeleted::Deleted {
        blob_freed: !freed.is_empty(),
    })
}
