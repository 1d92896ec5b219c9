//! An attachment's bytes: `GET /v1/admin/attachments/{id}/content` streams them with the
//! stored content type; `GET /v1/admin/attachments/{id}/download-url` issues a URL that
//! serves them to anyone holding it until it expires, and
//! `GET /v1/attachments/download/{token}/{filename}` is that URL. Its token is the
//! credential (`download_token`), so the route is public.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::attachments::{fetch, AdminAttachment};
use super::path_id;
use crate::control::download_token;
use crate::control::extract::{QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem, ProblemDoc};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Inline,
    Attachment,
}

impl Disposition {
    fn as_str(self) -> &'static str {
        match self {
            Disposition::Inline => "inline",
            Disposition::Attachment => "attachment",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentQuery {
    /// `Content-Disposition` of the reply; none when not given.
    pub disposition: Option<Disposition>,
    /// Why (for the audit log).
    pub justification: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadUrl {
    /// A path on this control port that serves the bytes without other credentials.
    pub url: String,
    /// Seconds the URL stays valid.
    pub expires_in: u64,
}

/// A file name as it can stand in a URL path and a quoted header parameter.
fn plain_name(filename: &str) -> String {
    let name: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "download".into()
    } else {
        name
    }
}

/// Streams the attachment's blob file, or 404 when it has no content to give.
async fn stream(
    dir: &FsPath,
    attachment: &AdminAttachment,
    disposition: Option<Disposition>,
) -> Result<Response, Problem> {
    let missing = || {
        Problem::not_found(format!(
            "attachment {}: its content is not available",
            attachment.id
        ))
    };
    let key = attachment.storage_key.as_deref().ok_or_else(missing)?;
    // Keys are names inside the blob directory, never paths out of it.
    let name = FsPath::new(key).file_name().ok_or_else(missing)?;
    let file = match tokio::fs::File::open(dir.join(name)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(Problem::internal("reading an attachment's blob file", e)),
    };
    let content_type = attachment
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Some(d) = disposition {
        let value = format!(
            "{}; filename=\"{}\"",
            d.as_str(),
            plain_name(&attachment.filename)
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

fn blobs_dir(queue: &crate::queue::Queue) -> PathBuf {
    PathBuf::from(&queue.settings().blobs.dir)
}

#[utoipa::path(get, path = "/v1/admin/attachments/{id}/content", tag = "memory-service",
    params(("id" = String, Path, description = "attachment id (UUID)"), ContentQuery),
    responses((status = 200, description = "the attachment's bytes, with its stored content type", content_type = "application/octet-stream", body = String), CommonErrors))]
pub async fn content(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ContentQuery>,
) -> Result<Response, Problem> {
    let attachment = fetch(queue.pool(), path_id(&id)?).await?;
    stream(&blobs_dir(&queue), &attachment, q.disposition).await
}

#[utoipa::path(get, path = "/v1/admin/attachments/{id}/download-url", tag = "memory-service",
    params(("id" = String, Path, description = "attachment id (UUID)"), ContentQuery),
    responses((status = 200, body = DownloadUrl),
        (status = 503, description = "`blobs.download_url_key` is not configured", content_type = "application/problem+json", body = ProblemDoc), CommonErrors))]
pub async fn download_url(
    ReadyQueue(queue): ReadyQueue,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ContentQuery>,
) -> Result<Json<DownloadUrl>, Problem> {
    let settings = queue.settings();
    let attachment = fetch(queue.pool(), path_id(&id)?).await?;
    let key = settings.blobs.download_url_key.as_deref().ok_or_else(|| {
        Problem::unavailable(
            "download URLs are not available: blobs.download_url_key is not configured",
        )
    })?;
    if attachment.storage_key.is_none() {
        return Err(Problem::not_found(format!(
            "attachment {}: its content is not available",
            attachment.id
        )));
    }
    let expires_in = settings.blobs.download_url_expires_in.as_secs().max(1);
    // Tokens carry whole seconds: the expiry is rounded up, so a URL lives at least
    // `expiresIn` seconds (rounded down, one issued at 10.9 s for 1 s lived 0.1 s).
    let now = chrono::Utc::now();
    let expires_at =
        now.timestamp() + expires_in as i64 + i64::from(now.timestamp_subsec_nanos() > 0);
    let token = download_token::sign(key.as_bytes(), attachment.id, expires_at);
    let mut url = format!(
        "/v1/attachments/download/{token}/{}",
        plain_name(&attachment.filename)
    );
    if let Some(d) = q.disposition {
        url.push_str("?disposition=");
        url.push_str(d.as_str());
    }
    Ok(Json(DownloadUrl { url, expires_in }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// `Content-Disposition` of the reply; none when not given.
    pub disposition: Option<Disposition>,
}

#[utoipa::path(get, path = "/v1/attachments/download/{token}/{filename}", tag = "memory-service",
    params(("token" = String, Path, description = "the token a download URL carries"),
        ("filename" = String, Path, description = "the attachment's file name (not checked)"), SignedQuery),
    responses((status = 200, description = "the attachment's bytes, with its stored content type", content_type = "application/octet-stream", body = String),
        (status = 403, description = "the token is tampered with, expired, or signed under another key", content_type = "application/problem+json", body = ProblemDoc),
        CommonErrors))]
pub async fn signed_download(
    ReadyQueue(queue): ReadyQueue,
    Path((token, _filename)): Path<(String, String)>,
    QueryParams(q): QueryParams<SignedQuery>,
) -> Result<Response, Problem> {
    let settings = queue.settings();
    let refused = || Problem::forbidden("the download URL is invalid or has expired");
    let key = settings
        .blobs
        .download_url_key
        .as_deref()
        .ok_or_else(refused)?;
    let id: Uuid = download_token::verify(key.as_bytes(), &token, chrono::Utc::now().timestamp())
        .map_err(|e| {
        tracing::info!(reason = %e, "a download URL was refused");
        refused()
    })?;
    let attachment = fetch(queue.pool(), id).await?;
    stream(&blobs_dir(&queue), &attachment, q.disposition).await
}
