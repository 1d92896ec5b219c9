//! Strong entity tags: the sha256 of a configuration's canonical JSON (its fields in a fixed
//! order, maps sorted), and the `If-Match` values a write accepts.

use axum::http::HeaderMap;
use memwarden_jobs::memory_config::MemoryConfig;
use sha2::{Digest, Sha256};

use crate::control::problem::Problem;

/// The tag of a stored configuration (without the quotes the header adds).
pub fn of(config: &MemoryConfig) -> String {
    let canonical = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// `"<tag>"` as the `ETag` header carries it.
pub fn quoted(tag: &str) -> String {
    format!("\"{tag}\"")
}

/// The strong tag of `If-Match`, if one was sent. A weak tag (`W/"..."`), `*`, a list or an
/// unquoted value is refused: a write must name the exact version it replaces.
pub fn if_match(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Problem::bad_request(
            "invalid_if_match",
            format!("header `If-Match`: {why}; send the strong ETag of the version you read"),
        )
    };
    let text = value
        .to_str()
        .map_err(|_| refuse("not visible ASCII"))?
        .trim();
    if text == "*" {
        return Err(refuse("`*` is not accepted"));
    }
    if text.starts_with("W/") {
        return Err(refuse("a weak tag is not accepted"));
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.is_empty() && !t.contains('"'))
        .ok_or_else(|| refuse("not one quoted entity tag"))?;
    Ok(Some(inner.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("if-match", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_one_strong_tag_is_accepted() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            if_match(&headers("\"abc\"")).unwrap(),
            Some("abc".to_string())
        );
        for bad in ["*", "W/\"abc\"", "abc", "\"a\", \"b\"", "\"\""] {
            assert_eq!(
                if_match(&headers(bad)).unwrap_err().code,
                "invalid_if_match",
                "{bad}"
            );
        }
    }
}
