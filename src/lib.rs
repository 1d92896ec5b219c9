//! memwarden: the runtime of a memory store's background work. `src/` decides when and how
//! work runs; the `memwarden-jobs` crate (`jobs/`) holds what the work is.

pub mod app;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod db;
pub mod devdb;
pub mod health;
pub mod kinds;
pub mod lifecycle;
pub mod providers;
pub mod queue;
pub mod reload;
pub mod signals;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
