//! `GET /v1/admin/attachments` (`userId`, `status=linked|unlinked|expired|all`, `afterCursor`,
//! `limit`; oldest first, as Memory Service orders them), `GET /v1/admin/attachments/{id}`
//! and `DELETE /v1/admin/attachments/{id}`, which removes the blob's file only with the last
//! attachment that shares it, by the rule eviction follows (`memwarden_jobs::eviction`).

use std::path::PathBuf;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use memwarden_jobs::eviction::{delete_attachment, AttachmentDeleted, EvictionError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{cursor_position, page, page_limit, path_id, user_filter, AdminActionRequest};
use crate::control::extract::{QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem};

/// An attachment as Memory Service's admin API shows it. memwarden links attachments to a
/// conversation, not to an entry: `entryId` is always null and `conversationId` says where it
/// is linked. `status` is `linked`, `unlinked`, or `expired` (unlinked and past `expiresAt`).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AdminAttachment {
    pub id: Uuid,
    pub storage_key: Option<String>,
    pub filename: String,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub user_id: String,
    pub entry_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub archived: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The attachments that share this one's blob (the blob's reference count).
    pub ref_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminAttachmentList {
    pub data: Vec<AdminAttachment>,
    /// The id of this page's last attachment when more follow: pass it as `afterCursor`.
    pub after_cursor: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Linked,
    Unlinked,
    Expired,
    #[default]
    All,
}

impl StatusFilter {
    fn condition(self) -> &'static str {
        match self {
            StatusFilter::Linked => "a.status = 'linked'",
            StatusFilter::Unlinked => "a.status = 'unlinked'",
            StatusFilter::Expired => "a.expires_at IS NOT NULL AND a.expires_at < now()",
            StatusFilter::All => "true",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only attachments this user uploaded.
    pub user_id: Option<String>,
    /// `all` when not given.
    pub status: Option<StatusFilter>,
    /// The `afterCursor` of the previous page.
    pub after_cursor: Option<Uuid>,
    /// 1 to 1000, 50 when not given.
    pub limit: Option<i64>,
    /// Why (for the audit log).
    pub justification: Option<String>,
}

const COLUMNS: &str = "a.id, b.storage_key, a.filename, a.content_type, b.size_bytes AS size, \
    b.sha256, a.owner_id AS user_id, NULL::uuid AS entry_id, a.conversation_id, \
    CASE WHEN a.status = 'unlinked' AND a.expires_at < now() THEN 'expired' ELSE a.status END AS status, \
    a.expires_at, a.created_at, a.deleted_at IS NOT NULL AS archived, a.deleted_at, \
    COALESCE(b.refcount, 0) AS ref_count";

#[utoipa::path(get, path = "/v1/admin/attachments", tag = "memory-service", params(ListQuery),
    responses((status = 200, body = AdminAttachmentList), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<AdminAttachmentList>, Problem> {
    let limit = page_limit(q.limit, 50, 1000)?;
    user_filter(&q.user_id)?;
    let pool = queue.pool();
    let after = cursor_position(pool, "attachments", q.after_cursor).await?;
    let rows: Vec<AdminAttachment> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM attachments a LEFT JOIN blobs b ON b.id = a.blob_id \
         WHERE ($1::text IS NULL OR a.owner_id = $1) AND {} \
           AND ($2::timestamptz IS NULL OR (a.created_at, a.id) > ($2, $3)) \
         ORDER BY a.created_at, a.id LIMIT $4",
        q.status.unwrap_or_default().condition()
    ))
    .bind(&q.user_id)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .map_err(|e| Problem::database("listing attachments", e))?;
    let (data, after_cursor) = page(rows, limit, |a| a.id);
    Ok(Json(AdminAttachmentList { data, after_cursor }))
}

/// The attachment `id`, soft-deleted ones included.
pub(super) async fn fetch(pool: &PgPool, id: Uuid) -> Result<AdminAttachment, Problem> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM attachments a LEFT JOIN blobs b ON b.id = a.blob_id WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(|e| Problem::database("reading an attachment", e))?
    .ok_or_else(|| not_found(id))
}

pub(super) fn not_found(id: Uuid) -> Problem {
    Problem::not_found(format!(
        "no attachment {id}: never created, deleted, or already evicted"
    ))
}

#[utoipa::path(get, path = "/v1/admin/attachments/{id}", tag = "memory-service",
    params(("id" = String, Path, description = "attachment id (UUID)"), ("justification" = Option<String>, Query)),
    responses((status = 200, body = AdminAttachment), CommonErrors))]
pub async fn get_one(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Json<AdminAttachment>, Problem> {
    fetch(queue.pool(), path_id(&id)?).await.map(Json)
}

#[utoipa::path(delete, path = "/v1/admin/attachments/{id}", tag = "memory-service",
    params(("id" = String, Path, description = "attachment id (UUID)")), request_body(content = Option<AdminActionRequest>),
    responses((status = 204, description = "deleted; its blob too when no other attachment shares it"), CommonErrors))]
pub async fn delete(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = path_id(&id)?;
    let dir = PathBuf::from(&queue.settings().blobs.dir);
    match delete_attachment(queue.pool(), &dir, id).await {
        Ok(AttachmentDeleted::Missing) => Err(not_found(id)),
        Ok(AttachmentDeleted::Deleted { .. }) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(EvictionError::Database(e)) => Err(Problem::database("deleting an attachment", e)),
        // The rows are gone; the file that stays behind is referenced by nothing.
        Err(e) => Err(Problem::internal(
            "the attachment was deleted, but its blob file could not be removed",
            e,
        )),
    }
}
