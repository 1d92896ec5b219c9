//! The settings model: a TOML file, then `MEMWARDEN_<SECTION>__<KEY>` environment overrides,
//! then the command-line flags. Parsed and validated once; the rest of the runtime trusts it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variable short forms that operators script against (operations.md).
const SHORT_FORMS: &[(&str, &str)] = &[
    ("MEMWARDEN_API_TOKEN", "auth.api_token"),
    ("MEMWARDEN_ADMIN_TOKEN", "auth.admin_token"),
    (
        "MEMWARDEN_ADMIN_REQUIRE_JUSTIFICATION",
        "admin.require_justification",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A value that does not fit: always names the key.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub control: ControlSettings,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub queue: QueueSettings,
    /// Per-queue settings, keyed by queue name.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Per-kind settings, keyed by job kind.
    pub kinds: BTreeMap<String, KindConfig>,
    pub schedules: Vec<ScheduleConfig>,
    pub purge: PurgeSettings,
    pub blobs: BlobSettings,
    pub eviction: EvictionConfig,
    pub embedding: EmbeddingSettings,
    pub extraction: ExtractionSettings,
    pub enrichment: EnrichmentConfig,
    pub testing: TestingSettings,
}

/// The embedding provider: `hash` (offline, the default) or `openai` (any OpenAI-compatible
/// endpoint: OpenAI, Azure, vLLM, Ollama, TEI).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    pub provider: String,
    pub model: String,
    /// The `hash` embedder's size, or `dimensions` sent to an `openai` provider when set.
    pub dimensions: Option<u32>,
    pub base_url: String,
    pub api_key: Option<String>,
    pub max_batch_inputs: usize,
    pub max_batch_tokens: usize,
    pub timeout: f64,
    pub max_retries: u32,
    /// The most provider requests per minute that bulk work (reembed, sync) may make.
    pub requests_per_minute: u32,
    /// Provider requests bulk work keeps in flight at once (within `requests_per_minute`).
    pub concurrency: u32,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: "hash".into(),
            model: "text-embedding-3-small".into(),
            dimensions: None,
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            max_batch_inputs: 2048,
            max_batch_tokens: 300_000,
            timeout: 30.0,
            max_retries: 5,
            requests_per_minute: 3000,
            concurrency: 4,
        }
    }
}

/// Entity extraction: `rules` (the default) or `llm` (chat completions with a JSON schema, on
/// the embedding provider's base URL and key unless set here).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionSettings {
    pub provider: String,
    pub model: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// Extra names the rules recognise as tools and as projects.
    pub tools: Vec<String>,
    pub projects: Vec<String>,
}

impl Default for ExtractionSettings {
    fn default() -> Self {
        Self {
            provider: "rules".into(),
            model: "gpt-4o-mini".into(),
            base_url: None,
            api_key: None,
            tools: Vec::new(),
            projects: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    pub similarity_threshold: f32,
    pub top_k: usize,
    /// Memories the 5-minute catch-up enqueues at most per run.
    pub catchup_limit: i64,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.8,
            top_k: 5,
            catchup_limit: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    /// The directory of blob files (one file per blob, named by its storage key), shared with
    /// the memory service.
    pub dir: String,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            dir: "blobs".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvictionConfig {
    /// The daily schedule's retention period (ISO 8601).
    pub retention: String,
    /// What the daily schedule evicts.
    pub resource_types: Vec<String>,
    /// Rows per transaction, and the pause between transactions.
    pub batch_size: i64,
    pub pause_ms: u64,
    /// The longest a batch transaction may hold its locks; batches shrink to stay inside it.
    pub max_transaction_ms: u64,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        Self {
            retention: "P30D".into(),
            resource_types: vec!["conversations".into(), "attachments".into()],
            batch_size: 1000,
            pause_ms: 100,
            max_transaction_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<String>,
    /// A direct (non-pooler) connection for LISTEN, when `url` goes through PgBouncer.
    pub listen_url: Option<String>,
    pub migrate: bool,
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before an operation fails.
    pub acquire_timeout: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            listen_url: None,
            migrate: true,
            max_connections: 16,
            acquire_timeout: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    pub addr: String,
    /// Make `/healthz`, `/readyz`, `/metrics` or `/enrichment/status` require the API token.
    pub require_auth_healthz: bool,
    pub require_auth_readyz: bool,
    pub require_auth_metrics: bool,
    pub require_auth_enrichment_status: bool,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:9420".into(),
            require_auth_healthz: false,
            require_auth_readyz: false,
            require_auth_metrics: false,
            require_auth_enrichment_status: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub api_token: Option<String>,
    pub admin_token: Option<String>,
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub client_id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl KeyConfig {
    /// The sha256 of the key's token, which is what requests are compared against.
    pub fn digest(&self) -> [u8; 32] {
        match (&self.token, &self.token_sha256) {
            (Some(token), _) => Sha256::digest(token.as_bytes()).into(),
            (None, Some(hexed)) => {
                let mut out = [0u8; 32];
                // validate() guarantees 64 hex digits.
                let _ = hex::decode_to_slice(hexed, &mut out);
                out
            }
            (None, None) => [0u8; 32],
        }
    }
}

/// Memory Service's roles. `admin` implies the other two.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Auditor,
    Indexer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Indexer => "indexer",
        }
    }

    /// Whether a caller holding `self` may use a route that needs `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub require_justification: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// Seconds a stop waits for in-flight jobs before cancelling them.
    pub grace_period: f64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { grace_period: 25.0 }
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Milliseconds between fallback polls when no NOTIFY arrives.
    pub poll_interval_ms: u64,
    /// Seconds a claimed job's lease lasts without a heartbeat.
    pub lease: f64,
    pub heartbeat: f64,
    pub reaper_interval: f64,
    /// Seconds between refreshes of the queue-depth gauges.
    pub depth_interval: f64,
    /// Most jobs one claim statement takes.
    pub claim_batch: u32,
    /// Most completions one flush writes.
    pub complete_batch: u32,
    /// Milliseconds a completion may wait for others to share its flush.
    pub complete_delay_ms: u64,
    /// Completion writes in flight at once: while one waits for its commit, the next fills.
    pub complete_concurrency: u32,
    /// Default concurrency of a queue without a `[queues.NAME]` entry.
    pub default_concurrency: u32,
    /// Jobs a claimer may hold beyond its running ones, claimed ahead in one statement. More
    /// means fewer claims under load, but a replica holds that many jobs other replicas cannot
    /// take (they go back on a drain). 0 means "as many as the concurrency".
    pub prefetch: u32,
    /// Default attempt budget of a job.
    pub max_attempts: i32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            lease: 30.0,
            heartbeat: 10.0,
            reaper_interval: 5.0,
            depth_interval: 5.0,
            claim_batch: 200,
            complete_batch: 500,
            complete_delay_ms: 2,
            complete_concurrency: 2,
            default_concurrency: 10,
            prefetch: 0,
            max_attempts: 25,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub concurrency: u32,
    /// Overrides `queue.prefetch` for this queue.
    pub prefetch: Option<u32>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            prefetch: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KindConfig {
    /// Seconds before a running job of this kind is cancelled as `timed_out`.
    pub timeout: Option<f64>,
    pub max_attempts: Option<i32>,
    pub queue: Option<String>,
    /// Retry backoff: `min(base * 2^(attempt-1), cap)`, in seconds.
    pub backoff_base: Option<f64>,
    pub backoff_cap: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    pub cron: String,
    pub kind: String,
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub timezone: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn default_queue() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeSettings {
    /// Seconds: a purge cutoff must be at least this far in the past.
    pub min_retention: f64,
    /// What the hourly job-purge schedule removes: terminal jobs older than this many seconds.
    pub retention: f64,
    /// Jobs deleted per transaction.
    pub batch_size: i64,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            min_retention: 3600.0,
            retention: 7.0 * 24.0 * 3600.0,
            batch_size: 5000,
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

/// Where the settings came from, so a reload knows what to reread.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub control_addr: Option<String>,
    pub require_justification: bool,
}

impl Settings {
    /// Reads the file (if any), applies the environment and the flags, and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_parts(&text, path, &env, overrides)
    }

    /// The pure core of `load`, so tests need not touch the process environment.
    pub fn from_parts(
        text: &str,
        path: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut tree: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.map(Path::to_path_buf).unwrap_or_default(),
                    message: e.to_string(),
                })?;

        if let Some((_, url)) = env.iter().find(|(k, _)| k == "DATABASE_URL") {
            set_path(
                &mut tree,
                &["database", "url"],
                toml::Value::String(url.clone()),
            )?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("MEMWARDEN_") else {
                continue;
            };
            let dotted = if let Some((_, key)) = SHORT_FORMS.iter().find(|(n, _)| n == name) {
                key.to_string()
            } else if rest.contains("__") {
                rest.split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".")
            } else {
                continue; // MEMWARDEN_CONFIG and friends are not settings.
            };
            let parts: Vec<&str> = dotted.split('.').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::invalid(
                    name.clone(),
                    "is not of the form MEMWARDEN_<SECTION>__<KEY> (a part of the key is empty)",
                ));
            }
            set_path(&mut tree, &parts, scalar(value))?;
        }
        if let Some(url) = &overrides.database_url {
            set_path(
                &mut tree,
                &["database", "url"],
                toml::Value::String(url.clone()),
            )?;
        }
        if let Some(addr) = &overrides.control_addr {
            set_path(
                &mut tree,
                &["control", "addr"],
                toml::Value::String(addr.clone()),
            )?;
        }
        if overrides.require_justification {
            set_path(
                &mut tree,
                &["admin", "require_justification"],
                toml::Value::Boolean(true),
            )?;
        }

        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigError::invalid(
                    if key == "." { "(root)".into() } else { key },
                    e.inner().to_string(),
                )
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.control_addr()?;
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.listen_url", &self.database.listen_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::invalid(
                        key,
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
            }
        }
        if self.database.max_connections < 2 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 2",
            ));
        }
        positive("shutdown.grace_period", self.shutdown.grace_period, true)?;
        positive("queue.lease", self.queue.lease, false)?;
        positive("queue.heartbeat", self.queue.heartbeat, false)?;
        positive("queue.reaper_interval", self.queue.reaper_interval, false)?;
        positive("queue.depth_interval", self.queue.depth_interval, false)?;
        if self.queue.heartbeat >= self.queue.lease {
            return Err(ConfigError::invalid(
                "queue.heartbeat",
                "must be shorter than queue.lease",
            ));
        }
        if self.queue.claim_batch == 0 {
            return Err(ConfigError::invalid(
                "queue.claim_batch",
                "must be at least 1",
            ));
        }
        if self.queue.complete_batch == 0 {
            return Err(ConfigError::invalid(
                "queue.complete_batch",
                "must be at least 1",
            ));
        }
        if self.queue.default_concurrency == 0 {
            return Err(ConfigError::invalid(
                "queue.default_concurrency",
                "must be at least 1",
            ));
        }
        if self.queue.max_attempts < 1 {
            return Err(ConfigError::invalid(
                "queue.max_attempts",
                "must be at least 1",
            ));
        }
        for (name, q) in &self.queues {
            if q.concurrency == 0 {
                return Err(ConfigError::invalid(
                    format!("queues.{name}.concurrency"),
                    "must be at least 1",
                ));
            }
        }
        for (kind, k) in &self.kinds {
            if let Some(t) = k.timeout {
                positive(&format!("kinds.{kind}.timeout"), t, false)?;
            }
            if let Some(m) = k.max_attempts {
                if m < 1 {
                    return Err(ConfigError::invalid(
                        format!("kinds.{kind}.max_attempts"),
                        "must be at least 1",
                    ));
                }
            }
            if let Some(b) = k.backoff_base {
                positive(&format!("kinds.{kind}.backoff_base"), b, false)?;
            }
            if let Some(c) = k.backoff_cap {
                positive(&format!("kinds.{kind}.backoff_cap"), c, false)?;
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, key) in self.auth.keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            if key.client_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.client_id"),
                    "must not be empty",
                ));
            }
            if !ids.insert(key.client_id.clone()) {
                return Err(ConfigError::invalid(
                    format!("{at}.client_id"),
                    "is used by another key",
                ));
            }
            match (&key.token, &key.token_sha256) {
                (Some(t), None) if !t.is_empty() => {}
                (None, Some(h)) if h.len() == 64 && hex::decode(h).is_ok() => {}
                (None, Some(_)) => {
                    return Err(ConfigError::invalid(
                        format!("{at}.token_sha256"),
                        "must be 64 hex digits",
                    ))
                }
                _ => {
                    return Err(ConfigError::invalid(
                        at,
                        "needs exactly one of `token` or `token_sha256`",
                    ))
                }
            }
        }
        for (key, token) in [
            ("auth.api_token", &self.auth.api_token),
            ("auth.admin_token", &self.auth.admin_token),
        ] {
            if matches!(token, Some(t) if t.is_empty()) {
                return Err(ConfigError::invalid(key, "must not be empty when set"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("schedules[{i}]");
            if s.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    "must not be empty",
                ));
            }
            if !names.insert(s.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("`{}` is defined twice", s.name),
                ));
            }
            crate::queue::cron::CronSpec::parse(&s.cron, s.timezone.as_deref())
                .map_err(|e| ConfigError::invalid(format!("{at}.cron"), e.to_string()))?;
            if !s.args.is_object() {
                return Err(ConfigError::invalid(
                    format!("{at}.args"),
                    "must be a table",
                ));
            }
        }
        positive("purge.min_retention", self.purge.min_retention, true)?;
        positive("purge.retention", self.purge.retention, false)?;
        if self.purge.retention < self.purge.min_retention {
            return Err(ConfigError::invalid(
                "purge.retention",
                "must not be shorter than purge.min_retention",
            ));
        }
        if self.purge.batch_size < 1 {
            return Err(ConfigError::invalid(
                "purge.batch_size",
                "must be at least 1",
            ));
        }
        memwarden_jobs::eviction::RetentionPeriod::parse(Some(&self.eviction.retention))
            .map_err(|e| ConfigError::invalid("eviction.retention", e.to_string()))?;
        memwarden_jobs::eviction::parse_resource_types(&self.eviction.resource_types)
            .map_err(|e| ConfigError::invalid("eviction.resource_types", e.to_string()))?;
        if !matches!(self.embedding.provider.as_str(), "hash" | "openai") {
            return Err(ConfigError::invalid(
                "embedding.provider",
                "must be `hash` or `openai`",
            ));
        }
        if !matches!(self.extraction.provider.as_str(), "rules" | "llm") {
            return Err(ConfigError::invalid(
                "extraction.provider",
                "must be `rules` or `llm`",
            ));
        }
        if matches!(self.embedding.dimensions, Some(0)) {
            return Err(ConfigError::invalid(
                "embedding.dimensions",
                "must be at least 1",
            ));
        }
        positive("embedding.timeout", self.embedding.timeout, false)?;
        for (key, value) in [
            (
                "embedding.requests_per_minute",
                self.embedding.requests_per_minute,
            ),
            ("embedding.concurrency", self.embedding.concurrency),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.enrichment.similarity_threshold) {
            return Err(ConfigError::invalid(
                "enrichment.similarity_threshold",
                "must be between 0 and 1",
            ));
        }
        if self.eviction.batch_size < 1 {
            return Err(ConfigError::invalid(
                "eviction.batch_size",
                "must be at least 1",
            ));
        }
        if self.eviction.max_transaction_ms < 10 {
            return Err(ConfigError::invalid(
                "eviction.max_transaction_ms",
                "must be at least 10",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        Ok(())
    }

    pub fn control_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.control.addr.parse().map_err(|_| {
            ConfigError::invalid(
                "control.addr",
                format!("`{}` is not a host:port socket address", self.control.addr),
            )
        })
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database.url.as_deref()
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown.grace_period)
    }

    pub fn prefetch_of(&self, queue: &str) -> u32 {
        match self
            .queues
            .get(queue)
            .and_then(|q| q.prefetch)
            .unwrap_or(self.queue.prefetch)
        {
            0 => self.concurrency_of(queue),
            n => n,
        }
    }

    pub fn concurrency_of(&self, queue: &str) -> u32 {
        self.queues
            .get(queue)
            .map(|q| q.concurrency)
            .unwrap_or(self.queue.default_concurrency)
    }

    /// The effective settings as TOML, with every secret masked.
    pub fn masked_toml(&self) -> String {
        let mut copy = self.clone();
        let mask = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("********".into());
            }
        };
        mask(&mut copy.auth.api_token);
        mask(&mut copy.embedding.api_key);
        mask(&mut copy.extraction.api_key);
        mask(&mut copy.auth.admin_token);
        for key in &mut copy.auth.keys {
            mask(&mut key.token);
        }
        copy.database.url = copy.database.url.as_deref().map(mask_url_password);
        copy.database.listen_url = copy.database.listen_url.as_deref().map(mask_url_password);
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }

    /// Settings that a reload cannot change in a running process.
    pub fn restart_only_changes(&self, newer: &Settings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.database.url != newer.database.url {
            keys.push("database.url");
        }
        if self.database.listen_url != newer.database.listen_url {
            keys.push("database.listen_url");
        }
        if self.database.max_connections != newer.database.max_connections {
            keys.push("database.max_connections");
        }
        if self.control.addr != newer.control.addr {
            keys.push("control.addr");
        }
        keys
    }
}

/// Longer than any setting needs, and far inside what a `Duration` holds.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

fn positive(key: &str, value: f64, zero_ok: bool) -> Result<(), ConfigError> {
    if value.is_finite() && value > MAX_SECONDS {
        return Err(ConfigError::invalid(
            key,
            format!("{value} s is longer than ten years"),
        ));
    }
    if !value.is_finite() || value < 0.0 || (!zero_ok && value == 0.0) {
        let need = if zero_ok {
            "zero or more"
        } else {
            "greater than zero"
        };
        return Err(ConfigError::invalid(
            key,
            format!("must be a number of seconds {need}, got {value}"),
        ));
    }
    Ok(())
}

/// `postgres://user:secret@host/db` → `postgres://user:********@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:********{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Environment values are strings; read them as the TOML scalar they spell, so that
/// `MEMWARDEN_SHUTDOWN__GRACE_PERIOD=5` is a number and `...=true` a boolean.
fn scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if raw.chars().any(|c| c.is_ascii_digit()) {
            return toml::Value::Float(f);
        }
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(tree: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("a key path is never empty");
    let mut node = tree;
    for (depth, part) in parents.iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            ConfigError::invalid(
                path[..=depth].join("."),
                "is not a table, so it cannot take a nested override",
            )
        })?;
    }
    // Integers given for float settings must still deserialize: serde's f64 accepts i64 from toml.
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_parts(text, None, &env, &Overrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.control.addr, "127.0.0.1:9420");
        assert_eq!(s.shutdown.grace_period, 25.0);
        assert!(s.database.migrate);
    }

    #[test]
    fn environment_overrides_file_and_database_url_is_honoured() {
        let s = load(
            "[shutdown]\ngrace_period = 10\n[control]\naddr = \"127.0.0.1:1\"\n",
            &[
                ("MEMWARDEN_SHUTDOWN__GRACE_PERIOD", "3"),
                ("DATABASE_URL", "postgres://a@b/c"),
                ("MEMWARDEN_API_TOKEN", "tok"),
                ("MEMWARDEN_CONFIG", "/ignored"),
            ],
        )
        .unwrap();
        assert_eq!(s.shutdown.grace_period, 3.0);
        assert_eq!(s.control.addr, "127.0.0.1:1");
        assert_eq!(s.database.url.as_deref(), Some("postgres://a@b/c"));
        assert_eq!(s.auth.api_token.as_deref(), Some("tok"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[shutdown]\ngrace_period = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("shutdown.grace_period"), "{e}");
        let e = load("[control]\naddr = \"nowhere\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("control.addr"), "{e}");
        let e = load("", &[("MEMWARDEN_QUEUE__LEASE", "-1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue.lease"), "{e}");
        let e = load("[control]\nbogus = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("control") && e.contains("bogus"), "{e}");
        let e = load(
            "[[auth.keys]]\nclient_id = \"a\"\nrole = \"root\"\ntoken = \"x\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth.keys[0].role"), "{e}");
        let e = load(
            "[[schedules]]\nname = \"x\"\ncron = \"every day\"\nkind = \"job-purge\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schedules[0].cron"), "{e}");
    }

    #[test]
    fn seconds_too_large_for_a_duration_and_empty_env_key_parts_are_refused() {
        let e = load("[shutdown]\ngrace_period = 1e300\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shutdown.grace_period") && e.contains("ten years"),
            "{e}"
        );
        let e = load("", &[("MEMWARDEN___", "0")]).unwrap_err().to_string();
        assert!(e.contains("MEMWARDEN___"), "{e}");
        let e = load("", &[("MEMWARDEN_QUEUE__", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MEMWARDEN_QUEUE__"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let s = load(
            "[database]\nurl = \"postgres://u:hunter2@h/db\"\n[auth]\napi_token = \"sekrit-api\"\n[[auth.keys]]\nclient_id = \"sdk\"\nrole = \"admin\"\ntoken = \"sekrit-key\"\n",
            &[],
        )
        .unwrap();
        let shown = s.masked_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert!(shown.contains("postgres://u:********@h/db"), "{shown}");
    }
}
