//! RetrieveMemory log retention (GoodMem's RetrieveMemory logging): the retrieval server
//! writes one row per logged call into `retrieve_memory_logs`; this deletes the rows older
//! than the retention, oldest first, in short batches with a pause between them, and stops at
//! a batch boundary when asked to (a cancel or a drain). Whatever a stopped run leaves, the
//! next run takes: the cutoff is recomputed from `now()` each time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::batched_delete::delete_in_batches;

/// The `retrieve-log-retention` job's args, as the daily schedule stores them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrieveLogRetentionArgs {
    /// Rows created more than this many seconds ago are deleted.
    pub retention_s: f64,
}

impl crate::JobArgs for RetrieveLogRetentionArgs {
    const KIND: &'static str = "retrieve-log-retention";
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// The most rows one batch transaction deletes.
    pub batch_size: i64,
    /// The pause between batches, so the retrieval server's writes are never held up long.
    pub pause: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            batch_size: 1000,
            pause: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetentionReport {
    pub cutoff: Option<chrono::DateTime<chrono::Utc>>,
    pub deleted: i64,
    pub batches: i64,
    /// The longest single batch, in milliseconds.
    pub longest_batch_ms: f64,
    /// True when the run stopped at a batch boundary before the end.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("invalid retention: {0}")]
    Input(String),
    #[error("retrieve-log retention: {0}")]
    Database(#[from] sqlx::Error),
}

/// The retention as a duration: positive, finite, at most ten years.
pub fn retention_of(args: &RetrieveLogRetentionArgs) -> Result<Duration, RetentionError> {
    let s = args.retention_s;
    if !s.is_finite() || s <= 0.0 || s > 10.0 * 365.0 * 86_400.0 {
        return Err(RetentionError::Input(format!(
            "retention_s must be more than 0 and at most ten years, got {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Deletes the rows of `retrieve_memory_logs` older than `retention`, batch by batch, until
/// none is left or `stop` fires (checked between batches).
pub async fn purge_retrieve_logs(
    pool: &PgPool,
    retention: Duration,
    settings: &RetentionSettings,
    stop: &CancellationToken,
) -> Result<RetentionReport, RetentionError> {
    let cutoff: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now() - make_interval(secs => $1)")
            .bind(retention.as_secs_f64())
            .fetch_one(pool)
            .await?;
    let mut report = RetentionReport {
        cutoff: Some(cutoff),
        ..Default::default()
    };
    let batch = settings.batch_size.max(1);
    let done = delete_in_batches(batch, settings.pause, stop, || async {
        sqlx::query(
            "DELETE FROM retrieve_memory_logs WHERE log_id IN ( \
               SELECT log_id FROM retrieve_memory_logs WHERE created_at < $1 \
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })
    .await?;
    report.deleted = done.deleted;
    report.batches = done.batches;
    report.longest_batch_ms = done.longest_batch_ms;
    report.interrupted = done.interrupted;
    Ok(report)
}
