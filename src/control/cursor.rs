//! Paging of lists: `limit` (default 50, at most 500), opaque cursors (`<tag>:<position>`,
//! base64url, so clients pass them back without reading them; each list has its own tag, and
//! a cursor of another list is refused), and the `Link: <...>; rel="next"` header.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::problem::Problem;

pub const LIST_DEFAULT: i64 = 50;
pub const LIST_MAX: i64 = 500;

/// The page size a list was asked for: 1 to 500, 50 when not given.
pub fn page_limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit.unwrap_or(LIST_DEFAULT) {
        n if (1..=LIST_MAX).contains(&n) => Ok(n),
        n => Err(Problem::bad_request(
            "invalid_query",
            format!("query parameter `limit`: must be 1 to {LIST_MAX}, got {n}"),
        )),
    }
}

/// The `Link` header of a page with more after it: `path` with `params` and the cursor.
pub fn next_link(
    path: &str,
    cursor: &str,
    limit: i64,
    params: &[(&str, &Option<String>)],
) -> HeaderMap {
    let mut query: Vec<(&str, String)> =
        vec![("cursor", cursor.to_string()), ("limit", limit.to_string())];
    query.extend(
        params
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone()))),
    );
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
        headers.insert(header::LINK, v);
    }
    headers
}

/// The lists that page with cursors, and their tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Jobs,
    Audit,
    Memories,
    LogPolicies,
}

impl List {
    fn tag(self) -> &'static str {
        match self {
            List::Jobs => "j1",
            List::Audit => "a1",
            List::Memories => "m1",
            List::LogPolicies => "p1",
        }
    }
}

pub fn encode(list: List, position: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{position}", list.tag()))
}

/// The position a cursor of `list` names; 400 `invalid_cursor` for anything else.
pub fn decode<T: std::str::FromStr>(list: List, cursor: &str) -> Result<T, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.strip_prefix(list.tag())?
                .strip_prefix(':')?
                .parse()
                .ok()
        })
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_cursor",
                "query parameter `cursor`: not a cursor this server issued",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_lists_cursor() {
        let c = encode(List::Audit, 42);
        assert_eq!(decode::<i64>(List::Audit, &c).unwrap(), 42);
        assert_eq!(
            decode::<i64>(List::Jobs, &c).unwrap_err().code,
            "invalid_cursor"
        );
        assert!(decode::<i64>(List::Audit, "not base64 !").is_err());
    }
}
