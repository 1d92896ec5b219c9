//! Enqueue-and-follow for the kinds of work: `POST /v1/work/{kind}` (202, `?wait=true`, or SSE
//! progress) and the compatibility routes that wait for the job (Memory Service's evict).
//! Progress is read from the job row, not from in-process events, because any replica may run
//! the job; and the job runs to its end whether or not the client stays.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{JsonBody, QueryParams};
use super::jobs::{enqueue_problem, queue_of};
use super::openapi::CommonErrors;
use super::problem::Problem;
use crate::app::App;
use crate::queue::job::JobRow;
use crate::queue::{NewJob, Queue, Status};

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkQuery {
    /// Wait for the job and answer with its report.
    pub wait: Option<bool>,
    /// Memory Service: stream progress instead of waiting.
    #[serde(rename = "async")]
    pub is_async: Option<bool>,
}

pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

pub async fn enqueue_work(queue: &Queue, kind: &str, args: Value) -> Result<Uuid, Problem> {
    let r = queue
        .enqueue(NewJob::new(kind, args))
        .await
        .map_err(enqueue_problem)?;
    Ok(r.id)
}

async fn job_row(queue: &Queue, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM memwarden.jobs WHERE id = $1",
        JobRow::COLUMNS
    ))
    .bind(id)
    .fetch_optional(queue.pool())
    .await
}

fn is_terminal(row: &JobRow) -> bool {
    Status::parse(&row.status).is_some_and(Status::is_terminal)
}

/// How a followed job is written on the wire.
#[derive(Clone, Copy, PartialEq)]
pub enum SseDialect {
    /// `event: progress` / `event: report` / `event: error`, each with a JSON `data`.
    Native,
    /// Memory Service: bare `data: {"progress": N}` lines, and `event: error` on failure.
    MemoryService,
}

/// Follows a job on its row: progress while it changes, then its end.
pub fn follow(queue: Queue, id: Uuid, dialect: SseDialect) -> impl IntoResponse {
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(async_stream::stream! {
            let mut last = -1i16;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let row = match job_row(&queue, id).await {
                    Ok(Some(row)) => row,
                    Ok(None) => {
                        yield Ok(SseEvent::default().event("error").data(json!({"error": "the job is gone"}).to_string()));
                        return;
                    }
                    // A passing database error: keep following.
                    Err(_) => continue,
                };
                let progress = if row.status == "succeeded" { 100 } else { row.progress };
                if progress != last {
                    last = progress;
                    let data = json!({"progress": progress}).to_string();
                    yield Ok(match dialect {
                        SseDialect::Native => SseEvent::default().event("progress").data(data),
                        SseDialect::MemoryService => SseEvent::default().data(data),
                    });
                }
                if is_terminal(&row) {
                    if row.status == "succeeded" {
                        if dialect == SseDialect::Native {
                            let report = row.result.clone().unwrap_or(Value::Null);
                            yield Ok(SseEvent::default().event("report").data(report.to_string()));
                        }
                    } else {
                        let error = row.last_error.clone().unwrap_or_else(|| format!("the job ended {}", row.status));
                        yield Ok(SseEvent::default().event("error").data(json!({"error": error}).to_string()));
                    }
                    return;
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Waits for the job's end: its report, or a problem that says why it failed.
pub async fn wait_report(queue: &Queue, id: Uuid) -> Result<Value, Problem> {
    let row = queue.wait_for(id).await?;
    if row.status == "succeeded" {
        Ok(row.result.unwrap_or(Value::Null))
    } else {
        Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job_failed",
            "Job Failed",
        )
        .with_detail(format!(
            "job {id} ended {}: {}",
            row.status,
            row.last_error.unwrap_or_default()
        )))
    }
}

/// 202 with where to look, 200 with the report (`?wait=true`), or SSE.
pub async fn respond(
    queue: &Queue,
    id: Uuid,
    query: &WorkQuery,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    if wants_sse(headers) {
        return Ok(follow(queue.clone(), id, SseDialect::Native).into_response());
    }
    if query.wait.unwrap_or(false) {
        let report = wait_report(queue, id).await?;
        return Ok(
            Json(json!({"job_id": id, "status": "succeeded", "report": report})).into_response(),
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/jobs/{id}"))],
        Json(json!({"job_id": id, "status_url": format!("/v1/jobs/{id}")})),
    )
        .into_response())
}

/// `POST /v1/work/evict`: `{retention_period, resource_types?, dry_run?}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvictRequest {
    #[serde(alias = "retentionPeriod")]
    pub retention_period: Option<String>,
    #[serde(default, alias = "resourceTypes")]
    pub resource_types: Vec<String>,
    #[serde(default, alias = "dryRun")]
    pub dry_run: bool,
    pub justification: Option<String>,
}

/// Validates an eviction request (400 naming the field) into the job's args.
pub fn eviction_args(req: EvictRequest) -> Result<Value, Problem> {
    use memwarden_jobs::eviction::{parse_resource_types, RetentionPeriod};
    let bad = |e: memwarden_jobs::eviction::EvictionInputError| {
        Problem::bad_request("invalid_field", e.to_string())
    };
    let retention = RetentionPeriod::parse(req.retention_period.as_deref()).map_err(bad)?;
    retention.cutoff(chrono::Utc::now()).map_err(bad)?;
    let types = parse_resource_types(&req.resource_types).map_err(bad)?;
    Ok(json!({
        "retention_period": retention.as_str(),
        "resource_types": types,
        "dry_run": req.dry_run,
        "justification": req.justification,
    }))
}

/// Validates an eviction request and enqueues its job.
async fn enqueue_eviction(app: &App, req: EvictRequest) -> Result<(&Queue, Uuid), Problem> {
    let queue = queue_of(app)?;
    let id = enqueue_work(queue, "eviction", eviction_args(req)?).await?;
    Ok((queue, id))
}

/// Enqueues the kind's job and answers as the native work routes do (`respond`).
pub async fn enqueue_and_respond(
    app: &App,
    kind: &str,
    args: Value,
    query: &WorkQuery,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let queue = queue_of(app)?;
    let id = enqueue_work(queue, kind, args).await?;
    respond(queue, id, query, headers).await
}

#[utoipa::path(post, path = "/v1/work/evict", tag = "work", params(WorkQuery), request_body = EvictRequest,
    responses((status = 202, description = "enqueued", body = Object), (status = 200, description = "?wait=true: the report", body = Object),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn evict(
    State(app): State<App>,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<EvictRequest>,
) -> Result<Response, Problem> {
    enqueue_and_respond(&app, "eviction", eviction_args(req)?, &query, &headers).await
}

/// Memory Service's `POST /v1/admin/evict`: 204 when the eviction completes; with
/// `?async=true` or `Accept: text/event-stream`, `data: {"progress": N}` lines to 100.
#[utoipa::path(post, path = "/v1/admin/evict", tag = "memory-service", params(WorkQuery), request_body = EvictRequest,
    responses((status = 204, description = "the eviction completed"), (status = 200, description = "progress stream", content_type = "text/event-stream", body = String),
        (status = 500, description = "the eviction failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn memory_service_evict(
    State(app): State<App>,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<EvictRequest>,
) -> Result<Response, Problem> {
    let (queue, id) = enqueue_eviction(&app, req).await?;
    if query.is_async.unwrap_or(false) || wants_sse(&headers) {
        return Ok(follow(queue.clone(), id, SseDialect::MemoryService).into_response());
    }
    wait_report(queue, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
