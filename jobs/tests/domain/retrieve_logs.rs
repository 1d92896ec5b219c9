//! RetrieveMemory log retention against a real PostgreSQL: short batches, only rows past the
//! retention, and a stop honoured at a batch boundary.

use std::time::Duration;

use memwarden_jobs::retrieve_logs::{purge_retrieve_logs, RetentionSettings};
use tokio_util::sync::CancellationToken;

use crate::common::{count, TestDb};

#[tokio::test]
async fn old_rows_go_in_batches_and_a_stop_is_honoured_between_them() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO retrieve_memory_logs (created_at, source, request) \
         SELECT now() - make_interval(days => CASE WHEN g <= 25 THEN 31 ELSE 29 END), 'CALLER_OPT_IN', '{}' \
           FROM generate_series(1, 30) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let settings = RetentionSettings {
        batch_size: 10,
        pause: Duration::from_millis(1),
    };
    let month = Duration::from_secs(30 * 86_400);

    let stopped = CancellationToken::new();
    stopped.cancel();
    let r = purge_retrieve_logs(&pool, month, &settings, &stopped)
        .await
        .unwrap();
    assert!(r.interrupted);
    assert_eq!((r.deleted, r.batches), (0, 0));

    let r = purge_retrieve_logs(&pool, month, &settings, &CancellationToken::new())
        .await
        .unwrap();
    assert!(!r.interrupted);
    assert_eq!((r.deleted, r.batches), (25, 3));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM retrieve_memory_logs").await,
        5
    );
}
