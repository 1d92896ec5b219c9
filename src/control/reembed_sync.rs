//! Re-embedding and drift repair: AutoMem's synchronous `POST /admin/reembed` and
//! `POST /admin/sync` (200 with the job's report when it ends), and the native
//! `POST /v1/work/reembed` and `POST /v1/work/sync` (202, `?wait=true`, or SSE progress).
//! Either way the work is a job: it runs to its end whether or not the client stays.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use memwarden_jobs::reembed::{self, InputError, ReembedArgs};
use memwarden_jobs::sync::SyncArgs;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{JsonBody, QueryParams};
use super::jobs::queue_of;
use super::openapi::CommonErrors;
use super::problem::Problem;
use super::work::{enqueue_and_respond, enqueue_work, wait_report, WorkQuery};
use crate::app::App;

/// `{batch_size?, limit?, force?}`. Fields are checked here, so a wrong one is a 400 that
/// names it rather than a parse error.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReembedRequest {
    /// Texts per provider request: 1 to 2048 (default 32).
    #[schema(value_type = Option<u32>)]
    pub batch_size: Option<Value>,
    /// At most this many memories (default: all).
    #[schema(value_type = Option<u64>)]
    pub limit: Option<Value>,
    /// Also re-embed memories whose embedding is fresh.
    #[schema(value_type = Option<bool>)]
    pub force: Option<Value>,
    /// Read by the audit layer from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

/// `{batch_size?, dry_run?}`.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Texts per provider request when repairing: 1 to 2048 (default 32).
    #[schema(value_type = Option<u32>)]
    pub batch_size: Option<Value>,
    /// Count drift (with up to 10 sample ids per kind) and change nothing.
    #[schema(value_type = Option<bool>)]
    pub dry_run: Option<Value>,
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

fn invalid(e: InputError) -> Problem {
    Problem::bad_request("invalid_field", e.to_string())
}

fn reembed_args(req: &ReembedRequest) -> Result<Value, Problem> {
    let args = ReembedArgs {
        batch_size: reembed::parse_batch_size(req.batch_size.as_ref()).map_err(invalid)?,
        limit: reembed::parse_limit(req.limit.as_ref()).map_err(invalid)?,
        force: reembed::parse_flag("force", req.force.as_ref()).map_err(invalid)?,
    };
    Ok(serde_json::to_value(args).unwrap_or_default())
}

fn sync_args(req: &SyncRequest) -> Result<Value, Problem> {
    let args = SyncArgs {
        batch_size: reembed::parse_batch_size(req.batch_size.as_ref()).map_err(invalid)?,
        dry_run: reembed::parse_flag("dry_run", req.dry_run.as_ref()).map_err(invalid)?,
    };
    Ok(serde_json::to_value(args).unwrap_or_default())
}

/// Enqueues the kind's job and waits for its report (AutoMem's synchronous routes).
async fn run_and_wait(app: &App, kind: &str, args: Value) -> Result<Response, Problem> {
    let queue = queue_of(app)?;
    let id = enqueue_work(queue, kind, args).await?;
    Ok(Json(wait_report(queue, id).await?).into_response())
}

#[utoipa::path(post, path = "/admin/reembed", tag = "automem", request_body = ReembedRequest,
    responses((status = 200, description = "the report: `{status, processed, failed, total, batch_size, metadata_preserved, ...}`", body = Object),
        (status = 500, description = "the reembed failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn automem_reembed(
    State(app): State<App>,
    JsonBody(req): JsonBody<ReembedRequest>,
) -> Result<Response, Problem> {
    run_and_wait(&app, "reembed", reembed_args(&req)?).await
}

#[utoipa::path(post, path = "/admin/sync", tag = "automem", request_body = SyncRequest,
    responses((status = 200, description = "the report: drift found (counts and samples), what was repaired, drift left", body = Object),
        (status = 500, description = "the sync failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn automem_sync(
    State(app): State<App>,
    JsonBody(req): JsonBody<SyncRequest>,
) -> Result<Response, Problem> {
    run_and_wait(&app, "sync", sync_args(&req)?).await
}

#[utoipa::path(post, path = "/v1/work/reembed", tag = "work", params(WorkQuery), request_body = ReembedRequest,
    responses((status = 202, description = "enqueued: `{job_id, status_url}`", body = Object), (status = 200, description = "?wait=true: the report", body = Object),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn work_reembed(
    State(app): State<App>,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ReembedRequest>,
) -> Result<Response, Problem> {
    enqueue_and_respond(&app, "reembed", reembed_args(&req)?, &query, &headers).await
}

#[utoipa::path(post, path = "/v1/work/sync", tag = "work", params(WorkQuery), request_body = SyncRequest,
    responses((status = 202, description = "enqueued: `{job_id, status_url}`", body = Object), (status = 200, description = "?wait=true: the report", body = Object),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = super::openapi::ProblemDoc), CommonErrors))]
pub async fn work_sync(
    State(app): State<App>,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SyncRequest>,
) -> Result<Response, Problem> {
    enqueue_and_respond(&app, "sync", sync_args(&req)?, &query, &headers).await
}
