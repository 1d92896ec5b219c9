//! `GET /v1/admin/conversations` (`userId`; `includeDeleted` and `onlyDeleted`, or Memory
//! Service's newer `archived=exclude|include|only`; `afterCursor`, `limit`; newest first, as
//! Memory Service orders them), `GET|DELETE /v1/admin/conversations/{id}` and
//! `POST /v1/admin/conversations/{id}/restore` (409 when the conversation is not deleted).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{cursor_position, page, page_limit, path_id, user_filter, AdminActionRequest};
use crate::control::extract::{QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};

/// A conversation as Memory Service's admin API shows it, with `deletedAt` besides its
/// `archived` flag. memwarden keeps no update time: `updatedAt` is the later of creation and
/// soft deletion.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AdminConversation {
    pub id: Uuid,
    pub title: Option<String>,
    pub owner_user_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminConversationList {
    pub data: Vec<AdminConversation>,
    /// The id of this page's last conversation when more follow: pass it as `afterCursor`.
    pub after_cursor: Option<Uuid>,
}

/// Which conversations a list shows by their deletion.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Archived {
    Exclude,
    Include,
    Only,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only conversations owned by this user.
    pub user_id: Option<String>,
    /// Soft-deleted conversations too.
    pub include_deleted: Option<bool>,
    /// Only soft-deleted conversations.
    pub only_deleted: Option<bool>,
    /// Memory Service's newer spelling of the two above; it wins when both are given.
    pub archived: Option<Archived>,
    /// The `afterCursor` of the previous page.
    pub after_cursor: Option<Uuid>,
    /// 1 to 1000, 100 when not given.
    pub limit: Option<i64>,
    /// Why (for the audit log).
    pub justification: Option<String>,
}

impl ListQuery {
    fn archived(&self) -> Archived {
        self.archived
            .unwrap_or(match (self.only_deleted, self.include_deleted) {
                (Some(true), _) => Archived::Only,
                (_, Some(true)) => Archived::Include,
                _ => Archived::Exclude,
            })
    }
}

const COLUMNS: &str = "id, title, owner_id AS owner_user_id, created_at, \
    GREATEST(created_at, deleted_at) AS updated_at, deleted_at IS NOT NULL AS archived, deleted_at";

#[utoipa::path(get, path = "/v1/admin/conversations", tag = "memory-service", params(ListQuery),
    responses((status = 200, body = AdminConversationList), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<AdminConversationList>, Problem> {
    let limit = page_limit(q.limit, 100, 1000)?;
    user_filter(&q.user_id)?;
    let archived = q.archived();
    let pool = queue.pool();
    let after = cursor_position(pool, "conversations", q.after_cursor).await?;
    let rows: Vec<AdminConversation> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations \
         WHERE ($1::text IS NULL OR owner_id = $1) \
           AND ($2 OR deleted_at IS NULL) AND (NOT $3 OR deleted_at IS NOT NULL) \
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(&q.user_id)
    .bind(archived != Archived::Exclude)
    .bind(archived == Archived::Only)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .map_err(|e| Problem::database("listing conversations", e))?;
    let (data, after_cursor) = page(rows, limit, |c| c.id);
    Ok(Json(AdminConversationList { data, after_cursor }))
}

async fn fetch(pool: &PgPool, id: Uuid) -> Result<AdminConversation, Problem> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(|e| Problem::database("reading a conversation", e))?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> Problem {
    Problem::not_found(format!(
        "no conversation {id}: never created, or already evicted"
    ))
}

#[utoipa::path(get, path = "/v1/admin/conversations/{id}", tag = "memory-service",
    params(("id" = String, Path, description = "conversation id (UUID)"), ("justification" = Option<String>, Query)),
    responses((status = 200, body = AdminConversation), CommonErrors))]
pub async fn get_one(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<AdminConversation>, Problem> {
    fetch(queue.pool(), path_id(&id)?).await.map(Json)
}

#[utoipa::path(delete, path = "/v1/admin/conversations/{id}", tag = "memory-service",
    params(("id" = String, Path, description = "conversation id (UUID)")), request_body(content = Option<AdminActionRequest>),
    responses((status = 204, description = "soft-deleted, or already deleted"), CommonErrors))]
pub async fn delete(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = path_id(&id)?;
    // Deleting again keeps the first deletion time, so eviction's clock is not reset.
    let found = sqlx::query(
        "UPDATE conversations SET deleted_at = COALESCE(deleted_at, now()) WHERE id = $1",
    )
    .bind(id)
    .execute(queue.pool())
    .await
    .map_err(|e| Problem::database("deleting a conversation", e))?
    .rows_affected();
    if found == 0 {
        return Err(not_found(id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/admin/conversations/{id}/restore", tag = "memory-service",
    params(("id" = String, Path, description = "conversation id (UUID)")), request_body(content = Option<AdminActionRequest>),
    responses((status = 200, body = AdminConversation),
        (status = 409, description = "the conversation is not deleted", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn restore(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<AdminConversation>, Problem> {
    let id = path_id(&id)?;
    // The row lock this takes is the one eviction's delete waits on: a conversation restored
    // here is rechecked by that delete and kept.
    let restored: Option<AdminConversation> = sqlx::query_as(&format!(
        "UPDATE conversations SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NOT NULL \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(queue.pool())
    .await
    .map_err(|e| Problem::database("restoring a conversation", e))?;
    match restored {
        Some(c) => Ok(Json(c)),
        None => {
            fetch(queue.pool(), id).await?;
            Err(Problem::conflict(
                "not_deleted",
                format!("conversation {id} is not deleted; there is nothing to restore"),
            ))
        }
    }
}
