//! The entry trigger's jobs see the writes that enqueued them (migration 0013): a write while
//! the conversation's privacy job runs queues a new one behind it, and a write while it waits
//! keeps it from being claimed until the write commits.

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestDb;
use crate::memory_policies::{config, conversation, persistence};

/// The conversation's `memory-privacy` jobs, oldest first: status and unique key.
async fn privacy_jobs(pool: &PgPool, id: Uuid) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT status, unique_key FROM jobs WHERE kind = 'memory-privacy' \
         AND args->>'conversation_id' = $1 ORDER BY created_at, id",
    )
    .bind(id.to_string())
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A conversation of `n` entries under a configuration with a privacy policy.
async fn under_privacy_policy(n: i32) -> (TestDb, PgPool, Uuid) {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut c = json!({"type": "buffer", "privacy_policy": {"redact_patterns": ["\\d{3}"]}});
    c["persistence"] = persistence();
    config(&pool, "p", c).await;
    let id = conversation(&pool, Some("p"), n, 0).await;
    (db, pool, id)
}

async fn write(pool: &PgPool, id: Uuid) {
    sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) VALUES ($1, 'user', 'x')")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_while_the_privacy_job_runs_queues_another_behind_it() {
    let (_db, pool, id) = under_privacy_policy(2).await;
    let key = Some(format!("memory-privacy:{id}"));
    assert_eq!(
        privacy_jobs(&pool, id).await,
        vec![("available".into(), key.clone())]
    );
    write(&pool, id).await;
    assert_eq!(
        privacy_jobs(&pool, id).await.len(),
        1,
        "a waiting job takes the write"
    );

    // A worker has claimed it and read the conversation: a write now needs a job of its own.
    sqlx::query("UPDATE jobs SET status = 'running' WHERE kind = 'memory-privacy'")
        .execute(&pool)
        .await
        .unwrap();
    write(&pool, id).await;
    assert_eq!(
        privacy_jobs(&pool, id).await,
        vec![("running".into(), None), ("available".into(), key.clone())]
    );
    write(&pool, id).await;
    assert_eq!(
        privacy_jobs(&pool, id).await.len(),
        2,
        "and that one takes the next"
    );
}

#[tokio::test]
async fn a_waiting_job_cannot_be_claimed_before_the_write_that_joined_it_commits() {
    let (_db, pool, id) = under_privacy_policy(1).await;
    let claimable = |pool: PgPool| async move {
        let mut tx = pool.begin().await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT id FROM jobs WHERE kind = 'memory-privacy' \
             AND status = 'available' FOR UPDATE SKIP LOCKED) j",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        n
    };
    assert_eq!(claimable(pool.clone()).await, 1);
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) VALUES ($1, 'user', '123')")
        .bind(id)
        .execute(&mut *writer)
        .await
        .unwrap();
    assert_eq!(
        claimable(pool.clone()).await,
        0,
        "skipped while the writer is open"
    );
    writer.commit().await.unwrap();
    assert_eq!(claimable(pool.clone()).await, 1);
}
