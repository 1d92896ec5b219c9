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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RetentionPeriod {
    text: String,
    span: jiff::Span,
}

impl PartialEq for RetentionPeriod {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TryFrom<String> for RetentionPeriod {
    type Error = EvictionInputError;
    fn try_from(s: String) -> Result<Self, EvictionInputError> {
        RetentionPeriod::parse(Some(&s))
    }
}

impl From<RetentionPeriod> for String {
    fn from(r: RetentionPeriod) -> String {
        r.text
    }
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
    #[serde(alias = "conversation")]
    Conversations,
    #[serde(alias = "attachment")]
    Attachments,
    #[serde(alias = "memory")]
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
    /// The most rows a batch takes; batches shrink below it to stay inside `max_transaction`.
    pub batch_size: i64,
    pub pause: Duration,
    /// The longest a batch transaction may hold its locks. A batch that reaches it is cancelled
    /// by PostgreSQL (`statement_timeout`), rolled back whole, and retried smaller.
    pub max_transaction: Duration,
    pub blobs_dir: PathBuf,
}

impl Default for EvictionSettings {
    fn default() -> Self {
        EvictionSettings {
            batch_size: 1000,
            pause: Duration::from_millis(100),
            max_transaction: Duration::from_millis(100),
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
    /// The longest single batch transaction, in milliseconds, cancelled ones included.
    pub longest_batch_ms: f64,
    /// Batches cancelled at `max_transaction` and retried with fewer rows.
    pub batches_over_limit: i64,
    /// Stopped early by its cancellation token (a drain); run it again to finish.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    #[error(transparent)]
    Input(#[from] EvictionInputError),
    #[error("database error during eviction: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "a batch of one row still exceeded the {limit_ms} ms transaction limit \
         {OVERRUNS_ALLOWED} times in a row; something else holds that row's locks"
    )]
    TooSlow { limit_ms: u128 },
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

/// The first `$2` rows due for eviction at or after the cursor `$3`, oldest first. Starting at
/// the cursor skips the index entries of rows that earlier batches deleted and vacuum has not
/// yet removed; a row soft-deleted later is newer than the cutoff, so nothing due is passed by.
macro_rules! due {
    ($table:literal) => {
        concat!(
            "c AS (SELECT id, deleted_at FROM ",
            $table,
            " WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
             AND deleted_at >= COALESCE($3, '-infinity'::timestamptz) \
             ORDER BY deleted_at LIMIT $2)"
        )
    };
}

/// Takes one reference off each blob of the deleted attachments `a`, returning the blobs touched.
macro_rules! release_blobs {
    () => {
        "r AS (UPDATE blobs b SET refcount = GREATEST(b.refcount - x.n, 0) \
         FROM (SELECT blob_id, count(*)::int AS n FROM a WHERE blob_id IS NOT NULL GROUP BY blob_id) x \
         WHERE b.id = x.blob_id RETURNING b.id)"
    };
}

/// Each batch deletes the candidates that are still due when the delete reaches them: a row
/// restored or changed since the candidates were read is rechecked by the `WHERE` (PostgreSQL
/// re-evaluates it for a row updated concurrently), and kept. Children go only with a parent
/// that went. Columns: candidates seen, the cursor for the next batch, rows, entries,
/// attachments, and blobs that lost references.
const CONVERSATIONS_BATCH: &str = concat!(
    "WITH ",
    due!("conversations"),
    ", d AS (DELETE FROM conversations WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING id), \
e AS (DELETE FROM conversation_entries WHERE conversation_id IN (SELECT id FROM d) RETURNING 1), \
a AS (DELETE FROM attachments WHERE conversation_id IN (SELECT id FROM d) RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), (SELECT count(*) FROM d), \
       (SELECT count(*) FROM e), (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')"
);

const ATTACHMENTS_BATCH: &str = concat!(
    "WITH ",
    due!("attachments"),
    ", a AS (DELETE FROM attachments WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING blob_id), ",
    release_blobs!(),
    " SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), 0::bigint, 0::bigint, \
       (SELECT count(*) FROM a), COALESCE((SELECT array_agg(id) FROM r), '{}')"
);

const MEMORIES_BATCH: &str = concat!(
    "WITH ",
    due!("memories"),
    ", m AS (DELETE FROM memories WHERE id IN (SELECT id FROM c) \
       AND deleted_at IS NOT NULL AND deleted_at < $1 RETURNING 1) \
     SELECT (SELECT count(*) FROM c), (SELECT max(deleted_at) FROM c), (SELECT count(*) FROM m), \
       0::bigint, 0::bigint, '{}'::uuid[]"
);

/// Reads, without locks, the rows the next batch will delete, children included.
const CONVERSATIONS_WARM: &str = concat!(
    "WITH ",
    due!("conversations"),
    " SELECT (SELECT count(role) FROM conversation_entries WHERE conversation_id IN (SELECT id FROM c)), \
       (SELECT count(blob_id) FROM attachments WHERE conversation_id IN (SELECT id FROM c))"
);

const ATTACHMENTS_WARM: &str = concat!(
    "WITH ",
    due!("attachments"),
    " SELECT count(refcount) FROM blobs \
     WHERE id IN (SELECT blob_id FROM attachments WHERE id IN (SELECT id FROM c))"
);

const MEMORIES_WARM: &str = concat!(
    "WITH ",
    due!("memories"),
    " SELECT (SELECT count(model) FROM memory_embeddings WHERE memory_id IN (SELECT id FROM c)), \
       (SELECT count(value) FROM memory_entities WHERE memory_id IN (SELECT id FROM c))"
);

/// What eviction runs for one resource type.
struct Statements {
    table: &'static str,
    warm: &'static str,
    batch: &'static str,
}

impl ResourceType {
    fn statements(self) -> Statements {
        match self {
            ResourceType::Conversations => Statements {
                table: "conversations",
                warm: CONVERSATIONS_WARM,
                batch: CONVERSATIONS_BATCH,
            },
            ResourceType::Attachments => Statements {
                table: "attachments",
                warm: ATTACHMENTS_WARM,
                batch: ATTACHMENTS_BATCH,
            },
            ResourceType::Memories => Statements {
                table: "memories",
                warm: MEMORIES_WARM,
                batch: MEMORIES_BATCH,
            },
        }
    }
}

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
        due.push((*t, count_due(pool, t.statements().table, cutoff).await?));
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
    let mut sizer = BatchSizer::new(settings.batch_size, settings.max_transaction);
    'types: for (t, _) in &due {
        let statements = t.statements();
        let mut cursor = None;
        loop {
            if cancel.is_cancelled() {
                report.interrupted = true;
                break 'types;
            }
            let size = sizer.size();
            // The batch's rows are read once before its transaction, so that the transaction
            // finds their pages in shared buffers instead of waiting on the disk while it
            // holds locks.
            sqlx::query(statements.warm)
                .bind(cutoff)
                .bind(size)
                .bind(cursor)
                .execute(pool)
                .await?;
            let started = Instant::now();
            let outcome = run_batch(pool, &statements, cutoff, size, cursor, settings).await;
            let took = started.elapsed();
            report.longest_batch_ms = report.longest_batch_ms.max(took.as_secs_f64() * 1000.0);
            let batch = match outcome {
                Ok(batch) => batch,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(QUERY_CANCELED) => {
                    report.batches_over_limit += 1;
                    if !sizer.overran() {
                        return Err(EvictionError::TooSlow {
                            limit_ms: settings.max_transaction.as_millis(),
                        });
                    }
                    tracing::warn!(
                        rows = size,
                        limit_ms = settings.max_transaction.as_millis() as u64,
                        "eviction batch hit its time limit; retrying smaller"
                    );
                    pause(settings.pause, cancel).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            sizer.record(took);
            report.batches += 1;
            remove_files(&settings.blobs_dir, &batch.freed)?;
            report.blobs_freed += batch.freed.len() as i64;
            report.bytes_freed += batch.freed.iter().map(|(_, size)| *size).sum::<i64>();
            report.conversation_entries += batch.entries;
            match t {
                ResourceType::Conversations => {
                    report.conversations += batch.rows;
                    report.attachments += batch.attachments;
                }
                ResourceType::Attachments => report.attachments += batch.attachments,
                ResourceType::Memories => report.memories += batch.rows,
            }
            done += if *t == ResourceType::Attachments {
                batch.attachments
            } else {
                batch.rows
            };
            if total > 0 {
                progress.report(((done.min(total) * 100) / total) as u8);
            }
            if batch.seen < size {
                break;
            }
            cursor = batch.cursor;
            pause(settings.pause, cancel).await;
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

/// SQLSTATE of a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// How often a one-row batch may hit the limit in a row before eviction gives up.
const OVERRUNS_ALLOWED: u32 = 5;

struct Batch {
    /// Candidates read; fewer than asked means the last due row has been reached.
    seen: i64,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    rows: i64,
    entries: i64,
    attachments: i64,
    freed: Vec<(String, i64)>,
}

/// One batch in one transaction, under a `statement_timeout` of `max_transaction`: on timeout
/// PostgreSQL cancels it and everything in it rolls back.
async fn run_batch(
    pool: &PgPool,
    statements: &Statements,
    cutoff: chrono::DateTime<chrono::Utc>,
    size: i64,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    settings: &EvictionSettings,
) -> Result<Batch, sqlx::Error> {
    // The batch statements keep the session's cached plans: planned anew on every batch they
    // halved the rate. A plan made at the start of a run, when the tables are at their
    // largest, stays right as they shrink.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", settings.max_transaction.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    let (seen, cursor, rows, entries, attachments, touched): (
        i64,
        Option<chrono::DateTime<chrono::Utc>>,
        i64,
        i64,
        i64,
        Vec<uuid::Uuid>,
    ) = sqlx::query_as(statements.batch)
        .bind(cutoff)
        .bind(size)
        .bind(cursor)
        .fetch_one(&mut *tx)
        .await?;
    let freed = if touched.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(FREE_BLOBS)
            .bind(&touched)
            .fetch_all(&mut *tx)
            .await?
    };
    // The runtime runs handlers with asynchronous commit, which releases a batch's locks
    // without waiting for the WAL flush (a busy disk can stretch that to hundreds of
    // milliseconds); a batch lost in a crash is harmless, its rows are still due. A batch
    // that frees blobs commits synchronously, because its files are removed once it has.
    if !freed.is_empty() {
        sqlx::query("SELECT set_config('synchronous_commit', 'on', true)")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Batch {
        seen,
        cursor,
        rows,
        entries,
        attachments,
        freed,
    })
}

/// Sizes batches to a time budget of a quarter of the transaction limit, so that a batch that
/// meets a checkpoint or a slow disk still finishes inside the limit. It halves after a batch
/// over budget, grows by a quarter after one under half of it, and never exceeds the ceiling.
struct BatchSizer {
    size: i64,
    ceiling: i64,
    budget: Duration,
    overruns_in_a_row: u32,
}

impl BatchSizer {
    fn new(ceiling: i64, limit: Duration) -> Self {
        let ceiling = ceiling.max(1);
        BatchSizer {
            // Starts small and grows, rather than learning the budget from an overrun.
            size: (ceiling / 8).max(1),
            ceiling,
            budget: limit / 4,
            overruns_in_a_row: 0,
        }
    }

    fn size(&self) -> i64 {
        self.size
    }

    fn record(&mut self, took: Duration) {
        self.overruns_in_a_row = 0;
        if took > self.budget {
            self.size = (self.size / 2).max(1);
        } else if took < self.budget / 2 {
            self.size = (self.size + self.size / 4 + 1).min(self.ceiling);
        }
    }

    /// After a batch cancelled at the limit: a quarter of the rows next time. False once a
    /// one-row batch has overrun `OVERRUNS_ALLOWED` times in a row.
    fn overran(&mut self) -> bool {
        if self.size == 1 {
            self.overruns_in_a_row += 1;
        }
        self.size = (self.size / 4).max(1);
        self.overruns_in_a_row < OVERRUNS_ALLOWED
    }
}

/// The pause between batches, cut short by `cancel`.
async fn pause(length: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(length) => {}
        _ = cancel.cancelled() => {}
    }
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
    fn batches_shrink_over_budget_grow_under_it_and_give_up_at_one_row() {
        let mut sizer = BatchSizer::new(800, Duration::from_millis(100));
        assert_eq!(sizer.size(), 100, "starts at an eighth of the ceiling");
        sizer.record(Duration::from_millis(30));
        assert_eq!(sizer.size(), 50, "over the 25 ms budget: halved");
        sizer.record(Duration::from_millis(20));
        assert_eq!(sizer.size(), 50, "within the budget: kept");
        for _ in 0..30 {
            sizer.record(Duration::from_millis(5));
        }
        assert_eq!(sizer.size(), 800, "grows, never past the ceiling");
        assert!(sizer.overran());
        assert_eq!(sizer.size(), 200, "an overrun quarters it");
        while sizer.size() > 1 {
            assert!(sizer.overran());
        }
        for _ in 1..OVERRUNS_ALLOWED {
            assert!(sizer.overran());
        }
        assert!(!sizer.overran(), "one row over the limit, again and again");
        sizer.record(Duration::from_millis(1));
        assert!(sizer.overran(), "a batch that fits resets the streak");
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
