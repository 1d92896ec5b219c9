//! `GET /v1/audit`: the audit log, newest first, with opaque cursors.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::extract::QueryParams;
use super::jobs::page_limit;
use super::openapi::CommonErrors;
use super::problem::Problem;
use crate::app::App;
use crate::audit::AuditEntry;

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

fn encode(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("a1:{id}"))
}

fn decode(cursor: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("a1:")?
        .parse()
        .ok()
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage), CommonErrors))]
pub async fn list(
    State(app): State<App>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Response, Problem> {
    let pool = app
        .pool()
        .ok_or_else(|| Problem::unavailable("the daemon has not reached its database yet"))?;
    let limit = page_limit(q.limit)?;
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(decode(c).ok_or_else(|| {
            Problem::bad_request(
                "invalid_cursor",
                "query parameter `cursor`: not a cursor this server issued",
            )
        })?),
    };
    let mut entries = crate::audit::list(pool, before, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = if more {
        entries.last().map(|e| encode(e.id))
    } else {
        None
    };
    let mut headers = HeaderMap::new();
    if let Some(c) = &next_cursor {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "</v1/audit?cursor={c}&limit={limit}>; rel=\"next\""
        )) {
            headers.insert(header::LINK, v);
        }
    }
    Ok((
        headers,
        Json(AuditPage {
            entries,
            next_cursor,
        }),
    )
        .into_response())
}
