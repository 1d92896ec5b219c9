//! Rows of the memory store for tests, written with plain SQL as the memory service writes
//! them: conversations with entries, blobs with their file, attachments.

use std::path::Path;

use sqlx::PgPool;

pub async fn conversation(pool: &PgPool, deleted_ago: Option<&str>, entries: i32) -> uuid::Uuid {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, title, deleted_at) \
         VALUES ('owner', 't', CASE WHEN $1::text IS NULL THEN NULL ELSE now() - $1::interval END) RETURNING id",
    )
    .bind(deleted_ago)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) SELECT $1, 'user', 'hi ' || g FROM generate_series(1, $2) g")
        .bind(id)
        .bind(entries)
        .execute(pool)
        .await
        .unwrap();
    id
}

pub async fn blob(pool: &PgPool, dir: &Path, key: &str, bytes: &[u8], refs: i32) -> uuid::Uuid {
    std::fs::write(dir.join(key), bytes).unwrap();
    sqlx::query_scalar("INSERT INTO blobs (sha256, size_bytes, refcount, storage_key) VALUES ($1, $2, $3, $1) RETURNING id")
        .bind(key)
        .bind(bytes.len() as i64)
        .bind(refs)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn attachment(
    pool: &PgPool,
    blob: uuid::Uuid,
    conversation: Option<uuid::Uuid>,
    deleted_ago: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO attachments (owner_id, conversation_id, blob_id, filename, deleted_at) \
         VALUES ('owner', $1, $2, 'f.txt', CASE WHEN $3::text IS NULL THEN NULL ELSE now() - $3::interval END)",
    )
    .bind(conversation)
    .bind(blob)
    .bind(deleted_ago)
    .execute(pool)
    .await
    .unwrap();
}
