//! Batched completions: every ending of a job (success, retry, failure, snooze, release) is
//! written by one statement per batch that also inserts the attempt rows. Each write checks
//! that the lease is still ours, so a zombie worker cannot overwrite a job another now holds.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::completion::{Completion, Final};
use super::events::Event;
use super::{Queue, Status};
use crate::supervisor::Service;
use crate::telemetry::metrics::LEASE_LOST;

/// One row of the completion statement.
struct Row_ {
    status: Status,
    delay_s: Option<f64>,
    error: Option<String>,
    result: Option<serde_json::Value>,
    attempt_outcome: Option<&'static str>,
    refund: bool,
    bump: bool,
}

fn row_of(q: &Queue, c: &Completion) -> Row_ {
    let job = &c.job;
    let exhausted = job.attempt >= job.max_attempts;
    let retry = |error: &str, delay: Duration, outcome: &'static str| Row_ {
        status: if exhausted {
            Status::Failed
        } else {
            Status::Retryable
        },
        delay_s: (!exhausted).then_some(delay.as_secs_f64()),
        error: Some(error.to_string()),
        result: None,
        attempt_outcome: Some(outcome),
        refund: false,
        bump: false,
    };
    match &c.outcome {
        Final::Succeeded(report) => Row_ {
            status: Status::Succeeded,
            delay_s: None,
            error: None,
            result: Some(report.clone()),
            attempt_outcome: Some("succeeded"),
            refund: false,
            bump: false,
        },
        Final::Failed(e) => retry(e, q.backoff_of(&job.kind).delay(job.attempt), "failed"),
        Final::TimedOut(e) => retry(e, q.backoff_of(&job.kind).delay(job.attempt), "timed_out"),
        Final::RetryAfter(d, e) => retry(e, *d, "failed"),
        Final::Discard(e) => Row_ {
            status: Status::Failed,
            delay_s: None,
            error: Some(e.clone()),
            result: None,
            attempt_outcome: Some("failed"),
            refund: false,
            bump: false,
        },
        Final::Snooze(d, reason) => Row_ {
            status: Status::Available,
            delay_s: Some(d.as_secs_f64()),
            error: reason.clone(),
            result: None,
            attempt_outcome: None,
            refund: true,
            bump: false,
        },
        Final::Interrupted(e) => Row_ {
            status: Status::Available,
            delay_s: Some(0.0),
            error: Some(e.clone()),
            result: None,
            attempt_outcome: Some("interrupted"),
            refund: false,
            bump: true,
        },
        Final::Canceled(e) => Row_ {
            status: Status::Canceled,
            delay_s: None,
            error: Some(e.clone()),
            result: None,
            attempt_outcome: Some("canceled"),
            refund: false,
            bump: false,
        },
        Final::Released => Row_ {
            status: Status::Available,
            delay_s: None,
            error: None,
            result: None,
            attempt_outcome: None,
            refund: true,
            bump: false,
        },
    }
}

/// The lease check compares `lease_owner` with a column of `u`, not with a constant: against a
/// constant the planner estimates one matching row from statistics taken before the jobs were
/// claimed, and picks a nested loop that rescans `u` per job (seconds per batch). As a join
/// clause it gets a sane estimate, and `id = ANY($2)` lets it fetch the batch by primary key
/// rather than hash the whole table. Only running jobs have a `lease_owner`, so no status check
/// is needed (one would steer the plan onto the partial lease index, full of dead entries
/// during a burn-down). The attempt insert has no ON CONFLICT, whose speculative insertion
/// costs on every row: the lease check already makes a second record of one attempt
/// impossible, since the reaper clears the lease in the same statement that records `lost`.
const COMPLETE_SQL: &str = "\
WITH u AS ( \
  SELECT * FROM unnest($2::uuid[], $3::int4[], $4::text[], $5::float8[], $6::text[], $7::jsonb[], $8::text[], $9::bool[], $10::bool[], \
    array_fill($1::text, ARRAY[cardinality($2::uuid[])])) \
    AS u(id, attempt, status, delay_s, error, result, outcome, refund, bump, owner)), \
done AS ( \
  UPDATE jobs j SET \
    status = u.status, \
    run_at = CASE WHEN u.delay_s IS NULL THEN j.run_at ELSE now() + make_interval(secs => u.delay_s) END, \
    finished_at = CASE WHEN u.status IN ('succeeded', 'failed', 'canceled') THEN now() END, \
    last_error = COALESCE(u.error, j.last_error), \
    result = COALESCE(u.result, j.result), \
    progress = CASE WHEN u.status = 'succeeded' THEN 100 ELSE j.progress END, \
    attempt = CASE WHEN u.refund THEN j.attempt - 1 ELSE j.attempt END, \
    max_attempts = CASE WHEN u.bump THEN GREATEST(j.max_attempts, j.attempt + 1) ELSE j.max_attempts END, \
    started_at = CASE WHEN u.refund THEN NULL ELSE j.started_at END, \
    lease_owner = NULL, lease_expires_at = NULL, cancel_requested_at = NULL \
  FROM u \
  WHERE j.id = ANY($2::uuid[]) AND j.id = u.id AND j.attempt = u.attempt AND j.lease_owner = u.owner \
  RETURNING j.id, u.attempt, u.outcome, u.error, j.started_at), \
ins AS ( \
  INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome, error) \
  SELECT id, attempt, $1, COALESCE(started_at, now()), outcome, error FROM done WHERE outcome IS NOT NULL) \
SELECT id FROM done";

/// A batch of successes only, the common case, writes what `COMPLETE_SQL` writes for them with
/// three arrays instead of ten and no per-row choices: less for PostgreSQL to unpack and plan
/// on every batch. The lease check stays a join clause, for the reason given above.
const SUCCEED_SQL: &str = "\
WITH u AS ( \
  SELECT * FROM unnest($2::uuid[], $3::int4[], $4::jsonb[], array_fill($1::text, ARRAY[cardinality($2::uuid[])])) \
    AS u(id, attempt, result, owner)), \
done AS ( \
  UPDATE jobs j SET \
    status = 'succeeded', finished_at = now(), result = COALESCE(u.result, j.result), progress = 100, \
    lease_owner = NULL, lease_expires_at = NULL, cancel_requested_at = NULL \
  FROM u \
  WHERE j.id = ANY($2::uuid[]) AND j.id = u.id AND j.attempt = u.attempt AND j.lease_owner = u.owner \
  RETURNING j.id, j.attempt, j.started_at), \
ins AS ( \
  INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome) \
  SELECT id, attempt, $1, COALESCE(started_at, now()), 'succeeded' FROM done) \
SELECT id FROM done";

pub struct Completer {
    queue: Queue,
}

impl Completer {
    pub fn new(queue: Queue) -> Self {
        Completer { queue }
    }

    /// Writes one batch. Returns the ids whose lease was no longer ours.
    async fn flush(&self, batch: &[Completion], rows: &[Row_]) -> Result<Vec<Uuid>, sqlx::Error> {
        let q = &self.queue;
        let ids: Vec<Uuid> = batch.iter().map(|c| c.job.id).collect();
        let attempts: Vec<i32> = batch.iter().map(|c| c.job.attempt).collect();
        let results: Vec<_> = rows.iter().map(|r| r.result.as_ref()).collect();
        let query = if rows.iter().all(|r| r.status == Status::Succeeded) {
            sqlx::query(SUCCEED_SQL)
                .bind(q.worker_id())
                .bind(&ids)
                .bind(&attempts)
                .bind(&results)
        } else {
            sqlx::query(COMPLETE_SQL)
                .bind(q.worker_id())
                .bind(&ids)
                .bind(&attempts)
                .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.delay_s).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
                .bind(&results)
                .bind(rows.iter().map(|r| r.attempt_outcome).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.refund).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.bump).collect::<Vec<_>>())
        };
        let written_rows = query.fetch_all(q.pool()).await?;
        let written: std::collections::HashSet<Uuid> =
            written_rows.iter().map(|r| r.get::<Uuid, _>(0)).collect();
        Ok(ids.into_iter().filter(|id| !written.contains(id)).collect())
    }

    fn record(&self, batch: Vec<Completion>, rows: Vec<Row_>, rejected: &[Uuid]) {
        let q = &self.queue;
        for (c, r) in batch.iter().zip(rows) {
            let job = &c.job;
            if rejected.contains(&job.id) {
                metrics::counter!(LEASE_LOST).increment(1);
                tracing::warn!(job = %job.id, kind = %job.kind, "completion rejected: the lease is no longer ours");
                continue;
            }
            let (event, outcome) = match (&c.outcome, r.status) {
                (Final::Released, _) => continue,
                (Final::Snooze(..), _) => ("snoozed", "snoozed"),
                (Final::Interrupted(_), _) => ("interrupted", "interrupted"),
                (_, status) => (status.as_str(), status.as_str()),
            };
            if let Some(m) = &c.metrics {
                m.finished(outcome);
            }
            q.events()
                .publish(Event::job(event, job.id, &job.kind, &job.queue).with_error(r.error));
        }
        q.held().release(batch.iter().map(|c| c.job.id));
        // Dropping the batch drops the in-flight guards: the leases are handed in.
        drop(batch);
    }
}

#[async_trait::async_trait]
impl Service for Completer {
    fn name(&self) -> String {
        "completer".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        // Held for the whole run. A run that ends, fails or panics drops the guard, and the
        // restarted completer takes the same receiver with whatever is waiting in it.
        let mut rx = self.queue.inner.completions_rx.clone().lock_owned().await;
        self.serve(&mut rx, stop).await
    }
}

impl Completer {
    /// Gathers completions into batches and writes them, with up to
    /// `queue.complete_concurrency` writes in flight: each waits for its commit, and while it
    /// does the next batch fills. Stops after writing what was handed in before `stop`.
    async fn serve(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Completion>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = self.queue.settings();
        let max = settings.queue.complete_batch.get() as usize;
        let delay = settings.queue.complete_delay_ms;
        let slots = Arc::new(Semaphore::new(
            settings.queue.complete_concurrency.get() as usize
        ));
        let mut writes = JoinSet::new();
        let mut stopping = false;
        loop {
            let mut batch: Vec<Completion> = Vec::with_capacity(max);
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => batch.push(c),
                    None => stopping = true,
                },
                _ = stop.cancelled(), if !stopping => stopping = true,
            }
            if stopping {
                // Write whatever was already handed in, then wait for every write.
                while let Ok(c) = rx.try_recv() {
                    batch.push(c);
                }
                if !batch.is_empty() {
                    self.write(batch).await;
                }
                while writes.join_next().await.is_some() {}
                return Ok(());
            }
            // Gather what arrives within the delay, up to the batch size.
            let deadline = tokio::time::Instant::now() + delay;
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(c)) => batch.push(c),
                        _ => break,
                    },
                }
            }
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let this = Completer {
                queue: self.queue.clone(),
            };
            writes.spawn(async move {
                this.write(batch).await;
                drop(permit);
            });
            while writes.try_join_next().is_some() {}
        }
    }

    /// Writes one batch, retrying while the database is away: a completion must not be lost to
    /// a passing outage. An error that is not an outage would block every later completion, so
    /// after a few tries the batch is left to the reaper, which records the attempts as lost
    /// and runs them again.
    async fn write(&self, batch: Vec<Completion>) {
        let mut backoff = Duration::from_millis(50);
        let mut failures = 0;
        let rows: Vec<Row_> = batch.iter().map(|c| row_of(&self.queue, c)).collect();
        loop {
            match self.flush(&batch, &rows).await {
                Ok(rejected) => {
                    self.record(batch, rows, &rejected);
                    return;
                }
                Err(e) => {
                    crate::telemetry::metrics::db_error("complete");
                    failures += 1;
                    let outage = matches!(
                        e,
                        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                    );
                    if !outage && failures >= 3 {
                        tracing::error!(error = %e, jobs = batch.len(), "completion write keeps failing; leaving these jobs to the reaper");
                        self.queue.held().release(batch.iter().map(|c| c.job.id));
                        return;
                    }
                    tracing::warn!(error = %e, jobs = batch.len(), "completion write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
