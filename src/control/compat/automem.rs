//! AutoMem's admin surface (snake_case), as its curl scripts call it: `GET /health`,
//! `GET /enrichment/status`, `POST /enrichment/reprocess`, and the synchronous
//! `POST /admin/reembed` and `POST /admin/sync` (200 with the job's report when it ends).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::{EnrichmentArgs, JobArgs};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::App;
use crate::control::extract::{JsonBody, ReadyQueue};
use crate::control::follow::{enqueue_work, wait_report};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};
use crate::control::work::{
    enqueue_reprocess, parse_ids, reembed_args, sync_args, ReembedRequest, ReprocessRequest,
    SyncRequest,
};
use crate::kinds::ENRICHMENT_STATS;
use crate::lifecycle::State as Lifecycle;
use crate::queue::Queue;

/// AutoMem's enrichment status, with its meanings: `queue_depth` is every enrichment job not
/// yet finished, `pending` those waiting, `inflight` those running; `processed` and `failed`
/// count since this process started.
#[derive(Serialize, ToSchema)]
pub struct EnrichmentStatusReply {
    /// `running` while the worker claims work, `stopped` otherwise.
    pub status: &'static str,
    pub queue_depth: i64,
    pub pending: i64,
    pub inflight: i64,
    pub processed: u64,
    pub failed: u64,
}

#[utoipa::path(get, path = "/enrichment/status", tag = "automem", security(()),
    responses((status = 200, body = EnrichmentStatusReply), CommonErrors))]
pub async fn status(
    State(app): State<App>,
    ReadyQueue(queue): ReadyQueue,
) -> Result<Json<EnrichmentStatusReply>, Problem> {
    Ok(Json(enrichment_status(&app, &queue).await?))
}

async fn enrichment_status(app: &App, queue: &Queue) -> Result<EnrichmentStatusReply, sqlx::Error> {
    let (pending, inflight): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status IN ('available', 'retryable')), count(*) FILTER (WHERE status = 'running') \
         FROM jobs WHERE kind = $1 AND status IN ('available', 'retryable', 'running')",
    )
    .bind(EnrichmentArgs::KIND)
    .fetch_one(queue.pool())
    .await?;
    let running = app.lifecycle().state() == Lifecycle::Ready;
    Ok(EnrichmentStatusReply {
        status: if running { "running" } else { "stopped" },
        queue_depth: pending + inflight,
        pending,
        inflight,
        processed: ENRICHMENT_STATS.processed.load(Ordering::Relaxed),
        failed: ENRICHMENT_STATS.failed.load(Ordering::Relaxed),
    })
}

/// AutoMem's `GET /health`, over PostgreSQL: the store and its vector index are both the
/// database, so `postgres` stands where AutoMem has `falkordb` and `qdrant`.
#[derive(Serialize, ToSchema)]
pub struct AutomemHealthReply {
    /// `healthy`; `degraded` while the database is away, or when memories lack vectors.
    pub status: &'static str,
    /// `connected` or `disconnected`.
    pub postgres: &'static str,
    /// Live memories; null while the database is away.
    pub memory_count: Option<i64>,
    /// Embeddings of live memories; null while the database is away.
    pub vector_count: Option<i64>,
    /// `synced`, `drift_detected` (fewer vectors than memories), `orphaned_vectors`, or
    /// `unknown`.
    pub sync_status: &'static str,
    /// The same block as `GET /enrichment/status`; null while the database is away.
    pub enrichment: Option<EnrichmentStatusReply>,
    /// The daemon's lifecycle state.
    pub state: Lifecycle,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

/// AutoMem's health: no authentication (its own `/health` is exempt from the API token), 200
/// whether healthy or degraded, as AutoMem answers. It counts the store, so probes that only
/// need liveness or readiness should call `/healthz` and `/readyz`.
#[utoipa::path(get, path = "/health", tag = "automem", security(()),
    responses((status = 200, body = AutomemHealthReply)))]
pub async fn health(State(app): State<App>) -> Json<AutomemHealthReply> {
    let counts = if app.database_ready() {
        store_counts(&app).await.ok()
    } else {
        None
    };
    let sync_status = match &counts {
        None => "unknown",
        Some((memories, vectors, _)) if memories == vectors => "synced",
        Some((memories, vectors, _)) if vectors < memories => "drift_detected",
        Some(_) => "orphaned_vectors",
    };
    let status = if counts.is_some() && sync_status != "drift_detected" {
        "healthy"
    } else {
        "degraded"
    };
    Json(AutomemHealthReply {
        status,
        postgres: if counts.is_some() {
            "connected"
        } else {
            "disconnected"
        },
        memory_count: counts.as_ref().map(|c| c.0),
        vector_count: counts.as_ref().map(|c| c.1),
        sync_status,
        enrichment: counts.map(|c| c.2),
        state: app.lifecycle().state(),
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

async fn store_counts(app: &App) -> Result<(i64, i64, EnrichmentStatusReply), sqlx::Error> {
    let queue = app.queue();
    let (memories, vectors): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM memories WHERE deleted_at IS NULL), \
                (SELECT count(*) FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id \
                 WHERE m.deleted_at IS NULL)",
    )
    .fetch_one(queue.work_pool())
    .await?;
    Ok((memories, vectors, enrichment_status(app, queue).await?))
}

/// AutoMem's reply to a reprocess.
#[derive(Serialize, ToSchema)]
pub struct ReprocessReply {
    /// Always `queued`.
    pub status: &'static str,
    pub count: usize,
    pub ids: Vec<Uuid>,
}

#[utoipa::path(post, path = "/enrichment/reprocess", tag = "automem", request_body = ReprocessRequest,
    responses((status = 202, body = ReprocessReply), CommonErrors))]
pub async fn reprocess(
    ReadyQueue(queue): ReadyQueue,
    JsonBody(req): JsonBody<ReprocessRequest>,
) -> Result<Response, Problem> {
    let ids = parse_ids(&req.ids)?;
    enqueue_reprocess(&queue, &ids).await?;
    let reply = ReprocessReply {
        status: "queued",
        count: ids.len(),
        ids,
    };
    Ok((StatusCode::ACCEPTED, Json(reply)).into_response())
}

/// Enqueues the kind's job and waits for its report: AutoMem's admin routes are synchronous.
async fn run_and_wait(queue: &Queue, kind: &str, args: Value) -> Result<Json<Value>, Problem> {
    let id = enqueue_work(queue, kind, args).await?;
    Ok(Json(wait_report(queue, id).await?))
}

#[utoipa::path(post, path = "/admin/reembed", tag = "automem", request_body = ReembedRequest,
    responses((status = 200, description = "the report, as AutoMem's: `{status: \"success\", processed, failed, total, batch_size, metadata_preserved, ...}`", body = Object),
        (status = 500, description = "the reembed failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn reembed(
    ReadyQueue(queue): ReadyQueue,
    JsonBody(req): JsonBody<ReembedRequest>,
) -> Result<Json<Value>, Problem> {
    let Json(mut report) = run_and_wait(&queue, ReembedArgs::KIND, reembed_args(&req)?).await?;
    // AutoMem's reembed answers `success` when it ends; the native report says `complete`.
    if report["status"] == "complete" {
        report["status"] = Value::from("success");
    }
    Ok(Json(report))
}

#[utoipa::path(post, path = "/admin/sync", tag = "automem", request_body = SyncRequest,
    responses((status = 200, description = "the report: drift found (counts and samples), what was repaired, drift left", body = Object),
        (status = 500, description = "the sync failed", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn sync(
    ReadyQueue(queue): ReadyQueue,
    JsonBody(req): JsonBody<SyncRequest>,
) -> Result<Json<Value>, Problem> {
    run_and_wait(&queue, SyncArgs::KIND, sync_args(&req)?).await
}
