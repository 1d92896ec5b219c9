//! The runtime's test harness pieces that the domain's tests share (`tests/common`): the
//! PostgreSQL of the run, rows of the memory store, the fake OpenAI server and small checks.
//! The throwaway PostgreSQL is the one `memwarden dev` starts (`src/devdb.rs`), and the
//! schema is the migrations'.

#![allow(dead_code, unused_imports)]

#[path = "../../../tests/common/checks.rs"]
pub mod checks;
#[path = "../../../src/devdb.rs"]
mod devdb;
#[path = "../../../tests/common/fake_openai.rs"]
pub mod fake_openai;
#[path = "../../../tests/common/fixtures.rs"]
pub mod fixtures;
#[path = "../../../tests/common/memory_service.rs"]
pub mod memory_service;
#[path = "../../../tests/common/pg.rs"]
pub mod pg;

pub use checks::count;
pub use devdb::ThrowawayPostgres;
pub use pg::TestDb;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The schema of a test database: the migrations, into memwarden's schema (the tests'
/// pools have it first on their search path), as the daemon applies them.
pub async fn migrate_schema(pool: &sqlx::PgPool) {
    sqlx::query("CREATE SCHEMA IF NOT EXISTS memwarden")
        .execute(pool)
        .await
        .expect("creating the schema");
    MIGRATOR.run(pool).await.expect("migrating");
    pg::settle_vector_backend(pool).await;
}
