//! The memory-store domain against a real PostgreSQL (`DATABASE_URL`, or a private throwaway
//! cluster started for this run), with a fresh database per test: the store's trigger and
//! catch-up, the enrichment pipeline and its edges, the vector index, eviction, and the
//! OpenAI-compatible providers against a local fake. `cargo test -p memwarden-jobs` runs it.

mod common;
mod edges;
mod enrichment;
mod eviction;
mod memory_policies;
mod memory_service;
mod memory_service_embeddings;
mod policy_triggers;
mod providers;
mod retrieve_logs;
mod store;
mod support;
mod vector;
