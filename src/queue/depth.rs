//! Queue depth: per-queue counts by status and the age of the oldest claimable job. Read on a
//! timer into gauges (never per scrape), and on demand for `/v1/status` and `/v1/queues`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::periodic::Periodic;
use super::Queue;
use crate::telemetry::metrics::{QUEUE_DEPTH, QUEUE_OLDEST_AGE, QUEUE_PAUSED};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, Default, PartialEq, utoipa::ToSchema)]
pub struct QueueStatus {
    pub name: String,
    pub available: i64,
    pub scheduled: i64,
    pub running: i64,
    pub retryable: i64,
    pub failed: i64,
    pub oldest_available_age_s: f64,
    pub paused: bool,
    pub concurrency: u32,
}

/// Each arm matches one partial index's predicate (the claim index, the lease index), so the
/// finished jobs kept for purge are never read: one `status IN` over all three matched neither,
/// and with millions of finished jobs it was a sequential scan every `depth_interval`.
const DEPTH_SQL: &str = "\
SELECT queue, \
  count(*) FILTER (WHERE status = 'available' AND run_at <= now()) AS available, \
  count(*) FILTER (WHERE status = 'available' AND run_at > now()) AS scheduled, \
  count(*) FILTER (WHERE status = 'running') AS running, \
  count(*) FILTER (WHERE status = 'retryable') AS retryable, \
  COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE status IN ('available', 'retryable') AND run_at <= now())), 0)::float8 AS oldest \
FROM (SELECT queue, status, run_at FROM jobs WHERE status IN ('available', 'retryable') \
      UNION ALL SELECT queue, status, run_at FROM jobs WHERE status = 'running') j \
GROUP BY queue";

impl Queue {
    /// Every queue that is served here, has jobs, or is paused.
    pub async fn status(&self) -> Result<Vec<QueueStatus>, sqlx::Error> {
        let settings = self.settings();
        let mut out: BTreeMap<String, QueueStatus> = BTreeMap::new();
        let entry = |out: &mut BTreeMap<String, QueueStatus>, name: &str| {
            out.entry(name.to_string())
                .or_insert_with(|| QueueStatus {
                    name: name.to_string(),
                    concurrency: settings.concurrency_of(name),
                    ..Default::default()
                })
                .clone()
        };
        for name in self.served_queues() {
            entry(&mut out, &name);
        }
        for r in sqlx::query(DEPTH_SQL).fetch_all(self.pool()).await? {
            let name: String = r.get("queue");
            entry(&mut out, &name);
            let s = out.get_mut(&name).expect("just inserted");
            s.available = r.get("available");
            s.scheduled = r.get("scheduled");
            s.running = r.get("running");
            s.retryable = r.get("retryable");
            s.oldest_available_age_s = r.get("oldest");
        }
        let failed: Vec<(String, i64)> = sqlx::query_as(
            "SELECT queue, count(*) FROM jobs WHERE status = 'failed' GROUP BY queue",
        )
        .fetch_all(self.pool())
        .await?;
        for (name, n) in failed {
            entry(&mut out, &name);
            out.get_mut(&name).expect("just inserted").failed = n;
        }
        let paused: Vec<String> = sqlx::query_scalar("SELECT name FROM queues WHERE paused")
            .fetch_all(self.pool())
            .await?;
        for name in paused {
            entry(&mut out, &name);
            out.get_mut(&name).expect("just inserted").paused = true;
        }
        Ok(out.into_values().collect())
    }
}

/// The depth query's share of the time at most: a count that took 400 ms (1,000,000 pending
/// jobs, a parallel sequential scan) waits 20 s before the next, instead of running every
/// `depth_interval`. The ticks go on (the pause fallback, the loop's health); the gauges keep
/// their last values between counts. `/v1/status` always counts.
const DUTY_CYCLE: u32 = 50;

pub struct Depth {
    queue: Queue,
    next_count: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Depth {
    pub fn new(queue: Queue) -> Self {
        Depth {
            queue,
            next_count: std::sync::Mutex::new(None),
        }
    }

    /// Whether this tick counts: the first does, and then one once the last count's cost has
    /// been spread over `DUTY_CYCLE` times its length.
    fn due(&self) -> bool {
        let next = *self.next_count.lock().unwrap_or_else(|e| e.into_inner());
        next.is_none_or(|at| std::time::Instant::now() >= at)
    }

    fn counted(&self, started: std::time::Instant) {
        let took = started.elapsed();
        *self.next_count.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(started + took * DUTY_CYCLE);
    }
}

#[async_trait::async_trait]
impl Periodic for Depth {
    fn name(&self) -> &'static str {
        "depth"
    }

    fn op(&self) -> &'static str {
        "depth"
    }

    fn period(&self) -> Duration {
        self.queue.settings().queue.depth_interval
    }

    async fn tick(&self) -> anyhow::Result<()> {
        if !self.due() {
            return Ok(self.queue.refresh_paused().await?);
        }
        let started = std::time::Instant::now();
        let status = self.queue.status().await?;
        self.counted(started);
        for s in status {
            let q = s.name.clone();
            for (status, n) in [
                ("available", s.available),
                ("scheduled", s.scheduled),
                ("running", s.running),
                ("retryable", s.retryable),
                ("failed", s.failed),
            ] {
                metrics::gauge!(QUEUE_DEPTH, "queue" => q.clone(), "status" => status)
                    .set(n as f64);
            }
            metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => q.clone()).set(s.oldest_available_age_s);
            metrics::gauge!(QUEUE_PAUSED, "queue" => q).set(if s.paused { 1.0 } else { 0.0 });
        }
        // Also the fallback for a missed pause/resume NOTIFY.
        Ok(self.queue.refresh_paused().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Registry;
    use crate::test_support::{self, running_job, TestDb};

    #[tokio::test]
    async fn counts_each_status_and_reads_the_paused_queues() {
        let db = TestDb::migrated();
        let q = test_support::queue(&db, "", Registry::new());
        let pool = db.pool().await;
        running_job(&pool, "w", 1, 5, 30.0).await;
        sqlx::query(
            "INSERT INTO jobs (id, kind, queue, args, status, run_at, finished_at) \
             SELECT gen_random_uuid(), 'probe', 'default', '{}', s, now() + d * interval '1 hour', \
                    CASE WHEN s = 'failed' THEN now() END \
             FROM (VALUES ('available', -1), ('available', -1), ('available', 1), ('retryable', -1), ('failed', -1)) AS v(s, d)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO queues (name, paused) VALUES ('quiet', true)")
            .execute(&pool)
            .await
            .unwrap();

        Depth::new(q.clone()).tick().await.unwrap();
        let status = q.status().await.unwrap();
        let default = status.iter().find(|s| s.name == "default").unwrap();
        assert_eq!(
            (
                default.available,
                default.scheduled,
                default.running,
                default.retryable,
                default.failed
            ),
            (2, 1, 1, 1, 1)
        );
        assert!(default.oldest_available_age_s >= 3599.0);
        assert!(status.iter().any(|s| s.name == "quiet" && s.paused));
        assert!(q.wakeups().is_paused("quiet"), "the tick read the pause");
    }

    #[tokio::test]
    async fn a_slow_count_waits_fifty_times_its_length_and_the_ticks_go_on() {
        let db = TestDb::migrated();
        let q = test_support::queue(&db, "", Registry::new());
        let depth = Depth::new(q.clone());
        assert!(depth.due(), "the first tick counts");
        let long_ago = std::time::Instant::now() - Duration::from_millis(200);
        depth.counted(long_ago);
        assert!(!depth.due(), "a 200 ms count is not repeated for 10 s");
        depth.tick().await.unwrap();
        depth.counted(std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        assert!(depth.due(), "a count of microseconds is due again at once");
    }
}
