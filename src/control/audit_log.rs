//! `GET /v1/audit`: the audit log, newest first, with opaque cursors.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cursor::{self, List};
use super::extract::{QueryParams, ReadyQueue};
use super::problem::{CommonErrors, Problem};
use crate::audit::AuditEntry;

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Response, Problem> {
    let limit = cursor::page_limit(q.limit)?;
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(cursor::decode::<i64>(List::Audit, c)?),
    };
    let mut entries = crate::audit::list(queue.pool(), before, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last().map(|e| cursor::encode(List::Audit, e.id)))
        .flatten();
    let headers = match &next_cursor {
        Some(c) => cursor::next_link("/v1/audit", c, limit, &[]),
        None => Default::default(),
    };
    Ok((
        headers,
        Json(AuditPage {
            entries,
            next_cursor,
        }),
    )
        .into_response())
}
