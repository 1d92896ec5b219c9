//! What an OpenAI-compatible server sends back, read: the embeddings answer, and a failure
//! turned into the [`EmbedError`] the retry policy acts on. Compatible servers differ most in
//! these bodies and headers, so their reading is kept apart from the client's retry loop.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use super::EmbedError;

pub(super) fn classify_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> EmbedError {
    let api = serde_json::from_slice::<ErrorBody>(body).ok();
    let message = api
        .as_ref()
        .and_then(ErrorBody::message)
        .unwrap_or_else(|| snippet(body));
    let quota = api.as_ref().is_some_and(ErrorBody::is_insufficient_quota);
    if quota {
        return EmbedError::QuotaExceeded(message);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return EmbedError::RateLimited {
            retry_after: retry_after(headers),
            message,
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return EmbedError::Transient(format!("HTTP {status}: {message}"));
    }
    EmbedError::Permanent(format!("HTTP {status}: {message}"))
}

/// The provider's requested wait: OpenAI's `retry-after-ms`, else `Retry-After` as seconds
/// or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The embeddings answer, read leniently: compatible servers differ in the other fields.
#[derive(Deserialize)]
pub(super) struct EmbeddingResponse {
    pub(super) data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingItem {
    #[serde(default)]
    pub(super) index: Option<u32>,
    pub(super) embedding: Vec<f32>,
}

/// OpenAI's `{"error": {"message", "type", "code"}}`, or a compatible server's
/// `{"error": "..."}`; `code` may be a number elsewhere, so it stays a JSON value.
#[derive(Deserialize)]
struct ErrorBody {
    error: serde_json::Value,
}

impl ErrorBody {
    fn message(&self) -> Option<String> {
        match &self.error {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string),
            _ => None,
        }
    }

    fn is_insufficient_quota(&self) -> bool {
        ["code", "type"].iter().any(|field| {
            self.error.get(field).and_then(|v| v.as_str()) == Some("insufficient_quota")
        })
    }
}

pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_string(),
    }
}

/// reqwest's Display stops at "error sending request"; the cause (timeout, refused) is below.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past");
    }

    #[test]
    fn failures_are_classified() {
        let h = HeaderMap::new();
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify_failure(StatusCode::TOO_MANY_REQUESTS, &h, quota),
            EmbedError::QuotaExceeded(m) if m.contains("exceeded your current quota")
        ));
        let rate = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            classify_failure(StatusCode::TOO_MANY_REQUESTS, &h, rate),
            EmbedError::RateLimited {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            classify_failure(StatusCode::BAD_GATEWAY, &h, b"<html>bad gateway</html>"),
            EmbedError::Transient(_)
        ));
        assert!(matches!(
            classify_failure(StatusCode::UNAUTHORIZED, &h, br#"{"error":"bad key"}"#),
            EmbedError::Permanent(m) if m.contains("bad key")
        ));
    }
}
