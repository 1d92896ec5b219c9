//! Cron schedules over HTTP, with strong ETags: `If-Match` must match to change or delete,
//! and `If-None-Match: *` creates only when absent.

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::extract::{JsonBody, ReadyQueue};
use super::problem::{CommonErrors, Problem, ProblemDoc};
use crate::cron_spec::CronSpec;
use crate::queue::cron::{list_schedules, Schedule, SCHEDULE_COLUMNS};
use crate::queue::enqueue::valid_queue_name;
use crate::queue::Queue;

fn valid_name(name: &str) -> Result<(), Problem> {
    if valid_queue_name(name) {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "invalid_name",
            format!("`{name}` is not a schedule name (letters, digits, '-', '_', '.')"),
        ))
    }
}

async fn fetch(queue: &Queue, name: &str) -> Result<Option<Schedule>, Problem> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(queue.pool())
    .await?)
}

/// A schedule as the control port shows it: its row, when it fires next, and its ETag.
#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub next_tick_at: Option<DateTime<Utc>>,
    pub etag: String,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        ScheduleView {
            next_tick_at: s.next_tick(),
            etag: s.etag(),
            schedule: s,
        }
    }
}

fn respond(status: StatusCode, s: Schedule) -> Response {
    (
        status,
        [(header::ETAG, s.etag())],
        Json(ScheduleView::from(s)),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", responses((status = 200, body = ScheduleList), CommonErrors))]
pub async fn list(ReadyQueue(queue): ReadyQueue) -> Result<Json<ScheduleList>, Problem> {
    let schedules = list_schedules(queue.pool())
        .await?
        .into_iter()
        .map(ScheduleView::from)
        .collect();
    Ok(Json(ScheduleList {
        schedules,
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules", params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView, headers(("ETag" = String))), CommonErrors))]
pub async fn get_one(
    ReadyQueue(queue): ReadyQueue,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let s = fetch(&queue, &name)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no schedule named `{name}`")))?;
    Ok(respond(StatusCode::OK, s))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    pub cron: String,
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    pub queue: Option<String>,
    pub enabled: Option<bool>,
    pub timezone: Option<String>,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

fn if_match_ok(headers: &HeaderMap, current: Option<&Schedule>) -> Result<(), Problem> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if v.as_bytes() == b"*" && current.is_some() {
            return Err(Problem::precondition_failed(
                "If-None-Match: * but the schedule exists",
            ));
        }
    }
    if let Some(v) = headers.get(header::IF_MATCH) {
        let wanted = v.to_str().unwrap_or("");
        let ok = match current {
            None => false,
            Some(s) => wanted == "*" || wanted.split(',').any(|t| t.trim() == s.etag()),
        };
        if !ok {
            return Err(Problem::precondition_failed(
                "If-Match does not match the schedule's current ETag",
            ));
        }
    }
    Ok(())
}

/// `PUT /v1/schedules/{name}`: create (201) or replace (200).
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules", request_body = PutSchedule,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, body = ScheduleView), (status = 201, body = ScheduleView),
        (status = 412, description = "the precondition failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn put(
    ReadyQueue(queue): ReadyQueue,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PutSchedule>,
) -> Result<Response, Problem> {
    valid_name(&name)?;
    CronSpec::parse(&body.cron, body.timezone.as_deref())
        .map_err(|e| Problem::bad_request("invalid_field", format!("field `cron`: {e}")))?;
    if !queue.registry().contains(&body.kind) {
        return Err(Problem::bad_request(
            "unknown_kind",
            format!("field `kind`: unknown job kind `{}`", body.kind),
        ));
    }
    let args = body.args.unwrap_or_else(|| json!({}));
    if !args.is_object() {
        return Err(Problem::bad_request(
            "invalid_field",
            "field `args`: must be a JSON object",
        ));
    }
    queue
        .registry()
        .check_args(&body.kind, &args)
        .map_err(|reason| {
            Problem::bad_request(
                "invalid_args",
                format!("field `args`: not args of kind `{}`: {reason}", body.kind),
            )
        })?;
    let target_queue = body
        .queue
        .unwrap_or_else(|| queue.default_queue_of(&body.kind));
    if !valid_queue_name(&target_queue) {
        return Err(Problem::bad_request(
            "invalid_field",
            "field `queue`: not a queue name",
        ));
    }
    let mut tx = queue.pool().begin().await?;
    let current: Option<Schedule> = sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = $1 FOR UPDATE"
    ))
    .bind(&name)
    .fetch_optional(&mut *tx)
    .await?;
    if_match_ok(&headers, current.as_ref())?;
    let saved: Schedule = sqlx::query_as(&format!(
        "INSERT INTO schedules (name, cron, kind, args, queue, enabled, timezone, source, last_tick_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'api', now()) \
         ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, kind = EXCLUDED.kind, args = EXCLUDED.args, \
           queue = EXCLUDED.queue, enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, source = 'api', updated_at = now() \
         RETURNING {SCHEDULE_COLUMNS}"
    ))
    .bind(&name)
    .bind(body.cron.trim())
    .bind(&body.kind)
    .bind(&args)
    .bind(&target_queue)
    .bind(body.enabled.unwrap_or(true))
    .bind(&body.timezone)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(respond(
        if current.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        saved,
    ))
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules", params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "deleted"), (status = 412, description = "the precondition failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn delete(
    ReadyQueue(queue): ReadyQueue,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    valid_name(&name)?;
    let mut tx = queue.pool().begin().await?;
    let current: Option<Schedule> = sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = $1 FOR UPDATE"
    ))
    .bind(&name)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else {
        return Err(Problem::not_found(format!("no schedule named `{name}`")));
    };
    if_match_ok(&headers, Some(&current))?;
    sqlx::query("DELETE FROM schedules WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
