//! Native job routes: enqueue, list, show, cancel, retry and purge.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::{EnrichmentArgs, JobArgs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::cursor::{self, List};
use super::extract::{JsonBody, QueryParams, ReadyQueue};
use super::problem::{CommonErrors, Problem, ProblemDoc};
use crate::app::App;
use crate::config::Role;
use crate::queue::admin::{ActionError, ActionReply, JobDetail, JobFilter};
use crate::queue::job::{JobView, StatusFilter};
use crate::queue::purge::{self, PurgeCutoff, PurgeError, PurgeReport, PurgeRequest};
use crate::queue::{EnqueueError, NewJob, Queue, Status};

pub fn parse_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse().map_err(|_| {
        Problem::bad_request("invalid_id", format!("`{raw}` is not a job id (a UUID)"))
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Value,
    pub queue: Option<String>,
    pub priority: Option<i16>,
    #[serde(alias = "runAt")]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(alias = "maxAttempts")]
    pub max_attempts: Option<i32>,
    #[serde(alias = "uniqueKey")]
    pub unique_key: Option<String>,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

pub fn enqueue_problem(e: EnqueueError) -> Problem {
    match e {
        EnqueueError::UnknownKind(k) => Problem::bad_request(
            "unknown_kind",
            format!("field `kind`: unknown job kind `{k}`"),
        ),
        EnqueueError::ArgsNotObject => {
            Problem::bad_request("invalid_field", "field `args`: must be a JSON object")
        }
        EnqueueError::BadArgs { kind, reason } => Problem::bad_request(
            "invalid_args",
            format!("field `args`: not args of kind `{kind}`: {reason}"),
        ),
        EnqueueError::MaxAttempts => {
            Problem::bad_request("invalid_field", "field `max_attempts`: must be at least 1")
        }
        EnqueueError::QueueName => {
            Problem::bad_request("invalid_field", format!("field `queue`: {e}"))
        }
        EnqueueError::RunAt => Problem::bad_request(
            "invalid_field",
            "field `run_at`: must fall in the years 1 to 9999",
        ),
        EnqueueError::Database(e) => Problem::database("enqueue failed", e),
    }
}

/// The kinds an indexer key may enqueue (Memory Service's role matrix).
pub const INDEXER_KINDS: &[&str] = &[EnrichmentArgs::KIND, ReembedArgs::KIND];

#[derive(Serialize, ToSchema)]
pub struct EnqueueReply {
    pub id: Uuid,
    /// The job's status; `unknown` for a duplicate whose job was purged meanwhile.
    pub status: &'static str,
    /// True when the unique key was taken and `id` is the existing job.
    pub duplicate: bool,
}

/// `POST /v1/jobs` → 201 `{id, status}`, or 200 with the existing id for a taken unique key.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = EnqueueRequest, responses(
    (status = 201, body = EnqueueReply), (status = 200, description = "the unique key is taken: the existing job", body = EnqueueReply), CommonErrors))]
pub async fn enqueue(
    ReadyQueue(queue): ReadyQueue,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<EnqueueRequest>,
) -> Result<Response, Problem> {
    if caller.role == Some(Role::Indexer) && !INDEXER_KINDS.contains(&req.kind.as_str()) {
        return Err(Problem::forbidden(format!(
            "an indexer may enqueue only {}",
            INDEXER_KINDS.join(", ")
        )));
    }
    let job = NewJob {
        kind: req.kind,
        args: req.args,
        queue: req.queue,
        priority: req.priority.unwrap_or(0),
        run_at: req.run_at,
        max_attempts: req.max_attempts,
        unique_key: req.unique_key,
    };
    let r = queue.enqueue(job).await.map_err(enqueue_problem)?;
    let (code, status) = if r.inserted {
        (StatusCode::CREATED, Status::Available.as_str())
    } else {
        let status: Option<Status> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(r.id)
            .fetch_optional(queue.pool())
            .await?;
        (StatusCode::OK, status.map_or("unknown", Status::as_str))
    };
    let reply = EnqueueReply {
        id: r.id,
        status,
        duplicate: !r.inserted,
    };
    Ok((
        code,
        [(header::LOCATION, format!("/v1/jobs/{}", r.id))],
        Json(reply),
    )
        .into_response())
}

/// Unknown query parameters (tokens, justification) are ignored, as HTTP clients expect.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/jobs`: newest first; `next_cursor` and a `Link` header when there is more.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery), responses((status = 200, body = JobList), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, Problem> {
    let limit = cursor::page_limit(q.limit)?;
    let status = match &q.status {
        None => None,
        Some(s) => Some(StatusFilter::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid_query",
                format!("query parameter `status`: unknown status `{s}` (available, scheduled, running, retryable, succeeded, failed, canceled)"),
            )
        })?),
    };
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(cursor::decode::<Uuid>(List::Jobs, c)?),
    };
    let filter = JobFilter {
        queue: q.queue.clone(),
        kind: q.kind.clone(),
        status,
        before,
        limit: limit + 1,
    };
    let mut rows = queue.list_jobs(&filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| cursor::encode(List::Jobs, r.id)))
        .flatten();
    let headers = match &next_cursor {
        Some(c) => cursor::next_link(
            "/v1/jobs",
            c,
            limit,
            &[
                ("queue", &q.queue),
                ("kind", &q.kind),
                ("status", &q.status),
            ],
        ),
        None => Default::default(),
    };
    let jobs = rows.into_iter().map(JobView::from).collect();
    Ok((headers, Json(JobList { jobs, next_cursor })).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")), responses((status = 200, body = JobDetail), CommonErrors))]
pub async fn show(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, Problem> {
    let id = parse_id(&id)?;
    let detail = queue
        .job(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no job with id {id}")))?;
    Ok(Json(detail))
}

fn action_problem(e: ActionError) -> Problem {
    match e {
        ActionError::NotFound(_) => Problem::not_found(e.to_string()),
        ActionError::WrongState { .. } => Problem::conflict("invalid_state", e.to_string()),
        ActionError::UniqueTaken(_) => Problem::conflict("unique_key_taken", e.to_string()),
    }
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = ActionReply), (status = 409, description = "not in a cancellable state", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn cancel(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<ActionReply>, Problem> {
    let reply = queue
        .cancel(parse_id(&id)?)
        .await?
        .map_err(action_problem)?;
    Ok(Json(reply))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = ActionReply), (status = 409, description = "not failed or canceled, or its unique key is taken", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn retry(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<ActionReply>, Problem> {
    let reply = queue.retry(parse_id(&id)?).await?.map_err(action_problem)?;
    Ok(Json(reply))
}

/// A purge request in either casing (native snake_case, GoodMem camelCase).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    #[serde(alias = "olderThan")]
    pub older_than: Option<String>,
    #[serde(default)]
    pub statuses: Vec<String>,
    /// An int32 as GoodMem's `limit`: a larger number is refused, not clamped.
    pub limit: Option<i32>,
    #[serde(default, alias = "dryRun")]
    pub dry_run: bool,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

fn purge_problem(e: PurgeError) -> Problem {
    Problem::bad_request("invalid_purge", e.to_string())
}

/// Validates and runs a purge; shared by the native and GoodMem routes.
pub async fn run_purge(app: &App, queue: &Queue, body: PurgeBody) -> Result<PurgeReport, Problem> {
    let settings = app.settings();
    let cutoff = PurgeCutoff::parse(
        body.older_than.as_deref(),
        settings.purge.min_retention,
        Utc::now(),
    )
    .map_err(purge_problem)?;
    let req = PurgeRequest::new(
        cutoff,
        &body.statuses,
        body.limit.map(i64::from),
        body.dry_run,
    )
    .map_err(purge_problem)?;
    Ok(purge::purge(queue.pool(), &req, settings.purge.batch_size.get().into()).await?)
}

#[utoipa::path(post, path = "/v1/jobs/purge", tag = "jobs", request_body = PurgeBody, responses((status = 200, body = PurgeReport), CommonErrors))]
pub async fn purge_jobs(
    State(app): State<App>,
    ReadyQueue(queue): ReadyQueue,
    JsonBody(body): JsonBody<PurgeBody>,
) -> Result<Json<PurgeReport>, Problem> {
    Ok(Json(run_purge(&app, &queue, body).await?))
}
