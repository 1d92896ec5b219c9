//! The supervisor's side of a run: start every part in order, serve until a stop, drain,
//! stop in reverse. Built by `startup`, which is the only caller.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::lifecycle::{DrainOrigin, State};
use crate::queue::periodic::{Every, Periodic};
use crate::signals::{self, Command};
use crate::supervisor::{Service, Supervisor};

/// How the process should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained (or stopped before the database was reached): exit 0.
    Clean,
    /// A second stop signal: leases released best effort, exit 1.
    Hard,
}

pub(crate) async fn run(
    app: App,
    listener: TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<Exit> {
    // The bound address, not the configured one: with port 0 only this says where to connect.
    let addr = listener
        .local_addr()
        .context("reading the control port's address")?;
    tracing::info!(%addr, "control port listening");
    let _signals = signals::forward(commands_sender(&app)).context("installing signal handlers")?;
    let background = CancellationToken::new();
    tokio::spawn(crate::systemd::notify_lifecycle(
        app.lifecycle().clone(),
        background.clone(),
    ));
    tokio::spawn(crate::systemd::watchdog(
        app.health().clone(),
        background.clone(),
    ));
    tokio::spawn(publish_lifecycle_metric(app.clone(), background.clone()));
    let control_stop = CancellationToken::new();
    let control = tokio::spawn(crate::control::serve(
        app.clone(),
        listener,
        control_stop.clone(),
    ));
    let stopped_early = || {
        control_stop.cancel();
        background.cancel();
    };

    // STARTING: reach the database (with backoff), migrate, start the loops. A stop signal
    // here ends the process at once; a second one is not needed.
    if !reach_database(&app, &mut commands).await {
        tracing::info!("stopped while starting");
        stopped_early();
        return Ok(Exit::Clean);
    }
    let settings = app.settings();
    if settings.database.migrate {
        crate::db::migrate(app.pool(), &settings.database.schema)
            .await
            .context("running migrations")?;
    }
    app.set_vector(crate::vector_backend::prepare(app.pool(), &settings).await?);
    if let Some(store) = settings.store.memory_service() {
        let found = memwarden_jobs::memory_service::check(app.pool(), &store)
            .await
            .context("store.kind = \"memory-service\"")?;
        tracing::info!(
            schema = %store.schema,
            core_schema_version = %found.core_schema_version,
            embeddings = found.embeddings,
            "working on a Memory Service database"
        );
    }
    if settings.testing.probe_kinds {
        crate::queue::probe::create_effects_table(app.pool())
            .await
            .context("creating the probe effects table")?;
    }
    app.set_database_ready();

    let mut supervisor = Supervisor::new();
    for service in loops(&app).await.context("starting the queue")? {
        supervisor.start(service);
    }
    app.lifecycle().ready();
    tracing::info!(%addr, "memwarden is ready");

    // READY until a stop signal; API drains and quiets come and go in between.
    let exit = loop {
        let Some(cmd) = commands.recv().await else {
            break Exit::Clean;
        };
        match cmd {
            Command::Reload => {
                let outcome = crate::reload::reload(&app);
                tracing::info!(status = ?outcome.status, message = %outcome.message, "SIGHUP reload");
            }
            Command::Quiet => app
                .lifecycle()
                .drain(Some("SIGTSTP".into()), DrainOrigin::Quiet),
            Command::Stop => break drain_for_stop(&app, &mut commands).await,
        }
    };
    let queue = app.queue();
    if exit == Exit::Hard {
        tracing::warn!("second stop signal: hard stop");
        let _ = tokio::time::timeout(Duration::from_secs(2), queue.release_all()).await;
        return Ok(Exit::Hard);
    }
    supervisor.stop_all(Duration::from_secs(2)).await;
    queue.shutdown().await;
    control_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(500), control).await;
    background.cancel();
    app.pool().close().await;
    app.queue().work_pool().close().await;
    tracing::info!("stopped");
    Ok(Exit::Clean)
}

/// Signals arrive as the same commands the control port sends.
fn commands_sender(app: &App) -> impl Fn(Command) -> bool + Send + 'static {
    let app = app.clone();
    move |cmd| app.command(cmd)
}

/// Waits in STARTING until the database answers; false when a stop came first.
async fn reach_database(app: &App, commands: &mut mpsc::UnboundedReceiver<Command>) -> bool {
    let starting = CancellationToken::new();
    let wait = crate::db::wait_for_database(app.pool(), &starting);
    tokio::pin!(wait);
    let reached = loop {
        tokio::select! {
            reached = &mut wait => break reached,
            Some(cmd) = commands.recv() => match cmd {
                Command::Stop => starting.cancel(),
                Command::Reload => { crate::reload::reload(app); }
                Command::Quiet => app.lifecycle().drain(Some("SIGTSTP".into()), DrainOrigin::Quiet),
            },
        }
    };
    // A stop that arrived while a connect attempt was under way: that attempt may still have
    // succeeded, but the stop wins.
    let reached = reached && !starting.is_cancelled();
    app.set_database_reachable(reached);
    reached
}

/// Every supervised loop of the daemon, in start order: the database probe, then the queue's.
pub async fn loops(app: &App) -> Result<Vec<Arc<dyn Service>>, sqlx::Error> {
    let mut loops: Vec<Arc<dyn Service>> = vec![Arc::new(Every::new(
        DatabaseProbe { app: app.clone() },
        app.health().clone(),
    ))];
    loops.extend(app.queue().services().await?);
    Ok(loops)
}

async fn publish_lifecycle_metric(app: App, stop: CancellationToken) {
    let mut rx = app.lifecycle().subscribe();
    loop {
        crate::telemetry::metrics::publish_state(rx.borrow_and_update().state);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// Drains for a stop: waits for QUIESCED within the grace period, then cancels what is still
/// running (each records `interrupted` and goes back to `available`). A second stop signal
/// during the wait is a hard stop.
async fn drain_for_stop(app: &App, commands: &mut mpsc::UnboundedReceiver<Command>) -> Exit {
    let queue = app.queue();
    let grace = app.settings().grace_period();
    crate::systemd::stopping(grace);
    app.lifecycle()
        .drain(Some("stop signal".into()), DrainOrigin::Stop);
    let deadline = tokio::time::Instant::now() + grace;
    // After the grace period, interrupted jobs get this long to hand in their leases. Past it
    // (a job that ignores its token, a database that is away) the process exits anyway: the
    // leases expire and the reaper records the attempts as lost, so nothing is lost.
    let last_call = deadline + INTERRUPT_GRACE;
    let mut cancelled = false;
    loop {
        tokio::select! {
            state = app.lifecycle().quiesced() => {
                if state == State::Quiesced { return Exit::Clean; }
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::Stop => return Exit::Hard,
                Command::Reload => { crate::reload::reload(app); }
                Command::Quiet => {}
            },
            _ = tokio::time::sleep_until(deadline), if !cancelled => {
                let n = queue.held().interrupt_all();
                tracing::warn!(jobs = n, "grace period over: interrupting the jobs still running");
                cancelled = true;
            }
            _ = tokio::time::sleep_until(last_call) => {
                tracing::error!(held = queue.held().count(), "jobs did not hand in their leases; exiting, the reaper will recover them");
                return Exit::Clean;
            }
        }
    }
}

/// Probes the database every second, so readiness reflects an outage within a second.
struct DatabaseProbe {
    app: App,
}

#[async_trait::async_trait]
impl Periodic for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database-probe"
    }

    fn op(&self) -> &'static str {
        "probe"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let ok = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(self.app.pool()),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if ok != self.app.database_reachable() {
            if ok {
                tracing::info!("database reachable again");
            } else {
                tracing::error!("database unreachable; reporting not ready");
            }
        }
        if !ok {
            // Counted, and logged only at the change: an outage is not a failure of this loop.
            crate::telemetry::metrics::db_error(self.op());
        }
        self.app.set_database_reachable(ok);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
