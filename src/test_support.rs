//! What the library's own tests use: a fresh database per test on the tests' PostgreSQL (the
//! shared `tests/common/pg.rs`, with the throwaway cluster of `devdb`), and a queue or a whole
//! application built on it.

#[path = "../tests/common/pg.rs"]
pub mod pg;

use std::sync::Arc;

use tokio::sync::watch;

pub use crate::devdb::ThrowawayPostgres;
pub use pg::TestDb;

use crate::config::{Overrides, Settings};
use crate::health::Health;
use crate::lifecycle::Lifecycle;
use crate::queue::{Queue, QueueContext, Registry};

/// The schema every test database starts with: the migrations and the probe's effects table.
pub async fn migrate_schema(pool: &sqlx::PgPool) {
    crate::db::migrate(pool, &crate::config::Schema::default())
        .await
        .expect("migrating");
    pg::settle_vector_backend(pool).await;
    crate::queue::probe::create_effects_table(pool)
        .await
        .expect("creating the probe effects table");
}

/// Settings from `toml` on `db`, with the control port on a free port.
pub fn settings(db: &TestDb, toml: &str) -> Settings {
    let overrides = Overrides {
        database_url: Some(db.url.clone()),
        control_addr: Some("127.0.0.1:0".into()),
        require_justification: false,
    };
    Settings::from_parts(toml, None, &[], &overrides).expect("test settings")
}

/// A queue on `db` with `registry`, outside any daemon: its loops are the test's to run.
pub fn queue(db: &TestDb, toml: &str, registry: Registry) -> Queue {
    let settings = settings(db, toml);
    let url = db.url.clone();
    let pool = crate::db::pool(&settings, &url).expect("the queue's pool");
    let work_pool = crate::db::work_pool(&settings, &url).expect("the work pool");
    // The sender lives as long as the test process: a queue's loops watch it for reloads.
    let (sender, settings) = watch::channel(Arc::new(settings));
    std::mem::forget(sender);
    let context = QueueContext {
        lifecycle: Lifecycle::new(),
        health: Health::default(),
        settings,
    };
    Queue::new(context, pool, work_pool, registry)
}

/// A `probe` job as a claim leaves it: running, attempt `attempt` of `max`, leased to
/// `owner` for `lease_s` seconds from now (negative: already expired).
pub async fn running_job(
    pool: &sqlx::PgPool,
    owner: &str,
    attempt: i32,
    max: i32,
    lease_s: f64,
) -> crate::queue::Claimed {
    let (id, run_at): (uuid::Uuid, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "INSERT INTO jobs (id, kind, queue, args, status, attempt, max_attempts, lease_owner, lease_expires_at, started_at) \
         VALUES ($1, 'probe', 'default', '{}', 'running', $2, $3, $4, now() + make_interval(secs => $5), now()) \
         RETURNING id, run_at",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(attempt)
    .bind(max)
    .bind(owner)
    .bind(lease_s)
    .fetch_one(pool)
    .await
    .expect("inserting a running job");
    crate::queue::Claimed {
        id,
        kind: "probe".into(),
        queue: "default".into(),
        args: serde_json::json!({}),
        attempt,
        max_attempts: max,
        run_at,
    }
}

/// Polls `check` until it holds; panics naming `what` after `limit`.
pub async fn eventually(
    limit: std::time::Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) {
    let t0 = tokio::time::Instant::now();
    while !check().await {
        assert!(t0.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
