//! The process's own sections: database, control port, admin, shutdown, log, testing.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use super::seconds::{PositiveSeconds, Seconds};

/// The PostgreSQL schema that holds every table, function and index of memwarden's: a plain
/// lowercase identifier, so it needs no quoting anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schema(String);

impl Schema {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Schema {
    fn default() -> Self {
        Schema("memwarden".into())
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Schema {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 48
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !s.starts_with("pg_")
            && s != "public";
        if ok {
            Ok(Schema(s))
        } else {
            Err(format!(
                "`{s}` is not a schema name memwarden can own: lowercase letters, digits and `_`, \
                 at most 48, not starting with a digit or `pg_`, and not `public`"
            ))
        }
    }
}

impl From<Schema> for String {
    fn from(s: Schema) -> String {
        s.0
    }
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<String>,
    /// Where memwarden's tables live (never `public`); NOTIFY channels are named after it.
    pub schema: Schema,
    /// A direct (non-pooler) connection for LISTEN, when `url` goes through PgBouncer.
    pub listen_url: Option<String>,
    pub migrate: bool,
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection before it fails.
    #[serde_as(as = "PositiveSeconds")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            schema: Schema::default(),
            listen_url: None,
            migrate: true,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    pub addr: SocketAddr,
    /// Make `/healthz`, `/readyz`, `/metrics` or `/enrichment/status` require the API token.
    pub require_auth_healthz: bool,
    pub require_auth_readyz: bool,
    pub require_auth_metrics: bool,
    pub require_auth_enrichment_status: bool,
}

pub const DEFAULT_CONTROL_ADDR: &str = "127.0.0.1:9420";

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            addr: DEFAULT_CONTROL_ADDR.parse().expect("a socket address"),
            require_auth_healthz: false,
            require_auth_readyz: false,
            require_auth_metrics: false,
            require_auth_enrichment_status: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub require_justification: bool,
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long a stop waits for in-flight jobs before cancelling them.
    #[serde_as(as = "Seconds")]
    pub grace_period: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(25),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `RUST_LOG`-style filter.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Switches for test and benchmark harnesses; off in production.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TestingSettings {
    /// Registers the `probe` job kind, whose args script its behaviour (sleep, fail, panic,
    /// record an effect). The reliability suite drives the daemon with it.
    pub probe_kinds: bool,
}
