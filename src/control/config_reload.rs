//! `POST /v1/admin/config/reload`: the same as SIGHUP, answered in the shape GoodMem's
//! `license:reload` uses (`compat::goodmem`), so one reply serves both.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::CommonErrors;
use crate::app::App;
use crate::config::FileMetadata;
use crate::reload::{reload, ReloadOutcome, ReloadStatus};

/// GoodMem's `AdminReloadLicenseResponse`, describing memwarden's config file.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadReply {
    pub status: ReloadStatus,
    pub message: String,
    pub active_license: Option<FileMetadata>,
}

impl From<ReloadOutcome> for ReloadReply {
    fn from(o: ReloadOutcome) -> Self {
        ReloadReply {
            status: o.status,
            message: o.message,
            active_license: o.active,
        }
    }
}

#[utoipa::path(post, path = "/v1/admin/config/reload", tag = "lifecycle", responses((status = 200, body = ReloadReply), CommonErrors))]
pub async fn config_reload(State(app): State<App>) -> Json<ReloadReply> {
    Json(reload(&app).into())
}
