//! The registry: which handler does each job kind, and with what defaults.
//!
//! Handlers must be idempotent: a job runs at least once, and more than once when a worker
//! dies mid-job (its lease expires and another worker takes it). All five built-in kinds are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use memwarden_jobs::{Checkpoint, JobArgs};
use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::lifecycle::{Lifecycle, State};

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
    /// Held back by something outside the job that paces it (a provider's 429): run again
    /// after this, without using an attempt, the reason kept as the job's `last_error`. A
    /// provider's pace is not the job's failure, and counting it would fail good jobs during
    /// a long throttle (River's `JobSnooze` does the same).
    Throttled(Duration, String),
    /// Stopped early at a safe point with its state saved (a resumable job leaving a drain):
    /// recorded as `interrupted` and claimable again at once, without using an attempt.
    Yielded(String),
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
    /// Where a resumable job keeps its state between attempts (the job row's `checkpoint`).
    pub checkpoint: Arc<dyn Checkpoint>,
    pub(crate) lifecycle: Lifecycle,
}

impl JobContext {
    /// The job's args as the kind's type, or the outcome that discards a job whose args do
    /// not fit (enqueue refuses those, but a row written by SQL is not checked).
    pub fn args<T: JobArgs>(&self) -> Result<T, Outcome> {
        serde_json::from_value(self.args.clone())
            .map_err(|e| Outcome::Discard(format!("bad {} args: {e}", T::KIND)))
    }

    /// A token that fires with `cancel`, and also as soon as the daemon starts to drain. A
    /// resumable job stops on it at its next checkpoint and returns [`Outcome::Yielded`], so a
    /// drain does not wait for a long bulk job (the next worker continues it). Keep the
    /// returned guard alive while the token is in use.
    pub fn cancel_or_drain(&self) -> (CancellationToken, DropGuard) {
        let token = self.cancel.child_token();
        let done = CancellationToken::new();
        let mut state = self.lifecycle.subscribe();
        let (fire, stop_watching) = (token.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                if state.borrow_and_update().state != State::Ready {
                    fire.cancel();
                    return;
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    _ = stop_watching.cancelled() => return,
                    _ = fire.cancelled() => return,
                }
            }
        });
        (token, done.drop_guard())
    }

    /// Whether the daemon is draining (or stopping): the reason a resumable job stopped early.
    pub fn draining(&self) -> bool {
        self.lifecycle.state() != State::Ready
    }
}

#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, job: JobContext) -> Outcome;

    /// How long an attempt may run before it is cancelled as `timed_out`.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }

    /// Attempts a job of this kind gets unless config says otherwise (`queue.max_attempts`
    /// when none).
    fn max_attempts(&self) -> Option<i32> {
        None
    }

    /// The queue its jobs go to unless the caller names one.
    fn queue(&self) -> &str {
        "default"
    }
}

/// Checks a job's args before it is enqueued: the kind's own args type, deserialized.
type ArgsCheck = fn(&serde_json::Value) -> Result<(), String>;

fn check_as<A: JobArgs>(args: &serde_json::Value) -> Result<(), String> {
    serde_json::from_value::<A>(args.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

#[derive(Clone)]
struct Entry {
    handler: Arc<dyn Handler>,
    check: Option<ArgsCheck>,
}

#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Entry>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kind whose args are `A`: its name is `A::KIND`, and args that do not deserialize as
    /// `A` are refused when enqueued, not when run.
    pub fn register_kind<A: JobArgs>(mut self, handler: impl Handler) -> Self {
        self.handlers.insert(
            A::KIND.to_string(),
            Entry {
                handler: Arc::new(handler),
                check: Some(check_as::<A>),
            },
        );
        self
    }

    /// A kind that takes any args object (the benchmarks' no-op kinds).
    pub fn register(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(
            kind.into(),
            Entry {
                handler: Arc::new(handler),
                check: None,
            },
        );
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind).map(|e| &e.handler)
    }

    /// Whether `args` fit the kind; the reason when they do not.
    pub fn check_args(&self, kind: &str, args: &serde_json::Value) -> Result<(), String> {
        match self.handlers.get(kind).and_then(|e| e.check) {
            Some(check) => check(args),
            None => Ok(()),
        }
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
