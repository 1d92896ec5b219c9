//! What every test target of the runtime shares (each includes this folder with `#[path]`):
//! the PostgreSQL (`pg`), the daemon as a child process (`daemon`), the default schedules of
//! test daemons (`schedules`), rows of the memory store (`fixtures`), the fake OpenAI server
//! (`fake_openai`) and small waits and reads (`checks`). The domain crate's tests include
//! `pg`, `checks`, `fixtures` and `fake_openai` too (`jobs/tests/domain/common.rs`).

// Each target uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod checks;
pub mod daemon;
pub mod fake_openai;
pub mod fixtures;
pub mod memory_service;
pub mod pg;
pub mod schedules;

pub use memwarden::devdb::ThrowawayPostgres;

/// The schema every test database starts with: the migrations and the probe's effects table.
pub async fn migrate_schema(pool: &sqlx::PgPool) {
    memwarden::db::migrate(pool, &memwarden::config::Schema::default())
        .await
        .expect("migrating");
    pg::settle_vector_backend(pool).await;
    memwarden::queue::probe::create_effects_table(pool)
        .await
        .expect("creating the probe effects table");
}
