//! `GET /v1/memories`: the memories of the store, newest first, with where their enrichment
//! stands, so an operator can find what to reprocess.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use memwarden_jobs::memories::{list_memories, EnrichmentState, MemoryFilter, MemorySummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::cursor::{self, List};
use super::extract::{QueryParams, ReadyQueue};
use super::problem::{CommonErrors, Problem};
use crate::app::App;

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemoriesQuery {
    /// Only this owner's memories.
    pub owner: Option<String>,
    /// Only memories of this type (Decision, Preference, ...).
    #[serde(rename = "type")]
    pub memory_type: Option<String>,
    /// enriched, pending (never enriched for its current content), stale (an older pipeline)
    /// or deleted (soft-deleted, listed only when asked for).
    pub state: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A memory as the list shows it.
#[derive(Serialize, ToSchema)]
pub struct MemoryView {
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
    /// enriched, pending, stale or deleted.
    pub enrichment: &'static str,
}

impl From<MemorySummary> for MemoryView {
    fn from(m: MemorySummary) -> Self {
        MemoryView {
            enrichment: m.enrichment.as_str(),
            id: m.id,
            owner_id: m.owner_id,
            memory_type: m.memory_type,
            preview: m.preview,
            tags: m.tags,
            created_at: m.created_at,
            updated_at: m.updated_at,
            deleted_at: m.deleted_at,
            enriched_at: m.enriched_at,
            enrichment_version: m.enrichment_version,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemoryList {
    pub memories: Vec<MemoryView>,
    pub next_cursor: Option<String>,
}

/// A page ends at `(created_at, id)`: the cursor carries both, microseconds and uuid.
fn position(m: &MemorySummary) -> String {
    format!("{}/{}", m.created_at.timestamp_micros(), m.id)
}

fn parse_position(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = raw.split_once('/')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id.parse().ok()?,
    ))
}

#[utoipa::path(get, path = "/v1/memories", tag = "memories", params(MemoriesQuery), responses((status = 200, body = MemoryList), CommonErrors))]
pub async fn list(
    State(app): State<App>,
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<MemoriesQuery>,
) -> Result<Response, Problem> {
    let limit = cursor::page_limit(q.limit)?;
    let state = match &q.state {
        None => None,
        Some(s) => Some(EnrichmentState::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid_query",
                format!("query parameter `state`: unknown state `{s}` (enriched, pending, stale, deleted)"),
            )
        })?),
    };
    let before = match &q.cursor {
        None => None,
        Some(c) => {
            let raw: String = cursor::decode(List::Memories, c)?;
            Some(parse_position(&raw).ok_or_else(|| {
                Problem::bad_request(
                    "invalid_cursor",
                    "query parameter `cursor`: not a cursor this server issued",
                )
            })?)
        }
    };
    let filter = MemoryFilter {
        owner_id: q.owner.clone(),
        memory_type: q.memory_type.clone(),
        state,
        before,
        limit: limit + 1,
    };
    let version = crate::providers::enrichment_settings(&app.settings()).version;
    let mut rows = list_memories(queue.work_pool(), &filter, version).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|m| cursor::encode(List::Memories, position(m)))
        })
        .flatten();
    let headers = match &next_cursor {
        Some(c) => cursor::next_link(
            "/v1/memories",
            c,
            limit,
            &[
                ("owner", &q.owner),
                ("type", &q.memory_type),
                ("state", &q.state),
            ],
        ),
        None => Default::default(),
    };
    let memories = rows.into_iter().map(MemoryView::from).collect();
    Ok((
        headers,
        Json(MemoryList {
            memories,
            next_cursor,
        }),
    )
        .into_response())
}
