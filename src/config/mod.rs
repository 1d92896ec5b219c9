//! The settings model: a TOML file, then `MEMWARDEN_<SECTION>__<KEY>` environment overrides,
//! then the command-line flags (`layering`). Parsed into types once (durations are
//! `Duration`, providers enums, cron expressions `CronExpr`, counts `NonZero*`), with the few
//! rules types cannot state in `validation`; the rest of the runtime trusts what it gets.

mod auth;
mod file;
mod layering;
mod masking;
mod queue;
mod schedules;
mod seconds;
mod server;
mod store;
mod validation;
mod work;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auth::{AuthSettings, KeyConfig, Role};
pub use file::FileMetadata;
pub use masking::mask_url_password;
pub use queue::{attempts, KindConfig, Kinds, PurgeSettings, QueueConfig, QueueSettings, Queues};
pub use schedules::{ScheduleConfig, ScheduleSource, ScheduleSpec, DEFAULT_NAMES};
pub use server::{
    AdminSettings, ControlSettings, DatabaseSettings, LogSettings, Schema, ShutdownSettings,
    TestingSettings, DEFAULT_CONTROL_ADDR,
};
pub use store::{AttachmentKind, StoreKind, StoreSettings};
pub use work::{
    BlobSettings, EmbeddingProvider, EmbeddingSettings, EnrichmentConfig, EvictionConfig,
    ExtractionProvider, ExtractionSettings, RetrieveLogSettings, VectorSettings,
};

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
    pub queues: Queues,
    pub kinds: Kinds,
    /// The `[[schedules]]` entries as written; `effective_schedules` adds the defaults.
    pub schedules: Vec<ScheduleConfig>,
    pub purge: PurgeSettings,
    pub store: StoreSettings,
    pub blobs: BlobSettings,
    pub eviction: EvictionConfig,
    pub retrieve_logs: RetrieveLogSettings,
    pub embedding: EmbeddingSettings,
    pub vector: VectorSettings,
    pub extraction: ExtractionSettings,
    pub enrichment: EnrichmentConfig,
    pub testing: TestingSettings,
}

/// What the command line set, so a reload knows what to apply again over the file.
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
        let settings = layering::merge(text, path, env, overrides)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database.url.as_deref()
    }

    pub fn grace_period(&self) -> Duration {
        self.shutdown.grace_period
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
            .get()
    }

    /// Settings that a reload cannot change in a running process.
    pub fn restart_only_changes(&self, newer: &Settings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.database.url != newer.database.url {
            keys.push("database.url");
        }
        if self.database.schema != newer.database.schema {
            keys.push("database.schema");
        }
        if self.store != newer.store {
            // Checked against the database at start, so a change needs one.
            keys.push("store");
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
        assert_eq!(s.control.addr.to_string(), "127.0.0.1:9420");
        assert_eq!(s.shutdown.grace_period, Duration::from_secs(25));
        assert!(s.database.migrate);
    }

    #[test]
    fn seed_systems_variables_are_read_and_memwarden_own_win() {
        let s = load(
            "",
            &[
                ("AUTOMEM_API_TOKEN", "automem-api"),
                ("ADMIN_API_TOKEN", "automem-admin"),
                ("MEMORY_SERVICE_ADMIN_REQUIRE_JUSTIFICATION", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.auth.api_token.as_deref(), Some("automem-api"));
        assert_eq!(s.auth.admin_token.as_deref(), Some("automem-admin"));
        assert!(s.admin.require_justification);
        let s = load(
            "",
            &[
                ("MEMWARDEN_ADMIN_TOKEN", "own"),
                ("ADMIN_API_TOKEN", "automem-admin"),
            ],
        )
        .unwrap();
        assert_eq!(s.auth.admin_token.as_deref(), Some("own"));
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
        assert_eq!(s.shutdown.grace_period, Duration::from_secs(3));
        assert_eq!(s.control.addr.to_string(), "127.0.0.1:1");
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
            "[database]\nurl = \"postgres://u:hunter2@h/db\"\n[auth]\napi_token = \"sekrit-api\"\n[blobs]\ndownload_url_key = \"sekrit-sekrit-sekrit-sekrit-sekrit\"\n[[auth.keys]]\nclient_id = \"sdk\"\nrole = \"admin\"\ntoken = \"sekrit-key\"\n",
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

    #[test]
    fn a_default_schedule_is_overridden_by_name_alone() {
        let s = load("[[schedules]]\nname = \"sync\"\nenabled = false\n", &[]).unwrap();
        let effective = s.effective_schedules();
        let names: Vec<&str> = effective.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, DEFAULT_NAMES);
        let sync = effective.iter().find(|s| s.name == "sync").unwrap();
        assert!(!sync.enabled);
        assert_eq!(sync.cron.as_str(), "0 30 * * * *");
        assert_eq!(sync.kind, "sync");
        assert_eq!(sync.source, ScheduleSource::Config);
        let shown = s.masked_toml();
        assert_eq!(shown.matches("[[schedules]]").count(), 7, "{shown}");
        assert!(shown.contains("enrichment-catchup"), "{shown}");
    }

    #[test]
    fn a_new_schedule_needs_cron_and_kind() {
        let e = load("[[schedules]]\nname = \"nightly\"\nkind = \"sync\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("schedules[0].cron"), "{e}");
        let s = load(
            "[[schedules]]\nname = \"nightly\"\nkind = \"sync\"\ncron = \"0 0 1 * * *\"\ntimezone = \"Europe/Berlin\"\n",
            &[],
        )
        .unwrap();
        let nightly = s.effective_schedules().pop().unwrap();
        assert_eq!((nightly.name.as_str(), nightly.enabled), ("nightly", true));
        assert_eq!(nightly.timezone.map(|z| z.name()), Some("Europe/Berlin"));
        let e = load(
            "[[schedules]]\nname = \"sync\"\ntimezone = \"Mars/Olympus\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("schedules[0].timezone") && e.contains("Mars/Olympus"),
            "{e}"
        );
    }

    #[test]
    fn typed_values_refuse_what_does_not_fit() {
        for (text, key) in [
            ("[queue]\nclaim_batch = 0\n", "queue.claim_batch"),
            (
                "[embedding]\nprovider = \"word2vec\"\n",
                "embedding.provider",
            ),
            (
                "[eviction]\nretention = \"ninety days\"\n",
                "eviction.retention",
            ),
            (
                "[eviction]\nresource_types = [\"blobs\"]\n",
                "eviction.resource_types",
            ),
            ("[queue]\nheartbeat = 40\n", "queue.heartbeat"),
            ("[kinds.sync]\ntimeout = 0\n", "kinds.sync.timeout"),
            (
                "[blobs]\ndownload_url_key = \"too short\"\n",
                "blobs.download_url_key",
            ),
            (
                "[blobs]\ndownload_url_expires_in = 0\n",
                "blobs.download_url_expires_in",
            ),
        ] {
            let e = load(text, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
