//! `GET /v1/queues`, `POST /v1/queues/{name}/pause` and `/resume`.

use axum::extract::Path;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::ReadyQueue;
use super::problem::{CommonErrors, Problem};
use crate::queue::depth::QueueStatus;
use crate::queue::enqueue::valid_queue_name;
use crate::queue::Queue;

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueStatus>,
}

#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, body = QueueList), CommonErrors))]
pub async fn list(ReadyQueue(queue): ReadyQueue) -> Result<Json<QueueList>, Problem> {
    Ok(Json(QueueList {
        queues: queue.status().await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PausedReply {
    pub name: String,
    pub paused: bool,
}

async fn set_paused(
    queue: Queue,
    name: String,
    paused: bool,
) -> Result<Json<PausedReply>, Problem> {
    if !valid_queue_name(&name) {
        return Err(Problem::bad_request(
            "invalid_queue",
            format!("`{name}` is not a queue name"),
        ));
    }
    queue.set_queue_paused(&name, paused).await?;
    Ok(Json(PausedReply { name, paused }))
}

#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues", params(("name" = String, Path)), responses((status = 200, body = PausedReply), CommonErrors))]
pub async fn pause(
    ReadyQueue(queue): ReadyQueue,
    Path(name): Path<String>,
) -> Result<Json<PausedReply>, Problem> {
    set_paused(queue, name, true).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues", params(("name" = String, Path)), responses((status = 200, body = PausedReply), CommonErrors))]
pub async fn resume(
    ReadyQueue(queue): ReadyQueue,
    Path(name): Path<String>,
) -> Result<Json<PausedReply>, Problem> {
    set_paused(queue, name, false).await
}
