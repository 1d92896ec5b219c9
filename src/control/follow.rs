//! Following a job that a route enqueued: answer at once (202 and where to look), wait for its
//! report, or stream its progress as Server-Sent Events. Progress is read from the job row,
//! not from in-process events, because any replica may run the job; and the job runs to its
//! end whether or not the client stays.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::jobs::enqueue_problem;
use super::problem::Problem;
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
        "SELECT {} FROM jobs WHERE id = $1",
        JobRow::COLUMNS
    ))
    .bind(id)
    .fetch_optional(queue.pool())
    .await
}

/// How a followed job is written on the wire.
#[derive(Clone, Copy, PartialEq)]
pub enum SseDialect {
    /// `event: progress` / `event: report` / `event: error`, each with a JSON `data`; a failed
    /// attempt that will be retried is `event: retry` with `{error, attempt, run_at}`.
    Native,
    /// Memory Service: bare `data: {"progress": N}` lines, and `event: error` with
    /// `{"error": "..."}` on failure, a failed attempt that will be retried included (the stream
    /// then goes on following the retry to its end).
    MemoryService,
}

impl SseDialect {
    /// The event for an attempt that failed and will be retried.
    fn retrying(self, row: &JobRow) -> SseEvent {
        let error = row.last_error.clone().unwrap_or_default();
        match self {
            SseDialect::Native => SseEvent::default().event("retry").data(
                json!({"error": error, "attempt": row.attempt, "run_at": row.run_at}).to_string(),
            ),
            SseDialect::MemoryService => SseEvent::default()
                .event("error")
                .data(json!({"error": error}).to_string()),
        }
    }
}

/// Follows a job on its row: progress while it changes, then its end.
pub fn follow(queue: Queue, id: Uuid, dialect: SseDialect) -> impl IntoResponse {
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(async_stream::stream! {
            let mut last = -1i16;
            // The last attempt whose failure was reported: a retryable row is reported once.
            let mut failure_reported = 0;
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
                if row.status == Status::Retryable && row.attempt > failure_reported {
                    failure_reported = row.attempt;
                    yield Ok(dialect.retrying(&row));
                }
                let succeeded = row.status == Status::Succeeded;
                let progress = if succeeded { 100 } else { row.progress };
                if progress != last {
                    last = progress;
                    let data = json!({"progress": progress}).to_string();
                    yield Ok(match dialect {
                        SseDialect::Native => SseEvent::default().event("progress").data(data),
                        SseDialect::MemoryService => SseEvent::default().data(data),
                    });
                }
                if row.is_terminal() {
                    if succeeded {
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
    if row.status == Status::Succeeded {
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

/// `202`: the job is enqueued; follow it at `status_url`.
#[derive(Serialize, ToSchema)]
pub struct WorkAccepted {
    pub job_id: Uuid,
    pub status_url: String,
}

/// `?wait=true`: the job ended with this report.
#[derive(Serialize, ToSchema)]
pub struct WorkDone {
    pub job_id: Uuid,
    /// Always `succeeded`: a failed job is a 500 problem.
    pub status: Status,
    #[schema(value_type = Object)]
    pub report: Value,
}

pub fn accepted(id: Uuid) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/jobs/{id}"))],
        Json(WorkAccepted {
            job_id: id,
            status_url: format!("/v1/jobs/{id}"),
        }),
    )
        .into_response()
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
        return Ok(Json(WorkDone {
            job_id: id,
            status: Status::Succeeded,
            report,
        })
        .into_response());
    }
    Ok(accepted(id))
}
