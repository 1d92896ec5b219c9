//! Compozy's memory-configuration API (`/api/v0/memories`), with its envelope
//! (`{data, error, message, status}`), strong ETags, opaque `v2:` cursors and RFC 8288 `Link`
//! headers. The configurations are `memwarden_jobs::memory_config`; what memwarden does with
//! them is the memory-policy job kinds'.

pub mod etag;
pub mod list;
pub mod memory;
pub mod page;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use memwarden_jobs::memory_config::{check_id, MemoryConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::control::problem::Problem;

/// The project of a call that names none.
pub const DEFAULT_PROJECT: &str = "default";

/// Compozy's success envelope: `error` is always null here (errors are problem+json).
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryEnvelope {
    /// The configuration, `token_provider.api_key` masked.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub message: String,
    pub status: u16,
}

/// `body` in Compozy's envelope, with `status` as the response's.
pub fn enveloped(status: StatusCode, message: &str, data: serde_json::Value) -> Response {
    let body = json!({"data": data, "error": null, "message": message, "status": status.as_u16()});
    (status, Json(body)).into_response()
}

/// A configuration as the API shows it: its id, `resource: "memory"`, and a masked key.
pub fn shown(id: &str, config: &MemoryConfig) -> serde_json::Value {
    let mut shown = config.masked();
    shown.id = Some(id.to_string());
    shown.resource = Some("memory".into());
    serde_json::to_value(shown).unwrap_or_default()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// The project the configuration belongs to (`default` when not given).
    pub project: Option<String>,
    /// Why (for the audit log).
    pub justification: Option<String>,
}

/// The project a call is scoped to: a plain name, `default` when not given.
pub fn project_of(project: &Option<String>) -> Result<String, Problem> {
    let project = project.as_deref().unwrap_or(DEFAULT_PROJECT);
    check_id(project).map_err(|e| {
        Problem::bad_request(
            "invalid_query",
            format!("query parameter `project`: {}", e.message),
        )
    })?;
    Ok(project.to_string())
}

/// The `memory_id` of a path: a plain name.
pub fn memory_id_of(id: &str) -> Result<(), Problem> {
    check_id(id).map_err(|e| {
        Problem::bad_request(
            "invalid_path",
            format!("path parameter `memory_id`: {}", e.message),
        )
    })
}
