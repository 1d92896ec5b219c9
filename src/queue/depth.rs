//! Queue depth: per-queue counts by status and the age of the oldest claimable job. Read on a
//! timer into gauges (never per scrape), and on demand for `/v1/status` and `/v1/queues`.
//! The timer's counts are shared: one replica counts, the others read its counts from
//! `queue_depth_snapshot` while they stand.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::periodic::Periodic;
use super::Queue;
use crate::telemetry::metrics::{QUEUE_DEPTH, QUEUE_OLDEST_AGE, QUEUE_PAUSED};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

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

/// One queue's jobs as the database holds them: the same for every replica.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
struct QueueCounts {
    available: i64,
    scheduled: i64,
    running: i64,
    retryable: i64,
    failed: i64,
    oldest_available_age_s: f64,
}

/// Every queue with jobs, by name.
type Counts = BTreeMap<String, QueueCounts>;

async fn count(conn: &mut PgConnection) -> Result<Counts, sqlx::Error> {
    let mut out = Counts::new();
    for r in sqlx::query(DEPTH_SQL).fetch_all(&mut *conn).await? {
        out.insert(
            r.get("queue"),
            QueueCounts {
                available: r.get("available"),
                scheduled: r.get("scheduled"),
                running: r.get("running"),
                retryable: r.get("retryable"),
                oldest_available_age_s: r.get("oldest"),
                failed: 0,
            },
        );
    }
    let failed: Vec<(String, i64)> =
        sqlx::query_as("SELECT queue, count(*) FROM jobs WHERE status = 'failed' GROUP BY queue")
            .fetch_all(&mut *conn)
            .await?;
    for (name, n) in failed {
        out.entry(name).or_default().failed = n;
    }
    Ok(out)
}

impl Queue {
    /// Every queue that is served here, has jobs, or is paused, counted now.
    pub async fn status(&self) -> Result<Vec<QueueStatus>, sqlx::Error> {
        let counts = count(&mut *self.pool().acquire().await?).await?;
        self.status_of(counts).await
    }

    /// `counts` with this daemon's view: its served queues, their concurrency, the pauses.
    async fn status_of(&self, counts: Counts) -> Result<Vec<QueueStatus>, sqlx::Error> {
        let settings = self.settings();
        let blank = |name: &str| QueueStatus {
            name: name.to_string(),
            concurrency: settings.concurrency_of(name),
            ..Default::default()
        };
        let mut out: BTreeMap<String, QueueStatus> = BTreeMap::new();
        for name in self.served_queues() {
            out.insert(name.clone(), blank(&name));
        }
        for (name, c) in counts {
            let s = out.entry(name.clone()).or_insert_with(|| blank(&name));
            s.available = c.available;
            s.scheduled = c.scheduled;
            s.running = c.running;
            s.retryable = c.retryable;
            s.failed = c.failed;
            s.oldest_available_age_s = c.oldest_available_age_s;
        }
        let paused: Vec<String> = sqlx::query_scalar("SELECT name FROM queues WHERE paused")
            .fetch_all(self.pool())
            .await?;
        for name in paused {
            out.entry(name.clone())
                .or_insert_with(|| blank(&name))
                .paused = true;
        }
        Ok(out.into_values().collect())
    }
}

/// The depth query's share of the time at most: a count that took 400 ms (1,000,000 pending
/// jobs, a parallel sequential scan) stands for 20 s instead of `depth_interval`. The ticks go
/// on (the pause fallback, the loop's health); the gauges keep their last values between
/// counts. `/v1/status` always counts.
const DUTY_CYCLE: u32 = 50;

/// The advisory lock of the replica that is counting ("memwarden depth", as bytes).
const COUNT_LOCK: i64 = 0x6d77_6465_7074_6800;

pub struct Depth {
    queue: Queue,
}

impl Depth {
    pub fn new(queue: Queue) -> Self {
        Depth { queue }
    }

    /// The database's counts: the snapshot while it stands, else counted here by the one
    /// replica that takes the lock and written for the others. `None` for a replica that found
    /// the snapshot stale while another was counting: it looks again at its next tick.
    async fn shared_counts(&self) -> Result<Option<Counts>, sqlx::Error> {
        let pool = self.queue.pool();
        let standing: Option<(Json<Counts>, f64)> = sqlx::query_as(
            "SELECT counts, EXTRACT(EPOCH FROM clock_timestamp() - counted_at)::float8 \
             FROM queue_depth_snapshot WHERE fresh_until > clock_timestamp()",
        )
        .fetch_optional(pool)
        .await?;
        if let Some((Json(mut counts), since)) = standing {
            // The oldest waiting job has waited as much longer as the counts are old.
            for c in counts
                .values_mut()
                .filter(|c| c.oldest_available_age_s > 0.0)
            {
                c.oldest_available_age_s += since;
            }
            return Ok(Some(counts));
        }
        let mut tx = pool.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(COUNT_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(None);
        }
        // One process: a parallel scan of a large backlog took every CPU of a small server
        // from the workers at once (150 ms on three processes against 280 ms on one, with
        // 1,000,000 scheduled jobs), and the gauges can wait.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await?;
        let started = Instant::now();
        let counts = count(&mut tx).await?;
        let stands_for = self
            .queue
            .settings()
            .queue
            .depth_interval
            .max(started.elapsed() * DUTY_CYCLE);
        sqlx::query(
            "INSERT INTO queue_depth_snapshot (id, counted_at, fresh_until, counts)              VALUES (true, clock_timestamp(), clock_timestamp() + make_interval(secs => $1), $2)              ON CONFLICT (id) DO UPDATE SET counted_at = EXCLUDED.counted_at,                fresh_until = EXCLUDED.fresh_until, counts = EXCLUDED.counts",
        )
        .bind(stands_for.as_secs_f64())
        .bind(Json(&counts))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(counts))
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
        let Some(counts) = self.shared_counts().await? else {
            // Also the fallback for a missed pause/resume NOTIFY.
            return Ok(self.queue.refresh_paused().await?);
        };
        let status = self.queue.status_of(counts).await?;
        for s in &status {
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
        // The pauses `status_of` just read are the fallback for a missed pause/resume NOTIFY.
        self.queue.wakeups().replace_paused(
            status
                .into_iter()
                .filter(|s| s.paused)
                .map(|s| s.name)
                .collect(),
        );
        Ok(())
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

    /// One available job, or `n` of them.
    async fn add_available(pool: &sqlx::PgPool, n: i64) {
        sqlx::query(
            "INSERT INTO jobs (kind, queue, args) SELECT 'probe', 'default', '{}' FROM generate_series(1, $1)",
        )
        .bind(n)
        .execute(pool)
        .await
        .unwrap();
    }

    fn available(counts: Option<Counts>) -> Option<i64> {
        counts.map(|c| c.get("default").map_or(0, |q| q.available))
    }

    #[tokio::test]
    async fn replicas_share_one_count_while_it_stands() {
        let db = TestDb::migrated();
        let pool = db.pool().await;
        let one = Depth::new(test_support::queue(&db, "", Registry::new()));
        let other = Depth::new(test_support::queue(&db, "", Registry::new()));
        add_available(&pool, 1).await;
        let counted = one.shared_counts().await.unwrap();
        let oldest = |c: &Option<Counts>| c.as_ref().unwrap()["default"].oldest_available_age_s;
        let waited = oldest(&counted);
        assert_eq!(available(counted), Some(1));
        let stands: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM fresh_until - counted_at)::float8 FROM queue_depth_snapshot",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            (5.0..6.0).contains(&stands),
            "a fast count stands for depth_interval (5 s): {stands}"
        );

        add_available(&pool, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = other.shared_counts().await.unwrap();
        assert!(
            oldest(&read) >= waited + 0.1,
            "the oldest job has waited as much longer as the counts are old: {} then {}",
            waited,
            oldest(&read)
        );
        assert_eq!(
            available(read),
            Some(1),
            "the other replica reads the standing counts instead of counting"
        );
        sqlx::query("UPDATE queue_depth_snapshot SET fresh_until = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(
            available(other.shared_counts().await.unwrap()),
            Some(3),
            "once they are stale, the next tick counts"
        );
    }

    #[tokio::test]
    async fn a_replica_that_finds_another_counting_waits_for_its_next_tick() {
        let db = TestDb::migrated();
        let pool = db.pool().await;
        let depth = Depth::new(test_support::queue(&db, "", Registry::new()));
        add_available(&pool, 1).await;
        let mut counting = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(COUNT_LOCK)
            .execute(&mut *counting)
            .await
            .unwrap();
        assert_eq!(available(depth.shared_counts().await.unwrap()), None);
        counting.rollback().await.unwrap();
        assert_eq!(available(depth.shared_counts().await.unwrap()), Some(1));
    }
}
