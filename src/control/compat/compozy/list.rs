//! `GET /api/v0/memories`: a project's configurations in id order, `limit` (default 50, at
//! most 500), `q` (an id prefix), and `cursor` (opaque, `next_cursor` / `prev_cursor` of a
//! previous page), with `Link` headers for both directions and the total count.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use memwarden_jobs::memory_config::MemoryConfig;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::types::Json as SqlJson;
use utoipa::IntoParams;

use super::page::{links, Cursor};
use super::{enveloped, project_of, shown, MemoryEnvelope};
use crate::control::extract::{QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem};

const PATH: &str = "/api/v0/memories";
const LIMIT_DEFAULT: i64 = 50;
const LIMIT_MAX: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The project (`default` when not given).
    pub project: Option<String>,
    /// 1 to 500, 50 when not given.
    pub limit: Option<i64>,
    /// `next_cursor` or `prev_cursor` of a previous page.
    pub cursor: Option<String>,
    /// Only ids that start with this.
    pub q: Option<String>,
    /// Why (for the audit log).
    pub justification: Option<String>,
}

type Row = (String, SqlJson<MemoryConfig>, String);

#[utoipa::path(get, path = "/api/v0/memories", tag = "compozy", params(ListQuery),
    responses((status = 200, body = MemoryEnvelope, description = "`data.memories` and `data.page`",
        headers(("Link" = String, description = "RFC 8288 links to the next and previous pages"))), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, Problem> {
    let project = project_of(&q.project)?;
    let limit = match q.limit.unwrap_or(LIMIT_DEFAULT) {
        n if (1..=LIMIT_MAX).contains(&n) => n,
        n => {
            return Err(Problem::bad_request(
                "invalid_query",
                format!("query parameter `limit`: must be 1 to {LIMIT_MAX}, got {n}"),
            ))
        }
    };
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c)?),
    };
    let prefix = q.q.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if prefix.is_some_and(|p| p.contains('\0')) {
        return Err(Problem::bad_request(
            "invalid_query",
            "query parameter `q` contains a NUL character",
        ));
    }
    let pool = queue.pool();
    let scope = "project = $1 AND ($2::text IS NULL OR starts_with(id, $2))";
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM memory_configs WHERE {scope}"
    ))
    .bind(&project)
    .bind(prefix)
    .fetch_one(pool)
    .await
    .map_err(|e| Problem::database("counting memory configurations", e))?;
    let (bound, order) = match &cursor {
        Some(Cursor::Before(id)) => (Some(id.clone()), "<"),
        Some(Cursor::After(id)) => (Some(id.clone()), ">"),
        None => (None, ">"),
    };
    let direction = if order == "<" { "DESC" } else { "ASC" };
    let mut rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT id, config, etag FROM memory_configs WHERE {scope} \
         AND ($3::text IS NULL OR id {order} $3) ORDER BY id {direction} LIMIT $4"
    ))
    .bind(&project)
    .bind(prefix)
    .bind(&bound)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(|e| Problem::database("listing memory configurations", e))?;
    if direction == "DESC" {
        rows.reverse();
    }
    // Whether anything lies beyond either end of the page decides its cursors.
    let beyond = |op: &'static str, id: Option<String>| {
        let project = project.clone();
        async move {
            let Some(id) = id else { return Ok(false) };
            sqlx::query_scalar::<_, bool>(&format!(
                "SELECT EXISTS (SELECT 1 FROM memory_configs WHERE {scope} AND id {op} $3)"
            ))
            .bind(&project)
            .bind(prefix)
            .bind(id)
            .fetch_one(pool)
            .await
            .map_err(|e| Problem::database("paging memory configurations", e))
        }
    };
    let first = rows.first().map(|r| r.0.clone());
    let last = rows.last().map(|r| r.0.clone());
    let next = beyond(">", last.clone())
        .await?
        .then(|| Cursor::After(last.unwrap_or_default()).encode());
    let prev = beyond("<", first.clone())
        .await?
        .then(|| Cursor::Before(first.unwrap_or_default()).encode());

    let memories: Vec<Value> = rows
        .iter()
        .map(|(id, config, etag)| {
            let mut item = shown(id, &config.0);
            if let Some(o) = item.as_object_mut() {
                o.insert("etag".into(), Value::String(etag.clone()));
            }
            item
        })
        .collect();
    let mut page = Map::new();
    page.insert("limit".into(), json!(limit));
    page.insert("total".into(), json!(total));
    if let Some(n) = &next {
        page.insert("next_cursor".into(), json!(n));
    }
    if let Some(p) = &prev {
        page.insert("prev_cursor".into(), json!(p));
    }
    let mut query = vec![("limit", limit.to_string())];
    if project != super::DEFAULT_PROJECT || q.project.is_some() {
        query.push(("project", project.clone()));
    }
    if let Some(p) = prefix {
        query.push(("q", p.to_string()));
    }
    let headers = links(PATH, &query, &next, &prev);
    let body = enveloped(
        StatusCode::OK,
        "memories retrieved",
        json!({"memories": memories, "page": page}),
    );
    Ok((headers, body).into_response())
}
