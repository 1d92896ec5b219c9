//! `reembed` (AutoMem's `/admin/reembed`): re-embeds memories in bulk, in id order.
//!
//! Without `force` it takes only the memories whose embedding is missing, stale, or of another
//! model or size; with it, every live memory. It writes only `memory_embeddings`: a memory's
//! content, tags and metadata are never touched (`metadata_preserved`). It is resumable: its
//! state is saved to the job's [`Checkpoint`] after every write, so a retried job (after a
//! drain or a crash) continues after the last memory written, and its counts cover every run.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::bulk::{BulkError, Corpus, Selection, Walk, WalkEnd, WalkState};
use crate::embedding::Embedder;
use crate::{percent_of, Checkpoint, Progress};

pub use crate::bulk::{BulkSettings, FailedBatch, WalkRun};

pub const DEFAULT_BATCH_SIZE: u32 = 32;
pub const MAX_BATCH_SIZE: u32 = 2048;

/// The `reembed` job's args, as stored on the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReembedArgs {
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// At most this many memories; none means all.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Also re-embed memories whose embedding is fresh.
    #[serde(default)]
    pub force: bool,
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

impl Default for ReembedArgs {
    fn default() -> Self {
        ReembedArgs {
            batch_size: DEFAULT_BATCH_SIZE,
            limit: None,
            force: false,
        }
    }
}

impl crate::JobArgs for ReembedArgs {
    const KIND: &'static str = "reembed";
}

/// A request field that is not what it should be, named.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("field `{field}`: {problem}")]
pub struct InputError {
    pub field: &'static str,
    pub problem: String,
}

/// `batch_size` from a request: absent or null gives the default; otherwise a whole number
/// from 1 to `MAX_BATCH_SIZE`.
pub fn parse_batch_size(raw: Option<&Value>) -> Result<u32, InputError> {
    match raw {
        None | Some(Value::Null) => Ok(DEFAULT_BATCH_SIZE),
        Some(v) => match whole_number(v) {
            Some(n) if (1..=i128::from(MAX_BATCH_SIZE)).contains(&n) => Ok(n as u32),
            _ => Err(InputError {
                field: "batch_size",
                problem: format!("`{v}` is not a whole number from 1 to {MAX_BATCH_SIZE}"),
            }),
        },
    }
}

/// `limit` from a request: absent or null means no limit; otherwise a whole number of 1 or more.
pub fn parse_limit(raw: Option<&Value>) -> Result<Option<u64>, InputError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match whole_number(v) {
            Some(n) if n >= 1 && n <= i128::from(u64::MAX) => Ok(Some(n as u64)),
            _ => Err(InputError {
                field: "limit",
                problem: format!("`{v}` is not a whole number of 1 or more"),
            }),
        },
    }
}

/// A boolean flag from a request: absent or null is false.
pub fn parse_flag(field: &'static str, raw: Option<&Value>) -> Result<bool, InputError> {
    match raw {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(InputError {
            field,
            problem: format!("`{v}` is not true or false"),
        }),
    }
}

/// A JSON number with no fractional part (`32` or `32.0`), or `None`.
fn whole_number(v: &Value) -> Option<i128> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1e30).then_some(f as i128)
}

/// The report, with AutoMem's fields first. Counts cover every run of the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReembedReport {
    /// `complete`, or `interrupted` when stopped by its token (the retry continues).
    pub status: String,
    pub processed: u64,
    pub failed: u64,
    pub total: u64,
    pub batch_size: u32,
    /// Always true: only embeddings are written.
    pub metadata_preserved: bool,
    pub force: bool,
    pub limit: Option<u64>,
    pub model: String,
    /// Failed batches (the first 100), each with its first 10 ids and the provider's error.
    pub failed_batches: Vec<FailedBatch>,
    /// Each attempt's part: where it started and where it stopped.
    pub runs: Vec<WalkRun>,
    /// This run's wall time and rate.
    pub elapsed_ms: f64,
    pub memories_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReembedError {
    #[error("reembed: {0}")]
    Walk(#[from] BulkError),
    #[error("reembed: counting the memories to embed: {0}")]
    Count(sqlx::Error),
}

impl ReembedError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReembedError::Walk(e) => e.is_retryable(),
            ReembedError::Count(e) => crate::db_error_is_retryable(e),
        }
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ReembedError::Walk(e) => e.retry_after(),
            ReembedError::Count(_) => None,
        }
    }

    /// A provider's 429: see [`crate::embedding::EmbedError::is_rate_limited`].
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, ReembedError::Walk(e) if e.is_rate_limited())
    }
}

/// Runs (or continues, from `checkpoint`) a reembed.
pub async fn reembed(
    corpus: Arc<dyn Corpus>,
    embedder: Arc<dyn Embedder>,
    args: &ReembedArgs,
    settings: &BulkSettings,
    checkpoint: &dyn Checkpoint,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<ReembedReport, ReembedError> {
    let started = Instant::now();
    let selection = Selection {
        force: args.force,
        model: embedder.model().to_string(),
        dims: embedder.dims(),
    };
    let mut state = match checkpoint.load().await {
        Ok(Some(saved)) => serde_json::from_value::<WalkState>(saved).ok(),
        Ok(None) => None,
        Err(e) => return Err(BulkError::Checkpoint(e).into()),
    };
    if state.is_none() {
        let found = corpus
            .count(&selection)
            .await
            .map_err(ReembedError::Count)?;
        state = Some(WalkState {
            total: args.limit.map_or(found, |l| l.min(found)),
            ..WalkState::default()
        });
    }
    let mut state = state.unwrap_or_default();
    let before = state.done();
    let total = state.total;
    let percent = move |done: u64| percent_of(done, total);
    progress.report(percent(before));
    let walk = Walk {
        corpus,
        embedder: embedder.clone(),
        selection,
        batch_size: args.batch_size as usize,
        limit: args.limit,
        settings,
    };
    let end = walk
        .run(&mut state, checkpoint, cancel, &|done| {
            progress.report(percent(done))
        })
        .await?;
    if end == WalkEnd::Finished {
        progress.report(100);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let this_run = state.done() - before;
    let report = ReembedReport {
        status: match end {
            WalkEnd::Finished => "complete",
            WalkEnd::Interrupted => "interrupted",
        }
        .into(),
        processed: state.processed,
        failed: state.failed,
        total: state.total.max(state.done()),
        batch_size: args.batch_size,
        metadata_preserved: true,
        force: args.force,
        limit: args.limit,
        model: embedder.model().to_string(),
        failed_batches: state.failed_batches,
        runs: state.runs,
        elapsed_ms: elapsed * 1000.0,
        memories_per_second: if elapsed > 0.0 {
            this_run as f64 / elapsed
        } else {
            0.0
        },
    };
    tracing::info!(
        status = %report.status,
        processed = report.processed,
        failed = report.failed,
        total = report.total,
        rate = report.memories_per_second,
        "reembed run done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_size_takes_whole_numbers_in_range() {
        assert_eq!(parse_batch_size(None), Ok(32));
        assert_eq!(parse_batch_size(Some(&Value::Null)), Ok(32));
        assert_eq!(parse_batch_size(Some(&json!(1))), Ok(1));
        assert_eq!(parse_batch_size(Some(&json!(2048))), Ok(2048));
        assert_eq!(parse_batch_size(Some(&json!(64.0))), Ok(64));
        for bad in [
            json!(0),
            json!(-1),
            json!(2049),
            json!(1.5),
            json!("32"),
            json!(true),
        ] {
            let e = parse_batch_size(Some(&bad)).unwrap_err();
            assert_eq!(e.field, "batch_size", "{bad}");
        }
    }

    #[test]
    fn limit_is_a_positive_whole_number_or_absent() {
        assert_eq!(parse_limit(None), Ok(None));
        assert_eq!(parse_limit(Some(&json!(10))), Ok(Some(10)));
        for bad in [json!("ten"), json!(0), json!(-5), json!(2.5), json!([1])] {
            let e = parse_limit(Some(&bad)).unwrap_err();
            assert_eq!(e.field, "limit", "{bad}");
            assert!(e.to_string().contains("limit"), "{e}");
        }
    }

    #[test]
    fn flags_are_booleans() {
        assert_eq!(parse_flag("force", None), Ok(false));
        assert_eq!(parse_flag("force", Some(&json!(true))), Ok(true));
        assert!(parse_flag("force", Some(&json!("yes"))).is_err());
    }
}
