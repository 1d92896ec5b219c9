//! Native job routes: enqueue, list, show, cancel, retry and purge.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::Caller;
use super::extract::{JsonBody, QueryParams};
use super::openapi::{
    ActionReplyDoc, CommonErrors, EnqueueReply, JobDetailDoc, JobList, ProblemDoc,
};
use super::problem::Problem;
use crate::app::App;
use crate::config::Role;
use crate::queue::admin::{decode_cursor, encode_cursor, ActionError, JobFilter};
use crate::queue::purge::{self, PurgeCutoff, PurgeError, PurgeReport, PurgeRequest};
use crate::queue::{EnqueueError, NewJob, Queue, Status};

/// The queue, or 503 while the daemon is still starting.
pub fn queue_of(app: &App) -> Result<&Queue, Problem> {
    app.queue().ok_or_else(|| {
        Problem::unavailable("the daemon is starting and has not reached its database yet")
    })
}

pub fn parse_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse().map_err(|_| {
        Problem::bad_request("invalid_id", format!("`{raw}` is not a job id (a UUID)"))
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
        EnqueueError::MaxAttempts => {
            Problem::bad_request("invalid_field", "field `max_attempts`: must be at least 1")
        }
        EnqueueError::QueueName => {
            Problem::bad_request("invalid_field", format!("field `queue`: {e}"))
        }
        EnqueueError::Database(e) => Problem::database("enqueue failed", e),
    }
}

/// The kinds an indexer key may enqueue (Memory Service's role matrix).
pub const INDEXER_KINDS: &[&str] = &["enrichment", "reembed"];

/// `POST /v1/jobs` → 201 `{id, status}`, or 200 with the existing id for a taken unique key.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = EnqueueRequest, responses(
    (status = 201, body = EnqueueReply), (status = 200, description = "the unique key is taken: the existing job", body = EnqueueReply), CommonErrors))]
pub async fn enqueue(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<EnqueueRequest>,
) -> Result<Response, Problem> {
    let queue = queue_of(&app)?;
    if caller.role == Some(Role::Indexer) && !INDEXER_KINDS.contains(&req.kind.as_str()) {
        return Err(
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(format!(
                "an indexer may enqueue only {}",
                INDEXER_KINDS.join(", ")
            )),
        );
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
        (StatusCode::CREATED, "available".to_string())
    } else {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM memwarden.jobs WHERE id = $1")
                .bind(r.id)
                .fetch_optional(queue.pool())
                .await?;
        (StatusCode::OK, status.unwrap_or_else(|| "unknown".into()))
    };
    Ok((
        code,
        [(header::LOCATION, format!("/v1/jobs/{}", r.id))],
        Json(json!({"id": r.id, "status": status, "duplicate": !r.inserted})),
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

pub const LIST_DEFAULT: i64 = 50;
pub const LIST_MAX: i64 = 500;

pub fn page_limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit.unwrap_or(LIST_DEFAULT) {
        n if (1..=LIST_MAX).contains(&n) => Ok(n),
        n => Err(Problem::bad_request(
            "invalid_query",
            format!("query parameter `limit`: must be 1 to {LIST_MAX}, got {n}"),
        )),
    }
}

/// `GET /v1/jobs`: newest first; `next_cursor` and a `Link` header when there is more.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery), responses((status = 200, body = JobList), CommonErrors))]
pub async fn list(
    State(app): State<App>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, Problem> {
    let queue = queue_of(&app)?;
    let limit = page_limit(q.limit)?;
    if let Some(s) = &q.status {
        if s != "scheduled" && Status::parse(s).is_none() {
            return Err(Problem::bad_request(
                "invalid_query",
                format!("query parameter `status`: unknown status `{s}` (available, scheduled, running, retryable, succeeded, failed, canceled)"),
            ));
        }
    }
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            Problem::bad_request(
                "invalid_cursor",
                "query parameter `cursor`: not a cursor this server issued",
            )
        })?),
    };
    let filter = JobFilter {
        queue: q.queue.clone(),
        kind: q.kind.clone(),
        status: q.status.clone().map(|s| {
            if s == "cancelled" {
                "canceled".into()
            } else {
                s
            }
        }),
        before,
        limit: limit + 1,
    };
    let mut rows = queue.list_jobs(&filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    let jobs: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["status"] = json!(r.display_status());
            v
        })
        .collect();
    let mut headers = HeaderMap::new();
    if let Some(cursor) = &next {
        let mut params: Vec<(String, String)> = vec![
            ("cursor".into(), cursor.clone()),
            ("limit".into(), limit.to_string()),
        ];
        for (k, v) in [
            ("queue", &q.queue),
            ("kind", &q.kind),
            ("status", &q.status),
        ] {
            if let Some(v) = v {
                params.push((k.into(), v.clone()));
            }
        }
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!("</v1/jobs?{query}>; rel=\"next\"")) {
            headers.insert(header::LINK, v);
        }
    }
    Ok((headers, Json(json!({"jobs": jobs, "next_cursor": next}))).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")), responses((status = 200, body = JobDetailDoc), CommonErrors))]
pub async fn show(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let queue = queue_of(&app)?;
    let id = parse_id(&id)?;
    let detail = queue
        .job(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no job with id {id}")))?;
    let mut v = serde_json::to_value(&detail).unwrap_or_default();
    v["status"] = json!(detail.job.display_status());
    Ok(Json(v))
}

fn action_problem(e: ActionError) -> Problem {
    match e {
        ActionError::NotFound(_) => Problem::not_found(e.to_string()),
        ActionError::WrongState { .. } => Problem::conflict("invalid_state", e.to_string()),
        ActionError::UniqueTaken(_) => Problem::conflict("unique_key_taken", e.to_string()),
    }
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = ActionReplyDoc), (status = 409, description = "not in a cancellable state", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let queue = queue_of(&app)?;
    let reply = queue
        .cancel(parse_id(&id)?)
        .await?
        .map_err(action_problem)?;
    Ok(Json(serde_json::to_value(reply).unwrap_or_default()))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = ActionReplyDoc), (status = 409, description = "not failed or canceled, or its unique key is taken", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn retry(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let queue = queue_of(&app)?;
    let reply = queue.retry(parse_id(&id)?).await?.map_err(action_problem)?;
    Ok(Json(serde_json::to_value(reply).unwrap_or_default()))
}

/// A purge request in either casing (native snake_case, GoodMem camelCase).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    #[serde(alias = "olderThan")]
    pub older_than: Option<String>,
    #[serde(default)]
    pub statuses: Vec<String>,
    pub limit: Option<i64>,
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
pub async fn run_purge(app: &App, body: PurgeBody) -> Result<PurgeReport, Problem> {
    let queue = queue_of(app)?;
    let settings = app.settings();
    let min = std::time::Duration::from_secs_f64(settings.purge.min_retention);
    let cutoff =
        PurgeCutoff::parse(body.older_than.as_deref(), min, Utc::now()).map_err(purge_problem)?;
    let req = PurgeRequest::new(cutoff, &body.statuses, body.limit, body.dry_run)
        .map_err(purge_problem)?;
    Ok(purge::purge(queue.pool(), &req, settings.purge.batch_size).await?)
}

#[utoipa::path(post, path = "/v1/jobs/purge", tag = "jobs", request_body = PurgeBody, responses((status = 200, body = PurgeReport), CommonErrors))]
pub async fn purge_jobs(
    State(app): State<App>,
    JsonBody(body): JsonBody<PurgeBody>,
) -> Result<Json<PurgeReport>, Problem> {
    Ok(Json(run_purge(&app, body).await?))
}
