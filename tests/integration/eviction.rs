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
    let settings = EvictionSettings {
        batch_size: 2,
        pause: Duration::from_millis(1),
        blobs_dir: dir.to_path_buf(),
    };
    let retention = RetentionPeriod::parse(Some(retention)).unwrap();
    evict(
        pool,
        &retention,
        types,
        false,
        &settings,
        &CancellationToken::new(),
        &NoProgress,
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
