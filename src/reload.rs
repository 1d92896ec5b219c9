//! Rereading the configuration file: SIGHUP, `POST /v1/admin/config/reload` and GoodMem's
//! `license:reload`. A file that fails to load leaves the old settings active.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::Settings;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReloadStatus {
    Loaded,
    Unchanged,
    Failed,
    NotFound,
}

/// GoodMem's `ActiveLicenseMetadata`, describing the config file in force.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    pub filename: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    pub status: ReloadStatus,
    pub message: String,
    pub active: Option<FileMetadata>,
}

pub fn file_metadata(path: &Path) -> std::io::Result<FileMetadata> {
    let bytes = std::fs::read(path)?;
    let meta = std::fs::metadata(path)?;
    Ok(FileMetadata {
        filename: path.display().to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size_bytes: bytes.len() as u64,
        modified_at: meta.modified().ok().map(DateTime::<Utc>::from),
    })
}

/// Rereads the file and applies what can change live: log level, concurrency, schedules,
/// tokens and provider settings. Settings that need a restart are named in the message.
pub fn reload(app: &App) -> ReloadOutcome {
    let current = app.settings();
    let Some(path) = app.config_path().map(Path::to_path_buf) else {
        return ReloadOutcome {
            status: ReloadStatus::NotFound,
            message: "no configuration file is in use (start with --config or MEMWARDEN_CONFIG)"
                .into(),
            active: None,
        };
    };
    let active_before = app.active_file();
    if !path.exists() {
        tracing::warn!(path = %path.display(), "config reload: file not found; keeping the active configuration");
        return ReloadOutcome {
            status: ReloadStatus::NotFound,
            message: format!(
                "{} not found; the active configuration is unchanged",
                path.display()
            ),
            active: active_before,
        };
    }
    let loaded = Settings::load(Some(&path), app.overrides());
    let newer = match loaded {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; keeping the active configuration");
            return ReloadOutcome {
                status: ReloadStatus::Failed,
                message: format!("{e}; the active configuration is unchanged"),
                active: active_before,
            };
        }
    };
    let metadata = file_metadata(&path).ok();
    if *current == newer {
        app.set_active_file(metadata.clone());
        return ReloadOutcome {
            status: ReloadStatus::Unchanged,
            message: "the configuration is unchanged".into(),
            active: metadata,
        };
    }
    let restart = current.restart_only_changes(&newer);
    app.replace_settings(newer);
    app.set_active_file(metadata.clone());
    // Schedules live in the table: write the new set there (in the background, as reload is
    // called from signal handling and request handlers alike).
    if let (Some(queue), Ok(handle)) = (app.queue().cloned(), tokio::runtime::Handle::try_current())
    {
        handle.spawn(async move {
            if let Err(e) = crate::queue::cron::sync_schedules(&queue).await {
                tracing::error!(error = %e, "schedules not updated after the config reload");
            }
        });
    }
    let message = if restart.is_empty() {
        "configuration reloaded".to_string()
    } else {
        format!(
            "configuration reloaded; these keys changed but need a restart to take effect: {}",
            restart.join(", ")
        )
    };
    tracing::info!(%message, "config reload");
    ReloadOutcome {
        status: ReloadStatus::Loaded,
        message,
        active: metadata,
    }
}
