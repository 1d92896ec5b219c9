//! Rescues the jobs of dead workers: a running job whose lease expired gets a `lost` attempt
//! and becomes claimable again at once (or fails, if that was its last attempt). It keeps its
//! `run_at`, so under a backlog it keeps its place in line instead of going to the back.

use std::time::Duration;

use super::periodic::Periodic;
use super::Queue;
use crate::telemetry::metrics::REAPED_JOBS;

const REAP_SQL: &str = "\
WITH lost AS ( \
  SELECT id, lease_owner FROM jobs \
  WHERE status = 'running' AND lease_expires_at < now() \
  ORDER BY lease_expires_at LIMIT 1000 \
  FOR UPDATE SKIP LOCKED), \
reaped AS ( \
  UPDATE jobs j SET \
    status = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'available' END, \
    finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END, \
    last_error = 'lease expired: worker ' || COALESCE(lost.lease_owner, '?') || ' lost the job', \
    lease_owner = NULL, lease_expires_at = NULL \
  FROM lost WHERE j.id = lost.id \
  RETURNING j.id, j.attempt, j.started_at, j.queue, lost.lease_owner), \
ins AS ( \
  INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome, error) \
  SELECT id, attempt, COALESCE(lease_owner, '?'), COALESCE(started_at, now()), 'lost', 'lease expired' FROM reaped \
  ON CONFLICT DO NOTHING) \
SELECT queue, count(*) FROM reaped GROUP BY queue";

pub struct Reaper {
    queue: Queue,
}

/// Jobs rescued per statement; a pass repeats the statement while it fills.
const REAP_BATCH: i64 = 1000;

impl Reaper {
    pub fn new(queue: Queue) -> Self {
        Reaper { queue }
    }

    /// One statement; returns how many jobs it rescued.
    pub async fn reap(queue: &Queue) -> Result<i64, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(REAP_SQL).fetch_all(queue.pool()).await?;
        let mut total = 0;
        for (name, n) in rows {
            total += n;
            queue.wakeups().wake(&name);
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&queue.channels().jobs)
                .bind(&name)
                .execute(queue.pool())
                .await?;
        }
        if total > 0 {
            metrics::counter!(REAPED_JOBS).increment(total as u64);
            tracing::warn!(jobs = total, "rescued jobs whose lease expired");
        }
        Ok(total)
    }
}

#[async_trait::async_trait]
impl Periodic for Reaper {
    fn name(&self) -> &'static str {
        "reaper"
    }

    fn op(&self) -> &'static str {
        "reap"
    }

    fn period(&self) -> Duration {
        self.queue.settings().queue.reaper_interval
    }

    /// The reaper runs in DRAINING too: rescuing a dead worker's jobs is never wrong.
    async fn tick(&self) -> anyhow::Result<()> {
        while Self::reap(&self.queue).await? >= REAP_BATCH {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Registry;
    use crate::test_support::{self, running_job, TestDb};

    #[tokio::test]
    async fn an_expired_lease_is_rescued_and_its_attempt_recorded_lost() {
        let db = TestDb::migrated();
        let q = test_support::queue(&db, "", Registry::new());
        let pool = db.pool().await;
        let rescued = running_job(&pool, "ghost:1:a", 1, 5, -1.0).await;
        let exhausted = running_job(&pool, "ghost:1:a", 5, 5, -1.0).await;
        let alive = running_job(&pool, "other:2:b", 1, 5, 60.0).await;

        assert_eq!(Reaper::reap(&q).await.unwrap(), 2);
        let status = |id| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(status(rescued.id).await, "available", "claimable again");
        assert_eq!(
            status(exhausted.id).await,
            "failed",
            "its last attempt is gone"
        );
        assert_eq!(
            status(alive.id).await,
            "running",
            "a live lease is left alone"
        );
        let lost: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT job_id, worker FROM job_attempts WHERE outcome = 'lost' ORDER BY job_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            lost,
            vec![
                (rescued.id, "ghost:1:a".to_string()),
                (exhausted.id, "ghost:1:a".to_string())
            ]
        );
        assert_eq!(
            Reaper::reap(&q).await.unwrap(),
            0,
            "a second pass finds nothing"
        );
    }
}
