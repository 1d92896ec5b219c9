//! Long-running loops (the queue's claimers, reaper, cron, depth gauges, the database probe)
//! behind one small trait. The supervisor starts them in order, restarts one that fails or
//! panics (with backoff, counted in `memwarden_loop_restarts_total`), and stops them in
//! reverse order.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A loop that runs until `stop` fires. Returning early (`Ok` or `Err`) or panicking before
/// then counts as a crash.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    fn name(&self) -> String;
    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()>;
}

struct Running {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct Supervisor {
    running: Vec<Running>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn start(&mut self, service: Arc<dyn Service>) {
        let stop = CancellationToken::new();
        let name = service.name();
        let task = tokio::spawn(supervise(service, stop.clone()));
        self.running.push(Running { name, stop, task });
    }

    /// Stops every loop, last started first, each within `each`.
    pub async fn stop_all(&mut self, each: Duration) {
        while let Some(r) = self.running.pop() {
            r.stop.cancel();
            let mut task = r.task;
            if tokio::time::timeout(each, &mut task).await.is_err() {
                tracing::warn!(loop_name = %r.name, "loop did not stop in time; aborting it");
                task.abort();
            }
        }
    }
}

async fn supervise(service: Arc<dyn Service>, stop: CancellationToken) {
    let name = service.name();
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = std::panic::AssertUnwindSafe(service.run(stop.clone()))
            .catch_unwind()
            .await;
        if stop.is_cancelled() {
            return;
        }
        match result {
            Ok(Ok(())) => tracing::error!(loop_name = %name, "loop ended on its own; restarting"),
            Ok(Err(e)) => {
                tracing::error!(loop_name = %name, error = %format!("{e:#}"), "loop failed; restarting")
            }
            Err(panic) => {
                tracing::error!(loop_name = %name, panic = %panic_message(&panic), "loop panicked; restarting")
            }
        }
        metrics::counter!(crate::telemetry::metrics::LOOP_RESTARTS, "loop" => name.clone())
            .increment(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
