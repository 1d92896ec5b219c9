//! `/healthz`, `/readyz` and `/metrics`: what probes and Prometheus read.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::openapi::{HealthReply, ReadyReply};
use crate::app::App;
use crate::lifecycle::State as Lifecycle;

/// 200 while the process is alive and its loops run; 503 naming a stalled loop.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses(
    (status = 200, body = HealthReply), (status = 503, description = "a loop is stalled", body = HealthReply)))]
pub async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let state = app.lifecycle().state();
    match app.health().stalled() {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ok", "state": state})),
        ),
        Some(name) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stalled", "state": state, "loop": name})),
        ),
    }
}

/// 200 only in READY. While the database is unreachable the daemon is not ready either.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = ReadyReply), (status = 503, description = "not READY, or the database is away", body = ReadyReply)))]
pub async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let state = app.lifecycle().state();
    let database_ok =
        app.pool().map(|p| !p.is_closed()).unwrap_or(false) && app.database_reachable();
    let status = if state == Lifecycle::Ready && database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"state": state, "database": if database_ok {"ok"} else {"unreachable"}})),
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
        crate::telemetry::metrics().render(),
    )
}
