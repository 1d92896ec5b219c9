//! memwarden-jobs: what the work of a memory store is. The memory-store domain and its kinds of
//! work live here as plain async functions over a `PgPool`, each taking typed parameters, a
//! cancellation token and a progress sink, and returning a typed report.
//!
//! Nothing here knows about the queue, the lifecycle, HTTP or signals: the runtime (`src/`)
//! maps each job kind to a function here.

pub mod args;
pub mod eviction;

pub use args::JobArgs;

/// Where a long operation reports how far it has got, from 0 to 100.
pub trait Progress: Send + Sync {
    fn report(&self, percent: u8);
}

/// A progress sink that discards reports, for callers that do not follow progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _percent: u8) {}
}
