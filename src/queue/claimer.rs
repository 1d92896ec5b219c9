//! One claimer per queue: claims jobs in batches (`FOR UPDATE SKIP LOCKED`), keeps a small
//! prefetch buffer, and runs each job in its own task under the queue's concurrency limit.
//! Woken by NOTIFY, by a finished job, or by the fallback poll.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::completion::{Completion, Final};
use super::events::Event;
use super::runner::run_handler;
use super::{Claimed, Queue};
use crate::lifecycle::{InFlight, State};
use crate::supervisor::Service;

pub struct Claimer {
    queue: Queue,
    name: String,
}

impl Claimer {
    pub fn new(queue: Queue, name: String) -> Self {
        Claimer { queue, name }
    }
}

/// A claimed job waiting for a free slot, with its share of the in-flight count.
struct Prefetched {
    job: Claimed,
    cancel: CancellationToken,
    guard: InFlight,
}

#[async_trait::async_trait]
impl Service for Claimer {
    fn name(&self) -> String {
        format!("claimer:{}", self.name)
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let q = &self.queue;
        let lifecycle = q.lifecycle().clone();
        let mut state_rx = lifecycle.subscribe();
        let waker = q.wakeups().waker(&self.name);
        let finished = Arc::new(Notify::new());
        let running = Arc::new(AtomicUsize::new(0));
        let mut buffer: VecDeque<Prefetched> = VecDeque::new();
        let kinds = q.registry().kinds();
        let beat = q.health().register(self.name(), Duration::from_secs(1));
        let mut more_waiting = true;
        // Claims in flight. They run beside dispatch: while one waits for its commit, finished
        // slots keep taking buffered jobs, and a second claim may already be on its way.
        let mut claiming: FuturesUnordered<ClaimFuture<'_>> = FuturesUnordered::new();
        let mut pending = 0usize; // jobs asked for by the claims in flight
                                  // A wake-up that arrives while a claim is in flight may be for a job that claim could
                                  // not see yet: it must not be cancelled by that claim coming back empty.
        let mut woken_while_claiming = false;

        loop {
            beat.beat();
            let settings = q.settings();
            let concurrency = settings.concurrency_of(&self.name) as usize;
            let state = state_rx.borrow_and_update().state;
            let ready = state == State::Ready;

            if !ready && !buffer.is_empty() {
                // Draining: prefetched jobs go back without using an attempt.
                for p in buffer.drain(..) {
                    q.complete(Completion::new(p.job, Final::Released, None, p.guard));
                }
            }

            while running.load(Ordering::Relaxed) < concurrency {
                let Some(p) = buffer.pop_front() else { break };
                running.fetch_add(1, Ordering::Relaxed);
                self.spawn(p, running.clone(), finished.clone());
            }

            // Claim when the buffer plus what is already asked for is at most half the prefetch,
            // up to what fills it; a second claim only under load, to keep the buffer from
            // running dry while the first waits for its commit.
            let prefetch = settings.prefetch_of(&self.name) as usize;
            let held = running.load(Ordering::Relaxed) + buffer.len() + pending;
            let want = (concurrency + prefetch)
                .saturating_sub(held)
                .min(settings.queue.claim_batch.get() as usize);
            let low = buffer.len() + pending <= prefetch / 2;
            let room_for_claim = claiming.is_empty()
                || (claiming.len() < MAX_CLAIMS_IN_FLIGHT && !buffer.is_empty());
            if room_for_claim
                && ready
                && more_waiting
                && want > 0
                && low
                && !q.wakeups().is_paused(&self.name)
            {
                let lease = settings.queue.lease;
                let kinds = &kinds;
                pending += want;
                claiming.push(Box::pin(async move {
                    (want, self.claim(kinds, want, lease).await)
                }));
                continue;
            }

            let poll = settings
                .queue
                .poll_interval_ms
                .max(Duration::from_millis(10));
            tokio::select! {
                Some((want, result)) = claiming.next(), if !claiming.is_empty() => {
                    pending -= want;
                    more_waiting = self.take(result, want, &lifecycle, &mut buffer) || woken_while_claiming;
                    woken_while_claiming = false;
                }
                _ = waker.notified() => {
                    more_waiting = true;
                    woken_while_claiming = !claiming.is_empty();
                }
                _ = finished.notified() => {}
                _ = tokio::time::sleep(poll) => {
                    more_waiting = true;
                    woken_while_claiming = !claiming.is_empty();
                }
                changed = state_rx.changed() => {
                    if changed.is_err() { return Ok(()); }
                    // The snapshot also changes with every lease taken or handed in; only a
                    // change of state (a resume, say) means there may be work to claim.
                    if state_rx.borrow().state != state {
                        more_waiting = true;
                        woken_while_claiming = !claiming.is_empty();
                    }
                }
                _ = stop.cancelled() => {
                    // A claim already sent may have committed: take its jobs so they go back
                    // now rather than when their lease runs out.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    while let Ok(Some((want, result))) = tokio::time::timeout_at(deadline, claiming.next()).await {
                        self.take(result, want, &lifecycle, &mut buffer);
                    }
                    for p in buffer.drain(..) {
                        q.complete(Completion::new(p.job, Final::Released, None, p.guard));
                    }
                    return Ok(());
                }
            }
        }
    }
}

const MAX_CLAIMS_IN_FLIGHT: usize = 2;

type ClaimFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<Vec<Claimed>, sqlx::Error>)> + Send + 'a>,
>;

impl Claimer {
    /// Holds what a claim returned; says whether more jobs are probably waiting.
    fn take(
        &self,
        result: Result<Vec<Claimed>, sqlx::Error>,
        want: usize,
        lifecycle: &crate::lifecycle::Lifecycle,
        buffer: &mut VecDeque<Prefetched>,
    ) -> bool {
        match result {
            Ok(claimed) => {
                let more = claimed.len() == want;
                if !claimed.is_empty() {
                    let tokens = self.queue.held().hold(&claimed);
                    let mut guard = lifecycle.track(claimed.len());
                    for (job, cancel) in claimed.into_iter().zip(tokens) {
                        let guard = guard.split_one().expect("one unit per claimed job");
                        buffer.push_back(Prefetched { job, cancel, guard });
                    }
                }
                more
            }
            Err(e) => {
                crate::telemetry::metrics::db_error("claim");
                tracing::warn!(queue = %self.name, error = %e, "claim failed");
                false
            }
        }
    }

    async fn claim(
        &self,
        kinds: &[String],
        n: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        // The claimable jobs are read one priority at a time. With the priority fixed, `run_at
        // <= now()` bounds the claim index's range, so the scan stops at the first job not yet
        // due; over all priorities at once it was only a filter, and a claim that found fewer
        // due jobs than it asked for read every scheduled one (233 ms, a sequential scan, with
        // 1,000,000 jobs due in an hour; 0.24 ms this way). The levels are walked down the same
        // index, one probe each. A level may lock more rows than the claim keeps; they are
        // free again when the statement ends.
        // `id = ANY(ARRAY(...))` keeps the update on the primary key whatever the LIMIT: joined
        // to the CTE, a large LIMIT made the planner hash the whole table on every claim.
        let rows = sqlx::query(
            "WITH RECURSIVE levels(p) AS ( \
               (SELECT priority FROM jobs WHERE queue = $1 AND status IN ('available', 'retryable') \
                ORDER BY priority DESC LIMIT 1) \
               UNION ALL \
               SELECT (SELECT priority FROM jobs WHERE queue = $1 AND status IN ('available', 'retryable') \
                       AND priority < levels.p ORDER BY priority DESC LIMIT 1) \
               FROM levels WHERE levels.p IS NOT NULL), \
             picked AS ( \
               SELECT c.id FROM levels, LATERAL ( \
                 SELECT id, run_at FROM jobs \
                 WHERE queue = $1 AND priority = levels.p AND status IN ('available', 'retryable') \
                   AND run_at <= now() AND kind = ANY($2) \
                 ORDER BY run_at, id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) c \
               WHERE levels.p IS NOT NULL \
               ORDER BY levels.p DESC, c.run_at, c.id \
               LIMIT $3) \
             UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, lease_owner = $4, \
               lease_expires_at = now() + make_interval(secs => $5), started_at = now(), cancel_requested_at = NULL \
             WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) \
             RETURNING j.id, j.kind, j.queue, j.args, j.attempt, j.max_attempts, j.run_at, j.priority",
        )
        .bind(&self.name)
        .bind(kinds)
        .bind(n as i64)
        .bind(self.queue.worker_id())
        .bind(lease.as_secs_f64())
        .fetch_all(self.queue.pool())
        .await?;
        let mut jobs: Vec<(i16, Claimed)> = rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<i16, _>("priority"),
                    Claimed {
                        id: r.get("id"),
                        kind: r.get("kind"),
                        queue: r.get("queue"),
                        args: r.get("args"),
                        attempt: r.get("attempt"),
                        max_attempts: r.get("max_attempts"),
                        run_at: r.get("run_at"),
                    },
                )
            })
            .collect();
        jobs.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.run_at.cmp(&b.1.run_at))
                .then(a.1.id.cmp(&b.1.id))
        });
        Ok(jobs.into_iter().map(|(_, j)| j).collect())
    }

    fn spawn(&self, p: Prefetched, running: Arc<AtomicUsize>, finished: Arc<Notify>) {
        let q = self.queue.clone();
        tokio::spawn(async move {
            let Prefetched { job, cancel, guard } = p;
            let started = Instant::now();
            q.held().mark_started(job.id);
            let wait = (Utc::now() - job.run_at).num_milliseconds().max(0) as f64 / 1000.0;
            let m = q.job_metrics(&job.kind, &job.queue);
            m.wait.record(wait);
            m.in_flight.increment(1.0);
            q.events()
                .publish(Event::job("started", job.id, &job.kind, &job.queue));

            let outcome = run_handler(&q, &job, cancel).await;

            m.in_flight.decrement(1.0);
            m.duration.record(started.elapsed().as_secs_f64());
            running.fetch_sub(1, Ordering::Relaxed);
            finished.notify_one();
            q.complete(Completion::new(job, outcome, Some(m), guard));
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::queue::completer::Completer;
    use crate::queue::{Handler, JobContext, NewJob, Outcome, Registry};
    use crate::test_support::{self, eventually, TestDb};

    struct Count(Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl Handler for Count {
        async fn run(&self, _job: JobContext) -> Outcome {
            self.0.fetch_add(1, Ordering::Relaxed);
            Outcome::Succeeded(serde_json::Value::Null)
        }
    }

    #[tokio::test]
    async fn claims_in_batches_runs_each_job_once_and_leaves_a_paused_queue_alone() {
        let db = TestDb::migrated();
        let ran = Arc::new(AtomicUsize::new(0));
        let registry = Registry::new().register("count", Count(ran.clone()));
        let q = test_support::queue(
            &db,
            "[queue]\nclaim_batch = 7\npoll_interval_ms = 50\n",
            registry,
        );
        let pool = db.pool().await;
        let stop = CancellationToken::new();
        let services: Vec<Arc<dyn Service>> = vec![
            Arc::new(Completer::new(q.clone())),
            Arc::new(Claimer::new(q.clone(), "default".into())),
        ];
        let tasks: Vec<_> = services
            .into_iter()
            .map(|s| {
                let stop = stop.clone();
                tokio::spawn(async move { s.run(stop).await })
            })
            .collect();
        q.lifecycle().ready();
        let jobs = (0..50)
            .map(|_| NewJob::new("count", serde_json::json!({})))
            .collect();
        q.enqueue_many(jobs).await.unwrap();
        let succeeded = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        eventually(Duration::from_secs(10), "50 jobs succeed", async || {
            succeeded().await == 50
        })
        .await;
        assert_eq!(ran.load(Ordering::Relaxed), 50, "each ran once");

        q.wakeups().set_paused("default", true);
        q.enqueue(NewJob::new("count", serde_json::json!({})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(succeeded().await, 50, "a paused queue is not claimed");
        q.wakeups().set_paused("default", false);
        eventually(Duration::from_secs(5), "resumed, it runs", async || {
            succeeded().await == 51
        })
        .await;
        stop.cancel();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
}
