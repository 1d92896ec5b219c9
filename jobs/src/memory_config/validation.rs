//! The checks a memory configuration passes before it is stored, each failure naming its
//! field. A stored configuration is therefore one the flush, expiry and privacy jobs can always
//! run: its durations parse and its patterns compile.

use regex::RegexBuilder;

use super::{parse_duration, MemoryConfig, MemoryType};

/// At most this many redaction patterns, each at most this long.
pub const REDACT_PATTERNS_MAX: usize = 64;
pub const REDACT_PATTERN_MAX_LEN: usize = 1024;
/// The compiled size a pattern may reach (the `regex` crate's own default is 10 MiB); a pattern
/// like `(a{1000}){1000}` exceeds it and is refused rather than run.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const ID_MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct InvalidConfig {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        field: field.to_string(),
        message: message.into(),
    }
}

fn check(ok: bool, field: &str, message: &str) -> Result<(), InvalidConfig> {
    if ok {
        Ok(())
    } else {
        Err(invalid(field, message))
    }
}

fn duration(field: &str, value: &Option<String>) -> Result<(), InvalidConfig> {
    match value {
        Some(v) => parse_duration(v).map(|_| ()).map_err(|m| invalid(field, m)),
        None => Ok(()),
    }
}

/// A redaction pattern compiled as validation checks it, for the jobs that apply it.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A memory id: 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter or digit.
pub fn check_id(id: &str) -> Result<(), InvalidConfig> {
    let mut chars = id.chars();
    let ok = id.len() <= ID_MAX_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    check(
        ok,
        "memory_id",
        "must be 1 to 128 letters, digits, '_', '-' or '.', starting with a letter or digit",
    )
}

impl MemoryConfig {
    /// Every check, in the order of the fields.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(r) = &self.resource {
            check(r == "memory", "resource", "must be \"memory\" when given")?;
        }
        if let Some(id) = &self.id {
            check_id(id).map_err(|e| invalid("id", e.message))?;
        }
        self.validate_limits()?;
        self.validate_flushing()?;
        check(
            !self.persistence.kind.persists() || self.persistence.ttl.is_some(),
            "persistence.ttl",
            "is required when persistence.type persists (redis or postgres)",
        )?;
        duration("persistence.ttl", &self.persistence.ttl)?;
        if let Some(l) = &self.locking {
            duration("locking.append_ttl", &l.append_ttl)?;
            duration("locking.clear_ttl", &l.clear_ttl)?;
            duration("locking.flush_ttl", &l.flush_ttl)?;
        }
        self.validate_privacy()
    }

    fn validate_limits(&self) -> Result<(), InvalidConfig> {
        check(
            self.max_tokens != Some(0),
            "max_tokens",
            "must be greater than 0",
        )?;
        check(
            self.max_messages != Some(0),
            "max_messages",
            "must be greater than 0",
        )?;
        if let Some(r) = self.max_context_ratio {
            check(
                r > 0.0 && r <= 1.0,
                "max_context_ratio",
                "must be in (0, 1]",
            )?;
        }
        match self.kind {
            MemoryType::TokenBased => check(
                self.max_tokens.is_some() || self.max_context_ratio.is_some(),
                "max_tokens",
                "is required for type token_based (or max_context_ratio)",
            )?,
            MemoryType::MessageCountBased => check(
                self.max_messages.is_some(),
                "max_messages",
                "is required for type message_count_based",
            )?,
            MemoryType::Buffer => {}
        }
        if let Some(a) = &self.token_allocation {
            let parts = [
                ("token_allocation.short_term".to_string(), a.short_term),
                ("token_allocation.long_term".to_string(), a.long_term),
                ("token_allocation.system".to_string(), a.system),
            ]
            .into_iter()
            .chain(
                a.user_defined
                    .iter()
                    .map(|(k, v)| (format!("token_allocation.user_defined.{k}"), *v)),
            );
            let mut sum = 0.0;
            for (field, v) in parts {
                check((0.0..=1.0).contains(&v), &field, "must be in [0, 1]")?;
                sum += v;
            }
            check(
                (sum - 1.0).abs() <= 0.001,
                "token_allocation",
                &format!("the parts must sum to 1 (within 0.001), got {sum}"),
            )?;
        }
        Ok(())
    }

    fn validate_flushing(&self) -> Result<(), InvalidConfig> {
        let Some(f) = &self.flushing else {
            return Ok(());
        };
        if let Some(t) = f.summarize_threshold {
            check(
                t > 0.0 && t <= 1.0,
                "flushing.summarize_threshold",
                "must be in (0, 1]",
            )?;
        }
        check(
            f.summary_tokens != Some(0),
            "flushing.summary_tokens",
            "must be greater than 0",
        )?;
        if let Some(p) = f.summarize_oldest_percent {
            check(
                p > 0.0 && p <= 100.0,
                "flushing.summarize_oldest_percent",
                "must be in (0, 100]",
            )?;
        }
        Ok(())
    }

    fn validate_privacy(&self) -> Result<(), InvalidConfig> {
        let Some(p) = &self.privacy_policy else {
            return Ok(());
        };
        check(
            p.redact_patterns.len() <= REDACT_PATTERNS_MAX,
            "privacy_policy.redact_patterns",
            &format!("at most {REDACT_PATTERNS_MAX} patterns"),
        )?;
        for (i, pattern) in p.redact_patterns.iter().enumerate() {
            let field = format!("privacy_policy.redact_patterns[{i}]");
            check(!pattern.is_empty(), &field, "must not be empty")?;
            check(
                pattern.len() <= REDACT_PATTERN_MAX_LEN,
                &field,
                &format!("must be at most {REDACT_PATTERN_MAX_LEN} bytes"),
            )?;
            // The regex crate matches in linear time, and refuses backreferences and
            // look-around, the constructs that make other engines backtrack for ever.
            compile_pattern(pattern)
                .map_err(|e| invalid(&field, format!("does not compile: {e}")))?;
        }
        for (i, t) in p.non_persistable_message_types.iter().enumerate() {
            check(
                !t.trim().is_empty(),
                &format!("privacy_policy.non_persistable_message_types[{i}]"),
                "must not be empty",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(v: serde_json::Value) -> MemoryConfig {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({"type": "token_based", "max_tokens": 4000,
               "persistence": {"type": "redis", "ttl": "24h"}})
    }

    fn with(path: &[&str], value: serde_json::Value) -> MemoryConfig {
        let mut v = base();
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(p.to_string())
                .or_insert(json!({}));
        }
        at[path[path.len() - 1]] = value;
        config(v)
    }

    #[test]
    fn a_sound_configuration_passes() {
        let c = config(json!({
            "resource": "memory", "id": "conversation", "type": "token_based",
            "max_tokens": 4000, "max_messages": 100,
            "token_allocation": {"short_term": 0.6, "long_term": 0.3, "system": 0.1},
            "flushing": {"type": "hybrid_summary", "summarize_threshold": 0.8,
                         "summary_tokens": 500, "summarize_oldest_percent": 30},
            "persistence": {"type": "redis", "ttl": "168h"},
            "privacy_policy": {"redact_patterns": ["\\b\\d{3}-\\d{2}-\\d{4}\\b"],
                               "non_persistable_message_types": ["system"],
                               "default_redaction_string": "[SSN]"},
            "locking": {"append_ttl": "30s", "flush_ttl": "5m"},
            "token_provider": {"provider": "openai", "model": "gpt-4o", "api_key_env": "OPENAI_API_KEY"}
        }));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.ttl(), Some(std::time::Duration::from_secs(168 * 3600)));
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases = [
            (with(&["max_tokens"], json!(0)), "max_tokens"),
            (
                with(&["max_context_ratio"], json!(1.5)),
                "max_context_ratio",
            ),
            (
                with(
                    &["token_allocation"],
                    json!({"short_term": 0.5, "long_term": 0.3, "system": 0.1}),
                ),
                "token_allocation",
            ),
            (
                with(
                    &["token_allocation"],
                    json!({"short_term": 1.5, "long_term": -0.5, "system": 0.0}),
                ),
                "token_allocation.short_term",
            ),
            (
                with(
                    &["flushing"],
                    json!({"type": "lru", "summarize_threshold": 0}),
                ),
                "flushing.summarize_threshold",
            ),
            (
                with(&["flushing"], json!({"type": "lru", "summary_tokens": 0})),
                "flushing.summary_tokens",
            ),
            (
                with(
                    &["flushing"],
                    json!({"type": "hybrid_summary", "summarize_oldest_percent": 101}),
                ),
                "flushing.summarize_oldest_percent",
            ),
            (
                with(&["persistence", "ttl"], json!("forever")),
                "persistence.ttl",
            ),
            (
                with(&["persistence"], json!({"type": "redis"})),
                "persistence.ttl",
            ),
            (
                with(&["locking", "flush_ttl"], json!("5 parsecs")),
                "locking.flush_ttl",
            ),
            (
                with(
                    &["privacy_policy", "redact_patterns"],
                    json!(["ok", "(unclosed"]),
                ),
                "privacy_policy.redact_patterns[1]",
            ),
            (
                with(&["privacy_policy", "redact_patterns"], json!(["(a)\\1"])),
                "privacy_policy.redact_patterns[0]",
            ),
            (
                with(
                    &["privacy_policy", "redact_patterns"],
                    json!(["(a{1000}){1000}"]),
                ),
                "privacy_policy.redact_patterns[0]",
            ),
            (with(&["resource"], json!("agent")), "resource"),
            (with(&["id"], json!("../etc")), "id"),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let mut v = base();
        v["type"] = json!("message_count_based");
        assert_eq!(config(v).validate().unwrap_err().field, "max_messages");
        let mut v = base();
        v["persistence"] = json!({"type": "in_memory"});
        assert_eq!(config(v).validate(), Ok(()), "in_memory needs no ttl");
    }

    #[test]
    fn unknown_types_and_fields_do_not_parse() {
        for v in [
            json!({"type": "vector", "persistence": {"type": "redis", "ttl": "1h"}}),
            json!({"type": "buffer", "persistence": {"type": "redis", "ttl": "1h"}, "flushing": {"type": "lifo"}}),
            json!({"type": "buffer", "persistence": {"type": "redis", "ttl": "1h"}, "max_tokenz": 5}),
            json!({"type": "buffer"}),
        ] {
            assert!(
                serde_json::from_value::<MemoryConfig>(v.clone()).is_err(),
                "{v}"
            );
        }
    }

    #[test]
    fn ids_are_plain_names() {
        for ok in ["conversation", "a", "user-memory_v2.1"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
