//! One attempt of one job: its handler under the kind's timeout, a panic caught as that
//! attempt's failure, and the final word when the job was stopped from outside.

use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::checkpoint::JobCheckpoint;
use super::completion::Final;
use super::{Claimed, JobContext, Outcome, Queue, StopReason};
use crate::supervisor::panic_message;

/// Runs the handler under the kind's timeout, catching panics, and decides the final word.
pub(super) async fn run_handler(q: &Queue, job: &Claimed, cancel: CancellationToken) -> Final {
    let Some(handler) = q.registry().get(&job.kind).cloned() else {
        return Final::Discard(format!(
            "no handler for kind `{}` in this process",
            job.kind
        ));
    };
    let timeout = q.timeout_of(&job.kind);
    let ctx = JobContext {
        id: job.id,
        kind: job.kind.clone(),
        args: job.args.clone(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        pool: q.work_pool().clone(),
        cancel: cancel.clone(),
        progress: q.progress_sink(job.id),
        checkpoint: std::sync::Arc::new(JobCheckpoint {
            queue: q.clone(),
            job: job.id,
        }),
        lifecycle: q.lifecycle().clone(),
    };
    let mut run = std::panic::AssertUnwindSafe(handler.run(ctx))
        .catch_unwind()
        .boxed();
    let result = tokio::select! {
        r = &mut run => Some(r),
        _ = tokio::time::sleep(timeout) => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            // Cooperative: fire the token, then give the handler a moment to reach a safe point.
            q.held().stop(job.id, StopReason::TimedOut);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut run).await;
            return Final::TimedOut(format!("timed out after {:.1} s", timeout.as_secs_f64()));
        }
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(panic) => Outcome::Failed(format!("panic: {}", panic_message(&*panic))),
    };
    // A job stopped from outside ends as its stopper says, whatever the handler returned
    // after it noticed; a job that succeeded anyway keeps its success.
    match (q.held().stop_reason(job.id), outcome) {
        (_, Outcome::Succeeded(report)) => Final::Succeeded(report),
        (Some(StopReason::Canceled), o) => {
            Final::Canceled(error_of(&o).unwrap_or_else(|| "canceled".into()))
        }
        (Some(StopReason::Interrupted), _) => {
            Final::Interrupted("interrupted: the stop's grace period ended".into())
        }
        (Some(StopReason::TimedOut), _) => {
            Final::TimedOut(format!("timed out after {:.1} s", timeout.as_secs_f64()))
        }
        (_, o) => Final::from(o),
    }
}

fn error_of(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Failed(e)
        | Outcome::RetryAfter(_, e)
        | Outcome::Discard(e)
        | Outcome::Throttled(_, e) => Some(e.clone()),
        _ => None,
    }
}
