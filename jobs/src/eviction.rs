//! Eviction (Memory Service's `/v1/admin/evict`): permanently delete soft-deleted
//! conversations, attachments and memories whose `deleted_at` is older than a retention
//! period. Rows that are not soft-deleted are never touched, whatever the retention.
//!
//! It works in batches of short transactions with a pause between them, so no lock is held
//! for long. A conversation takes its entries and attachments with it. An attachment's blob
//! loses one reference; the blob's row and file go only when no reference is left. Files are
//! removed after the transaction that removed their rows commits, so a failed batch never
//! leaves a row pointing at a missing file (a crash in between can leave an orphan file,
//! which nothing references).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Progress;

/// An ISO 8601 duration such as `P90D`, `P1Y`, `PT24H` or `P0D`, never negative.
#[derive(Debug, Clone)]
pub struct RetentionPeriod {
    text: String,
    span: jiff::Span,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvictionInputError {
    #[error("`retention_period` is required (an ISO 8601 duration such as P90D, P1Y or PT24H)")]
    MissingRetention,
    #[error(
        "`retention_period`: `{0}` is not an ISO 8601 duration (such as P90D, P1Y, PT24H or P0D)"
    )]
    BadRetention(String),
    #[error("`retention_period`: `{0}` is negative; a retention period is zero or more")]
    NegativeRetention(String),
    #[error("`resource_types`: `{0}` is not one of conversations, attachments, memories")]
    BadResourceType(String),
}

impl RetentionPeriod {
    pub fn parse(raw: Option<&str>) -> Result<Self, EvictionInputError> {
        let text = raw
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(EvictionInputError::MissingRetention)?;
        let span: jiff::Span = text
            .parse()
            .map_err(|_| EvictionInputError::BadRetention(text.to_string()))?;
        if span.is_negative() {
            return Err(EvictionInputError::NegativeRetention(text.to_string()));
        }
        Ok(RetentionPeriod {
            text: text.to_string(),
            span,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `now` minus the period, in UTC (so P1Y and P1M follow the calendar).
    pub fn cutoff(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, EvictionInputError> {
        let ts = jiff::Timestamp::from_microsecond(now.timestamp_micros())
            .map_err(|_| EvictionInputError::BadRetention(self.text.clone()))?;
        let back = ts
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(self.span)
            .map_err(|_| EvictionInputError::BadRetention(self.text.clone()))?;
        chrono::DateTime::from_timestamp_micros(back.timestamp().as_microsecond())
            .ok_or_else(|| EvictionInputError::BadRetention(self.text.clone()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Conversations,
    Attachments,
    Memories,
}

impl FromStr for ResourceType {
    type Err = EvictionInputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "conversations" | "conversation" => Ok(ResourceType::Conversations),
            "attachments" | "attachment" => Ok(ResourceType::Attachments),
            "memories" | "memory" => Ok(ResourceType::Memories),
            _ => Err(EvictionInputError::BadResourceType(s.to_string())),
        }
    }
}

/// Parses resource types; none means conversations (Memory Service's default).
pub fn parse_resource_types(raw: &[String]) -> Result<Vec<ResourceType>, EvictionInputError> {
    let mut types = raw
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<ResourceType>, _>>()?;
    if types.is_empty() {
        types.push(ResourceType::Conversations);
    }
    types.sort();
    types.dedup();
    Ok(types)
}

/// The `eviction` job's args, as they are stored on the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvictionArgs {
    pub retention_period: String,
    #[serde(default)]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Carried for the audit trail; eviction itself does not read it.
    #[serde(default)]
    pub justification: Option<String>,
}

impl crate::JobArgs for EvictionArgs {
    const KIND: &'static str = "eviction";
}

#[derive(Debug, Clone)]
pub struct EvictionSettings {
    pub batch_size: i64,
    pub pause: Duration,
    pub blobs_dir: PathBuf,
}

impl Default for EvictionSettings {
    fn default() -> Self {
        EvictionSettings {
            batch_size: 1000,
            pause: Duration::from_millis(100),
            blobs_dir: PathBuf::from("blobs"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvictionReport {
    pub retention_period: String,
    pub cutoff: Option<chrono::DateTime<chrono::Utc>>,
    pub dry_run: bool,
    pub conversations: i64,
    pub conversation_entries: i64,
    pub attachments: i64,
    pub memories: i64,
    pub blobs_freed: i64,
    pub bytes_freed: i64,
    pub batches: i64,
    /// The longest single batch transaction, in milliseconds.
    pub longest_batch_ms: f64,
    /// Stopped early by its cancellation token (a drain); run it again to finish.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    #[error(transparent)]
    Input(#[from] EvictionInputError),
    #[error("database error during eviction: {0}")]
    Database(#[from] sqlx::Error),
    #[error("blob file {path}: {source}")]
    Blob {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Rows to evict at the start, per resource type: the weights of the progress bar.
async fn count_due(
    pool: &PgPool,
    table: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1"
    ))
    .bind(cutoff)
    .fetch_one(pool)
    .await
}

const CONVERSATIONS_BATCH: &str = "\
WITH c AS (SELECT id FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
           ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
e AS (DELETE FROM conversation_entries WHERE conversation_id IN (SELECT id FROM c) RETURNING 1), \
a AS (DELETE FROM attachments WHERE conversation_id IN (SELECT id FROM c) RETURNING blob_id), \
r AS (UPDATE blobs b SET refcount = GREATEST(b.refcount - x.n, 0) \
      FROM (SELECT blob_id, count(*)::int AS n FROM a WHERE blob_id IS NOT NULL GROUP BY blob_id) x \
      WHERE b.id = x.blob_id RETURNING b.id), \
d AS (DELETE FROM conversations WHERE id IN (SELECT id FROM c) RETURNING 1) \
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM e), (SELECT count(*) FROM a), \
       COALESCE((SELECT array_agg(id) FROM r), '{}')";

const ATTACHMENTS_BATCH: &str = "\
WITH a AS (DELETE FROM attachments WHERE id IN ( \
             SELECT id FROM attachments WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
             ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING blob_id), \
r AS (UPDATE blobs b SET refcount = GREATEST(b.refcount - x.n, 0) \
      FROM (SELECT blob_id, count(*)::int AS n FROM a WHERE blob_id IS NOT NULL GROUP BY blob_id) x \
      WHERE b.id = x.blob_id RETURNING b.id) \
SELECT 0::bigint, 0::bigint, (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')";

const MEMORIES_BATCH: &str = "\
WITH m AS (DELETE FROM memories WHERE id IN ( \
             SELECT id FROM memories WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
             ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) \
SELECT (SELECT count(*) FROM m), 0::bigint, 0::bigint, '{}'::uuid[]";

/// Blobs left with no reference among `ids`: their rows go in the same transaction, and their
/// keys come back so the files can go after it commits.
const FREE_BLOBS: &str = "\
DELETE FROM blobs WHERE id = ANY($1) AND refcount = 0 RETURNING storage_key, size_bytes";

/// Evicts what is due. Stops at a batch boundary when `cancel` fires (the report says so).
pub async fn evict(
    pool: &PgPool,
    retention: &RetentionPeriod,
    types: &[ResourceType],
    dry_run: bool,
    settings: &EvictionSettings,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<EvictionReport, EvictionError> {
    let cutoff = retention.cutoff(chrono::Utc::now())?;
    let mut report = EvictionReport {
        retention_period: retention.as_str().to_string(),
        cutoff: Some(cutoff),
        dry_run,
        ..Default::default()
    };
    let mut due = Vec::new();
    for t in types {
        let table = match t {
            ResourceType::Conversations => "conversations",
            ResourceType::Attachments => "attachments",
            ResourceType::Memories => "memories",
        };
        due.push((*t, count_due(pool, table, cutoff).await?));
    }
    let total: i64 = due.iter().map(|(_, n)| *n).sum();
    if dry_run {
        for (t, n) in &due {
            match t {
                ResourceType::Conversations => report.conversations = *n,
                ResourceType::Attachments => report.attachments = *n,
                ResourceType::Memories => report.memories = *n,
            }
        }
        progress.report(100);
        return Ok(report);
    }
    progress.report(0);
    let mut done = 0i64;
    'types: for (t, _) in &due {
        let sql = match t {
            ResourceType::Conversations => CONVERSATIONS_BATCH,
            ResourceType::Attachments => ATTACHMENTS_BATCH,
            ResourceType::Memories => MEMORIES_BATCH,
        };
        loop {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break 'types;
            }
            let started = Instant::now();
            let mut tx = pool.begin().await?;
            let (rows, entries, attachments, touched): (i64, i64, i64, Vec<uuid::Uuid>) =
                sqlx::query_as(sql)
                    .bind(cutoff)
                    .bind(settings.batch_size)
                    .fetch_one(&mut *tx)
                    .await?;
            let freed: Vec<(String, i64)> = if touched.is_empty() {
                Vec::new()
            } else {
                sqlx::query_as(FREE_BLOBS)
                    .bind(&touched)
                    .fetch_all(&mut *tx)
                    .await?
            };
            tx.commit().await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            report.longest_batch_ms = report.longest_batch_ms.max(took);
            report.batches += 1;
            remove_files(&settings.blobs_dir, &freed)?;
            report.blobs_freed += freed.len() as i64;
            report.bytes_freed += freed.iter().map(|(_, size)| *size).sum::<i64>();
            report.conversation_entries += entries;
            match t {
                ResourceType::Conversations => {
                    report.conversations += rows;
                    report.attachments += attachments;
                }
                ResourceType::Attachments => report.attachments += attachments,
                ResourceType::Memories => report.memories += rows,
            }
            let unit = if *t == ResourceType::Attachments {
                attachments
            } else {
                rows
            };
            done += unit;
            if total > 0 {
                progress.report(((done.min(total) * 100) / total) as u8);
            }
            if unit < settings.batch_size {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.pause) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
    if !report.interrupted {
        progress.report(100);
    }
    tracing::info!(
        conversations = report.conversations,
        entries = report.conversation_entries,
        attachments = report.attachments,
        memories = report.memories,
        blobs_freed = report.blobs_freed,
        longest_batch_ms = report.longest_batch_ms,
        "eviction done"
    );
    Ok(report)
}

fn remove_files(dir: &Path, freed: &[(String, i64)]) -> Result<(), EvictionError> {
    for (key, _) in freed {
        // Keys are names inside the blob directory, never paths out of it.
        let name = Path::new(key)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EvictionError::Blob { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_parse_and_refuse_garbage() {
        for ok in ["P90D", "P1Y", "PT24H", "P0D", "P1Y2M3DT4H5M6S", "p30d"] {
            assert!(RetentionPeriod::parse(Some(ok)).is_ok(), "{ok}");
        }
        assert!(matches!(
            RetentionPeriod::parse(None),
            Err(EvictionInputError::MissingRetention)
        ));
        assert!(matches!(
            RetentionPeriod::parse(Some("  ")),
            Err(EvictionInputError::MissingRetention)
        ));
        assert!(matches!(
            RetentionPeriod::parse(Some("ninety days")),
            Err(EvictionInputError::BadRetention(_))
        ));
        assert!(matches!(
            RetentionPeriod::parse(Some("-P1D")),
            Err(EvictionInputError::NegativeRetention(_))
        ));
    }

    #[test]
    fn cutoff_follows_the_calendar() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z")
            .unwrap()
            .to_utc();
        let p = RetentionPeriod::parse(Some("P1Y")).unwrap();
        assert_eq!(
            p.cutoff(now).unwrap().to_rfc3339(),
            "2025-03-31T12:00:00+00:00"
        );
        let p = RetentionPeriod::parse(Some("PT24H")).unwrap();
        assert_eq!(
            p.cutoff(now).unwrap().to_rfc3339(),
            "2026-03-30T12:00:00+00:00"
        );
        let p = RetentionPeriod::parse(Some("P0D")).unwrap();
        assert_eq!(p.cutoff(now).unwrap(), now);
    }

    #[test]
    fn resource_types_default_to_conversations_and_refuse_unknown() {
        assert_eq!(
            parse_resource_types(&[]).unwrap(),
            vec![ResourceType::Conversations]
        );
        let t = parse_resource_types(&[
            "attachments".into(),
            "conversations".into(),
            "attachments".into(),
        ])
        .unwrap();
        assert_eq!(
            t,
            vec![ResourceType::Conversations, ResourceType::Attachments]
        );
        assert!(parse_resource_types(&["tables".into()]).is_err());
    }
}
