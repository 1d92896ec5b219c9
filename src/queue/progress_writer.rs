//! Stores the latest progress of each job on its row, batched every quarter second, and
//! publishes it as an event.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{Event, Events};
use super::progress::ProgressUpdate;
use super::Queue;
use crate::supervisor::Service;

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
            "UPDATE jobs j SET progress = u.p FROM unnest($1::uuid[], $2::int2[]) AS u(id, p) \
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
