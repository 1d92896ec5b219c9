//! The audit layer of every admin, auditor and indexer route: what the call says it is for
//! (its justification, from the query or a `justification` body field), whether that is
//! required, and one audit entry per call, allowed or refused (`crate::audit`).

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{query_param, Caller};
use super::problem::Problem;
use crate::app::App;
use crate::audit::AuditRecord;

/// The largest body an audited route reads (the justification may be in it).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A call's justification, for the handler and the justification check.
#[derive(Debug, Clone)]
pub struct Justification(pub Option<String>);

/// The `justification` of a call: from the query, or a string field of a JSON body.
fn justification_of(query: Option<&str>, body: &[u8]) -> Option<String> {
    query_param(query, "justification").or_else(|| {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()?
            .get("justification")?
            .as_str()
            .map(str::trim)
            .filter(|j| !j.is_empty())
            .map(String::from)
    })
}

/// Outermost: reads the body (the justification may be in it), runs the call, and writes
/// its audit entry with the caller the authorization layer named.
pub async fn record(State(app): State<App>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Payload Too Large",
            )
            .with_detail(format!("the body is larger than {BODY_LIMIT} bytes"))
            .into_response()
        }
    };
    let justification = justification_of(parts.uri.query(), &bytes);
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    parts
        .extensions
        .insert(Justification(justification.clone()));
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    let caller = response
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous);
    crate::audit::record(
        app.database_ready().then(|| app.pool()),
        AuditRecord {
            caller: caller.client_id,
            role: caller.role.map(|r| r.as_str().to_string()),
            method,
            path,
            status: response.status().as_u16(),
            client_ip,
            justification,
        },
    )
    .await;
    response
}

/// Innermost, after authorization: a justification that cannot be stored, or none where
/// `admin.require_justification` asks for one, is 400.
pub async fn require_justification(State(app): State<App>, req: Request, next: Next) -> Response {
    let justification = req
        .extensions()
        .get::<Justification>()
        .and_then(|j| j.0.clone());
    if justification.as_deref().is_some_and(|j| j.contains('\0')) {
        return Problem::bad_request(
            "invalid_character",
            "`justification` contains a NUL character (\\u0000), which cannot be stored",
        )
        .into_response();
    }
    if app.settings().admin.require_justification && justification.is_none() {
        return Problem::bad_request(
            "justification_required",
            "`justification` is required (query parameter or body field): admin.require_justification is on",
        )
        .into_response();
    }
    next.run(req).await
}
