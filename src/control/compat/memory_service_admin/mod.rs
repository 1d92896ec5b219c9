//! Memory Service's admin data API around eviction (camelCase, `data` + `afterCursor` lists):
//! operators see what eviction will remove, soft-delete, and restore a mistaken delete before
//! eviction takes it for good. Auditors read; admins write. Something eviction has removed is
//! a 404, as something never created is.

pub mod attachment_content;
pub mod attachments;
pub mod conversations;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::control::problem::Problem;

/// The body of a delete or restore. The audit layer reads the justification from it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AdminActionRequest {
    /// Why (for the audit log).
    pub justification: Option<String>,
}

/// A page size: 1 to `max`, `default` when not given.
fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, Problem> {
    match limit.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(Problem::bad_request(
            "invalid_query",
            format!("query parameter `limit`: must be 1 to {max}, got {n}"),
        )),
    }
}

/// A path's id, which must be a UUID.
fn path_id(id: &str) -> Result<Uuid, Problem> {
    id.parse().map_err(|_| {
        Problem::bad_request(
            "invalid_path",
            format!("path parameter `id`: not a UUID: {id:?}"),
        )
    })
}

/// `userId` as PostgreSQL can compare it: `text` holds no NUL.
fn user_filter(user_id: &Option<String>) -> Result<(), Problem> {
    if user_id.as_deref().is_some_and(|u| u.contains('\0')) {
        return Err(Problem::bad_request(
            "invalid_character",
            "query parameter `userId` contains a NUL character",
        ));
    }
    Ok(())
}

/// The position (`created_at`, id) of the row of `table` an `afterCursor` names. Once that row
/// is gone the list cannot go on from it: 400 `invalid_cursor`.
async fn cursor_position(
    pool: &PgPool,
    table: &'static str,
    cursor: Option<Uuid>,
) -> Result<Option<(DateTime<Utc>, Uuid)>, Problem> {
    let Some(id) = cursor else {
        return Ok(None);
    };
    sqlx::query_as(&format!("SELECT created_at, id FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| Problem::database("reading the row a cursor names", e))?
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_cursor",
                format!(
                    "query parameter `afterCursor`: {id} is no longer in {table} to page from; \
                     list again from the first page"
                ),
            )
        })
}

/// A page read with one row more than `limit`, cut to `limit`, and the `afterCursor` that
/// follows it: its last id, when more rows follow.
fn page<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<Uuid>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let after = if more { rows.last().map(id) } else { None };
    (rows, after)
}
