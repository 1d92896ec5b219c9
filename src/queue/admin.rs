//! Operator actions on jobs and queues: list, show, cancel, retry, pause, resume.

use serde::Serialize;
use uuid::Uuid;

use super::job::{AttemptRow, JobRow, JobView, Reference, Status, StatusFilter};
use super::Queue;

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub status: Option<StatusFilter>,
    /// Only jobs whose id sorts after this one (ids are v7, so newer).
    pub before: Option<Uuid>,
    pub limit: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    pub attempts: Vec<AttemptRow>,
    pub references: Vec<Reference>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("no job with id {0}")]
    NotFound(Uuid),
    #[error("job {0} cannot be retried: a live job already holds its unique key")]
    UniqueTaken(Uuid),
    #[error("job {id} is {status}; {action} applies to {applies}")]
    WrongState {
        id: Uuid,
        status: Status,
        action: &'static str,
        applies: &'static str,
    },
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ActionReply {
    pub id: Uuid,
    pub status: Status,
    pub message: String,
}

impl Queue {
    /// Newest first, keyset-paginated on the id.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRow>, sqlx::Error> {
        let (status, scheduled) = match f.status {
            Some(StatusFilter::Scheduled) => (Some(Status::Available), Some(true)),
            Some(StatusFilter::Is(Status::Available)) => (Some(Status::Available), Some(false)),
            Some(StatusFilter::Is(other)) => (Some(other), None),
            None => (None, None),
        };
        sqlx::query_as(&format!(
            "SELECT {} FROM jobs \
             WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2) \
               AND ($3::text IS NULL OR status = $3) \
               AND ($4::bool IS NULL OR (run_at > now()) = $4) \
               AND ($5::uuid IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
            JobRow::COLUMNS
        ))
        .bind(&f.queue)
        .bind(&f.kind)
        .bind(status.map(Status::as_str))
        .bind(scheduled)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(self.pool())
        .await
    }

    pub async fn job(&self, id: Uuid) -> Result<Option<JobDetail>, sqlx::Error> {
        let job: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {} FROM jobs WHERE id = $1",
            JobRow::COLUMNS
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(job) = job else { return Ok(None) };
        let attempts = sqlx::query_as(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
             WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let references = sqlx::query_as(
            "SELECT resource_type, resource_id FROM job_references WHERE job_id = $1 ORDER BY resource_type, resource_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(JobDetail {
            job: job.into(),
            attempts,
            references,
        }))
    }

    /// Available or retryable: canceled at once. Running: its token fires wherever it runs,
    /// and it ends as canceled.
    pub async fn cancel(&self, id: Uuid) -> Result<Result<ActionReply, ActionError>, sqlx::Error> {
        let row: Option<(Status,)> = sqlx::query_as(
            "UPDATE jobs SET \
               status = CASE WHEN status = 'running' THEN status ELSE 'canceled' END, \
               finished_at = CASE WHEN status = 'running' THEN finished_at ELSE now() END, \
               cancel_requested_at = CASE WHEN status = 'running' THEN now() ELSE cancel_requested_at END, \
               last_error = CASE WHEN status = 'running' THEN last_error ELSE 'canceled by an operator' END \
             WHERE id = $1 AND status IN ('available', 'retryable', 'running') \
             RETURNING status",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some((status,)) if status == Status::Running => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&self.channels().control)
                    .bind(format!("cancel:{id}"))
                    .execute(self.pool())
                    .await?;
                Ok(Ok(ActionReply {
                    id,
                    status,
                    message: "cancel requested; the running job stops at its next safe point and ends as canceled"
                        .into(),
                }))
            }
            Some((status,)) => Ok(Ok(ActionReply {
                id,
                status,
                message: "canceled".into(),
            })),
            None => Ok(Err(self
                .refusal(
                    id,
                    "cancel",
                    "available, scheduled, retryable or running jobs",
                )
                .await?)),
        }
    }

    /// Failed or canceled: back to available with a fresh attempt budget.
    pub async fn retry(&self, id: Uuid) -> Result<Result<ActionReply, ActionError>, sqlx::Error> {
        let row: Result<Option<(Status, String)>, sqlx::Error> = sqlx::query_as(
            "UPDATE jobs SET status = 'available', attempt = 0, run_at = now(), finished_at = NULL, \
               started_at = NULL, progress = 0, cancel_requested_at = NULL \
             WHERE id = $1 AND status IN ('failed', 'canceled') \
             RETURNING status, queue",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await;
        let row: Option<(Status, String)> = match row {
            // The unique key is held by a newer live job: retrying would make two.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505") => {
                return Ok(Err(ActionError::UniqueTaken(id)));
            }
            other => other?,
        };
        match row {
            Some((status, queue)) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&self.channels().jobs)
                    .bind(&queue)
                    .execute(self.pool())
                    .await?;
                self.wakeups().wake(&queue);
                Ok(Ok(ActionReply {
                    id,
                    status,
                    message: "retrying with a fresh attempt budget".into(),
                }))
            }
            None => Ok(Err(self
                .refusal(id, "retry", "failed or canceled jobs")
                .await?)),
        }
    }

    async fn refusal(
        &self,
        id: Uuid,
        action: &'static str,
        applies: &'static str,
    ) -> Result<ActionError, sqlx::Error> {
        let status: Option<Status> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match status {
            None => ActionError::NotFound(id),
            Some(status) => ActionError::WrongState {
                id,
                status,
                action,
                applies,
            },
        })
    }

    /// Reads the paused queues from the table (at start, and as the fallback for a missed
    /// pause or resume NOTIFY).
    pub async fn refresh_paused(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT name FROM queues WHERE paused")
            .fetch_all(self.pool())
            .await?;
        self.wakeups().replace_paused(rows.into_iter().collect());
        Ok(())
    }

    /// Pauses or resumes a queue on every replica.
    pub async fn set_queue_paused(&self, name: &str, paused: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO queues (name, paused, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()",
        )
        .bind(name)
        .bind(paused)
        .execute(self.pool())
        .await?;
        let verb = if paused { "pause" } else { "resume" };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channels().control)
            .bind(format!("{verb}:{name}"))
            .execute(self.pool())
            .await?;
        self.wakeups().set_paused(name, paused);
        Ok(())
    }

    /// Waits until the job is terminal; returns its final row. Polls with a short period and
    /// is woken sooner by this process's own events.
    pub async fn wait_for(&self, id: Uuid) -> Result<JobRow, sqlx::Error> {
        let mut events = self.events().subscribe();
        loop {
            let row: Option<JobRow> = sqlx::query_as(&format!(
                "SELECT {} FROM jobs WHERE id = $1",
                JobRow::COLUMNS
            ))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
            match row {
                Some(r) if r.is_terminal() => return Ok(r),
                None => return Err(sqlx::Error::RowNotFound),
                _ => {}
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(250), async {
                loop {
                    match events.recv().await {
                        Ok(e)
                            if e.job_id == Some(id)
                                && e.event != "progress"
                                && e.event != "started" =>
                        {
                            return
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(_) => return,
                    }
                }
            })
            .await;
        }
    }
}
