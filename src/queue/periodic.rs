//! The base of the loops that do one thing every so often (the heartbeat, the reaper, the
//! depth gauges, the database probe), as River's maintenance services share one base: each
//! says what one tick does and how long until the next; this runs it under the supervisor,
//! beats its health, and counts and logs a tick that fails without ending the loop.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::supervisor::Service;

#[async_trait::async_trait]
pub trait Periodic: Send + Sync + 'static {
    /// The loop's name, for health and logs.
    fn name(&self) -> &'static str;
    /// What a failed tick counts as in `memwarden_db_errors_total{op}`.
    fn op(&self) -> &'static str;
    /// Between ticks. Read before each wait, so a config reload applies at the next one.
    fn period(&self) -> Duration;
    /// One tick. An error is counted and logged; the loop goes on.
    async fn tick(&self) -> anyhow::Result<()>;
}

/// Runs a [`Periodic`] as a supervised [`Service`].
pub struct Every<P> {
    periodic: Arc<P>,
    health: Health,
}

impl<P: Periodic> Every<P> {
    pub fn new(periodic: P, health: Health) -> Self {
        Every {
            periodic: Arc::new(periodic),
            health,
        }
    }
}

#[async_trait::async_trait]
impl<P: Periodic> Service for Every<P> {
    fn name(&self) -> String {
        self.periodic.name().into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let p = &self.periodic;
        let beat = self.health.register(p.name(), p.period());
        loop {
            if let Err(e) = p.tick().await {
                crate::telemetry::metrics::db_error(p.op());
                tracing::warn!(loop_name = p.name(), error = %format!("{e:#}"), "tick failed");
            }
            beat.beat();
            tokio::select! {
                _ = tokio::time::sleep(p.period()) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
}
