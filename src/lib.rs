//! memwarden: the runtime of a memory store's background work. `src/` decides when and how
//! work runs; the `memwarden-jobs` crate (`jobs/`) holds what the work is. The command line
//! and the benchmarks are the binary's (`src/main.rs`); this library is what they run.

pub mod app;
pub mod audit;
pub mod config;
pub mod control;
pub mod cron_spec;
pub mod daemon;
pub mod db;
pub mod devdb;
pub mod health;
pub mod kinds;
pub mod lifecycle;
pub mod migrate;
pub mod providers;
pub mod queue;
pub mod reload;
pub mod signals;
pub mod startup;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod vector_backend;

#[cfg(test)]
mod test_support;
