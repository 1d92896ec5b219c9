//! GoodMem's admin surface, camelCase on the wire, as its Python SDK (0.1.43) calls it:
//! `POST /v1/admin:drain`, `POST /v1/admin/background-jobs:purge` and
//! `POST /v1/admin/license:reload` (memwarden has no license; it rereads its config file).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{App, DrainReply};
use crate::control::config_reload::ReloadReply;
use crate::control::extract::{JsonBody, ReadyQueue};
use crate::control::jobs::{run_purge, PurgeBody};
use crate::control::lifecycle::{self, DrainRequest};
use crate::control::problem::{CommonErrors, Problem};
use crate::queue::purge::PurgeReport;
use crate::reload::reload;

/// The same core and reply as the native drain; the body takes camelCase.
#[utoipa::path(post, path = "/v1/admin:drain", tag = "goodmem", request_body = DrainRequest,
    responses((status = 200, body = DrainReply), CommonErrors))]
pub async fn drain(app: State<App>, req: JsonBody<DrainRequest>) -> Json<DrainReply> {
    lifecycle::drain(app, req).await
}

/// GoodMem's `AdminPurgeJobsResponse`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurgeReply {
    pub jobs_purged: i64,
    pub attempts_purged: i64,
    pub references_purged: i64,
    pub dry_run: bool,
}

impl From<PurgeReport> for PurgeReply {
    fn from(r: PurgeReport) -> Self {
        PurgeReply {
            jobs_purged: r.jobs_purged,
            attempts_purged: r.attempts_purged,
            references_purged: r.references_purged,
            dry_run: r.dry_run,
        }
    }
}

#[utoipa::path(post, path = "/v1/admin/background-jobs:purge", tag = "goodmem", request_body = PurgeBody,
    responses((status = 200, body = PurgeReply), CommonErrors))]
pub async fn purge(
    State(app): State<App>,
    ReadyQueue(queue): ReadyQueue,
    JsonBody(body): JsonBody<PurgeBody>,
) -> Result<Json<PurgeReply>, Problem> {
    Ok(Json(run_purge(&app, &queue, body).await?.into()))
}

#[utoipa::path(post, path = "/v1/admin/license:reload", tag = "goodmem", responses((status = 200, body = ReloadReply), CommonErrors))]
pub async fn license_reload(State(app): State<App>) -> Json<ReloadReply> {
    Json(reload(&app).into())
}
