//! `GET|PUT|DELETE /api/v0/memories/{memory_id}`: one configuration. A PUT creates it when
//! absent (201, `Location`) and otherwise needs the strong `If-Match` of the version it
//! replaces (428 without one, 412 when stale); a PUT that fails validation changes nothing. A
//! DELETE is 409 while a conversation references the configuration.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use memwarden_jobs::memory_config::{MemoryConfig, MASKED_KEY};
use memwarden_jobs::memory_policies::MemoryPrivacyArgs;
use memwarden_jobs::JobArgs;
use sqlx::types::Json as SqlJson;

use super::{enveloped, etag, memory_id_of, project_of, shown, MemoryEnvelope, ProjectQuery};
use crate::control::extract::{JsonBody, QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};

fn not_found(project: &str, id: &str) -> Problem {
    Problem::not_found(format!(
        "no memory configuration {id:?} in project {project:?}"
    ))
}

fn with_etag(response: Response, tag: &str) -> Response {
    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&etag::quoted(tag)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn precondition_required(detail: String) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
        "Precondition Required",
    )
    .with_detail(detail)
}

fn stale(tag: &str) -> Problem {
    Problem::precondition_failed(format!(
        "If-Match \"{tag}\" is not the current version; read it again and retry"
    ))
}

#[utoipa::path(get, path = "/api/v0/memories/{memory_id}", tag = "compozy",
    params(("memory_id" = String, Path, description = "the configuration's id"), ProjectQuery),
    responses((status = 200, body = MemoryEnvelope, headers(("ETag" = String, description = "strong entity tag"))), CommonErrors))]
pub async fn get_one(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ProjectQuery>,
) -> Result<Response, Problem> {
    memory_id_of(&id)?;
    let project = project_of(&q.project)?;
    let row: Option<(SqlJson<MemoryConfig>, String)> =
        sqlx::query_as("SELECT config, etag FROM memory_configs WHERE project = $1 AND id = $2")
            .bind(&project)
            .bind(&id)
            .fetch_optional(queue.pool())
            .await
            .map_err(|e| Problem::database("reading a memory configuration", e))?;
    let (config, tag) = row.ok_or_else(|| not_found(&project, &id))?;
    Ok(with_etag(
        enveloped(StatusCode::OK, "memory retrieved", shown(&id, &config.0)),
        &tag,
    ))
}

#[utoipa::path(put, path = "/api/v0/memories/{memory_id}", tag = "compozy",
    params(("memory_id" = String, Path, description = "the configuration's id"), ProjectQuery,
        ("If-Match" = Option<String>, Header, description = "the strong ETag of the version this replaces")),
    request_body(content = Object, description = "a Compozy memory configuration"),
    responses(
        (status = 200, body = MemoryEnvelope, description = "updated", headers(("ETag" = String))),
        (status = 201, body = MemoryEnvelope, description = "created", headers(("ETag" = String), ("Location" = String))),
        (status = 412, description = "`If-Match` is not the current version", content_type = "application/problem+json", body = ProblemDoc),
        (status = 428, description = "an update without `If-Match`", content_type = "application/problem+json", body = ProblemDoc),
        CommonErrors))]
pub async fn put(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ProjectQuery>,
    headers: HeaderMap,
    JsonBody(mut config): JsonBody<MemoryConfig>,
) -> Result<Response, Problem> {
    memory_id_of(&id)?;
    let project = project_of(&q.project)?;
    let if_match = etag::if_match(&headers)?;
    if config.id.as_deref().is_some_and(|given| given != id) {
        return Err(Problem::bad_request(
            "invalid_field",
            format!("field `id`: must be the path's memory_id {id:?} when given"),
        ));
    }
    config
        .validate()
        .map_err(|e| Problem::bad_request("invalid_field", e.to_string()))?;
    config.id = Some(id.clone());
    config.resource = Some("memory".into());

    let mut tx = queue
        .pool()
        .begin()
        .await
        .map_err(|e| Problem::database("writing a memory configuration", e))?;
    let current: Option<(SqlJson<MemoryConfig>, String)> = sqlx::query_as(
        "SELECT config, etag FROM memory_configs WHERE project = $1 AND id = $2 FOR UPDATE",
    )
    .bind(&project)
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| Problem::database("reading a memory configuration", e))?;
    let previous = match current {
        None => {
            if let Some(tag) = &if_match {
                return Err(stale(tag));
            }
            None
        }
        Some((old, old_tag)) => {
            let Some(tag) = &if_match else {
                return Err(precondition_required(format!(
                    "memory configuration {id:?} exists: an update needs `If-Match` with its ETag"
                )));
            };
            if *tag != old_tag {
                return Err(stale(tag));
            }
            keep_masked_key(&mut config, &old.0);
            Some(old.0)
        }
    };
    let exists = previous.is_some();
    let created = !exists;
    let tag = etag::of(&config);
    let written = sqlx::query(
        "INSERT INTO memory_configs (project, id, config, etag) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (project, id) DO UPDATE SET config = EXCLUDED.config, etag = EXCLUDED.etag, \
           updated_at = now() WHERE $5",
    )
    .bind(&project)
    .bind(&id)
    .bind(SqlJson(&config))
    .bind(&tag)
    .bind(exists)
    .execute(&mut *tx)
    .await
    .map_err(|e| Problem::database("writing a memory configuration", e))?;
    if written.rows_affected() == 0 {
        // Created by another caller between the read and the write.
        return Err(precondition_required(format!(
            "memory configuration {id:?} was just created: read it and update with `If-Match`"
        )));
    }
    // A changed privacy policy is applied to the entries already written, by a job enqueued in
    // the same transaction as the change, so a crash cannot keep one without the other.
    let privacy_changed = previous
        .as_ref()
        .is_some_and(|old| old.privacy_policy != config.privacy_policy);
    if privacy_changed && config.privacy_policy.is_some() {
        let job = MemoryPrivacyArgs::policy_changed(&project, &id);
        let key = job
            .unique_key()
            .map_err(|e| Problem::internal("building the privacy job", e))?;
        let args = serde_json::to_value(&job)
            .map_err(|e| Problem::internal("building the privacy job's args", e))?;
        sqlx::query("SELECT enqueue($1, $2, 'default', 10::smallint, NULL, 25, $3)")
            .bind(MemoryPrivacyArgs::KIND)
            .bind(args)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(|e| Problem::database("enqueueing the privacy job", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| Problem::database("writing a memory configuration", e))?;
    let body = shown(&id, &config);
    let response = if created {
        let mut r = enveloped(StatusCode::CREATED, "memory created", body);
        let location = format!("/api/v0/memories/{id}");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        enveloped(StatusCode::OK, "memory updated", body)
    };
    Ok(with_etag(response, &tag))
}

/// A client that sends back what it read sends the masked key: that keeps the stored one.
fn keep_masked_key(config: &mut MemoryConfig, old: &MemoryConfig) {
    let stored = old.token_provider.as_ref().and_then(|t| t.api_key.clone());
    if let Some(tp) = config.token_provider.as_mut() {
        if tp.api_key.as_deref() == Some(MASKED_KEY) {
            tp.api_key = stored;
        }
    }
}

#[utoipa::path(delete, path = "/api/v0/memories/{memory_id}", tag = "compozy",
    params(("memory_id" = String, Path, description = "the configuration's id"), ProjectQuery,
        ("If-Match" = Option<String>, Header, description = "when given, the strong ETag of the version to delete")),
    responses((status = 204, description = "deleted"),
        (status = 409, description = "a conversation references the configuration", content_type = "application/problem+json", body = ProblemDoc),
        (status = 412, description = "`If-Match` is not the current version", content_type = "application/problem+json", body = ProblemDoc),
        CommonErrors))]
pub async fn delete(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ProjectQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    memory_id_of(&id)?;
    let project = project_of(&q.project)?;
    let if_match = etag::if_match(&headers)?;
    let referenced = |n: i64| {
        Problem::conflict(
            "memory_referenced",
            format!("memory configuration {id:?} is referenced by {n} conversation(s); point them elsewhere first"),
        )
    };
    let users: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conversations WHERE memory_config_project = $1 AND memory_config_id = $2",
    )
    .bind(&project)
    .bind(&id)
    .fetch_one(queue.pool())
    .await
    .map_err(|e| Problem::database("counting a configuration's conversations", e))?;
    if users > 0 {
        return Err(referenced(users));
    }
    let deleted: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
        "DELETE FROM memory_configs WHERE project = $1 AND id = $2 AND ($3::text IS NULL OR etag = $3) \
         RETURNING etag",
    )
    .bind(&project)
    .bind(&id)
    .bind(&if_match)
    .fetch_optional(queue.pool())
    .await;
    match deleted {
        Ok(Some(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(None) => match if_match {
            Some(tag) if exists(&queue, &project, &id).await? => Err(stale(&tag)),
            _ => Err(not_found(&project, &id)),
        },
        // A conversation was pointed at it since the count.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => Err(referenced(1)),
        Err(e) => Err(Problem::database("deleting a memory configuration", e)),
    }
}

async fn exists(queue: &crate::queue::Queue, project: &str, id: &str) -> Result<bool, Problem> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memory_configs WHERE project = $1 AND id = $2)",
    )
    .bind(project)
    .bind(id)
    .fetch_one(queue.pool())
    .await
    .map_err(|e| Problem::database("reading a memory configuration", e))
}
