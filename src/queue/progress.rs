//! Job progress (0–100): handlers report it cheaply; a writer stores the latest value per job
//! on the row every quarter second and publishes it as an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{Event, Events};
use super::Queue;
use crate::supervisor::Service;

/// A job's latest progress, as handlers report it.
pub type ProgressUpdate = (Uuid, i16);

/// A handler's handle for reporting progress. Repeats of the same value cost nothing.
#[derive(Clone)]
pub struct ProgressSink {
    job: Uuid,
    last: Arc<AtomicI16>,
    tx: Option<mpsc::UnboundedSender<ProgressUpdate>>,
}

impl ProgressSink {
    pub fn new(job: Uuid, tx: mpsc::UnboundedSender<ProgressUpdate>) -> Self {
        Self {
            job,
            last: Arc::new(AtomicI16::new(-1)),
            tx: Some(tx),
        }
    }

    /// A sink that goes nowhere, for running a handler outside the queue.
    pub fn detached(job: Uuid) -> Self {
        Self {
            job,
            last: Arc::new(AtomicI16::new(-1)),
            tx: None,
        }
    }

    pub fn set(&self, percent: u8) {
        let p = percent.min(100) as i16;
        if self.last.swap(p, Ordering::Relaxed) != p {
            if let Some(tx) = &self.tx {
                let _ = tx.send((self.job, p));
            }
        }
    }
}

impl memwarden_jobs::Progress for ProgressSink {
    fn report(&self, percent: u8) {
        self.set(percent);
    }
}

/// Writes the latest progress of each job, batched, under the supervisor. Like the completer
/// it holds the receiver only while it runs, so a restarted writer carries on with it.
pub struct ProgressWriter(pub Queue);

#[async_trait::async_trait]
impl Service for ProgressWriter {
    fn name(&self) -> String {
        "progress-writer".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let q = &self.0;
        let mut rx = q.inner.progress_rx.clone().lock_owned().await;
        write_progress(q.pool().clone(), &mut rx, q.events().clone(), stop).await;
        Ok(())
    }
}

async fn write_progress(
    pool: PgPool,
    rx: &mut mpsc::UnboundedReceiver<ProgressUpdate>,
    events: Events,
    stop: CancellationToken,
) {
    let mut pending: HashMap<Uuid, i16> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((id, p)) => { pending.insert(id, p); continue; }
                None => return,
            },
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if pending.is_empty() {
            continue;
        }
        let (ids, values): (Vec<Uuid>, Vec<i16>) = pending.drain().unzip();
        let result = sqlx::query(
            "UPDATE memwarden.jobs j SET progress = u.p FROM unnest($1::uuid[], $2::int2[]) AS u(id, p) \
             WHERE j.id = u.id AND j.status = 'running'",
        )
        .bind(&ids)
        .bind(&values)
        .execute(&pool)
        .await;
        if let Err(e) = result {
            crate::telemetry::metrics::db_error("progress");
            tracing::warn!(error = %e, "progress not stored");
        }
        for (id, p) in ids.into_iter().zip(values) {
            events.publish(Event::progress(id, p));
        }
    }
}
