//! Rereading the configuration file: SIGHUP, `POST /v1/admin/config/reload` and GoodMem's
//! `license:reload`. A file that fails to load leaves the old settings active.

use std::path::Path;

use serde::Serialize;

use crate::app::App;
use crate::config::{FileMetadata, Settings};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReloadStatus {
    Loaded,
    Unchanged,
    Failed,
    NotFound,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    pub status: ReloadStatus,
    pub message: String,
    pub active: Option<FileMetadata>,
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
    let metadata = FileMetadata::read(&path).ok();
    if *current == newer {
        // GoodMem's UNCHANGED means the same file: new bytes are LOADED, even when the
        // settings they spell are the ones in force (a comment edited, keys reordered).
        let same_file = match (&active_before, &metadata) {
            (Some(before), Some(now)) => before.sha256 == now.sha256,
            _ => false,
        };
        app.set_active_file(metadata.clone());
        return ReloadOutcome {
            status: if same_file {
                ReloadStatus::Unchanged
            } else {
                ReloadStatus::Loaded
            },
            message: if same_file {
                "the configuration is unchanged".into()
            } else {
                "the file changed; the settings it holds are the ones already in force".into()
            },
            active: metadata,
        };
    }
    let restart = current.restart_only_changes(&newer);
    app.replace_settings(newer);
    app.set_active_file(metadata.clone());
    // The cron loop sees the new settings and writes the schedules into the table itself.
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
