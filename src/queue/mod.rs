//! The durable Postgres queue: enqueue, batched claims, leases and heartbeats, batched
//! completions, retries with persisted backoff, the reaper, LISTEN/NOTIFY wake-ups, cron and
//! purge. Each loop is one file (River's maintenance services are the model); the periodic
//! ones share the base in `periodic`.
//!
//! | module | what |
//! | --- | --- |
//! | `handle` | the `Queue` handle and the state its loops share |
//! | `held`, `wakeups`, `policy` | held jobs and their tokens; wake-ups and pauses; per-kind defaults |
//! | `enqueue`, `admin`, `purge` | what callers do: enqueue, list, cancel, retry, pause, purge |
//! | `claimer`, `runner`, `completer`, `progress` | a job's way through this process |
//! | `heartbeat`, `reaper`, `depth`, `listener`, `cron` | the maintenance loops |
//! | `registry`, `job`, `events`, `backoff`, `probe` | kinds and handlers, rows, events, retry delays, the test kind |

pub mod admin;
pub mod backoff;
mod checkpoint;
mod claimer;
mod completer;
mod completion;
pub mod cron;
pub mod depth;
pub mod enqueue;
pub mod events;
mod handle;
mod heartbeat;
mod held;
pub mod job;
mod job_metrics;
mod listener;
pub mod periodic;
mod policy;
pub mod probe;
pub mod progress;
mod progress_writer;
pub mod purge;
mod reaper;
pub mod registry;
mod runner;
mod services;
mod wakeups;

pub use backoff::Backoff;
pub use checkpoint::JobCheckpoint;
pub use completion::Completion;
pub use enqueue::{EnqueueError, Enqueued, NewJob};
pub use events::{Event, Events};
pub use handle::{Queue, QueueContext};
pub use held::{HeldJobs, StopReason};
pub use job::{Claimed, Status};
pub use registry::{Handler, JobContext, Outcome, Registry};
pub use wakeups::Wakeups;

/// The NOTIFY channels of one schema's queue, so that two installs in one database never
/// wake or pause each other: `<schema>_jobs` wakes claimers (the payload is the queue name,
/// and `enqueue()` in SQL sends it too), `<schema>_control` carries `cancel:<job id>`,
/// `pause:<queue>` and `resume:<queue>`.
#[derive(Debug, Clone)]
pub struct Channels {
    pub jobs: String,
    pub control: String,
}

impl Channels {
    pub fn of(schema: &crate::config::Schema) -> Self {
        Channels {
            jobs: format!("{schema}_jobs"),
            control: format!("{schema}_control"),
        }
    }
}
