//! `application/problem+json` errors (RFC 9457), with the extra `error` member equal to the
//! title, as the clients we stay compatible with read it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

tokio::task_local! {
    /// The path of the request being served, for the `instance` member.
    pub static REQUEST_PATH: String;
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
        metrics::counter!("memwarden_db_errors_total", "op" => "control").increment(1);
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
