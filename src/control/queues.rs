//! `GET /v1/queues`, `POST /v1/queues/{name}/pause` and `/resume`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::jobs::queue_of;
use super::openapi::{CommonErrors, PausedReply, QueueList};
use super::problem::Problem;
use crate::app::App;
use crate::queue::enqueue::valid_queue_name;

#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, body = QueueList), CommonErrors))]
pub async fn list(State(app): State<App>) -> Result<Json<Value>, Problem> {
    let queue = queue_of(&app)?;
    Ok(Json(json!({"queues": queue.status().await?})))
}

async fn set_paused(app: App, name: String, paused: bool) -> Result<Json<Value>, Problem> {
    let queue = queue_of(&app)?;
    if !valid_queue_name(&name) {
        return Err(Problem::bad_request(
            "invalid_queue",
            format!("`{name}` is not a queue name"),
        ));
    }
    queue.set_queue_paused(&name, paused).await?;
    Ok(Json(json!({"name": name, "paused": paused})))
}

#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues", params(("name" = String, Path)), responses((status = 200, body = PausedReply), CommonErrors))]
pub async fn pause(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_paused(app, name, true).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues", params(("name" = String, Path)), responses((status = 200, body = PausedReply), CommonErrors))]
pub async fn resume(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_paused(app, name, false).await
}
