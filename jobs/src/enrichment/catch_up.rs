//! The catch-up schedule's query: memories whose enrichment is missing or stale.
//!
//! The trigger enqueues a job for every write, so this finds what that path cannot: memories
//! written before the trigger existed, a content change absorbed by a job for the same memory
//! that was already running, and everything enriched by an older pipeline version.

use sqlx::PgPool;
use uuid::Uuid;

/// Up to `limit` live memories, in id order, that were never enriched for their current
/// content (`enriched_at` is NULL, or older than `updated_at`) or were enriched by a pipeline
/// version below `version`. Both halves are served by partial indexes.
pub async fn memories_needing_enrichment(
    pool: &PgPool,
    version: i32,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM memories \
         WHERE (deleted_at IS NULL AND (enriched_at IS NULL OR updated_at > enriched_at)) \
            OR (deleted_at IS NULL AND enrichment_version < $1) \
         ORDER BY id LIMIT $2",
    )
    .bind(version)
    .bind(limit.max(0))
    // Planned for each call: how many memories need it swings from none to all of them.
    .persistent(false)
    .fetch_all(pool)
    .await
}
