//! What the types cannot say: limits on a single value that are not a type, and rules that
//! tie two settings together. Each error names the key.

use std::collections::HashSet;
use std::time::Duration;

use memwarden_jobs::vector::backend::{IndexedAs, HNSW_MAX_HALFVEC_DIMS};
use memwarden_jobs::vector::BackendChoice;

use super::schedules::DEFAULT_NAMES;
use super::work::DOWNLOAD_URL_KEY_MIN;
use super::{ConfigError, Settings};

type Check = Result<(), ConfigError>;

fn require(ok: bool, key: impl Into<String>, reason: impl Into<String>) -> Check {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason))
    }
}

impl Settings {
    pub(super) fn validate(&self) -> Check {
        self.validate_database()?;
        self.validate_queue()?;
        self.validate_auth()?;
        self.validate_schedules()?;
        self.validate_work()?;
        self.validate_store()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        Ok(())
    }

    fn validate_database(&self) -> Check {
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.listen_url", &self.database.listen_url),
        ] {
            if let Some(url) = url {
                require(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    key,
                    "must be a postgres:// or postgresql:// URL",
                )?;
            }
        }
        require(
            self.database.max_connections >= 2,
            "database.max_connections",
            "must be at least 2",
        )
    }

    fn validate_store(&self) -> Check {
        let store = &self.store;
        if store.kind != super::StoreKind::MemoryService {
            return Ok(());
        }
        let needs_dir = store.attachments == super::AttachmentKind::Filesystem;
        require(
            !needs_dir || store.attachments_dir.as_deref().is_some_and(|d| !d.trim().is_empty()),
            "store.attachments_dir",
            "is required with store.kind = \"memory-service\" and store.attachments = \"filesystem\" \
             (the root of Memory Service's filesystem attachment store), or set \
             store.attachments = \"large-objects\"",
        )
    }

    fn validate_queue(&self) -> Check {
        require(
            self.queue.heartbeat < self.queue.lease,
            "queue.heartbeat",
            "must be shorter than queue.lease",
        )?;
        require(
            self.purge.retention >= self.purge.min_retention,
            "purge.retention",
            "must not be shorter than purge.min_retention",
        )
    }

    fn validate_auth(&self) -> Check {
        let mut ids = HashSet::new();
        for (i, key) in self.auth.keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            require(
                !key.client_id.trim().is_empty(),
                format!("{at}.client_id"),
                "must not be empty",
            )?;
            require(
                ids.insert(key.client_id.clone()),
                format!("{at}.client_id"),
                "is used by another key",
            )?;
            match (&key.token, &key.token_sha256) {
                (Some(t), None) if !t.is_empty() => {}
                (None, Some(h)) => require(
                    h.len() == 64 && hex::decode(h).is_ok(),
                    format!("{at}.token_sha256"),
                    "must be 64 hex digits",
                )?,
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
            require(
                !matches!(token, Some(t) if t.is_empty()),
                key,
                "must not be empty when set",
            )?;
        }
        Ok(())
    }

    fn validate_schedules(&self) -> Check {
        let mut names = HashSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("schedules[{i}]");
            require(
                !s.name.trim().is_empty(),
                format!("{at}.name"),
                "must not be empty",
            )?;
            require(
                names.insert(s.name.clone()),
                format!("{at}.name"),
                format!("`{}` is defined twice", s.name),
            )?;
            if !DEFAULT_NAMES.contains(&s.name.as_str()) {
                let new = format!(
                    "is required for a schedule that does not override a default ({})",
                    DEFAULT_NAMES.join(", ")
                );
                require(s.cron.is_some(), format!("{at}.cron"), &new)?;
                require(s.kind.is_some(), format!("{at}.kind"), &new)?;
            }
            if let Some(args) = &s.args {
                require(args.is_object(), format!("{at}.args"), "must be a table")?;
            }
        }
        Ok(())
    }

    fn validate_work(&self) -> Check {
        if let Some(dims) = self.embedding.expected_dims() {
            require(
                self.vector.backend != BackendChoice::Pgvector
                    || IndexedAs::for_dims(dims).is_some(),
                "vector.backend",
                format!(
                    "is \"pgvector\", but the embedder makes {dims} dimensions, above the \
                     {HNSW_MAX_HALFVEC_DIMS} pgvector's HNSW indexes (as halfvec): lower \
                     embedding.dimensions (text-embedding-3-large takes 3072), or set \
                     vector.backend = \"array\" or \"auto\""
                ),
            )?;
        }
        require(
            (0.0..=1.0).contains(&self.enrichment.similarity_threshold),
            "enrichment.similarity_threshold",
            "must be between 0 and 1",
        )?;
        require(
            self.eviction.max_transaction_ms >= Duration::from_millis(10),
            "eviction.max_transaction_ms",
            "must be at least 10",
        )?;
        require(
            self.blobs
                .download_url_key
                .as_ref()
                .is_none_or(|k| k.trim().len() >= DOWNLOAD_URL_KEY_MIN),
            "blobs.download_url_key",
            format!("must be at least {DOWNLOAD_URL_KEY_MIN} characters"),
        )
    }
}
