//! `GET /openapi.json`: the OpenAPI 3 document of every route, generated from the handlers'
//! annotations and the wire types below (utoipa). Never written by hand.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::lifecycle::{DrainOrigin, State};
use crate::queue::depth::QueueStatus;
use crate::queue::job::{AttemptRow, JobRow, Reference};
use crate::queue::purge::PurgeReport;
use crate::reload::{FileMetadata, ReloadStatus};

/// An `application/problem+json` error (RFC 9457), with `error` equal to `title`.
#[derive(Serialize, ToSchema)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub instance: Option<String>,
    pub code: String,
    pub error: String,
}

/// The error answers every authenticated route can give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// A malformed body, a wrong type or an unknown value; `detail` names the field.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] ProblemDoc),
    /// Missing or wrong API token, or an admin route without a valid admin token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// The role is too low, or no admin token is configured.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// Not found, or no such route.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The daemon has not reached its database yet, or the database is away.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

#[derive(Serialize, ToSchema)]
pub struct HealthReply {
    /// `ok`, or `stalled` with the name of the loop.
    pub status: String,
    pub state: State,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyReply {
    pub state: State,
    /// `ok` or `unreachable`.
    pub database: String,
}

#[derive(Serialize, ToSchema)]
pub struct DrainDoc {
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub origin: DrainOrigin,
}

#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    pub state: State,
    pub since: DateTime<Utc>,
    pub drain: Option<DrainDoc>,
    pub in_flight: u64,
    pub version: String,
    pub queues: Vec<QueueStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct StateReply {
    pub state: State,
    pub message: String,
}

/// GoodMem's `AdminReloadLicenseResponse`, describing memwarden's config file.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadReply {
    pub status: ReloadStatus,
    pub message: String,
    pub active_license: Option<FileMetadata>,
}

#[derive(Serialize, ToSchema)]
pub struct EnqueueReply {
    pub id: Uuid,
    pub status: String,
    /// True when the unique key was taken and `id` is the existing job.
    pub duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobRow>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobDetailDoc {
    #[serde(flatten)]
    pub job: JobRow,
    pub attempts: Vec<AttemptRow>,
    pub references: Vec<Reference>,
}

#[derive(Serialize, ToSchema)]
pub struct ActionReplyDoc {
    pub id: Uuid,
    pub status: String,
    pub message: String,
}

/// GoodMem's `AdminPurgeJobsResponse`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoodMemPurgeReply {
    pub jobs_purged: i64,
    pub attempts_purged: i64,
    pub references_purged: i64,
    pub dry_run: bool,
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct PausedReply {
    pub name: String,
    pub paused: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleDoc {
    pub name: String,
    pub cron: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub queue: String,
    pub enabled: bool,
    pub timezone: Option<String>,
    /// `default`, `config` or `api`.
    pub source: String,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_tick_at: Option<DateTime<Utc>>,
    pub etag: String,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleDoc>,
    pub next_cursor: Option<String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Admin-Token"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "memwarden control port", description = "Native routes under /v1 and the GoodMem, AutoMem and Memory Service compatibility routes."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::lifecycle_routes::status,
        super::lifecycle_routes::drain,
        super::lifecycle_routes::goodmem_drain,
        super::lifecycle_routes::resume,
        super::goodmem::config_reload,
        super::goodmem::license_reload,
        super::goodmem::purge,
        super::jobs::enqueue,
        super::jobs::list,
        super::jobs::show,
        super::jobs::cancel,
        super::jobs::retry,
        super::jobs::purge_jobs,
        super::queues::list,
        super::queues::pause,
        super::queues::resume,
        super::schedules::list,
        super::schedules::get_one,
        super::schedules::put,
        super::schedules::delete,
        super::events::stream,
        super::events::admin_stream,
        super::audit_routes::list,
        super::work::evict,
        super::automem::status,
        super::automem::reprocess,
        super::automem::work_reprocess,
        super::work::memory_service_evict,
        super::reembed_sync::automem_reembed,
        super::reembed_sync::automem_sync,
        super::reembed_sync::work_reembed,
        super::reembed_sync::work_sync,
        openapi_json,
    ),
    components(schemas(ProblemDoc, JobRow, AttemptRow, Reference, QueueStatus, PurgeReport, FileMetadata)),
    modifiers(&Security),
    security(("bearer" = [], "admin_token" = []), ("api_key" = []))
)]
pub struct ApiDoc;

/// The OpenAPI document of this control port.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
