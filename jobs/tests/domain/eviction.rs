//! Eviction against a real PostgreSQL and a real blob directory.

use std::path::Path;
use std::time::Duration;

use memwarden_jobs::eviction::{evict, EvictionSettings, ResourceType, RetentionPeriod};
use memwarden_jobs::NoProgress;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::common::fixtures::{attachment, blob, conversation};
use crate::common::{count, TestDb};

async fn run(
    pool: &PgPool,
    dir: &Path,
    retention: &str,
    types: &[ResourceType],
) -> memwarden_jobs::eviction::EvictionReport {
    evict_with(
        pool,
        &settings(dir, 2, Duration::from_secs(5)),
        retention,
        types,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn retention_boundaries_and_live_rows() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let past = conversation(&pool, Some("1 day 1 second"), 4).await;
    let within = conversation(&pool, Some("1 day -1 second"), 4).await;
    let live = conversation(&pool, None, 4).await;

    let report = run(&pool, dir.path(), "P1D", &[ResourceType::Conversations]).await;
    assert_eq!((report.conversations, report.conversation_entries), (1, 4));
    let left: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM conversations ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        !left.contains(&past),
        "deleted retention + 1 s ago: evicted"
    );
    assert!(left.contains(&within), "deleted retention - 1 s ago: kept");

    // P0D takes every soft-deleted row, and never a live one.
    let report = run(&pool, dir.path(), "P0D", &[ResourceType::Conversations]).await;
    assert_eq!(report.conversations, 1);
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec![live]);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM conversation_entries").await,
        4,
        "the live conversation's entries stay"
    );

    // Memories go with their embeddings; a live memory stays.
    sqlx::query(
        "INSERT INTO memories (owner_id, content, deleted_at) VALUES \
         ('owner', 'gone', now() - interval '2 days'), ('owner', 'kept', NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memory_embeddings (memory_id, model, dims, embedding, content_hash) \
         SELECT id, 'm', 1, '{1}'::real[], content_hash FROM memories",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = run(&pool, dir.path(), "P1D", &[ResourceType::Memories]).await;
    assert_eq!(report.memories, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT content FROM memories")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["kept".to_string()]);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        1
    );
}

fn settings(dir: &Path, batch_size: i64, max_transaction: Duration) -> EvictionSettings {
    EvictionSettings {
        batch_size,
        pause: Duration::from_millis(1),
        max_transaction,
        blobs_dir: dir.to_path_buf(),
        store: Default::default(),
    }
}

async fn evict_with(
    pool: &PgPool,
    settings: &EvictionSettings,
    retention: &str,
    types: &[ResourceType],
) -> Result<memwarden_jobs::eviction::EvictionReport, memwarden_jobs::eviction::EvictionError> {
    evict(
        pool,
        &RetentionPeriod::parse(Some(retention)).unwrap(),
        types,
        false,
        settings,
        &CancellationToken::new(),
        &NoProgress,
    )
    .await
}

#[tokio::test]
async fn a_batch_held_past_its_limit_rolls_back_whole_and_the_run_says_why() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    // The oldest is first in every batch, so every batch meets the lock.
    let locked = conversation(&pool, Some("3 days"), 2).await;
    for _ in 0..4 {
        conversation(&pool, Some("2 days"), 2).await;
    }
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
        .bind(locked)
        .execute(&mut *holder)
        .await
        .unwrap();

    let err = evict_with(
        &pool,
        &settings(dir.path(), 4, Duration::from_millis(50)),
        "P1D",
        &[ResourceType::Conversations],
    )
    .await
    .expect_err("every batch waits on the lock past the limit");
    let message = err.to_string();
    assert!(
        message.contains("50 ms") && message.contains("locks"),
        "{message}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM conversations").await,
        5,
        "nothing of a cancelled batch is deleted"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM conversation_entries").await,
        10
    );

    holder.rollback().await.unwrap();
    let report = evict_with(
        &pool,
        &settings(dir.path(), 4, Duration::from_millis(500)),
        "P1D",
        &[ResourceType::Conversations],
    )
    .await
    .unwrap();
    assert_eq!((report.conversations, report.conversation_entries), (5, 10));
    assert_eq!(report.batches_over_limit, 0);
}

#[tokio::test]
async fn a_conversation_restored_while_a_batch_waits_keeps_its_entries() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let restored = conversation(&pool, Some("3 days"), 3).await;
    let gone = conversation(&pool, Some("2 days"), 3).await;
    let mut restore = pool.begin().await.unwrap();
    sqlx::query("UPDATE conversations SET deleted_at = NULL WHERE id = $1")
        .bind(restored)
        .execute(&mut *restore)
        .await
        .unwrap();

    // The batch read both as due; its delete waits on the restore's row lock.
    let eviction = {
        let pool = pool.clone();
        let settings = settings(dir.path(), 10, Duration::from_secs(10));
        tokio::spawn(async move {
            evict_with(&pool, &settings, "P1D", &[ResourceType::Conversations]).await
        })
    };
    crate::common::checks::eventually(
        Duration::from_secs(10),
        "the batch waits on the restore",
        || {
            let pool = pool.clone();
            async move {
                count(
                    &pool,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'WITH c AS%'",
                )
                .await
                    == 1
            }
        },
    )
    .await;
    restore.commit().await.unwrap();

    let report = eviction.await.unwrap().unwrap();
    assert_eq!((report.conversations, report.conversation_entries), (1, 3));
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec![restored]);
    assert!(!left.contains(&gone));
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM conversation_entries WHERE conversation_id = '{restored}'"
            )
        )
        .await,
        3,
        "a restored conversation keeps its entries"
    );
}

#[tokio::test]
async fn a_shared_blob_goes_with_its_last_reference() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let shared = blob(&pool, dir.path(), "shared-blob", b"0123456789", 2).await;
    let own = blob(&pool, dir.path(), "own-blob", b"abc", 1).await;
    // One reference from a deleted conversation (which also has its own blob), one from a live attachment.
    let c = conversation(&pool, Some("10 days"), 2).await;
    attachment(&pool, shared, Some(c), None).await;
    attachment(&pool, own, Some(c), None).await;
    attachment(&pool, shared, None, None).await;

    let report = run(
        &pool,
        dir.path(),
        "P1D",
        &[ResourceType::Conversations, ResourceType::Attachments],
    )
    .await;
    assert_eq!(
        (report.conversations, report.attachments),
        (1, 2),
        "the conversation took its attachments"
    );
    assert_eq!((report.blobs_freed, report.bytes_freed), (1, 3));
    assert!(
        dir.path().join("shared-blob").exists(),
        "a blob still referenced keeps its file"
    );
    assert!(!dir.path().join("own-blob").exists());
    assert_eq!(
        count(
            &pool,
            "SELECT refcount::bigint FROM blobs WHERE storage_key = 'shared-blob'"
        )
        .await,
        1
    );

    // Soft-delete the last reference, evict again: row and file go.
    sqlx::query("UPDATE attachments SET deleted_at = now() - interval '2 days'")
        .execute(&pool)
        .await
        .unwrap();
    let report = run(&pool, dir.path(), "P1D", &[ResourceType::Attachments]).await;
    assert_eq!(
        (report.attachments, report.blobs_freed, report.bytes_freed),
        (1, 1, 10)
    );
    assert!(!dir.path().join("shared-blob").exists());
    assert_eq!(count(&pool, "SELECT count(*) FROM blobs").await, 0);
}
