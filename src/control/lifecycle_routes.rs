//! Native lifecycle routes: `/v1/status`, `/v1/admin/drain`, `/v1/admin/resume`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::JsonBody;
use super::openapi::{CommonErrors, ProblemDoc, StateReply, StatusReply};
use super::problem::Problem;
use crate::app::{App, DrainReply};
use crate::lifecycle::ResumeError;

#[utoipa::path(get, path = "/v1/status", tag = "lifecycle", responses((status = 200, body = StatusReply), CommonErrors))]
pub async fn status(State(app): State<App>) -> Result<Json<Value>, Problem> {
    let snap = app.lifecycle().snapshot();
    let queues = match app.queue() {
        Some(queue) => serde_json::to_value(queue.status().await?).unwrap_or_default(),
        None => json!([]),
    };
    Ok(Json(json!({
        "state": snap.state,
        "since": snap.since,
        "drain": snap.drain.as_ref().map(|d| json!({"reason": d.reason, "requested_at": d.requested_at, "origin": d.origin})),
        "in_flight": snap.in_flight,
        "version": env!("CARGO_PKG_VERSION"),
        "queues": queues,
    })))
}

/// The drain request, in snake_case or camelCase.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    pub reason: Option<String>,
    /// Seconds to wait for QUIESCED when `wait_for_quiesce` (default 900); never cancels jobs.
    #[serde(alias = "timeoutSec")]
    pub timeout_sec: Option<u64>,
    #[serde(alias = "waitForQuiesce")]
    pub wait_for_quiesce: Option<bool>,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

/// GoodMem's default: wait up to 900 s when asked to wait.
pub const DEFAULT_DRAIN_WAIT_SECS: u64 = 900;

impl DrainRequest {
    pub fn wait(&self) -> Option<Duration> {
        if self.wait_for_quiesce.unwrap_or(false) {
            Some(Duration::from_secs(
                self.timeout_sec.unwrap_or(DEFAULT_DRAIN_WAIT_SECS),
            ))
        } else {
            None
        }
    }
}

#[utoipa::path(post, path = "/v1/admin/drain", tag = "lifecycle", request_body = DrainRequest,
    responses((status = 200, body = DrainReply), CommonErrors))]
pub async fn drain(
    State(app): State<App>,
    JsonBody(req): JsonBody<DrainRequest>,
) -> Json<DrainReply> {
    let wait = req.wait();
    Json(app.drain(req.reason, wait).await)
}

/// GoodMem's `POST /v1/admin:drain`: the same core and reply; the body takes camelCase.
#[utoipa::path(post, path = "/v1/admin:drain", tag = "goodmem", request_body = DrainRequest,
    responses((status = 200, body = DrainReply), CommonErrors))]
pub async fn goodmem_drain(state: State<App>, body: JsonBody<DrainRequest>) -> Json<DrainReply> {
    drain(state, body).await
}

#[utoipa::path(post, path = "/v1/admin/resume", tag = "lifecycle",
    responses((status = 200, body = StateReply), (status = 409, description = "stopping, or still starting", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn resume(State(app): State<App>) -> Result<Json<Value>, Problem> {
    match app.lifecycle().resume() {
        Ok(state) => Ok(Json(json!({"state": state, "message": "resumed"}))),
        Err(e @ ResumeError::Stopping) => Err(Problem::conflict("stopping", e.to_string())),
        Err(e @ ResumeError::Starting) => {
            Err(Problem::new(StatusCode::CONFLICT, "starting", "Conflict")
                .with_detail(e.to_string()))
        }
    }
}
