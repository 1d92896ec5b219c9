//! AutoMem's enrichment surface (snake_case): `GET /enrichment/status` and
//! `POST /enrichment/reprocess`, and the native `POST /v1/work/reprocess`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{JsonBody, QueryParams};
use super::jobs::{enqueue_problem, queue_of};
use super::openapi::CommonErrors;
use super::problem::Problem;
use super::work::{respond, WorkQuery};
use crate::app::App;
use crate::kinds::ENRICHMENT_STATS;
use crate::lifecycle::State as Lifecycle;
use crate::queue::{NewJob, Queue};

/// AutoMem's enrichment status, with its meanings: `queue_depth` is every enrichment job not
/// yet finished, `pending` those waiting, `inflight` those running; `processed` and `failed`
/// count since this process started.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrichmentStatusReply {
    /// `running` while the worker claims work, `stopped` otherwise.
    pub status: String,
    pub queue_depth: i64,
    pub pending: i64,
    pub inflight: i64,
    pub processed: u64,
    pub failed: u64,
}

#[utoipa::path(get, path = "/enrichment/status", tag = "automem", security(()),
    responses((status = 200, body = EnrichmentStatusReply), CommonErrors))]
pub async fn status(State(app): State<App>) -> Result<Json<EnrichmentStatusReply>, Problem> {
    let queue = queue_of(&app)?;
    let (pending, inflight): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status IN ('available', 'retryable')), count(*) FILTER (WHERE status = 'running') \
         FROM memwarden.jobs WHERE kind = 'enrichment' AND status IN ('available', 'retryable', 'running')",
    )
    .fetch_one(queue.pool())
    .await?;
    let running = app.lifecycle().state() == Lifecycle::Ready;
    Ok(Json(EnrichmentStatusReply {
        status: if running { "running" } else { "stopped" }.into(),
        queue_depth: pending + inflight,
        pending,
        inflight,
        processed: ENRICHMENT_STATS.processed.load(Ordering::Relaxed),
        failed: ENRICHMENT_STATS.failed.load(Ordering::Relaxed),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprocessRequest {
    /// Memory ids (UUIDs); at least one.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Read by the audit layer from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

fn parse_ids(raw: &[String]) -> Result<Vec<Uuid>, Problem> {
    if raw.is_empty() {
        return Err(Problem::bad_request(
            "invalid_field",
            "field `ids`: at least one memory id is required",
        ));
    }
    raw.iter()
        .map(|s| {
            s.parse::<Uuid>().map_err(|_| {
                Problem::bad_request("invalid_field", format!("field `ids`: `{s}` is not a UUID"))
            })
        })
        .collect()
}

/// Enqueues one enrichment job per memory, without a unique key: re-queueing is forced even
/// when a job for that memory is pending (enrichment is idempotent).
async fn enqueue_reprocess(queue: &Queue, ids: &[Uuid]) -> Result<Vec<Uuid>, Problem> {
    let jobs = ids
        .iter()
        .map(|id| NewJob {
            priority: 5,
            ..NewJob::new("enrichment", json!({"memory_id": id}))
        })
        .collect();
    let done = queue.enqueue_many(jobs).await.map_err(enqueue_problem)?;
    Ok(done.into_iter().map(|e| e.id).collect())
}

#[utoipa::path(post, path = "/enrichment/reprocess", tag = "automem", request_body = ReprocessRequest,
    responses((status = 202, description = "`{status: \"queued\", count, ids}`", body = Object), CommonErrors))]
pub async fn reprocess(
    State(app): State<App>,
    JsonBody(req): JsonBody<ReprocessRequest>,
) -> Result<Response, Problem> {
    let queue = queue_of(&app)?;
    let ids = parse_ids(&req.ids)?;
    enqueue_reprocess(queue, &ids).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "count": ids.len(), "ids": ids})),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/work/reprocess", tag = "work", params(WorkQuery), request_body = ReprocessRequest,
    responses((status = 202, description = "enqueued: `{job_id, job_ids, status_url}`", body = Object),
        (status = 200, description = "?wait=true: the reports", body = Object), CommonErrors))]
pub async fn work_reprocess(
    State(app): State<App>,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ReprocessRequest>,
) -> Result<Response, Problem> {
    let queue = queue_of(&app)?;
    let ids = parse_ids(&req.ids)?;
    let jobs = enqueue_reprocess(queue, &ids).await?;
    if jobs.len() == 1 || query.wait != Some(true) {
        let mut resp = respond(queue, jobs[0], &query, &headers).await?;
        if resp.status() == StatusCode::ACCEPTED {
            resp = (StatusCode::ACCEPTED, Json(json!({"job_id": jobs[0], "job_ids": jobs, "status_url": format!("/v1/jobs/{}", jobs[0])})))
                .into_response();
        }
        return Ok(resp);
    }
    let mut reports: Vec<Value> = Vec::with_capacity(jobs.len());
    for id in &jobs {
        reports.push(super::work::wait_report(queue, *id).await?);
    }
    Ok(Json(json!({"job_ids": jobs, "status": "succeeded", "reports": reports})).into_response())
}
