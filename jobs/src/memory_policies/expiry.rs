//! `memory-expiry`: entries older than their configuration's `persistence.ttl` deleted, for
//! every conversation that references a configuration with a ttl, oldest first, in short
//! batches with a pause between them, stopping at a batch boundary when asked. The cutoff of
//! each configuration is taken from `now()` when its turn comes, so a stopped run is simply
//! run again.

use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{load_configs, PolicyError, PolicySettings};
use crate::batched_delete::delete_in_batches;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ExpiryReport {
    /// Configurations with a ttl that were walked.
    pub configs: u64,
    pub deleted: i64,
    pub batches: i64,
    pub longest_batch_ms: f64,
    /// True when the run stopped at a batch boundary before the end.
    pub interrupted: bool,
}

/// Deletes expired entries of the configurations named (`None` meaning all).
pub async fn expire_entries(
    pool: &PgPool,
    project: Option<&str>,
    memory_id: Option<&str>,
    settings: &PolicySettings,
    stop: &CancellationToken,
) -> Result<ExpiryReport, PolicyError> {
    let mut report = ExpiryReport::default();
    let batch = settings.batch_size.max(1);
    for stored in load_configs(pool, project, memory_id).await? {
        let Some(ttl) = stored.config.ttl() else {
            continue;
        };
        report.configs += 1;
        let cutoff: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT now() - make_interval(secs => $1)")
                .bind(ttl.as_secs_f64())
                .fetch_one(pool)
                .await?;
        let done = delete_in_batches(batch, settings.pause, stop, || async {
            sqlx::query(
                "DELETE FROM conversation_entries WHERE id IN ( \
                   SELECT e.id FROM conversation_entries e \
                     JOIN conversations c ON c.id = e.conversation_id \
                    WHERE c.memory_config_project = $1 AND c.memory_config_id = $2 \
                      AND e.created_at < $3 \
                    ORDER BY e.created_at LIMIT $4 FOR UPDATE OF e SKIP LOCKED)",
            )
            .bind(&stored.project)
            .bind(&stored.id)
            .bind(cutoff)
            .bind(batch)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .await?;
        report.longest_batch_ms = report.longest_batch_ms.max(done.longest_batch_ms);
        report.batches += done.batches;
        report.deleted += done.deleted;
        if done.interrupted {
            report.interrupted = true;
            return Ok(report);
        }
    }
    Ok(report)
}
