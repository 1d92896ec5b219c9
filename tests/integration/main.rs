//! Integration tests: the real daemon binary and the real control port, against a real
//! PostgreSQL (DATABASE_URL, or a private throwaway cluster started for this run).

mod audit;
mod auth;
mod automem;
mod automem_wire;
mod cli;
mod compozy;
mod config;
mod cron;
mod deploy;
mod enrichment_remote;
mod eviction;
mod goodmem;
mod goodmem_log_policies;
mod harness;
mod lifecycle;
mod memory_policies;
mod memory_service_admin;
mod memory_service_store;
mod openapi;
mod queue;
mod reembed;
mod schema;
mod vectors;
