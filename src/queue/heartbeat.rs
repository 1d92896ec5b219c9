//! Renews the lease of every job this process holds. A job whose lease is gone (the reaper
//! took it while we were paused or cut off) has its token fired; a job someone asked to
//! cancel (a missed NOTIFY) is cancelled here too.

use std::time::Duration;

use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Queue, StopReason};
use crate::supervisor::Service;

pub struct Heartbeat {
    queue: Queue,
}

impl Heartbeat {
    pub fn new(queue: Queue) -> Self {
        Heartbeat { queue }
    }

    async fn renew(&self) -> Result<(), sqlx::Error> {
        let q = &self.queue;
        let ids = q.held_ids();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(
            "UPDATE memwarden.jobs SET lease_expires_at = now() + make_interval(secs => $3) \
             WHERE id = ANY($1) AND lease_owner = $2 \
             RETURNING id, cancel_requested_at IS NOT NULL AS cancel",
        )
        .bind(&ids)
        .bind(q.worker_id())
        .bind(q.settings().queue.lease)
        .fetch_all(q.pool())
        .await?;
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for r in rows {
            let id: Uuid = r.get("id");
            if r.get::<bool, _>("cancel") {
                q.stop_job(id, StopReason::Canceled);
            }
            renewed.insert(id);
        }
        // Only jobs still held now: one that completed meanwhile is simply gone.
        for id in ids.into_iter().filter(|id| !renewed.contains(id)) {
            if q.stop_job(id, StopReason::LeaseLost) {
                metrics::counter!("memwarden_lease_lost_total").increment(1);
                tracing::warn!(job = %id, "lease lost; stopping the job");
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Service for Heartbeat {
    fn name(&self) -> String {
        "heartbeat".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let period = Duration::from_secs_f64(self.queue.settings().queue.heartbeat);
        let beat = self.queue.app().health().register(self.name(), period);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return Ok(()),
            }
            if let Err(e) = self.renew().await {
                metrics::counter!("memwarden_db_errors_total", "op" => "heartbeat").increment(1);
                tracing::warn!(error = %e, "heartbeat failed");
            }
            beat.beat();
        }
    }
}
