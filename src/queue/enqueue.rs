//! Enqueue: one job or many in one statement, with unique keys that return the existing job,
//! and a NOTIFY in the same transaction so a claimer starts it at once.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::events::Event;
use super::Queue;
use crate::telemetry::metrics::JOBS_ENQUEUED;

/// A job to enqueue. Unset fields take the kind's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub args: serde_json::Value,
    pub queue: Option<String>,
    pub priority: i16,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: Option<i32>,
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, args: serde_json::Value) -> Self {
        NewJob {
            kind: kind.into(),
            args,
            ..Default::default()
        }
    }

    /// From typed args (the jobs crate's `JobArgs`).
    pub fn typed<A: memwarden_jobs::JobArgs>(args: &A) -> Result<Self, serde_json::Error> {
        Ok(NewJob::new(A::KIND, serde_json::to_value(args)?))
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Enqueued {
    pub id: Uuid,
    /// False when the unique key was taken and `id` is the existing job.
    pub inserted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("unknown job kind `{0}`")]
    UnknownKind(String),
    #[error("`args` must be a JSON object")]
    ArgsNotObject,
    #[error("`args` do not fit kind `{kind}`: {reason}")]
    BadArgs { kind: String, reason: String },
    #[error("`max_attempts` must be at least 1")]
    MaxAttempts,
    #[error("`run_at` must fall in the years 1 to 9999")]
    RunAt,
    #[error("`queue` must be 1 to 100 characters of letters, digits, '-', '_' or '.'")]
    QueueName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const INSERT_SQL: &str = "\
WITH ins AS ( \
  INSERT INTO jobs (id, kind, queue, args, priority, run_at, max_attempts, unique_key) \
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::timestamptz[], $7::int4[], $8::text[]) \
  ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND status IN ('available', 'running', 'retryable') \
  DO NOTHING \
  RETURNING id, queue), \
woke AS (SELECT count(pg_notify(current_schema() || '_jobs', q.queue)) AS n FROM (SELECT DISTINCT queue FROM ins) q) \
SELECT ins.id FROM ins, woke";

pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Queue {
    /// Checks and fills in defaults; the rows are then ready for `insert_jobs`.
    pub fn prepare(&self, jobs: Vec<NewJob>) -> Result<Vec<NewJob>, EnqueueError> {
        jobs.into_iter()
            .map(|mut j| {
                if !self.registry().contains(&j.kind) {
                    return Err(EnqueueError::UnknownKind(j.kind));
                }
                if j.args.is_null() {
                    j.args = serde_json::json!({});
                }
                if !j.args.is_object() {
                    return Err(EnqueueError::ArgsNotObject);
                }
                if let Err(reason) = self.registry().check_args(&j.kind, &j.args) {
                    return Err(EnqueueError::BadArgs {
                        kind: j.kind,
                        reason,
                    });
                }
                if matches!(j.max_attempts, Some(m) if m < 1) {
                    return Err(EnqueueError::MaxAttempts);
                }
                // PostgreSQL's timestamps end at 4713 BC and 294276 AD; refused here, a time
                // past them would fail the insert as a database error.
                if matches!(j.run_at, Some(t) if !(1..=9999).contains(&t.year())) {
                    return Err(EnqueueError::RunAt);
                }
                let queue = j
                    .queue
                    .take()
                    .unwrap_or_else(|| self.default_queue_of(&j.kind));
                if !valid_queue_name(&queue) {
                    return Err(EnqueueError::QueueName);
                }
                j.queue = Some(queue);
                j.max_attempts = Some(
                    j.max_attempts
                        .unwrap_or_else(|| self.max_attempts_of(&j.kind)),
                );
                Ok(j)
            })
            .collect()
    }

    /// Enqueues in one statement. Results are in input order.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        let jobs = self.prepare(jobs)?;
        let results = insert_jobs(self.pool(), &jobs).await?;
        for (j, r) in jobs.iter().zip(&results) {
            let queue = j.queue.as_deref().unwrap_or("default");
            if r.inserted {
                metrics::counter!(JOBS_ENQUEUED, "kind" => j.kind.clone(), "queue" => queue.to_string())
                    .increment(1);
                self.events()
                    .publish(Event::job("enqueued", r.id, &j.kind, queue));
            }
            self.wakeups().wake(queue);
        }
        Ok(results)
    }

    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let mut r = self.enqueue_many(vec![job]).await?;
        Ok(r.pop().expect("one job in, one result out"))
    }
}

/// The statement itself, for callers with their own executor (a transaction, the bench).
/// Jobs must already be prepared (queue and max_attempts set).
pub async fn insert_jobs<'e>(
    db: impl PgExecutor<'e> + Copy,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, sqlx::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|_| Uuid::now_v7()).collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let queues: Vec<&str> = jobs
        .iter()
        .map(|j| j.queue.as_deref().unwrap_or("default"))
        .collect();
    let args: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.args).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let now = Utc::now();
    let run_ats: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.run_at.unwrap_or(now)).collect();
    let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts.unwrap_or(25)).collect();
    let unique: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();

    let inserted: std::collections::HashSet<Uuid> = sqlx::query(INSERT_SQL)
        .bind(&ids)
        .bind(&kinds)
        .bind(&queues)
        .bind(&args)
        .bind(&priorities)
        .bind(&run_ats)
        .bind(&max_attempts)
        .bind(&unique)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| r.get::<Uuid, _>(0))
        .collect();

    let mut results: Vec<Enqueued> = ids
        .iter()
        .map(|id| Enqueued {
            id: *id,
            inserted: inserted.contains(id),
        })
        .collect();
    // Duplicates of a unique key: find the job that holds it.
    let missing: Vec<usize> = (0..jobs.len()).filter(|i| !results[*i].inserted).collect();
    if !missing.is_empty() {
        let mk: Vec<&str> = missing.iter().map(|i| kinds[*i]).collect();
        let mu: Vec<Option<&str>> = missing.iter().map(|i| unique[*i]).collect();
        let rows = sqlx::query(
            "SELECT DISTINCT ON (j.kind, j.unique_key) j.kind, j.unique_key, j.id \
             FROM jobs j JOIN unnest($1::text[], $2::text[]) AS u(kind, unique_key) \
               ON j.kind = u.kind AND j.unique_key = u.unique_key \
             ORDER BY j.kind, j.unique_key, (j.status IN ('available', 'running', 'retryable')) DESC, j.created_at DESC",
        )
        .bind(&mk)
        .bind(&mu)
        .fetch_all(db)
        .await?;
        for i in missing {
            if let Some(r) = rows.iter().find(|r| {
                r.get::<String, _>("kind") == kinds[i]
                    && r.get::<Option<String>, _>("unique_key").as_deref() == unique[i]
            }) {
                results[i].id = r.get("id");
            }
        }
    }
    Ok(results)
}
