//! Entity extraction: who and what a memory mentions.
//!
//! [`RuleExtractor`] is the default: fast, offline and deterministic. [`LlmExtractor`] asks a
//! chat model for the same [`Entity`] list through a JSON-schema answer. Either way the result
//! goes through [`normalize`], so each `(category, slug)` appears once, in a stable order.

mod llm;
mod rules;
mod words;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use llm::{LlmExtractionConfig, LlmExtractor};
pub use rules::RuleExtractor;
pub use words::DEFAULT_TOOLS;

/// Finds entities in a text.
#[async_trait]
pub trait Extractor: Send + Sync {
    async fn extract(&self, text: &str) -> Result<Vec<Entity>, ExtractError>;
}

/// One mention: its category, the text as written, and the slug that identifies it
/// (`entity:<categories>:<slug>` is the memory's tag for it, the category plural as AutoMem
/// spells its tags).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entity {
    pub category: Category,
    pub value: String,
    pub slug: String,
}

impl Entity {
    /// An entity whose slug is derived from its value.
    pub fn new(category: Category, value: impl Into<String>) -> Entity {
        let value = value.into();
        Entity {
            slug: slugify(&value),
            category,
            value,
        }
    }

    /// The memory tag that stands for this entity, as AutoMem writes it:
    /// `entity:people:ada-lovelace`.
    pub fn tag(&self) -> String {
        format!("entity:{}:{}", self.category.plural(), self.slug)
    }
}

/// The ten entity categories of the memory store (`memory_entities.category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Person,
    Organization,
    Project,
    Tool,
    Concept,
    Email,
    Url,
    Handle,
    Hashtag,
    Date,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::Person,
        Category::Organization,
        Category::Project,
        Category::Tool,
        Category::Concept,
        Category::Email,
        Category::Url,
        Category::Handle,
        Category::Hashtag,
        Category::Date,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Person => "person",
            Category::Organization => "organization",
            Category::Project => "project",
            Category::Tool => "tool",
            Category::Concept => "concept",
            Category::Email => "email",
            Category::Url => "url",
            Category::Handle => "handle",
            Category::Hashtag => "hashtag",
            Category::Date => "date",
        }
    }

    /// The category as AutoMem names it in tags and in `metadata.entities` (`people`, `tools`,
    /// `projects`, `concepts`, `organizations`); the five AutoMem lacks take a plural too.
    pub fn plural(self) -> &'static str {
        match self {
            Category::Person => "people",
            Category::Organization => "organizations",
            Category::Project => "projects",
            Category::Tool => "tools",
            Category::Concept => "concepts",
            Category::Email => "emails",
            Category::Url => "urls",
            Category::Handle => "handles",
            Category::Hashtag => "hashtags",
            Category::Date => "dates",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown entity category {0:?}")]
pub struct UnknownCategory(pub String);

/// Why extraction failed. Only the LLM extractor can fail; the rules cannot.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExtractError {
    /// 429 after async-openai's own retries: retry the job later.
    #[error("extraction model rate limited the request: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// `insufficient_quota`: no retry helps until a person acts.
    #[error("extraction model quota exhausted (insufficient_quota): {0}")]
    QuotaExceeded(String),
    /// 5xx, timeouts, connection failures.
    #[error("extraction model unavailable: {0}")]
    Transient(String),
    /// An answer that is not the requested JSON.
    #[error("extraction model answered wrongly: {0}")]
    BadResponse(String),
    /// A request the provider refuses as such (bad model, bad key).
    #[error("extraction model refused the request: {0}")]
    Permanent(String),
}

impl ExtractError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExtractError::RateLimited { .. }
                | ExtractError::Transient(_)
                | ExtractError::BadResponse(_)
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExtractError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider is pacing us: the job waits without using an attempt.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, ExtractError::RateLimited { .. })
    }
}

/// Lowercased letters and digits, every run of anything else turned into one `-`, no `-` at
/// either end, at most 80 characters:
/// "Ada Lovelace" → `ada-lovelace`, "alice@example.com" → `alice-example-com`.
pub fn slugify(value: &str) -> String {
    let mut slug = String::with_capacity(value.len());
    let mut dash = false;
    for c in value.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c);
        } else {
            dash = true;
        }
    }
    match slug.char_indices().nth(80) {
        Some((cut, _)) => slug[..cut].trim_end_matches('-').to_string(),
        None => slug,
    }
}

/// One entity per `(category, slug)` (the first value seen wins), none with an empty slug
/// or value, sorted by category and slug: what the enrichment stores and tags.
pub fn normalize(entities: Vec<Entity>) -> Vec<Entity> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Entity> = entities
        .into_iter()
        .filter_map(|mut e| {
            e.value = e.value.trim().to_string();
            if e.slug.is_empty() {
                e.slug = slugify(&e.value);
            }
            (!e.slug.is_empty() && !e.value.is_empty()).then_some(e)
        })
        .filter(|e| seen.insert((e.category, e.slug.clone())))
        .collect();
    out.sort_by(|a, b| (a.category, &a.slug).cmp(&(b.category, &b.slug)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Ada Lovelace"), "ada-lovelace");
        assert_eq!(slugify("alice@example.com"), "alice-example-com");
        assert_eq!(slugify("  --Hello, World!--  "), "hello-world");
        assert_eq!(slugify("2024-05-01"), "2024-05-01");
        assert_eq!(slugify("Zürich"), "zürich");
        assert_eq!(slugify(&"a".repeat(200)).len(), 80);
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn categories_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert!("planet".parse::<Category>().is_err());
    }

    #[test]
    fn normalize_dedupes_and_sorts() {
        let out = normalize(vec![
            Entity::new(Category::Tool, "Rust"),
            Entity::new(Category::Person, "Ada Lovelace"),
            Entity::new(Category::Tool, "rust"),
            Entity::new(Category::Tool, "  "),
        ]);
        assert_eq!(
            out,
            vec![
                Entity::new(Category::Person, "Ada Lovelace"),
                Entity::new(Category::Tool, "Rust"),
            ]
        );
        assert_eq!(out[0].tag(), "entity:people:ada-lovelace");
    }
}
