//! The job's states and rows, as stored in `jobs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Status {
    Available,
    Running,
    Retryable,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub const TERMINAL: [Status; 3] = [Status::Succeeded, Status::Failed, Status::Canceled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Running => "running",
            Status::Retryable => "retryable",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Not yet ended: what a unique key and the depth gauges count.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// The stored name, or `cancelled` as some clients spell it.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "available" => Status::Available,
            "running" => Status::Running,
            "retryable" => Status::Retryable,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "canceled" | "cancelled" => Status::Canceled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job list filters on: a stored status, or `scheduled` (available, run_at ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Is(Status),
    Scheduled,
}

impl StatusFilter {
    pub fn parse(s: &str) -> Option<StatusFilter> {
        match s {
            "scheduled" => Some(StatusFilter::Scheduled),
            other => Status::parse(other).map(StatusFilter::Is),
        }
    }
}

/// A job as the control port shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// As stored; the wire shows `display_status` (see `JobView`).
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub status: Status,
    pub priority: i16,
    pub run_at: DateTime<Utc>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub progress: i16,
    /// The domain function's report.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// A resumable job's saved state: where its next attempt continues.
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<serde_json::Value>,
}

impl JobRow {
    pub const COLUMNS: &'static str =
        "id, kind, queue, args, status, priority, run_at, attempt, max_attempts, unique_key, \
         lease_owner, lease_expires_at, created_at, started_at, finished_at, last_error, progress, result, checkpoint";

    /// `available` with a future `run_at` is reported as `scheduled`.
    pub fn display_status(&self) -> &'static str {
        if self.status == Status::Available && self.run_at > Utc::now() {
            "scheduled"
        } else {
            self.status.as_str()
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// A job as the control port shows it: its row, with `status` as the reader means it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// available, scheduled (available with a future run_at), running, retryable, succeeded,
    /// failed, canceled
    pub status: &'static str,
    #[serde(flatten)]
    pub job: JobRow,
}

impl From<JobRow> for JobView {
    fn from(job: JobRow) -> Self {
        JobView {
            status: job.display_status(),
            job,
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRow {
    pub attempt: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, PartialEq, utoipa::ToSchema)]
pub struct Reference {
    pub resource_type: String,
    pub resource_id: String,
}

/// A job claimed by this process.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub args: serde_json::Value,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
}
