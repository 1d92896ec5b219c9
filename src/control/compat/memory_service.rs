//! Memory Service's admin surface (camelCase): `POST /v1/admin/evict` (204 when the eviction
//! completes; with `?async=true` or `Accept: text/event-stream`, `data: {"progress": N}` lines
//! to 100) and `GET /v1/admin/events` (the native event stream).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use memwarden_jobs::eviction::EvictionArgs;
use memwarden_jobs::JobArgs;

use crate::app::App;
use crate::control::events::{self, EventsQuery};
use crate::control::extract::{JsonBody, QueryParams, ReadyQueue};
use crate::control::follow::{enqueue_work, follow, wait_report, wants_sse, SseDialect, WorkQuery};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};
use crate::control::work::{eviction_args, EvictRequest};

#[utoipa::path(post, path = "/v1/admin/evict", tag = "memory-service", params(WorkQuery), request_body = EvictRequest,
    responses((status = 204, description = "the eviction completed"), (status = 200, description = "progress stream", content_type = "text/event-stream", body = String),
        (status = 500, description = "the eviction failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn evict(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<EvictRequest>,
) -> Result<Response, Problem> {
    let id = enqueue_work(&queue, EvictionArgs::KIND, eviction_args(req)?).await?;
    if query.is_async.unwrap_or(false) || wants_sse(&headers) {
        return Ok(follow(queue, id, SseDialect::MemoryService).into_response());
    }
    wait_report(&queue, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/admin/events", tag = "memory-service", params(EventsQuery),
    responses((status = 200, description = "Server-Sent Events of job and lifecycle changes", content_type = "text/event-stream", body = String), CommonErrors))]
pub async fn events(
    state: State<App>,
    queue: ReadyQueue,
    query: QueryParams<EventsQuery>,
) -> Result<impl IntoResponse, Problem> {
    events::stream(state, queue, query).await
}
