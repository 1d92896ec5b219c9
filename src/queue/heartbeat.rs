//! Renews the lease of every job this process holds. A job whose lease is gone (the reaper
//! took it while we were paused or cut off) has its token fired; a job someone asked to
//! cancel (a missed NOTIFY) is cancelled here too.

use std::time::Duration;

use sqlx::Row;
use uuid::Uuid;

use super::periodic::Periodic;
use super::{Queue, StopReason};
use crate::telemetry::metrics::LEASE_LOST;

pub struct Heartbeat {
    queue: Queue,
}

impl Heartbeat {
    pub fn new(queue: Queue) -> Self {
        Heartbeat { queue }
    }
}

#[async_trait::async_trait]
impl Periodic for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn op(&self) -> &'static str {
        "heartbeat"
    }

    fn period(&self) -> Duration {
        self.queue.settings().queue.heartbeat
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let q = &self.queue;
        let ids = q.held().ids();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3) \
             WHERE id = ANY($1) AND lease_owner = $2 \
             RETURNING id, cancel_requested_at IS NOT NULL AS cancel",
        )
        .bind(&ids)
        .bind(q.worker_id())
        .bind(q.settings().queue.lease.as_secs_f64())
        .fetch_all(q.pool())
        .await?;
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for r in rows {
            let id: Uuid = r.get("id");
            if r.get::<bool, _>("cancel") {
                q.held().stop(id, StopReason::Canceled);
            }
            renewed.insert(id);
        }
        // Only jobs still held now: one that completed meanwhile is simply gone.
        for id in ids.into_iter().filter(|id| !renewed.contains(id)) {
            if q.held().stop(id, StopReason::LeaseLost) {
                metrics::counter!(LEASE_LOST).increment(1);
                tracing::warn!(job = %id, "lease lost; stopping the job");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Registry;
    use crate::test_support::{self, running_job, TestDb};

    #[tokio::test]
    async fn renews_our_leases_and_stops_what_is_no_longer_ours() {
        let db = TestDb::migrated();
        let q = test_support::queue(&db, "", Registry::new());
        let pool = db.pool().await;
        let ours = running_job(&pool, q.worker_id(), 1, 5, 2.0).await;
        let canceled = running_job(&pool, q.worker_id(), 1, 5, 2.0).await;
        let taken = running_job(&pool, "other:2:b", 1, 5, 2.0).await;
        sqlx::query("UPDATE jobs SET cancel_requested_at = now() WHERE id = $1")
            .bind(canceled.id)
            .execute(&pool)
            .await
            .unwrap();
        let tokens = q
            .held()
            .hold(&[ours.clone(), canceled.clone(), taken.clone()]);

        Heartbeat::new(q.clone()).tick().await.unwrap();
        let renewed: bool = sqlx::query_scalar(
            "SELECT lease_expires_at > now() + interval '20 seconds' FROM jobs WHERE id = $1",
        )
        .bind(ours.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(renewed, "the lease runs the configured 30 s from now");
        assert!(!tokens[0].is_cancelled());
        assert!(tokens[1].is_cancelled());
        assert_eq!(
            q.held().stop_reason(canceled.id),
            Some(StopReason::Canceled)
        );
        assert!(tokens[2].is_cancelled());
        assert_eq!(q.held().stop_reason(taken.id), Some(StopReason::LeaseLost));
    }
}
