//! Native lifecycle routes: `/v1/status`, `/v1/admin/drain`, `/v1/admin/resume`.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::problem::{CommonErrors, Problem, ProblemDoc};
use memwarden_jobs::vector::backend::Prepared;

use crate::app::{App, DrainReply};
use crate::lifecycle::{DrainOrigin, ResumeError, State as Lifecycle};
use crate::queue::depth::QueueStatus;

#[derive(Serialize, ToSchema)]
pub struct DrainView {
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub origin: DrainOrigin,
}

#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    pub state: Lifecycle,
    pub since: DateTime<Utc>,
    pub drain: Option<DrainView>,
    pub in_flight: u64,
    pub version: String,
    /// Empty until the daemon has reached its database.
    pub queues: Vec<QueueStatus>,
    /// Where the store's vectors are kept; none until the daemon has reached its database.
    pub vector: Option<VectorView>,
}

#[derive(Serialize, ToSchema)]
pub struct VectorView {
    /// `pgvector` (HNSW indexes) or `array` (exact scans in the daemon).
    pub backend: String,
    /// Why: what `vector.backend` asked for and what the server has.
    pub reason: String,
    pub pgvector_version: Option<String>,
    /// One HNSW index per stored size (pgvector only).
    pub indexes: Vec<IndexView>,
}

#[derive(Serialize, ToSchema)]
pub struct IndexView {
    pub dims: usize,
    /// `vector`, `halfvec` (2,001 to 4,000 dimensions), or none: searched exactly.
    pub indexed_as: Option<String>,
    pub name: Option<String>,
}

impl From<&Prepared> for VectorView {
    fn from(p: &Prepared) -> Self {
        VectorView {
            backend: p.backend.to_string(),
            reason: p.reason.clone(),
            pgvector_version: p.pgvector_version.clone(),
            indexes: p
                .indexes
                .iter()
                .map(|i| IndexView {
                    dims: i.dims,
                    indexed_as: i.indexed_as.map(|t| t.name().to_string()),
                    name: i.name.clone(),
                })
                .collect(),
        }
    }
}

#[utoipa::path(get, path = "/v1/status", tag = "lifecycle", responses((status = 200, body = StatusReply), CommonErrors))]
pub async fn status(State(app): State<App>) -> Result<Json<StatusReply>, Problem> {
    let snap = app.lifecycle().snapshot();
    let queues = if app.database_ready() {
        app.queue().status().await?
    } else {
        Vec::new()
    };
    Ok(Json(StatusReply {
        state: snap.state,
        since: snap.since,
        drain: snap.drain.map(|d| DrainView {
            reason: d.reason,
            requested_at: d.requested_at,
            origin: d.origin,
        }),
        in_flight: snap.in_flight as u64,
        version: env!("CARGO_PKG_VERSION").into(),
        queues,
        vector: app.vector().map(VectorView::from),
    }))
}

/// The drain request, in snake_case or camelCase (GoodMem's `AdminDrainRequest`).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    pub reason: Option<String>,
    /// Seconds to wait for QUIESCED when `wait_for_quiesce` (default 900); never cancels jobs.
    /// An int32 as GoodMem's: 0 to 2,147,483,647.
    #[serde(alias = "timeoutSec")]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub timeout_sec: Option<TimeoutSec>,
    #[serde(alias = "waitForQuiesce")]
    pub wait_for_quiesce: Option<bool>,
    /// Accepted on every admin route; the audit layer reads it from the body.
    #[serde(rename = "justification")]
    pub _justification: Option<String>,
}

/// GoodMem's default: wait up to 900 s when asked to wait.
pub const DEFAULT_DRAIN_WAIT_SECS: u64 = 900;

/// A drain's `timeoutSec`: GoodMem's int32, never negative.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct TimeoutSec(u32);

impl TryFrom<i64> for TimeoutSec {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match i32::try_from(v) {
            Ok(n) if n >= 0 => Ok(TimeoutSec(n as u32)),
            _ => Err(format!(
                "{v} is not between 0 and 2147483647 seconds (an int32)"
            )),
        }
    }
}

impl DrainRequest {
    pub fn wait(&self) -> Option<Duration> {
        self.wait_for_quiesce.unwrap_or(false).then(|| {
            Duration::from_secs(
                self.timeout_sec
                    .map_or(DEFAULT_DRAIN_WAIT_SECS, |t| u64::from(t.0)),
            )
        })
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

#[derive(Serialize, ToSchema)]
pub struct StateReply {
    pub state: Lifecycle,
    pub message: String,
}

#[utoipa::path(post, path = "/v1/admin/resume", tag = "lifecycle",
    responses((status = 200, body = StateReply), (status = 409, description = "stopping, or still starting", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn resume(State(app): State<App>) -> Result<Json<StateReply>, Problem> {
    match app.lifecycle().resume() {
        Ok(state) => Ok(Json(StateReply {
            state,
            message: "resumed".into(),
        })),
        Err(e @ ResumeError::Stopping) => Err(Problem::conflict("stopping", e.to_string())),
        Err(e @ ResumeError::Starting) => Err(Problem::conflict("starting", e.to_string())),
    }
}
