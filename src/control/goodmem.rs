//! GoodMem's admin surface, camelCase on the wire, as its Python SDK (0.1.43) calls it.
//! (`POST /v1/admin:drain` shares the native drain handler: same core, same reply.)

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::extract::JsonBody;
use super::jobs::{run_purge, PurgeBody};
use super::openapi::{CommonErrors, GoodMemPurgeReply, ReloadReply};
use super::problem::Problem;
use crate::app::App;
use crate::reload::{reload, ReloadOutcome};

/// `POST /v1/admin/background-jobs:purge` → `{jobsPurged, attemptsPurged, referencesPurged, dryRun}`.
#[utoipa::path(post, path = "/v1/admin/background-jobs:purge", tag = "goodmem", request_body = PurgeBody,
    responses((status = 200, body = GoodMemPurgeReply), CommonErrors))]
pub async fn purge(
    State(app): State<App>,
    JsonBody(body): JsonBody<PurgeBody>,
) -> Result<Json<Value>, Problem> {
    let r = run_purge(&app, body).await?;
    Ok(Json(json!({
        "jobsPurged": r.jobs_purged,
        "attemptsPurged": r.attempts_purged,
        "referencesPurged": r.references_purged,
        "dryRun": r.dry_run,
    })))
}

fn reload_reply(outcome: ReloadOutcome) -> Json<Value> {
    Json(json!({
        "status": outcome.status,
        "message": outcome.message,
        "activeLicense": outcome.active,
    }))
}

/// `POST /v1/admin/license:reload`: memwarden has no license; it rereads its config file.
#[utoipa::path(post, path = "/v1/admin/license:reload", tag = "goodmem", responses((status = 200, body = ReloadReply), CommonErrors))]
pub async fn license_reload(State(app): State<App>) -> Json<Value> {
    reload_reply(reload(&app))
}

/// `POST /v1/admin/config/reload`: the same as SIGHUP, in the same shape.
#[utoipa::path(post, path = "/v1/admin/config/reload", tag = "lifecycle", responses((status = 200, body = ReloadReply), CommonErrors))]
pub async fn config_reload(State(app): State<App>) -> Json<Value> {
    reload_reply(reload(&app))
}
