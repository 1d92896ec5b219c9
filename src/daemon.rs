//! `memwarden run`: start every part in order, serve until a stop, drain, stop in reverse.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::lifecycle::{DrainOrigin, State};
use crate::queue::{Queue, Registry};
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

/// Runs the daemon until a stop. `listener` is bound by the caller, so tests can use port 0.
pub async fn run(app: App, listener: TcpListener, registry: Registry) -> anyhow::Result<Exit> {
    // The bound address, not the configured one: with port 0 only this says where to connect.
    let addr = listener
        .local_addr()
        .context("reading the control port's address")?;
    tracing::info!(%addr, "control port listening");
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    signals::forward(tx.clone()).context("installing signal handlers")?;
    app.set_commands(tx);
    let background = CancellationToken::new();

    tokio::spawn(crate::systemd::notify_lifecycle(
        app.lifecycle().clone(),
        background.clone(),
    ));
    tokio::spawn(crate::systemd::watchdog(
        app.health().clone(),
        background.clone(),
    ));
    {
        let lifecycle = app.lifecycle().clone();
        let stop = background.clone();
        tokio::spawn(async move {
            let mut rx = lifecycle.subscribe();
            loop {
                crate::telemetry::publish_state(rx.borrow_and_update().state);
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let control_stop = CancellationToken::new();
    let control = tokio::spawn(crate::control::serve(
        app.clone(),
        listener,
        control_stop.clone(),
    ));

    // STARTING: reach the database (with backoff), migrate, start the loops. A stop signal
    // here ends the process at once; a second one is not needed.
    let starting = CancellationToken::new();
    let settings = app.settings();
    let Some(url) = settings.database_url().map(str::to_string) else {
        anyhow::bail!("no database configured: set database.url, DATABASE_URL or --database-url");
    };
    let connect = {
        let settings = settings.clone();
        let starting = starting.clone();
        let url = url.clone();
        async move { crate::db::connect_with_retry(&settings, &url, &starting).await }
    };
    tokio::pin!(connect);
    let pool = loop {
        tokio::select! {
            pool = &mut connect => break pool,
            Some(cmd) = commands.recv() => match cmd {
                Command::Stop => { starting.cancel(); }
                Command::Reload => { crate::reload::reload(&app); }
                Command::Quiet => { app.lifecycle().drain(Some("SIGTSTP".into()), DrainOrigin::Quiet); }
            },
        }
    };
    // A stop that arrived while a connect attempt was under way: that attempt may still have
    // succeeded, but the stop wins.
    let pool = pool.filter(|_| !starting.is_cancelled());
    let Some(pool) = pool else {
        tracing::info!("stopped while starting");
        control_stop.cancel();
        background.cancel();
        return Ok(Exit::Clean);
    };
    app.set_database_reachable(true);
    if settings.database.migrate {
        crate::db::migrate(&pool)
            .await
            .context("running migrations")?;
    }
    if settings.testing.probe_kinds {
        crate::queue::probe::create_effects_table(&pool)
            .await
            .context("creating the probe effects table")?;
    }
    app.set_pool(pool.clone());
    let work_pool = crate::db::work_pool(&settings, &url).context("the handlers' pool")?;

    let mut supervisor = Supervisor::new();
    supervisor.start(Arc::new(DatabaseProbe { app: app.clone() }));
    let queue = Queue::new(app.clone(), pool.clone(), work_pool, registry);
    app.set_queue(queue.clone());
    for service in queue.services().await.context("starting the queue")? {
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
            Command::Stop => break drain_for_stop(&app, &queue, &mut commands).await,
        }
    };

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
    pool.close().await;
    tracing::info!("stopped");
    Ok(Exit::Clean)
}

const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// Drains for a stop: waits for QUIESCED within the grace period, then cancels what is still
/// running (each records `interrupted` and goes back to `available`). A second stop signal
/// during the wait is a hard stop.
async fn drain_for_stop(
    app: &App,
    queue: &Queue,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
) -> Exit {
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
                let n = queue.interrupt_all();
                tracing::warn!(jobs = n, "grace period over: interrupting the jobs still running");
                cancelled = true;
            }
            _ = tokio::time::sleep_until(last_call) => {
                tracing::error!(held = queue.held_count(), "jobs did not hand in their leases; exiting, the reaper will recover them");
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
impl Service for DatabaseProbe {
    fn name(&self) -> String {
        "database-probe".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let beat = self
            .app
            .health()
            .register(self.name(), Duration::from_secs(1));
        let Some(pool) = self.app.pool().cloned() else {
            anyhow::bail!("no pool yet");
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return Ok(()),
            }
            let ok = tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query("SELECT 1").execute(&pool),
            )
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
            if ok != self.app.database_reachable() {
                if ok {
                    tracing::info!("database reachable again");
                } else {
                    tracing::error!("database unreachable; reporting not ready");
                }
            }
            if !ok {
                metrics::counter!("memwarden_db_errors_total", "op" => "probe").increment(1);
            }
            self.app.set_database_reachable(ok);
            beat.beat();
        }
    }
}
