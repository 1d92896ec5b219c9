//! GoodMem's RetrieveMemory log policies, camelCase on the wire as GoodMem's REST API and SDKs
//! send them: create (`POST /v1/admin/retrieve-memory-log-policies`), get and delete
//! (`/v1/admin/retrieve-memory-log-policies/{id}`); the list is in `goodmem_log_policy_list`.
//! Policies are immutable; a delete sets the tombstone once and is idempotent. Times are
//! milliseconds since the epoch, and `currentlyActive` is computed when the reply is made.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::control::auth::Caller;
use crate::control::extract::{JsonBody, QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};

/// The latest time a policy may name: the end of the year 9999, in milliseconds.
pub const MAX_MILLIS: i64 = 253_402_300_799_999;
const MAX_LABELS: usize = 64;

/// One OR clause: it matches a request when every dimension it names matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clause {
    /// The request's user is one of these.
    #[serde(alias = "requestor_user_ids", skip_serializing_if = "Option::is_none")]
    pub requestor_user_ids: Option<Vec<Uuid>>,
    /// The request's API key is one of these.
    #[serde(alias = "api_key_ids", skip_serializing_if = "Option::is_none")]
    pub api_key_ids: Option<Vec<Uuid>>,
    /// One of the request's spaces is one of these.
    #[serde(alias = "space_ids", skip_serializing_if = "Option::is_none")]
    pub space_ids: Option<Vec<Uuid>>,
    /// The request's API key carries every one of these labels.
    #[serde(
        alias = "api_key_label_selectors",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_label_selectors: Option<BTreeMap<String, String>>,
    /// One of the request's spaces carries every one of these labels.
    #[serde(
        alias = "space_label_selectors",
        skip_serializing_if = "Option::is_none"
    )]
    pub space_label_selectors: Option<BTreeMap<String, String>>,
}

impl Clause {
    /// The clause with empty dimensions left out and ids in order, once each.
    fn normalized(mut self) -> Clause {
        fn ids(v: Option<Vec<Uuid>>) -> Option<Vec<Uuid>> {
            let mut v = v.filter(|v| !v.is_empty())?;
            v.sort();
            v.dedup();
            Some(v)
        }
        self.requestor_user_ids = ids(self.requestor_user_ids);
        self.api_key_ids = ids(self.api_key_ids);
        self.space_ids = ids(self.space_ids);
        self.api_key_label_selectors = self.api_key_label_selectors.filter(|m| !m.is_empty());
        self.space_label_selectors = self.space_label_selectors.filter(|m| !m.is_empty());
        self
    }

    fn is_empty(&self) -> bool {
        *self == Clause::default()
    }
}

/// `matchAll: true` with no `anyOf`, or a non-empty `anyOf` whose every clause has at least
/// one dimension.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(alias = "match_all", skip_serializing_if = "Option::is_none")]
    pub match_all: Option<bool>,
    #[serde(alias = "any_of", skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<Clause>>,
}

impl Condition {
    /// The condition as stored: `{"matchAll": true}` or `{"matchAll": false, "anyOf": [...]}`.
    pub fn validated(self) -> Result<Condition, Problem> {
        let clauses: Vec<Clause> = self
            .any_of
            .unwrap_or_default()
            .into_iter()
            .map(Clause::normalized)
            .collect();
        if self.match_all == Some(true) {
            if !clauses.is_empty() {
                return Err(invalid(
                    "condition.anyOf",
                    "must be empty when matchAll is true",
                ));
            }
            return Ok(Condition {
                match_all: Some(true),
                any_of: None,
            });
        }
        if clauses.is_empty() {
            return Err(invalid(
                "condition.anyOf",
                "needs at least one clause unless matchAll is true",
            ));
        }
        if let Some(i) = clauses.iter().position(Clause::is_empty) {
            return Err(invalid(
                &format!("condition.anyOf[{i}]"),
                "names no dimension (requestorUserIds, apiKeyIds, spaceIds, apiKeyLabelSelectors, spaceLabelSelectors)",
            ));
        }
        Ok(Condition {
            match_all: Some(false),
            any_of: Some(clauses),
        })
    }
}

pub fn invalid(field: &str, why: &str) -> Problem {
    Problem::bad_request("invalid_field", format!("field `{field}`: {why}"))
}

/// A time in milliseconds since the epoch, from 0 to the end of the year 9999.
pub fn check_millis(field: &str, ms: i64) -> Result<i64, Problem> {
    if (0..=MAX_MILLIS).contains(&ms) {
        Ok(ms)
    } else {
        Err(invalid(
            field,
            &format!("must be milliseconds since the epoch from 0 to {MAX_MILLIS}, got {ms}"),
        ))
    }
}

/// GoodMem's `CreateRetrieveMemoryLogPolicyRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePolicyRequest {
    /// Optional client-chosen UUID; one already taken (even by a deleted policy) is 409.
    #[serde(alias = "policy_id")]
    pub policy_id: Option<Uuid>,
    /// 1 to 255 characters.
    #[serde(alias = "display_name")]
    pub display_name: String,
    /// At most 4096 characters.
    pub description: Option<String>,
    pub condition: Condition,
    /// Inclusive, milliseconds since the epoch; now when omitted.
    #[serde(alias = "active_from")]
    pub active_from: Option<i64>,
    /// Exclusive, milliseconds since the epoch; open-ended when omitted.
    #[serde(alias = "active_until")]
    pub active_until: Option<i64>,
    /// At most 64.
    pub labels: Option<BTreeMap<String, String>>,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

/// GoodMem's `RetrieveMemoryLogPolicy`.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub policy_id: Uuid,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[sqlx(json)]
    pub condition: Condition,
    pub active_from: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<i64>,
    #[sqlx(json)]
    pub labels: BTreeMap<String, String>,
    pub currently_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by_id: String,
    pub updated_by_id: String,
}

/// The columns of a `Policy`, times in milliseconds, `currently_active` as of now.
pub const POLICY_COLUMNS: &str = "policy_id, display_name, description, condition, labels, \
    round(extract(epoch FROM active_from) * 1000)::bigint AS active_from, \
    round(extract(epoch FROM active_until) * 1000)::bigint AS active_until, \
    (deleted_at IS NULL AND active_from <= now() AND (active_until IS NULL OR now() < active_until)) AS currently_active, \
    round(extract(epoch FROM deleted_at) * 1000)::bigint AS deleted_at, deleted_by_id, delete_reason, \
    round(extract(epoch FROM created_at) * 1000)::bigint AS created_at, \
    round(extract(epoch FROM updated_at) * 1000)::bigint AS updated_at, created_by_id, updated_by_id";

/// What the control port answers for a mistyped policy id.
fn parse_policy_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse().map_err(|_| {
        Problem::bad_request("invalid_id", format!("`{raw}` is not a policy id (a UUID)"))
    })
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), Problem> {
    if text.chars().count() > max {
        return Err(invalid(field, &format!("is longer than {max} characters")));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/admin/retrieve-memory-log-policies", tag = "goodmem",
    request_body = CreatePolicyRequest,
    responses((status = 200, description = "the policy, as stored", body = Policy),
        (status = 409, description = "the policyId is taken", content_type = "application/problem+json", body = ProblemDoc),
        CommonErrors))]
pub async fn create(
    ReadyQueue(queue): ReadyQueue,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreatePolicyRequest>,
) -> Result<Json<Policy>, Problem> {
    let name = req.display_name.trim();
    if name.is_empty() {
        return Err(invalid("displayName", "must not be empty"));
    }
    check_text("displayName", name, 255)?;
    if let Some(d) = &req.description {
        check_text("description", d, 4096)?;
    }
    let labels = req.labels.unwrap_or_default();
    if labels.len() > MAX_LABELS {
        return Err(invalid("labels", &format!("at most {MAX_LABELS} labels")));
    }
    let condition = req.condition.validated()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let from = check_millis("activeFrom", req.active_from.unwrap_or(now_ms))?;
    let until = req
        .active_until
        .map(|u| check_millis("activeUntil", u))
        .transpose()?;
    if until.is_some_and(|u| u <= from) {
        return Err(invalid("activeUntil", "must be later than activeFrom"));
    }
    let id = req.policy_id.unwrap_or_else(Uuid::now_v7);
    let sql = format!(
        "INSERT INTO retrieve_memory_log_policies (policy_id, display_name, description, condition, \
           active_from, active_until, labels, created_by_id, updated_by_id) \
         VALUES ($1, $2, $3, $4, 'epoch'::timestamptz + $5 * interval '1 millisecond', \
           'epoch'::timestamptz + $6 * interval '1 millisecond', $7, $8, $8) \
         ON CONFLICT (policy_id) DO NOTHING RETURNING {POLICY_COLUMNS}"
    );
    let policy: Option<Policy> = sqlx::query_as(&sql)
        .bind(id)
        .bind(name)
        .bind(&req.description)
        .bind(sqlx::types::Json(&condition))
        .bind(from)
        .bind(until)
        .bind(sqlx::types::Json(&labels))
        .bind(&caller.client_id)
        .fetch_optional(queue.pool())
        .await?;
    policy.map(Json).ok_or_else(|| {
        Problem::conflict(
            "policy_exists",
            format!("a RetrieveMemory log policy with id {id} already exists"),
        )
    })
}

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Return a tombstoned policy too (also `include_deleted`).
    #[serde(alias = "include_deleted", rename = "includeDeleted")]
    pub include_deleted: Option<bool>,
}

async fn fetch(queue: &crate::queue::Queue, id: Uuid) -> Result<Option<Policy>, Problem> {
    let sql =
        format!("SELECT {POLICY_COLUMNS} FROM retrieve_memory_log_policies WHERE policy_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(queue.pool())
        .await?)
}

fn no_policy(id: Uuid) -> Problem {
    Problem::not_found(format!("no RetrieveMemory log policy with id {id}"))
}

#[utoipa::path(get, path = "/v1/admin/retrieve-memory-log-policies/{id}", tag = "goodmem",
    params(("id" = String, Path, description = "policy id (UUID)"), GetQuery),
    responses((status = 200, body = Policy), CommonErrors))]
pub async fn get_one(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<GetQuery>,
) -> Result<Json<Policy>, Problem> {
    let id = parse_policy_id(&id)?;
    match fetch(&queue, id).await? {
        Some(p) if p.deleted_at.is_none() || q.include_deleted == Some(true) => Ok(Json(p)),
        _ => Err(no_policy(id)),
    }
}

/// The optional body of a delete.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePolicyRequest {
    /// Why; kept as the policy's `deleteReason` (at most 4096 characters).
    pub reason: Option<String>,
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

#[utoipa::path(delete, path = "/v1/admin/retrieve-memory-log-policies/{id}", tag = "goodmem",
    params(("id" = String, Path, description = "policy id (UUID)")),
    request_body(content = Option<DeletePolicyRequest>, description = "optional"),
    responses((status = 204, description = "tombstoned (now, or by an earlier delete)"), CommonErrors))]
pub async fn delete(
    ReadyQueue(queue): ReadyQueue,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DeletePolicyRequest>,
) -> Result<Response, Problem> {
    let id = parse_policy_id(&id)?;
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        check_text("reason", r, 4096)?;
    }
    // The first delete sets the tombstone; a later one leaves it as it is.
    let found: Option<bool> = sqlx::query_scalar(
        "WITH hit AS (UPDATE retrieve_memory_log_policies \
            SET deleted_at = now(), deleted_by_id = $2, delete_reason = $3, updated_at = now(), updated_by_id = $2 \
          WHERE policy_id = $1 AND deleted_at IS NULL RETURNING true) \
         SELECT true FROM hit UNION ALL \
         SELECT true FROM retrieve_memory_log_policies WHERE policy_id = $1 LIMIT 1",
    )
    .bind(id)
    .bind(&caller.client_id)
    .bind(&reason)
    .fetch_optional(queue.pool())
    .await?;
    match found {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(no_policy(id)),
    }
}
