//! The one core of operations behind every surface (native routes, GoodMem, AutoMem, Memory
//! Service, CLI): the lifecycle, the settings, the database pool and the queue.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::{Overrides, Settings};
use crate::health::Health;
use crate::lifecycle::{DrainOrigin, Lifecycle, State};
use crate::queue::Queue;
use crate::reload::FileMetadata;
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
    pool: OnceLock<PgPool>,
    queue: OnceLock<Queue>,
    health: Health,
    log: LogControl,
    active_file: Mutex<Option<FileMetadata>>,
    database_reachable: AtomicBool,
    commands: OnceLock<tokio::sync::mpsc::UnboundedSender<Command>>,
}

/// The reply to a drain, in the words of GoodMem's `AdminDrainResponse`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DrainReply {
    pub state: State,
    pub quiesced: bool,
    pub message: String,
}

impl App {
    pub fn new(
        settings: Settings,
        config_path: Option<PathBuf>,
        overrides: Overrides,
        log: LogControl,
    ) -> Self {
        let (settings, _) = watch::channel(Arc::new(settings));
        let active_file = config_path
            .as_deref()
            .and_then(|p| crate::reload::file_metadata(p).ok());
        App {
            inner: Arc::new(Inner {
                lifecycle: Lifecycle::new(),
                settings,
                config_path,
                overrides,
                pool: OnceLock::new(),
                queue: OnceLock::new(),
                health: Health::default(),
                log,
                active_file: Mutex::new(active_file),
                database_reachable: AtomicBool::new(false),
                commands: OnceLock::new(),
            }),
        }
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.borrow().clone()
    }

    pub fn watch_settings(&self) -> watch::Receiver<Arc<Settings>> {
        self.inner.settings.subscribe()
    }

    pub fn replace_settings(&self, settings: Settings) {
        if let Err(e) = self.inner.log.set_level(&settings.log.level) {
            tracing::warn!(error = %e, "log level not applied");
        }
        self.inner.settings.send_replace(Arc::new(settings));
    }

    pub fn config_path(&self) -> Option<&std::path::Path> {
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

    /// Whether the last database probe succeeded; readiness depends on it.
    pub fn database_reachable(&self) -> bool {
        self.inner.database_reachable.load(Ordering::Relaxed)
    }

    pub fn set_database_reachable(&self, ok: bool) {
        self.inner.database_reachable.store(ok, Ordering::Relaxed);
    }

    /// Where the running daemon takes commands (the same ones signals give).
    pub fn set_commands(&self, tx: tokio::sync::mpsc::UnboundedSender<Command>) {
        let _ = self.inner.commands.set(tx);
    }

    /// Sends the daemon a command as if by signal; false when no daemon runs this app.
    pub fn command(&self, cmd: Command) -> bool {
        self.inner
            .commands
            .get()
            .is_some_and(|tx| tx.send(cmd).is_ok())
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The pool, once STARTING has reached the database.
    pub fn pool(&self) -> Option<&PgPool> {
        self.inner.pool.get()
    }

    pub fn set_pool(&self, pool: PgPool) {
        let _ = self.inner.pool.set(pool);
    }

    pub fn queue(&self) -> Option<&Queue> {
        self.inner.queue.get()
    }

    pub fn set_queue(&self, queue: Queue) {
        let _ = self.inner.queue.set(queue);
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
