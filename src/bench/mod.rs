//! `memwarden bench`: each kind of work measured end to end on a database of its own,
//! through the daemon's own startup and machinery. The figures and how to read them are in
//! docs/performance.md; the side-by-side runs against peers are in `benches/`.

mod enrich;
mod evict;
mod evict_stores;
mod fake_provider;
mod memory;
mod memory_load;
mod memory_write;
mod purge;
mod queue;
mod reembed;
mod replicas;
mod store;
mod support;
mod sync;

pub use enrich::{enrich, enrich_remote};
pub use evict::evict;
pub use evict_stores::{evict_stores, MemoryServiceFill};
pub use memory::memory;
pub use memory_write::WriteLoad;
pub use purge::purge_bench;
pub use queue::{queue, Prefill};
pub use reembed::reembed;
pub use replicas::replicas;
pub use store::{store, StoreBench};
pub use sync::sync;
