//! Eviction against a real PostgreSQL and a real blob directory.

use std::path::Path;
use std::time::Duration;

use memwarden_jobs::eviction::{evict, EvictionSettings, ResourceType, RetentionPeriod};
use memwarden_jobs::NoProgress;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::harness::{count, Daemon, TestDb};

async fn conversation(pool: &PgPool, deleted_ago: Option<&str>, entries: i32) -> uuid::Uuid {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, title, deleted_at) \
         VALUES ('owner', 't', CASE WHEN $1::text IS NULL THEN NULL ELSE now() - $1::interval END) RETURNING id",
    )
    .bind(deleted_ago)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) SELECT $1, 'user', 'hi ' || g FROM generate_series(1, $2) g")
        .bind(id)
        .bind(entries)
        .execute(pool)
        .await
        .unwrap();
    id
}

async fn blob(pool: &PgPool, dir: &Path, key: &str, bytes: &[u8], refs: i32) -> uuid::Uuid {
    std::fs::write(dir.join(key), bytes).unwrap();
    sqlx::query_scalar("INSERT INTO blobs (sha256, size_bytes, refcount, storage_key) VALUES ($1, $2, $3, $1) RETURNING id")
        .bind(key)
        .bind(bytes.len() as i64)
        .bind(refs)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn attachment(
    pool: &PgPool,
    blob: uuid::Uuid,
    conversation: Option<uuid::Uuid>,
    deleted_ago: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO attachments (owner_id, conversation_id, blob_id, filename, deleted_at) \
         VALUES ('owner', $1, $2, 'f.txt', CASE WHEN $3::text IS NULL THEN NULL ELSE now() - $3::interval END)",
    )
    .bind(conversation)
    .bind(blob)
    .bind(deleted_ago)
    .execute(pool)
    .await
    .unwrap();
}

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
         SELECT id, 'm', 1, '{1}', content_hash FROM memories",
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
    crate::harness::eventually(
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

fn evict_daemon(db: &TestDb, blobs: &Path) -> Daemon {
    Daemon::builder(&db.url)
        .config(&format!(
            "[blobs]\ndir = \"{}\"\n[eviction]\npause_ms = 1\nbatch_size = 3\n",
            blobs.display()
        ))
        .spawn()
}

#[tokio::test]
async fn memory_service_evict_sync_sse_and_bad_input() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = evict_daemon(&db, dir.path());
    for _ in 0..10 {
        conversation(&pool, Some("40 days"), 4).await;
    }

    // Memory Service's curl: POST /v1/admin/evict with camelCase, 204 when done.
    let r = d
        .post("/v1/admin/evict", json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"], "justification": "GDPR cleanup"}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(count(&pool, "SELECT count(*) FROM conversations").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM conversation_entries").await,
        0
    );

    // And with SSE progress, which ends at 100.
    for _ in 0..10 {
        conversation(&pool, Some("40 days"), 4).await;
    }
    let body = crate::harness::admin_client()
        .post(d.url("/v1/admin/evict?async=true"))
        .json(&json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"], "justification": "cleanup"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let progress: Vec<i64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok()?["progress"].as_i64())
        .collect();
    assert_eq!(progress.last(), Some(&100), "{body}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {body}"
    );
    assert!(!body.contains("event: error"), "{body}");

    for (body, needle) in [
        (
            json!({"retentionPeriod": "ninety days"}),
            "retention_period",
        ),
        (json!({"retentionPeriod": "-P1D"}), "negative"),
        (json!({}), "required"),
        (
            json!({"retentionPeriod": "P1D", "resourceTypes": ["tables"]}),
            "resource_types",
        ),
        (json!({"retentionPeriod": 90}), "retention"),
    ] {
        for path in ["/v1/admin/evict", "/v1/work/evict"] {
            let r = d.post(path, body.clone()).await;
            assert_eq!(r.status(), 400, "{path} {body}");
            let v: Value = r.json().await.unwrap();
            assert!(
                v["detail"].as_str().unwrap().contains(needle),
                "{path} {body} -> {v}"
            );
        }
    }

    // Native: 202 with where to look, then the report through ?wait=true.
    let r = d
        .post(
            "/v1/work/evict",
            json!({"retention_period": "P1D", "dry_run": true}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = d
        .post(
            "/v1/work/evict?wait=true",
            json!({"retention_period": "P1D", "resource_types": ["attachments"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["report"]["retention_period"], "P1D");

    // The CLI follows the job and prints the report.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args([
            "evict",
            "--retention",
            "P90D",
            "--types",
            "conversations,attachments",
            "--dry-run",
            "--addr",
            &d.addr,
        ])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
}
