//! Job-purge, with GoodMem's semantics: terminal jobs finished before a cutoff go, with their
//! attempts and references, in batches of short transactions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::registry::{Handler, JobContext, Outcome};
use super::Status;
use crate::telemetry::metrics::PURGED;

/// A cutoff that is far enough in the past: parsed and checked once, trusted after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurgeCutoff(DateTime<Utc>);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PurgeError {
    #[error("`older_than` is required (an RFC 3339 timestamp)")]
    MissingCutoff,
    #[error("`older_than` is not an RFC 3339 timestamp: `{0}`")]
    BadTimestamp(String),
    #[error("`older_than` must be at least {min_s} s in the past (minimum retention); `{given}` is too recent")]
    TooRecent { given: String, min_s: f64 },
    #[error("`statuses`: `{0}` is not a terminal status (use BACKGROUND_JOB_SUCCEEDED, BACKGROUND_JOB_FAILED or BACKGROUND_JOB_CANCELED, their short forms, or lowercase native names)")]
    BadStatus(String),
    #[error("`limit` must be 0 (no limit) or more, got {0}")]
    NegativeLimit(i64),
}

impl PurgeCutoff {
    pub fn parse(
        raw: Option<&str>,
        min_retention: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, PurgeError> {
        let raw = raw
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(PurgeError::MissingCutoff)?;
        let t = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| PurgeError::BadTimestamp(raw.to_string()))?
            .with_timezone(&Utc);
        let latest = now - chrono::Duration::from_std(min_retention).unwrap_or_default();
        if t > latest {
            return Err(PurgeError::TooRecent {
                given: raw.to_string(),
                min_s: min_retention.as_secs_f64(),
            });
        }
        Ok(PurgeCutoff(t))
    }

    /// For the scheduled purge, which computes its cutoff from a retention.
    pub fn from_retention(retention: Duration, now: DateTime<Utc>) -> Self {
        PurgeCutoff(now - chrono::Duration::from_std(retention).unwrap_or_default())
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Reads a status as GoodMem, its short aliases, or native names spell it. Only terminal ones.
pub fn parse_terminal_status(raw: &str) -> Result<Status, PurgeError> {
    let s = raw.trim();
    let upper = s.to_ascii_uppercase();
    let native = upper
        .strip_prefix("BACKGROUND_JOB_")
        .unwrap_or(&upper)
        .to_ascii_lowercase();
    match Status::parse(&native) {
        Some(status) if status.is_terminal() => Ok(status),
        _ => Err(PurgeError::BadStatus(raw.to_string())),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PurgeRequest {
    pub cutoff: PurgeCutoff,
    pub statuses: Vec<Status>,
    /// 0 means no limit.
    pub limit: u64,
    pub dry_run: bool,
}

impl PurgeRequest {
    pub fn new(
        cutoff: PurgeCutoff,
        statuses: &[String],
        limit: Option<i64>,
        dry_run: bool,
    ) -> Result<Self, PurgeError> {
        let statuses = if statuses.is_empty() {
            Status::TERMINAL.to_vec()
        } else {
            let mut parsed = statuses
                .iter()
                .map(|s| parse_terminal_status(s))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.sort_by_key(|s| s.as_str());
            parsed.dedup();
            parsed
        };
        let limit = match limit.unwrap_or(0) {
            n if n < 0 => return Err(PurgeError::NegativeLimit(n)),
            n => n as u64,
        };
        Ok(PurgeRequest {
            cutoff,
            statuses,
            limit,
            dry_run,
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct PurgeReport {
    pub jobs_purged: i64,
    pub attempts_purged: i64,
    pub references_purged: i64,
    pub dry_run: bool,
}

/// Walks the primary key up to the cutoff's id (ids are v7, and a job finishes after it is
/// created) with an hour of slack for clocks that disagree, and filters on `finished_at`.
const PURGE_BATCH_SQL: &str = "\
WITH victims AS ( \
  SELECT id FROM jobs \
  WHERE id < uuid_v7_floor($2 + interval '1 hour') AND status = ANY($1) AND finished_at < $2 \
  ORDER BY id LIMIT $3 \
  FOR UPDATE SKIP LOCKED), \
a AS (DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM victims) RETURNING 1), \
r AS (DELETE FROM job_references WHERE job_id IN (SELECT id FROM victims) RETURNING 1), \
j AS (DELETE FROM jobs WHERE id IN (SELECT id FROM victims) RETURNING 1) \
SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM a), (SELECT count(*) FROM r)";

const PURGE_COUNT_SQL: &str = "\
WITH victims AS ( \
  SELECT id FROM jobs \
  WHERE id < uuid_v7_floor($2 + interval '1 hour') AND status = ANY($1) AND finished_at < $2 \
  ORDER BY id LIMIT $3) \
SELECT (SELECT count(*) FROM victims), \
  (SELECT count(*) FROM job_attempts WHERE job_id IN (SELECT id FROM victims)), \
  (SELECT count(*) FROM job_references WHERE job_id IN (SELECT id FROM victims))";

/// Runs a purge. Each batch is its own transaction, so millions of rows never hold one lock.
///
/// Its statements are planned for each call (unnamed): how many rows the cutoff and statuses
/// select decides the plan, and the hourly job runs them in handlers' sessions, which
/// otherwise keep cached plans (see `db::work_session_options`).
pub async fn purge(
    pool: &PgPool,
    req: &PurgeRequest,
    batch_size: i64,
) -> Result<PurgeReport, sqlx::Error> {
    let statuses: Vec<&str> = req.statuses.iter().map(|s| s.as_str()).collect();
    let cap = if req.limit == 0 {
        i64::MAX
    } else {
        req.limit as i64
    };
    if req.dry_run {
        let (jobs, attempts, references): (i64, i64, i64) = sqlx::query_as(PURGE_COUNT_SQL)
            .bind(&statuses)
            .bind(req.cutoff.at())
            .bind(cap)
            .persistent(false)
            .fetch_one(pool)
            .await?;
        return Ok(PurgeReport {
            jobs_purged: jobs,
            attempts_purged: attempts,
            references_purged: references,
            dry_run: true,
        });
    }
    let mut report = PurgeReport::default();
    let started = std::time::Instant::now();
    loop {
        let room = cap - report.jobs_purged;
        if room <= 0 {
            break;
        }
        let (jobs, attempts, references): (i64, i64, i64) = sqlx::query_as(PURGE_BATCH_SQL)
            .bind(&statuses)
            .bind(req.cutoff.at())
            .bind(room.min(batch_size))
            .persistent(false)
            .fetch_one(pool)
            .await?;
        report.jobs_purged += jobs;
        report.attempts_purged += attempts;
        report.references_purged += references;
        if jobs < room.min(batch_size) {
            break;
        }
    }
    for (table, n) in [
        ("jobs", report.jobs_purged),
        ("job_attempts", report.attempts_purged),
        ("job_references", report.references_purged),
    ] {
        metrics::counter!(PURGED, "table" => table).increment(n as u64);
    }
    tracing::info!(
        jobs = report.jobs_purged,
        attempts = report.attempts_purged,
        references = report.references_purged,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "job purge done"
    );
    Ok(report)
}

/// The `job-purge` kind's args, as the schedule and `POST /v1/jobs` give them.
#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PurgeArgs {
    pub older_than: Option<String>,
    /// Instead of `older_than`: purge what finished more than this many seconds ago.
    pub retention_s: Option<f64>,
    #[serde(default)]
    pub statuses: Vec<String>,
    pub limit: Option<i64>,
    #[serde(default)]
    pub dry_run: bool,
}

impl memwarden_jobs::JobArgs for PurgeArgs {
    const KIND: &'static str = "job-purge";
}

/// The `job-purge` handler. It reads its limits from the settings at run time.
pub struct PurgeHandler {
    pub min_retention: Duration,
    pub batch_size: i64,
}

#[async_trait::async_trait]
impl Handler for PurgeHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: PurgeArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let now = Utc::now();
        let cutoff = match (&args.older_than, args.retention_s) {
            (Some(raw), _) => PurgeCutoff::parse(Some(raw), self.min_retention, now),
            (None, Some(secs)) if secs.is_finite() && secs >= self.min_retention.as_secs_f64() => {
                Ok(PurgeCutoff::from_retention(
                    Duration::from_secs_f64(secs),
                    now,
                ))
            }
            (None, Some(secs)) => Err(PurgeError::TooRecent {
                given: format!("retention_s = {secs}"),
                min_s: self.min_retention.as_secs_f64(),
            }),
            (None, None) => Err(PurgeError::MissingCutoff),
        };
        let req = match cutoff
            .and_then(|c| PurgeRequest::new(c, &args.statuses, args.limit, args.dry_run))
        {
            Ok(r) => r,
            Err(e) => return Outcome::Discard(e.to_string()),
        };
        match purge(&job.pool, &req, self.batch_size).await {
            Ok(report) => Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default()),
            Err(e) => Outcome::Failed(format!("purge failed: {e}")),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_names_this_kind() {
        use memwarden_jobs::JobArgs;
        let settings = crate::config::Settings::default();
        let purge = &settings.default_schedules()[0];
        assert_eq!(
            (purge.name.as_str(), purge.kind.as_str()),
            ("job-purge", PurgeArgs::KIND)
        );
    }

    #[test]
    fn statuses_accept_goodmem_aliases_and_native_names() {
        for (raw, want) in [
            ("BACKGROUND_JOB_SUCCEEDED", Status::Succeeded),
            ("FAILED", Status::Failed),
            ("canceled", Status::Canceled),
            ("BACKGROUND_JOB_CANCELED", Status::Canceled),
        ] {
            assert_eq!(parse_terminal_status(raw), Ok(want));
        }
        for bad in ["RUNNING", "BACKGROUND_JOB_PENDING", "nope", "available"] {
            assert!(parse_terminal_status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cutoff_must_be_old_enough() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let recent = (now - chrono::Duration::minutes(59)).to_rfc3339();
        assert!(matches!(
            PurgeCutoff::parse(Some(&recent), hour, now),
            Err(PurgeError::TooRecent { .. })
        ));
        let old = (now - chrono::Duration::minutes(61)).to_rfc3339();
        assert!(PurgeCutoff::parse(Some(&old), hour, now).is_ok());
        assert_eq!(
            PurgeCutoff::parse(None, hour, now),
            Err(PurgeError::MissingCutoff)
        );
        assert!(matches!(
            PurgeCutoff::parse(Some("yesterday"), hour, now),
            Err(PurgeError::BadTimestamp(_))
        ));
    }

    #[test]
    fn negative_limit_is_refused() {
        let c = PurgeCutoff::from_retention(Duration::from_secs(7200), Utc::now());
        assert_eq!(
            PurgeRequest::new(c, &[], Some(-1), false),
            Err(PurgeError::NegativeLimit(-1))
        );
        assert_eq!(PurgeRequest::new(c, &[], Some(0), false).unwrap().limit, 0);
    }
}
