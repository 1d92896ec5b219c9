//! The kinds of work, native: `POST /v1/work/{evict,reembed,sync,reprocess}` enqueue the job
//! and answer as `follow::respond` does (202, `?wait=true`, or SSE progress). The args built
//! and checked here are shared with the compatibility routes that start the same work.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use memwarden_jobs::eviction::{
    parse_resource_types, EvictionArgs, EvictionInputError, RetentionPeriod,
};
use memwarden_jobs::reembed::{self, InputError, ReembedArgs};
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::{EnrichmentArgs, JobArgs};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{JsonBody, QueryParams, ReadyQueue};
use super::follow::{enqueue_work, respond, wait_report, WorkAccepted, WorkDone, WorkQuery};
use super::jobs::enqueue_problem;
use super::problem::{CommonErrors, Problem, ProblemDoc};
use crate::queue::{NewJob, Queue, Status};

/// `{retention_period, resource_types?, dry_run?}`, in snake_case or camelCase.
#[derive(Debug, Deserialize, ToSchema)]
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
    let bad = |e: EvictionInputError| Problem::bad_request("invalid_field", e.to_string());
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

/// `{batch_size?, limit?, force?}`. Fields are checked here, so a wrong one is a 400 that
/// names it rather than a parse error.
#[derive(Debug, Deserialize, Default, ToSchema)]
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
#[derive(Debug, Deserialize, Default, ToSchema)]
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

pub fn reembed_args(req: &ReembedRequest) -> Result<Value, Problem> {
    let args = ReembedArgs {
        batch_size: reembed::parse_batch_size(req.batch_size.as_ref()).map_err(invalid)?,
        limit: reembed::parse_limit(req.limit.as_ref()).map_err(invalid)?,
        force: reembed::parse_flag("force", req.force.as_ref()).map_err(invalid)?,
    };
    Ok(serde_json::to_value(args).unwrap_or_default())
}

pub fn sync_args(req: &SyncRequest) -> Result<Value, Problem> {
    let args = SyncArgs {
        batch_size: reembed::parse_batch_size(req.batch_size.as_ref()).map_err(invalid)?,
        dry_run: reembed::parse_flag("dry_run", req.dry_run.as_ref()).map_err(invalid)?,
    };
    Ok(serde_json::to_value(args).unwrap_or_default())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprocessRequest {
    /// Memory ids (UUIDs); at least one.
    #[serde(default)]
    pub ids: Vec<String>,
    /// AutoMem's documented workflow sends `"force": true`. A reprocess always runs the
    /// pipeline again, as AutoMem's does, so `false` is taken too and changes nothing.
    #[serde(default, rename = "force")]
    pub _force: Option<bool>,
    /// Read by the audit layer from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

pub fn parse_ids(raw: &[String]) -> Result<Vec<Uuid>, Problem> {
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
pub async fn enqueue_reprocess(queue: &Queue, ids: &[Uuid]) -> Result<Vec<Uuid>, Problem> {
    let jobs = ids
        .iter()
        .map(|id| NewJob {
            priority: 5,
            ..NewJob::new(
                EnrichmentArgs::KIND,
                json!({"memory_id": id, "forced": true}),
            )
        })
        .collect();
    let done = queue.enqueue_many(jobs).await.map_err(enqueue_problem)?;
    Ok(done.into_iter().map(|e| e.id).collect())
}

async fn enqueue_and_respond(
    queue: &Queue,
    kind: &str,
    args: Value,
    query: &WorkQuery,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let id = enqueue_work(queue, kind, args).await?;
    respond(queue, id, query, headers).await
}

#[utoipa::path(post, path = "/v1/work/evict", tag = "work", params(WorkQuery), request_body = EvictRequest,
    responses((status = 202, description = "enqueued", body = WorkAccepted), (status = 200, description = "?wait=true: the report", body = WorkDone),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn evict(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<EvictRequest>,
) -> Result<Response, Problem> {
    let args = eviction_args(req)?;
    enqueue_and_respond(&queue, EvictionArgs::KIND, args, &query, &headers).await
}

#[utoipa::path(post, path = "/v1/work/reembed", tag = "work", params(WorkQuery), request_body = ReembedRequest,
    responses((status = 202, description = "enqueued", body = WorkAccepted), (status = 200, description = "?wait=true: the report", body = WorkDone),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn reembed(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ReembedRequest>,
) -> Result<Response, Problem> {
    let args = reembed_args(&req)?;
    enqueue_and_respond(&queue, ReembedArgs::KIND, args, &query, &headers).await
}

#[utoipa::path(post, path = "/v1/work/sync", tag = "work", params(WorkQuery), request_body = SyncRequest,
    responses((status = 202, description = "enqueued", body = WorkAccepted), (status = 200, description = "?wait=true: the report", body = WorkDone),
        (status = 500, description = "?wait=true and the job failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn sync(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SyncRequest>,
) -> Result<Response, Problem> {
    let args = sync_args(&req)?;
    enqueue_and_respond(&queue, SyncArgs::KIND, args, &query, &headers).await
}

/// The jobs of a reprocess: the first one's status URL, and every id.
#[derive(Serialize, ToSchema)]
pub struct ReprocessAccepted {
    pub job_id: Uuid,
    pub job_ids: Vec<Uuid>,
    pub status_url: String,
}

/// `?wait=true` with several memories: every job's report, in the order of `ids`.
#[derive(Serialize, ToSchema)]
pub struct ReprocessDone {
    pub job_ids: Vec<Uuid>,
    pub status: Status,
    #[schema(value_type = Vec<Object>)]
    pub reports: Vec<Value>,
}

#[utoipa::path(post, path = "/v1/work/reprocess", tag = "work", params(WorkQuery), request_body = ReprocessRequest,
    responses((status = 202, description = "enqueued", body = ReprocessAccepted),
        (status = 200, description = "?wait=true: `WorkDone` for one memory, `ReprocessDone` for several", body = Object), CommonErrors))]
pub async fn reprocess(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(query): QueryParams<WorkQuery>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ReprocessRequest>,
) -> Result<Response, Problem> {
    let ids = parse_ids(&req.ids)?;
    let jobs = enqueue_reprocess(&queue, &ids).await?;
    let first = jobs[0];
    if jobs.len() == 1 || query.wait != Some(true) {
        let resp = respond(&queue, first, &query, &headers).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Ok(resp);
        }
        let accepted = ReprocessAccepted {
            job_id: first,
            status_url: format!("/v1/jobs/{first}"),
            job_ids: jobs,
        };
        return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
    }
    let mut reports: Vec<Value> = Vec::with_capacity(jobs.len());
    for id in &jobs {
        reports.push(wait_report(&queue, *id).await?);
    }
    Ok(Json(ReprocessDone {
        job_ids: jobs,
        status: Status::Succeeded,
        reports,
    })
    .into_response())
}
