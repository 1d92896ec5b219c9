//! Reading the memory store as an operator does: which memories there are, whose, and how far
//! their enrichment has got, newest first, in pages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// Where a memory's enrichment stands, as the catch-up schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum EnrichmentState {
    /// Enriched for its current content by the current pipeline.
    Enriched,
    /// Never enriched for its current content (new, or changed since).
    Pending,
    /// Enriched by an older pipeline version.
    Stale,
    /// Soft-deleted: enrichment no longer applies.
    Deleted,
}

impl EnrichmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentState::Enriched => "enriched",
            EnrichmentState::Pending => "pending",
            EnrichmentState::Stale => "stale",
            EnrichmentState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<EnrichmentState> {
        Some(match s {
            "enriched" => EnrichmentState::Enriched,
            "pending" => EnrichmentState::Pending,
            "stale" => EnrichmentState::Stale,
            "deleted" => EnrichmentState::Deleted,
            _ => return None,
        })
    }
}

/// The state as SQL decides it, with `$1` the current pipeline version.
const STATE_SQL: &str = "CASE WHEN deleted_at IS NOT NULL THEN 'deleted' \
     WHEN enriched_at IS NULL OR updated_at > enriched_at THEN 'pending' \
     WHEN enrichment_version < $1 THEN 'stale' ELSE 'enriched' END";

/// One memory in a listing: its identity and enrichment, and the start of its content.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MemorySummary {
    pub id: Uuid,
    pub owner_id: String,
    pub memory_type: String,
    /// The first 80 characters of the content.
    pub preview: String,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub enriched_at: Option<DateTime<Utc>>,
    pub enrichment_version: i32,
    pub enrichment: EnrichmentState,
}

/// What a listing keeps. Soft-deleted memories appear only when `state` asks for them.
#[derive(Debug, Clone, Default)]
pub struct MemoryFilter {
    pub owner_id: Option<String>,
    pub memory_type: Option<String>,
    pub state: Option<EnrichmentState>,
    /// Only memories older than this one (the last of the previous page).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Memories newest first, with `version` the current enrichment pipeline's.
pub async fn list_memories(
    pool: &PgPool,
    filter: &MemoryFilter,
    version: i32,
) -> Result<Vec<MemorySummary>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM ( \
           SELECT id, owner_id, memory_type, left(content, 80) AS preview, tags, created_at, updated_at, \
             deleted_at, enriched_at, enrichment_version, {STATE_SQL} AS enrichment \
           FROM memories \
           WHERE ($2::text IS NULL OR owner_id = $2) AND ($3::text IS NULL OR memory_type = $3) \
             AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
             AND (deleted_at IS NULL OR $4::text = 'deleted')) m \
         WHERE $4::text IS NULL OR enrichment = $4 \
         ORDER BY created_at DESC, id DESC LIMIT $7"
    );
    let (before_at, before_id) = filter.before.unzip();
    sqlx::query_as(&sql)
        .bind(version)
        .bind(&filter.owner_id)
        .bind(&filter.memory_type)
        .bind(filter.state)
        .bind(before_at)
        .bind(before_id)
        .bind(filter.limit)
        .persistent(false)
        .fetch_all(pool)
        .await
}
