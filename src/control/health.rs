//! `/healthz`, `/readyz` and `/metrics`: what probes and Prometheus read.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::lifecycle::State as Lifecycle;

#[derive(Serialize, ToSchema)]
pub struct HealthReply {
    /// `ok`, or `stalled` with the name of the loop.
    pub status: &'static str,
    pub state: Lifecycle,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_name: Option<String>,
}

/// 200 while the process is alive and its loops run; 503 naming a stalled loop.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses(
    (status = 200, body = HealthReply), (status = 503, description = "a loop is stalled", body = HealthReply)))]
pub async fn healthz(State(app): State<App>) -> (StatusCode, Json<HealthReply>) {
    let state = app.lifecycle().state();
    match app.health().stalled() {
        None => (
            StatusCode::OK,
            Json(HealthReply {
                status: "ok",
                state,
                loop_name: None,
            }),
        ),
        Some(name) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthReply {
                status: "stalled",
                state,
                loop_name: Some(name),
            }),
        ),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReadyReply {
    pub state: Lifecycle,
    /// `ok` or `unreachable`.
    pub database: &'static str,
}

/// 200 only in READY. While the database is unreachable the daemon is not ready either.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = ReadyReply), (status = 503, description = "not READY, or the database is away", body = ReadyReply)))]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<ReadyReply>) {
    let state = app.lifecycle().state();
    let database_ok = app.database_ready() && app.database_reachable();
    let status = if state == Lifecycle::Ready && database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadyReply {
            state,
            database: if database_ok { "ok" } else { "unreachable" },
        }),
    )
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", security(()), responses(
    (status = 200, description = "Prometheus exposition", content_type = "text/plain", body = String)))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics::recorder().render(),
    )
}
