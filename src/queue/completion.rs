//! How one attempt of a job ended, as the queue hands it to the completer: the final word
//! and what it holds until that word is written (the job's share of the in-flight count).

use std::sync::Arc;
use std::time::Duration;

use super::job_metrics::JobMetrics;
use super::{Claimed, Outcome};
use crate::lifecycle::InFlight;

/// How an attempt ended, as the queue records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    Succeeded(serde_json::Value),
    /// Retried with backoff while attempts remain (`outcome` failed).
    Failed(String),
    RetryAfter(Duration, String),
    Discard(String),
    /// Back to `available` after the delay, the attempt refunded; the reason, if any, kept as
    /// `last_error`.
    Snooze(Duration, Option<String>),
    TimedOut(String),
    /// The stop's grace period ended: recorded, and the job goes back to `available`.
    Interrupted(String),
    Canceled(String),
    /// Prefetched and never started: back to `available`, the attempt refunded.
    Released,
}

impl From<Outcome> for Final {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded(v) => Final::Succeeded(v),
            Outcome::Failed(e) => Final::Failed(e),
            Outcome::RetryAfter(d, e) => Final::RetryAfter(d, e),
            Outcome::Discard(e) => Final::Discard(e),
            Outcome::Snooze(d) => Final::Snooze(d, None),
            Outcome::Throttled(d, e) => Final::Snooze(d, Some(e)),
            Outcome::Yielded(e) => Final::Interrupted(e),
        }
    }
}

pub struct Completion {
    pub job: Claimed,
    pub outcome: Final,
    /// The job's metric handles; none for a prefetched job handed back unstarted.
    pub(super) metrics: Option<Arc<JobMetrics>>,
    /// Held until the completion is written: the lease counts as in flight until then.
    _guard: InFlight,
}

impl Completion {
    pub fn new(
        job: Claimed,
        outcome: Final,
        metrics: Option<Arc<JobMetrics>>,
        guard: InFlight,
    ) -> Self {
        Completion {
            job,
            outcome,
            metrics,
            _guard: guard,
        }
    }
}
