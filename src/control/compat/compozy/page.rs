//! Compozy's cursors and `Link` headers: a cursor is base64url of `v2:after:<id>` or
//! `v2:before:<id>`, opaque to clients; one that does not decode is 400 `invalid_cursor`.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::control::problem::Problem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    After(String),
    Before(String),
}

impl Cursor {
    pub fn encode(&self) -> String {
        let text = match self {
            Cursor::After(id) => format!("v2:after:{id}"),
            Cursor::Before(id) => format!("v2:before:{id}"),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(text: &str) -> Result<Cursor, Problem> {
        let decoded = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| {
                let rest = t.strip_prefix("v2:")?;
                let (direction, id) = rest.split_once(':')?;
                let id = id.to_string();
                (!id.is_empty()).then_some(())?;
                match direction {
                    "after" => Some(Cursor::After(id)),
                    "before" => Some(Cursor::Before(id)),
                    _ => None,
                }
            });
        decoded.ok_or_else(|| Problem::bad_request("invalid_cursor", "invalid cursor parameter"))
    }
}

/// `Link` with `rel="next"` and `rel="prev"` for the cursors that exist.
pub fn links(
    path: &str,
    query: &[(&str, String)],
    next: &Option<String>,
    prev: &Option<String>,
) -> HeaderMap {
    let mut parts = Vec::new();
    for (cursor, rel) in [(next, "next"), (prev, "prev")] {
        if let Some(c) = cursor {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("cursor", c.clone()));
            let q = serde_urlencoded::to_string(&q).unwrap_or_default();
            parts.push(format!("<{path}?{q}>; rel=\"{rel}\""));
        }
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&parts.join(", ")) {
        if !parts.is_empty() {
            headers.insert(header::LINK, v);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_anything_else_is_invalid_cursor() {
        for c in [Cursor::After("conv".into()), Cursor::Before("a.b-c".into())] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        assert_eq!(Cursor::After("x".into()).encode(), "djI6YWZ0ZXI6eA");
        let v1 = URL_SAFE_NO_PAD.encode("v1:after:x");
        let sideways = URL_SAFE_NO_PAD.encode("v2:sideways:x");
        let empty = URL_SAFE_NO_PAD.encode("v2:after:");
        for bad in ["not-base64!", "", &v1, &sideways, &empty] {
            assert_eq!(
                Cursor::decode(bad).unwrap_err().code,
                "invalid_cursor",
                "{bad}"
            );
        }
    }
}
