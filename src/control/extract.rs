//! Body and query extractors whose rejections are 400 problem+json naming the field, never
//! axum's plain-text 415/422.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::Problem;
use crate::app::App;
use crate::queue::Queue;

/// The queue, once STARTING has reached and migrated the database; 503 before that, at once,
/// rather than after a connection timeout.
pub struct ReadyQueue(pub Queue);

impl FromRequestParts<App> for ReadyQueue {
    type Rejection = Problem;

    async fn from_request_parts(_parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        if app.database_ready() {
            Ok(ReadyQueue(app.queue().clone()))
        } else {
            Err(Problem::unavailable(
                "the daemon is starting and has not reached its database yet",
            ))
        }
    }
}

/// A JSON body. An empty body reads as `{}`, so routes whose fields are all optional accept a
/// bare POST. The content type is not checked: clients in the wild omit it.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            Problem::bad_request("invalid_body", format!("cannot read the request body: {e}"))
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    if has_escaped_nul(bytes) {
        return Err(nul_problem("the body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            Problem::bad_request("invalid_body", format!("the body does not fit: {inner}"))
        } else {
            Problem::bad_request("invalid_field", format!("field `{path}`: {inner}"))
        }
    })?;
    de.end().map_err(|e| {
        Problem::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// PostgreSQL stores no NUL character in `text` or `jsonb`, so a body that spells one
/// (`\u0000`, the only way JSON can) is refused here, once for every route, instead of failing
/// at the database.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2; // skip the escaped character, so an escaped backslash before `u0000` passes
        } else {
            i += 1;
        }
    }
    false
}

fn nul_problem(place: &str) -> Problem {
    Problem::bad_request(
        "invalid_character",
        format!("{place} contains a NUL character (\\u0000), which cannot be stored"),
    )
}

/// Query parameters, with the same 400 on a bad one.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        if form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(nul_problem("the query string"));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                Problem::bad_request(
                    "invalid_query",
                    format!("query parameter `{path}`: {}", e.into_inner()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_nul_is_found_and_escaped_backslashes_are_not_mistaken_for_it() {
        assert!(has_escaped_nul(br#"{"a": "x\u0000y"}"#));
        assert!(has_escaped_nul(br#"{"\u0000": 1}"#));
        assert!(!has_escaped_nul(br#"{"a": "x\\u0000y"}"#));
        assert!(!has_escaped_nul(br#"{"a": "\u00e9"}"#));
        let err = parse_json::<serde_json::Value>(br#"{"a": "\u0000"}"#).unwrap_err();
        assert_eq!(err.code, "invalid_character");
    }
}
