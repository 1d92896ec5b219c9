//! What happens to the bytes of attachments a batch deleted, per store.
//!
//! - memwarden's store counts references on `blobs`: a blob left with none loses its row in
//!   the batch's transaction, and its file after the commit.
//! - Memory Service's store shares a blob between the attachments with the same
//!   `storage_key`, without a count: a key goes when no attachment is left with it. A large
//!   object is unlinked inside the transaction (`lo_unlink` is transactional); a file is
//!   removed after the commit.
//!
//! Files go only after the commit, so a failed batch never leaves a row pointing at a missing
//! file (a crash in between can leave an orphan file, which nothing references).

use std::path::{Path, PathBuf};

use super::EvictionError;
use crate::memory_service::attachment_file;

/// Where a store's attachment bytes live, and how they are let go.
#[derive(Debug, Clone)]
pub(super) enum Release {
    /// memwarden's `blobs`, with files named by their key in `dir`.
    Blobs { dir: PathBuf },
    /// Memory Service's filesystem store under `dir`.
    Files { schema: String, dir: PathBuf },
    /// Memory Service's PostgreSQL store: large objects, their OIDs as keys.
    LargeObjects { schema: String },
    /// A resource that holds no bytes of its own (Memory Service's conversation groups).
    Nothing,
}

/// What a batch let go of: blob ids (memwarden) or storage keys (Memory Service), with the
/// bytes of each key where the store does not keep them on a blob row.
#[derive(Debug, Default)]
pub(super) struct Touched {
    pub(super) keys: Vec<String>,
    pub(super) sizes: Vec<i64>,
}

/// Blobs left with no reference among `$1`: their rows go in the same transaction, and their
/// keys come back so the files can go after it commits.
const FREE_BLOBS: &str = "\
DELETE FROM blobs WHERE id = ANY($1::text[]::uuid[]) AND refcount = 0 \
RETURNING storage_key, size_bytes";

/// The keys among `$1` (bytes `$2`) no attachment has any longer.
fn unshared_keys(schema: &str) -> String {
    format!(
        "SELECT u.k, COALESCE(u.s, 0) FROM unnest($1::text[], $2::bigint[]) AS u(k, s) \
         WHERE u.k IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM {schema}.attachments a WHERE a.storage_key = u.k)"
    )
}

/// Ends a batch's transaction: what `touched` left unreferenced is freed in it (rows, large
/// objects), and comes back as (key, bytes) for [`remove_after_commit`].
pub(super) async fn free_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    release: &Release,
    touched: &Touched,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let sql = match release {
        Release::Blobs { .. } => FREE_BLOBS.to_string(),
        Release::Files { schema, .. } | Release::LargeObjects { schema } => unshared_keys(schema),
        Release::Nothing => String::new(),
    };
    let freed: Vec<(String, i64)> = if touched.keys.is_empty() || sql.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(&sql)
            .bind(&touched.keys)
            .bind(&touched.sizes)
            .fetch_all(&mut *tx)
            .await?
    };
    if let Release::LargeObjects { .. } = release {
        let oids: Vec<i64> = freed
            .iter()
            .filter_map(|(k, _)| k.trim().parse::<u32>().ok().map(i64::from))
            .collect();
        if oids.len() < freed.len() {
            tracing::warn!(
                keys = freed.len() - oids.len(),
                "attachment storage keys that are not large-object OIDs were left alone"
            );
        }
        if !oids.is_empty() {
            // Only the large objects that exist: one already unlinked is not an error.
            sqlx::query(
                "SELECT count(lo_unlink(m.oid)) FROM pg_largeobject_metadata m \
                 WHERE m.oid = ANY($1::bigint[]::oid[])",
            )
            .bind(&oids)
            .execute(&mut *tx)
            .await?;
        }
    }
    // The runtime runs handlers with asynchronous commit, which releases a batch's locks
    // without waiting for the WAL flush (a busy disk can stretch that to hundreds of
    // milliseconds); a batch lost in a crash is harmless, its rows are still due. A
    // transaction whose files are removed once it has committed commits synchronously.
    if !freed.is_empty() && !matches!(release, Release::LargeObjects { .. }) {
        sqlx::query("SELECT set_config('synchronous_commit', 'on', true)")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(freed)
}

/// Removes the files of what a committed batch freed.
pub(super) fn remove_after_commit(
    release: &Release,
    freed: &[(String, i64)],
) -> Result<(), EvictionError> {
    for (key, _) in freed {
        let path = match release {
            // Keys are names inside the blob directory, never paths out of it.
            Release::Blobs { dir } => dir.join(
                Path::new(key)
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_default(),
            ),
            Release::Files { dir, .. } => match attachment_file(dir, key) {
                Some(path) => path,
                None => {
                    tracing::warn!(%key, "an attachment storage key Memory Service's filesystem store would not write; no file removed");
                    continue;
                }
            },
            Release::LargeObjects { .. } | Release::Nothing => continue,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EvictionError::Blob { path, source }),
        }
    }
    Ok(())
}
