//! The catch-up schedule's query: memories whose enrichment is missing or stale.
//!
//! The trigger enqueues a job for every write, so this finds what that path cannot: memories
//! written before the trigger existed, a content change absorbed by a job for the same memory
//! that was already running, and everything enriched by an older pipeline version.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::JobArgs;

/// The catch-up schedule's job: it takes no args.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatchUpArgs {}

impl JobArgs for CatchUpArgs {
    const KIND: &'static str = "enrichment-catchup";
}

/// What makes a live memory catch-up work, with `$1` the current pipeline version: it was
/// never enriched for its current content (`enriched_at` is NULL, or older than `updated_at`),
/// or was enriched by an older version. The two halves are ORed as they are written so that
/// each is served by its own partial index.
pub const NEEDS_ENRICHMENT: &str =
    "(deleted_at IS NULL AND (enriched_at IS NULL OR updated_at > enriched_at)) \
     OR (deleted_at IS NULL AND enrichment_version < $1)";

/// Up to `limit` memories in id order that [`NEEDS_ENRICHMENT`] for pipeline `version`.
pub async fn memories_needing_enrichment(
    pool: &PgPool,
    version: i32,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = format!("SELECT id FROM memories WHERE {NEEDS_ENRICHMENT} ORDER BY id LIMIT $2");
    sqlx::query_scalar(&sql)
        .bind(version)
        .bind(limit.max(0))
        // Planned for each call: how many memories need it swings from none to all of them.
        .persistent(false)
        .fetch_all(pool)
        .await
}
