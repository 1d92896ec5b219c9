//! The one startup: settings in, a whole `App` and a bound control port out, ready to run.
//! `memwarden run`, `memwarden dev`, the benchmarks and the in-process tests all come through
//! `Application::build` (zero2prod's `Application::build` is the model).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::app::{App, AppParts};
use crate::config::{Overrides, Settings};
use crate::daemon::{self, Exit};
use crate::health::Health;
use crate::lifecycle::{Lifecycle, State};
use crate::queue::{Queue, QueueContext, Registry};
use crate::signals::Command;
use crate::telemetry::LogControl;

/// Which job kinds the daemon runs.
pub enum Kinds {
    /// The daemon's own (`kinds::registry`), following the live settings.
    Daemon,
    /// A registry of the caller's (the queue benchmark's no-op kinds).
    Custom(Registry),
}

/// What a build needs besides the settings.
pub struct Build {
    /// The config file, reread on reload.
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    pub log: LogControl,
    pub kinds: Kinds,
}

impl Default for Build {
    fn default() -> Self {
        Build {
            config_path: None,
            overrides: Overrides::default(),
            log: LogControl::detached(),
            kinds: Kinds::Daemon,
        }
    }
}

/// A built daemon: its `App`, its bound control port, and the channel its commands come on.
pub struct Application {
    app: App,
    listener: TcpListener,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Application {
    /// Builds the whole `App` (pools connect lazily; nothing here waits for the database)
    /// and binds `control.addr`; port 0 picks a free one, which `addr` then says.
    pub async fn build(settings: Settings, build: Build) -> anyhow::Result<Application> {
        crate::telemetry::metrics::recorder();
        let Some(url) = settings.database_url().map(str::to_string) else {
            bail!("no database configured: set database.url, DATABASE_URL or --database-url");
        };
        let addr = settings.control.addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the control port {addr} (control.addr)"))?;
        let pool = crate::db::pool(&settings, &url).context("database.url")?;
        let work_pool = crate::db::work_pool(&settings, &url).context("database.url")?;
        let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
        let registry = match build.kinds {
            Kinds::Daemon => crate::kinds::registry(settings_rx.clone())?,
            Kinds::Custom(registry) => registry,
        };
        let (lifecycle, health) = (Lifecycle::new(), Health::default());
        let context = QueueContext {
            lifecycle: lifecycle.clone(),
            health: health.clone(),
            settings: settings_rx,
        };
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let app = App::new(AppParts {
            lifecycle,
            settings: settings_tx,
            health,
            queue: Queue::new(context, pool, work_pool, registry),
            config_path: build.config_path,
            overrides: build.overrides,
            log: build.log,
            commands: commands_tx,
        });
        Ok(Application {
            app,
            listener,
            commands,
        })
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Where the control port listens (the bound address, not the configured one).
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the control port's address")
    }

    /// Runs until a stop: STARTING, READY, the drain, and the stop in reverse order.
    pub async fn run_until_stopped(self) -> anyhow::Result<Exit> {
        daemon::run(self.app, self.listener, self.commands).await
    }

    /// Runs in a task of its own, for the benchmarks and in-process tests.
    pub fn spawn(self) -> anyhow::Result<Running> {
        let addr = self.addr()?;
        let app = self.app.clone();
        let task = tokio::spawn(self.run_until_stopped());
        Ok(Running { app, addr, task })
    }
}

/// A daemon running in this process.
pub struct Running {
    pub app: App,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<Exit>>,
}

impl Running {
    /// Waits for READY; fails if the daemon stops first or `limit` passes.
    pub async fn ready(&self, limit: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while self.app.lifecycle().state() != State::Ready {
            if self.task.is_finished() {
                bail!("the daemon stopped while starting");
            }
            if t0.elapsed() > limit {
                bail!("the daemon was not READY within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it as SIGTERM does (drain, then exit) and waits up to `limit` for the exit.
    pub async fn stop(self, limit: Duration) -> anyhow::Result<Exit> {
        self.app.command(Command::Stop);
        match tokio::time::timeout(limit, self.task).await {
            Ok(joined) => joined.context("the daemon's task")?,
            Err(_) => bail!("the daemon did not stop within {limit:?}"),
        }
    }
}
