//! The registry: which handler does each job kind, and with what defaults.
//!
//! Handlers must be idempotent: a job runs at least once, and more than once when a worker
//! dies mid-job (its lease expires and another worker takes it). All five built-in kinds are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::progress::ProgressSink;

/// What a handler's run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the report is stored as the job's `result`.
    Succeeded(serde_json::Value),
    /// Failed this attempt; retried with backoff while attempts remain.
    Failed(String),
    /// Failed this attempt; retry no sooner than this.
    RetryAfter(Duration, String),
    /// Failed for good, whatever attempts remain (a billing error, bad args).
    Discard(String),
    /// Not now: run again after this, without using an attempt.
    Snooze(Duration),
}

/// Everything a handler gets for one attempt.
pub struct JobContext {
    pub id: Uuid,
    pub kind: String,
    pub args: serde_json::Value,
    pub attempt: i32,
    pub max_attempts: i32,
    pub pool: PgPool,
    /// Fires on cancel, timeout, lease loss and the end of a stop's grace period. Handlers stop
    /// at their next safe point (a batch boundary).
    pub cancel: CancellationToken,
    pub progress: ProgressSink,
}

#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, job: JobContext) -> Outcome;

    /// How long an attempt may run before it is cancelled as `timed_out`.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }

    /// The queue its jobs go to unless the caller names one.
    fn queue(&self) -> &str {
        "default"
    }
}

#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }
}
