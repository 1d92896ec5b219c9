//! Rescues the jobs of dead workers: a running job whose lease expired gets a `lost` attempt
//! and becomes claimable again at once (or fails, if that was its last attempt). It keeps its
//! `run_at`, so under a backlog it keeps its place in line instead of going to the back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Queue;
use crate::supervisor::Service;

const REAP_SQL: &str = "\
WITH lost AS ( \
  SELECT id, lease_owner FROM memwarden.jobs \
  WHERE status = 'running' AND lease_expires_at < now() \
  ORDER BY lease_expires_at LIMIT 1000 \
  FOR UPDATE SKIP LOCKED), \
reaped AS ( \
  UPDATE memwarden.jobs j SET \
    status = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'available' END, \
    finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END, \
    last_error = 'lease expired: worker ' || COALESCE(lost.lease_owner, '?') || ' lost the job', \
    lease_owner = NULL, lease_expires_at = NULL \
  FROM lost WHERE j.id = lost.id \
  RETURNING j.id, j.attempt, j.started_at, j.queue, lost.lease_owner), \
ins AS ( \
  INSERT INTO memwarden.job_attempts (job_id, attempt, worker, started_at, outcome, error) \
  SELECT id, attempt, COALESCE(lease_owner, '?'), COALESCE(started_at, now()), 'lost', 'lease expired' FROM reaped \
  ON CONFLICT DO NOTHING) \
SELECT queue, count(*) FROM reaped GROUP BY queue";

pub struct Reaper {
    queue: Queue,
}

impl Reaper {
    pub fn new(queue: Queue) -> Self {
        Reaper { queue }
    }

    /// One pass; returns how many jobs were rescued.
    pub async fn reap(queue: &Queue) -> Result<i64, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(REAP_SQL).fetch_all(queue.pool()).await?;
        let mut total = 0;
        for (name, n) in rows {
            total += n;
            queue.wake(&name);
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::JOBS_CHANNEL)
                .bind(&name)
                .execute(queue.pool())
                .await?;
        }
        if total > 0 {
            metrics::counter!("memwarden_reaped_jobs_total").increment(total as u64);
            tracing::warn!(jobs = total, "rescued jobs whose lease expired");
        }
        Ok(total)
    }
}

#[async_trait::async_trait]
impl Service for Reaper {
    fn name(&self) -> String {
        "reaper".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let period = Duration::from_secs_f64(self.queue.settings().queue.reaper_interval);
        let beat = self.queue.app().health().register(self.name(), period);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return Ok(()),
            }
            // The reaper runs in DRAINING too: rescuing a dead worker's jobs is never wrong.
            loop {
                match Self::reap(&self.queue).await {
                    Ok(n) if n >= 1000 => continue,
                    Ok(_) => break,
                    Err(e) => {
                        metrics::counter!("memwarden_db_errors_total", "op" => "reap").increment(1);
                        tracing::warn!(error = %e, "reaper pass failed");
                        break;
                    }
                }
            }
            beat.beat();
        }
    }
}
