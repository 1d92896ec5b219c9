//! Memory configurations, as Compozy's `/api/v0/memories` resource spells them: how a
//! conversation's memory is kept (its limits), when and how it is flushed (trimmed or
//! summarised), how long its entries live, and what is redacted or never stored. A
//! conversation that references one (`conversations.memory_config_id`) has that work run by
//! the queue.
//!
//! This module is the configuration itself: its shape (snake_case, unknown fields refused),
//! and the checks that make a stored configuration one the jobs can always run.

mod durations;
mod validation;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use durations::parse_duration;
pub use validation::{
    check_id, compile_pattern, InvalidConfig, REDACT_PATTERNS_MAX, REDACT_PATTERN_MAX_LEN,
};

/// What drives the memory's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryType {
    TokenBased,
    MessageCountBased,
    Buffer,
}

/// How a memory over its limits is brought back under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushType {
    /// The oldest entries go.
    SimpleFifo,
    /// The least recently written entries go (memwarden keeps no read times, so this is the
    /// oldest by write, as `simple_fifo`).
    Lru,
    /// The oldest `summarize_oldest_percent` become one summary entry.
    HybridSummary,
    /// The oldest entries go until the token count is under the limit.
    TokenAwareLru,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceType {
    Redis,
    InMemory,
    Postgres,
}

impl PersistenceType {
    /// Whether entries outlive the process that wrote them, and so need a `ttl`.
    pub fn persists(self) -> bool {
        !matches!(self, PersistenceType::InMemory)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAllocation {
    pub short_term: f64,
    pub long_term: f64,
    pub system: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_defined: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flushing {
    #[serde(rename = "type")]
    pub kind: FlushType,
    /// The share of `max_tokens` (or `max_messages`) at which a flush starts, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarize_threshold: Option<f64>,
    /// The most tokens a summary may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_tokens: Option<u32>,
    /// The share of the oldest entries a summary replaces, in percent, in (0, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarize_oldest_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    #[serde(rename = "type")]
    pub kind: PersistenceType,
    /// How long an entry lives (a duration: `24h`, `30m`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyPolicy {
    /// Regular expressions (Rust `regex` syntax) whose matches are replaced in entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact_patterns: Vec<String>,
    /// Entry roles that are never kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_persistable_message_types: Vec<String>,
    /// What a match is replaced with (`[REDACTED]` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_redaction_string: Option<String>,
}

impl PrivacyPolicy {
    pub const DEFAULT_REDACTION: &'static str = "[REDACTED]";

    pub fn redaction(&self) -> &str {
        self.default_redaction_string
            .as_deref()
            .unwrap_or(Self::DEFAULT_REDACTION)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ttl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Stored, and never shown: reads mask it (`masked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

/// One memory configuration. `id` and `resource` are the resource's own: the store keeps
/// `id` from the path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: MemoryType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_context_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_allocation: Option<TokenAllocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushing: Option<Flushing>,
    pub persistence: Persistence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_policy: Option<PrivacyPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking: Option<Locking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_provider: Option<TokenProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key_template: Option<String>,
}

/// What `api_key` reads as.
pub const MASKED_KEY: &str = "********";

impl MemoryConfig {
    /// How long an entry lives, when the configuration says (validation has parsed it).
    pub fn ttl(&self) -> Option<Duration> {
        self.persistence
            .ttl
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
    }

    /// The configuration as every read shows it: a `token_provider.api_key` is masked.
    pub fn masked(&self) -> MemoryConfig {
        let mut copy = self.clone();
        if let Some(tp) = copy.token_provider.as_mut() {
            if tp.api_key.is_some() {
                tp.api_key = Some(MASKED_KEY.into());
            }
        }
        copy
    }
}
