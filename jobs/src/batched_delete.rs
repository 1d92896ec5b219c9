//! Deleting what is due in short transactions, one statement a batch with a pause between
//! them, until a batch comes back short or `stop` fires (checked between batches): the loop
//! that RetrieveMemory log retention and memory-configuration expiry share.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// What the batches did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Batches {
    pub(crate) deleted: i64,
    pub(crate) batches: i64,
    pub(crate) longest_batch_ms: f64,
    pub(crate) interrupted: bool,
}

/// Runs `delete` (one batch of at most `batch` rows, returning the rows it deleted) until it
/// deletes fewer than `batch` or `stop` fires.
pub(crate) async fn delete_in_batches<F, Fut>(
    batch: i64,
    pause: Duration,
    stop: &CancellationToken,
    mut delete: F,
) -> Result<Batches, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut done = Batches::default();
    loop {
        if stop.is_cancelled() {
            done.interrupted = true;
            return Ok(done);
        }
        let started = Instant::now();
        let deleted = delete().await? as i64;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        done.longest_batch_ms = done.longest_batch_ms.max(ms);
        done.batches += 1;
        done.deleted += deleted;
        if deleted < batch {
            return Ok(done);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => {}
        }
    }
}
