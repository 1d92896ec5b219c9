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

/// Compozy's PUT that adds a redaction pattern applies it to the entries already written.
#[tokio::test]
async fn a_put_that_changes_the_privacy_policy_redacts_what_was_written() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .with_role_keys("compozy")
        .ready()
        .await;
    let put = |config: serde_json::Value, tag: Option<String>| {
        let mut req = reqwest::Client::new()
            .put(d.url("/api/v0/memories/chat"))
            .header("x-api-key", "compozy-admin-key")
            .json(&config);
        if let Some(t) = tag {
            req = req.header("if-match", t);
        }
        req.send()
    };
    let mut config = json!({"type": "buffer", "persistence": {"type": "in_memory"},
        "privacy_policy": {"redact_patterns": ["nothing-matches-this"]}});
    let created = put(config.clone(), None).await.unwrap();
    assert_eq!(created.status(), 201);
    let tag = created.headers()["etag"].to_str().unwrap().to_string();
    let c: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) VALUES ('o', 'chat') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content) \
         SELECT $1, 'user', 'card 4111-1111-1111-1111 in entry ' || g FROM generate_series(1, 5) g",
    )
    .bind(c)
    .execute(&pool)
    .await
    .unwrap();
    let with_card = format!(
        "SELECT count(*) FROM conversation_entries WHERE conversation_id = '{c}' AND content LIKE '%4111-%'"
    );
    eventually(Duration::from_secs(20), "the first policy ran", || async {
        count(&pool, "SELECT count(*) FROM memwarden.jobs WHERE kind = 'memory-privacy' AND status = 'succeeded'").await == 1
    })
    .await;
    assert_eq!(
        count(&pool, &with_card).await,
        5,
        "the first pattern matches nothing"
    );

    config["privacy_policy"]["redact_patterns"] = json!(["\\d{4}-\\d{4}-\\d{4}-\\d{4}"]);
    config["privacy_policy"]["default_redaction_string"] = json!("[CARD]");
    let updated = put(config, Some(tag)).await.unwrap();
    assert_eq!(updated.status(), 200);
    eventually(
        Duration::from_secs(20),
        "the entries written before are redacted",
        || async { count(&pool, &with_card).await == 0 },
    )
    .await;
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM conversation_entries WHERE conversation_id = '{c}' AND content LIKE 'card [CARD] in entry %'")).await,
        5
    );
    d.assert_no_panic("privacy policy change");
}
