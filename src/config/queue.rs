//! How the queue runs: leases, intervals, batches and concurrency, per queue and per kind, and
//! what job-purge keeps.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{serde_as, DurationMilliSeconds};

use super::seconds::{PositiveSeconds, Seconds};

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a default count is never zero")
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Between fallback polls when no NOTIFY arrives (milliseconds).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub poll_interval_ms: Duration,
    /// How long a claimed job's lease lasts without a heartbeat.
    #[serde_as(as = "PositiveSeconds")]
    pub lease: Duration,
    #[serde_as(as = "PositiveSeconds")]
    pub heartbeat: Duration,
    #[serde_as(as = "PositiveSeconds")]
    pub reaper_interval: Duration,
    /// Between refreshes of the queue-depth gauges.
    #[serde_as(as = "PositiveSeconds")]
    pub depth_interval: Duration,
    /// Most jobs one claim statement takes.
    pub claim_batch: NonZeroU32,
    /// Most completions one flush writes.
    pub complete_batch: NonZeroU32,
    /// How long a completion may wait for others to share its flush (milliseconds).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub complete_delay_ms: Duration,
    /// Completion writes in flight at once: while one waits for its commit, the next fills.
    pub complete_concurrency: NonZeroU32,
    /// Concurrency of a queue without a `[queues.NAME]` entry.
    pub default_concurrency: NonZeroU32,
    /// Jobs a claimer may hold beyond its running ones, claimed ahead in one statement. More
    /// means fewer claims under load, but a replica holds that many jobs other replicas cannot
    /// take (they go back on a drain). 0 means "as many as the concurrency".
    pub prefetch: u32,
    /// The attempt budget of a job whose kind and caller name none.
    pub max_attempts: NonZeroU32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            reaper_interval: Duration::from_secs(5),
            depth_interval: Duration::from_secs(5),
            claim_batch: nonzero(200),
            complete_batch: nonzero(500),
            complete_delay_ms: Duration::from_millis(2),
            complete_concurrency: nonzero(2),
            default_concurrency: nonzero(10),
            prefetch: 0,
            max_attempts: nonzero(25),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub concurrency: NonZeroU32,
    /// Overrides `queue.prefetch` for this queue.
    pub prefetch: Option<u32>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: nonzero(10),
            prefetch: None,
        }
    }
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KindConfig {
    /// How long a running job of this kind may run before it is cancelled as `timed_out`.
    #[serde_as(as = "Option<PositiveSeconds>")]
    pub timeout: Option<Duration>,
    pub max_attempts: Option<NonZeroU32>,
    pub queue: Option<String>,
    /// Retry backoff: `min(base * 2^(attempt-1), cap)`.
    #[serde_as(as = "Option<PositiveSeconds>")]
    pub backoff_base: Option<Duration>,
    #[serde_as(as = "Option<PositiveSeconds>")]
    pub backoff_cap: Option<Duration>,
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeSettings {
    /// A purge cutoff must be at least this far in the past.
    #[serde_as(as = "Seconds")]
    pub min_retention: Duration,
    /// What the hourly job-purge schedule removes: terminal jobs older than this.
    #[serde_as(as = "PositiveSeconds")]
    pub retention: Duration,
    /// Jobs deleted per transaction.
    pub batch_size: NonZeroU32,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            min_retention: Duration::from_secs(3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            batch_size: nonzero(5000),
        }
    }
}

/// Per-queue settings, keyed by queue name.
pub type Queues = BTreeMap<String, QueueConfig>;
/// Per-kind settings, keyed by job kind.
pub type Kinds = BTreeMap<String, KindConfig>;

/// An attempt budget as the jobs table stores it.
pub fn attempts(n: NonZeroU32) -> i32 {
    i32::try_from(n.get()).unwrap_or(i32::MAX)
}
