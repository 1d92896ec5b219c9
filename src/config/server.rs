//! The process's own sections: database, control port, admin, shutdown, log, testing.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use super::seconds::{PositiveSeconds, Seconds};

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<String>,
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
