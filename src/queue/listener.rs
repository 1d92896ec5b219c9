//! One LISTEN connection per process: job wake-ups and cross-process control (cancel,
//! pause, resume). Without it (a transaction-mode pooler, an outage), claimers fall back to
//! polling, `memwarden_listen_connected` reads 0, and a warning says so.

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Queue, StopReason};
use crate::supervisor::Service;

pub struct Listener {
    queue: Queue,
}

impl Listener {
    pub fn new(queue: Queue) -> Self {
        Listener { queue }
    }

    fn handle_control(&self, payload: &str) {
        let q = &self.queue;
        match payload.split_once(':') {
            Some(("cancel", id)) => {
                if let Ok(id) = id.parse::<Uuid>() {
                    if q.held().stop(id, StopReason::Canceled) {
                        tracing::info!(job = %id, "cancel requested; stopping the job");
                    }
                }
            }
            Some(("pause", name)) => q.wakeups().set_paused(name, true),
            Some(("resume", name)) => q.wakeups().set_paused(name, false),
            _ => tracing::debug!(payload, "unknown control notification"),
        }
    }
}

#[async_trait::async_trait]
impl Service for Listener {
    fn name(&self) -> String {
        "listener".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let q = &self.queue;
        let connected = metrics::gauge!(crate::telemetry::metrics::LISTEN_CONNECTED);
        let listen_url = q.settings().database.listen_url.clone();
        let connect = async {
            match &listen_url {
                Some(url) => PgListener::connect(url).await,
                None => PgListener::connect_with(q.pool()).await,
            }
        };
        let mut listener = match connect.await {
            Ok(l) => l,
            Err(e) => {
                connected.set(0.0);
                tracing::warn!(error = %e, "LISTEN unavailable; falling back to polling (set database.listen_url to a direct connection when behind a pooler)");
                return Err(e.into());
            }
        };
        if let Err(e) = listener
            .listen_all([q.channels().jobs.as_str(), q.channels().control.as_str()])
            .await
        {
            connected.set(0.0);
            tracing::warn!(error = %e, "LISTEN failed; falling back to polling (set database.listen_url to a direct connection when behind a pooler)");
            return Err(e.into());
        }
        connected.set(1.0);
        // Anything enqueued before LISTEN took effect would otherwise wait for the poll.
        q.wakeups().wake_all();
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.cancelled() => return Ok(()),
            };
            match next {
                Ok(Some(n)) if n.channel() == q.channels().jobs => q.wakeups().wake(n.payload()),
                Ok(Some(n)) => self.handle_control(n.payload()),
                Ok(None) => {
                    // The connection dropped; the next try_recv reconnects. Notifications sent
                    // meanwhile are gone, so wake everyone and re-read the paused set.
                    connected.set(0.0);
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    q.wakeups().wake_all();
                    let _ = q.refresh_paused().await;
                }
                Err(e) => {
                    connected.set(0.0);
                    return Err(e.into());
                }
            }
            connected.set(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::queue::Registry;
    use crate::test_support::{self, eventually, running_job, TestDb};

    #[tokio::test]
    async fn control_notifications_pause_resume_and_cancel() {
        let db = TestDb::migrated();
        let q = test_support::queue(&db, "", Registry::new());
        let pool = db.pool().await;
        let stop = CancellationToken::new();
        let listener = Listener::new(q.clone());
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { listener.run(stop).await }
        });
        let control = q.channels().control.clone();
        let notify = |payload: String| {
            let (pool, control) = (pool.clone(), control.clone());
            async move {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(control)
                    .bind(payload)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        };
        // Sent until the LISTEN has taken effect and one arrives.
        eventually(Duration::from_secs(5), "a pause arrives", async || {
            notify("pause:elsewhere".into()).await;
            q.wakeups().is_paused("elsewhere")
        })
        .await;
        notify("resume:elsewhere".into()).await;
        eventually(Duration::from_secs(5), "the resume arrives", async || {
            !q.wakeups().is_paused("elsewhere")
        })
        .await;
        let job = running_job(&pool, q.worker_id(), 1, 5, 30.0).await;
        let token = q.held().hold(std::slice::from_ref(&job)).remove(0);
        notify(format!("cancel:{}", job.id)).await;
        eventually(Duration::from_secs(5), "the cancel arrives", async || {
            token.is_cancelled()
        })
        .await;
        assert_eq!(q.held().stop_reason(job.id), Some(StopReason::Canceled));
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
