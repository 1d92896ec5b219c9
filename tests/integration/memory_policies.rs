//! Memory configurations on the real daemon: entries written over a configuration's limits
//! and past its privacy policy are changed by the jobs the entry trigger enqueues, and those
//! jobs show in `memwarden jobs list`. What each job does row by row is the domain's, tested
//! in `jobs/tests/domain/memory_policies.rs`.

use std::time::Duration;

use serde_json::json;

use crate::harness::{count, eventually, Daemon, TestDb};

#[tokio::test]
async fn trigger_enqueued_jobs_flush_and_redact_a_conversation() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    let config = json!({"type": "message_count_based", "max_messages": 4,
        "flushing": {"type": "simple_fifo"},
        "persistence": {"type": "postgres", "ttl": "24h"},
        "privacy_policy": {"redact_patterns": ["\\b\\d{3}-\\d{2}-\\d{4}\\b"],
                           "non_persistable_message_types": ["system"]}});
    sqlx::query("INSERT INTO memory_configs (project, id, config, etag) VALUES ('default', 'chat', $1, 'e')")
        .bind(&config)
        .execute(&pool)
        .await
        .unwrap();
    let c: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) VALUES ('o', 'chat') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content, created_at) \
         SELECT $1, CASE WHEN g = 9 THEN 'system' ELSE 'user' END, \
                'entry ' || g || ' ssn 123-45-6789', now() + make_interval(secs => g) \
           FROM generate_series(1, 10) g",
    )
    .bind(c)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind IN ('memory-flush', 'memory-privacy')"
        )
        .await,
        2,
        "one bulk insert enqueues one job of each"
    );

    let sql = format!(
        "SELECT count(*) FROM conversation_entries WHERE conversation_id = '{c}' \
           AND content NOT LIKE '%123-45-6789%' AND role = 'user'"
    );
    eventually(Duration::from_secs(20), "4 redacted user entries are left", || async {
        count(&pool, "SELECT count(*) FROM memwarden.jobs WHERE kind IN ('memory-flush', 'memory-privacy') AND status = 'succeeded'").await == 2
            && count(&pool, &format!("SELECT count(*) FROM conversation_entries WHERE conversation_id = '{c}'")).await <= 4
            && count(&pool, &sql).await == count(&pool, &format!("SELECT count(*) FROM conversation_entries WHERE conversation_id = '{c}'")).await
    })
    .await;
    let newest: Vec<String> = sqlx::query_scalar(
        "SELECT content FROM conversation_entries WHERE conversation_id = $1 ORDER BY created_at",
    )
    .bind(c)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        newest.last().unwrap().starts_with("entry 10 "),
        "the newest are kept: {newest:?}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["jobs", "list", "--kind", "memory-flush", "--addr", &d.addr])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("memory-flush"), "{shown}");
}
