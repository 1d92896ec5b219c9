//! The one core of operations behind every surface (native routes, GoodMem, AutoMem, Memory
//! Service, CLI): the lifecycle, the live settings, the database pools and the queue. Built
//! whole by `startup`: its pools connect lazily, so the control port can answer while the
//! daemon is still STARTING, and `database_ready` says when the database may be used.

use memwarden_jobs::vector::backend::Prepared;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use crate::config::{FileMetadata, Overrides, Settings};
use crate::health::Health;
use crate::lifecycle::{DrainOrigin, Lifecycle, State};
use crate::queue::Queue;
use crate::signals::Command;
use crate::telemetry::LogControl;

#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    lifecycle: Lifecycle,
    settings: watch::Sender<Arc<Settings>>,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    queue: Queue,
    health: Health,
    log: LogControl,
    active_file: Mutex<Option<FileMetadata>>,
    /// STARTING has reached and migrated the database: routes may use it.
    database_ready: AtomicBool,
    /// The last probe of the database answered: readiness depends on it.
    database_reachable: AtomicBool,
    /// The vector backend STARTING settled on.
    vector: std::sync::OnceLock<Prepared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// What an `App` is made of; `startup` puts it together.
pub struct AppParts {
    pub lifecycle: Lifecycle,
    pub settings: watch::Sender<Arc<Settings>>,
    pub health: Health,
    pub queue: Queue,
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    pub log: LogControl,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// The reply to a drain, in the words of GoodMem's `AdminDrainResponse`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DrainReply {
    pub state: State,
    pub quiesced: bool,
    pub message: String,
}

impl App {
    pub fn new(parts: AppParts) -> Self {
        let active_file = parts
            .config_path
            .as_deref()
            .and_then(|p| FileMetadata::read(p).ok());
        App {
            inner: Arc::new(Inner {
                lifecycle: parts.lifecycle,
                settings: parts.settings,
                config_path: parts.config_path,
                overrides: parts.overrides,
                queue: parts.queue,
                health: parts.health,
                log: parts.log,
                active_file: Mutex::new(active_file),
                database_ready: AtomicBool::new(false),
                database_reachable: AtomicBool::new(false),
                vector: std::sync::OnceLock::new(),
                commands: parts.commands,
            }),
        }
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.borrow().clone()
    }

    pub fn replace_settings(&self, settings: Settings) {
        if let Err(e) = self.inner.log.set_level(&settings.log.level) {
            tracing::warn!(error = %e, "log level not applied");
        }
        self.inner.settings.send_replace(Arc::new(settings));
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.inner.config_path.as_deref()
    }

    pub fn overrides(&self) -> &Overrides {
        &self.inner.overrides
    }

    /// The config file in force, as GoodMem's `activeLicense` describes it.
    pub fn active_file(&self) -> Option<FileMetadata> {
        self.inner
            .active_file
            .lock()
            .expect("active file lock")
            .clone()
    }

    pub fn set_active_file(&self, metadata: Option<FileMetadata>) {
        *self.inner.active_file.lock().expect("active file lock") = metadata;
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The queue's pool: the control port and the audit log use it too.
    pub fn pool(&self) -> &PgPool {
        self.inner.queue.pool()
    }

    /// Whether STARTING has reached and migrated the database. Before that, whatever needs
    /// the database answers 503 at once instead of waiting for a connection.
    pub fn database_ready(&self) -> bool {
        self.inner.database_ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_database_ready(&self) {
        self.inner.database_ready.store(true, Ordering::Release);
    }

    /// The vector backend, once STARTING has settled it.
    pub fn vector(&self) -> Option<&Prepared> {
        self.inner.vector.get()
    }

    pub(crate) fn set_vector(&self, prepared: Prepared) {
        let _ = self.inner.vector.set(prepared);
    }

    /// Whether the last database probe succeeded; readiness depends on it.
    pub fn database_reachable(&self) -> bool {
        self.inner.database_reachable.load(Ordering::Relaxed)
    }

    pub(crate) fn set_database_reachable(&self, ok: bool) {
        self.inner.database_reachable.store(ok, Ordering::Relaxed);
    }

    /// Sends the daemon a command as if by signal; false when no daemon runs this app.
    pub fn command(&self, cmd: Command) -> bool {
        self.inner.commands.send(cmd).is_ok()
    }

    /// Starts a drain (idempotent) and, if `wait` is given, waits up to that long for QUIESCED.
    /// The wait never cancels jobs; it only bounds how long the caller hears nothing.
    pub async fn drain(&self, reason: Option<String>, wait: Option<Duration>) -> DrainReply {
        let lifecycle = self.lifecycle();
        let before = lifecycle.state();
        lifecycle.drain(reason, DrainOrigin::Api);
        if let Some(wait) = wait {
            let _ = tokio::time::timeout(wait, lifecycle.quiesced()).await;
        }
        let snap = lifecycle.snapshot();
        let quiesced = snap.state == State::Quiesced;
        let message = match (before, snap.state) {
            (State::Draining | State::Quiesced, _) if quiesced => {
                "already drained: quiesced".to_string()
            }
            (State::Draining | State::Quiesced, _) => {
                format!(
                    "drain already in progress: {} jobs in flight",
                    snap.in_flight
                )
            }
            (_, State::Quiesced) => "drained: nothing in flight".to_string(),
            (_, State::Draining) if wait.is_some() => format!(
                "still draining after the wait: {} jobs in flight; no job was cancelled",
                snap.in_flight
            ),
            (_, state) => format!(
                "drain started: {} ({} jobs in flight)",
                state.as_str(),
                snap.in_flight
            ),
        };
        DrainReply {
            state: snap.state,
            quiesced,
            message,
        }
    }
}
