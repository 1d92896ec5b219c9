//! `application/problem+json` errors (RFC 9457), with the extra `error` member equal to the
//! title, as the clients we stay compatible with read it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoResponses, ToSchema};

tokio::task_local! {
    /// The path of the request being served, for the `instance` member.
    pub static REQUEST_PATH: String;
}

/// An `application/problem+json` error (RFC 9457), with `error` equal to `title`: the body
/// `Problem` renders, as the OpenAPI document shows it.
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

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: Option<String>,
    pub code: &'static str,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Problem {
            status,
            title: title.into(),
            detail: None,
            code,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, code, "Bad Request").with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found").with_detail(detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, code, "Conflict").with_detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "Precondition Failed",
        )
        .with_detail(detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service Unavailable",
        )
        .with_detail(detail)
    }

    /// A failure of ours. The cause goes to the log; the caller gets no internals.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
        )
        .with_detail(context.to_string())
    }

    /// A database error: unreachable or overloaded is 503 (retry later), anything else 500.
    pub fn database(context: &str, error: sqlx::Error) -> Self {
        crate::telemetry::metrics::db_error("control");
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(%error, "{context}");
                Problem::unavailable(format!(
                    "{context}: the database is not reachable right now"
                ))
            }
            other => Problem::internal(context, other),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let instance = REQUEST_PATH.try_with(Clone::clone).ok();
        let body = json!({
            "type": format!("urn:memwarden:problem:{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail.clone().unwrap_or_else(|| self.title.clone()),
            "instance": instance,
            "code": self.code,
            "error": self.title,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        Problem::database("database operation failed", e)
    }
}
