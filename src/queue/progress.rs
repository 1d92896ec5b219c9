//! Job progress (0–100): handlers report it cheaply through a sink; `progress_writer` stores
//! the latest value per job on the row every quarter second and publishes it as an event.

use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use uuid::Uuid;

/// A job's latest progress, as handlers report it.
pub type ProgressUpdate = (Uuid, i16);

/// A handler's handle for reporting progress. Repeats of the same value cost nothing.
#[derive(Clone)]
pub struct ProgressSink {
    job: Uuid,
    last: Arc<AtomicI16>,
    tx: Option<mpsc::UnboundedSender<ProgressUpdate>>,
}

impl ProgressSink {
    pub fn new(job: Uuid, tx: mpsc::UnboundedSender<ProgressUpdate>) -> Self {
        Self {
            job,
            last: Arc::new(AtomicI16::new(-1)),
            tx: Some(tx),
        }
    }

    /// A sink that goes nowhere, for running a handler outside the queue.
    pub fn detached(job: Uuid) -> Self {
        Self {
            job,
            last: Arc::new(AtomicI16::new(-1)),
            tx: None,
        }
    }

    pub fn set(&self, percent: u8) {
        let p = percent.min(100) as i16;
        if self.last.swap(p, Ordering::Relaxed) != p {
            if let Some(tx) = &self.tx {
                let _ = tx.send((self.job, p));
            }
        }
    }
}

impl memwarden_jobs::Progress for ProgressSink {
    fn report(&self, percent: u8) {
        self.set(percent);
    }
}
