//! Memory configurations on the real daemon: entries written over a configuration's limits
//! and past its privacy policy are changed by the jobs the entry trigger enqueues, and those
//! jobs show in `memwarden jobs list`; the catch-up flushes what the trigger never saw. What each job does row by row is the domain's, tested
//! in `jobs/tests/domain/memory_policies.rs`.

use std::time::Duration;

use serde_json::json;

use crate::harness::{count, eventually, Daemon, TestDb};

/// A conversation under the configuration `chat`.
async fn chat_conversation(pool: &sqlx::PgPool) -> uuid::Uuid {
    sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) VALUES ('o', 'chat') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

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
    let c = chat_conversation(&pool).await;
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
    let c = chat_conversation(&pool).await;
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

/// The contents of a conversation's entries, oldest first, each with its role.
async fn entries_of(pool: &sqlx::PgPool, c: uuid::Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT role, content FROM conversation_entries WHERE conversation_id = $1 \
          ORDER BY created_at, id",
    )
    .bind(c)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Runs one `memory-policies-catchup` job to the end; returns its result.
async fn catch_up(d: &Daemon, pool: &sqlx::PgPool) -> serde_json::Value {
    let id = d
        .enqueue(json!({"kind": "memory-policies-catchup", "args": {}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let finished = format!(
        "SELECT count(*) FROM memwarden.jobs WHERE id = '{id}' AND finished_at IS NOT NULL"
    );
    eventually(Duration::from_secs(20), "the catch-up finished", || async {
        count(pool, &finished).await == 1
    })
    .await;
    let (status, result, error): (String, Option<serde_json::Value>, Option<String>) =
        sqlx::query_as("SELECT status, result, last_error FROM memwarden.jobs WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(status, "succeeded", "{error:?}");
    result.unwrap()
}

/// Catch-up flushes the conversations whose writes the entry trigger never saw: entries a
/// replica-mode session wrote (as logical replication or a restore applies them, with
/// ordinary triggers silent), and entries written before their conversation was given a
/// configuration (the trigger found no configuration, and updating `conversations` enqueues
/// nothing). A conversation within its limits is left as written.
#[tokio::test]
async fn catch_up_flushes_conversations_the_trigger_missed() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    // The schedules off: the catch-up jobs this test counts are the ones it enqueues.
    let d = Daemon::builder(&db.url).schedules_off().ready().await;
    for (id, config) in [
        (
            "fifo",
            json!({"type": "message_count_based", "max_messages": 4,
                   "persistence": {"type": "postgres", "ttl": "720h"},
                   "flushing": {"type": "simple_fifo"}}),
        ),
        (
            "summary",
            json!({"type": "message_count_based", "max_messages": 5,
                   "persistence": {"type": "postgres", "ttl": "720h"},
                   "flushing": {"type": "hybrid_summary", "summary_tokens": 200,
                                "summarize_oldest_percent": 50},
                   "privacy_policy": {"redact_patterns": ["\\b\\d{3}-\\d{2}-\\d{4}\\b"],
                                      "default_redaction_string": "[SSN]"}}),
        ),
    ] {
        sqlx::query("INSERT INTO memory_configs (project, id, config, etag) VALUES ('default', $1, $2, 'e')")
            .bind(id)
            .bind(&config)
            .execute(&pool)
            .await
            .unwrap();
    }
    let conversation = |config: Option<&'static str>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "INSERT INTO conversations (owner_id, memory_config_id) VALUES ('o', $1) RETURNING id",
            )
            .bind(config)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (replicated, late, within) = (
        conversation(Some("fifo")).await,
        conversation(None).await,
        conversation(Some("fifo")).await,
    );
    let write = "INSERT INTO conversation_entries (conversation_id, role, content, created_at) \
                 SELECT $1, 'user', $2 || ' ' || g || ' ssn 123-45-6789', now() + make_interval(secs => g) \
                   FROM generate_series(1, $3) g";
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (c, prefix, n) in [(replicated, "r", 10), (within, "w", 3)] {
        sqlx::query(write)
            .bind(c)
            .bind(prefix)
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query(write)
        .bind(late)
        .bind("l")
        .bind(8)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE conversations SET memory_config_id = 'summary' WHERE id = $1")
        .bind(late)
        .execute(&pool)
        .await
        .unwrap();
    let policy_jobs = "SELECT count(*) FROM memwarden.jobs WHERE kind LIKE 'memory-%' \
                         AND kind <> 'memory-policies-catchup'";
    assert_eq!(
        count(&pool, policy_jobs).await,
        0,
        "the trigger enqueued nothing"
    );

    let first = catch_up(&d, &pool).await;
    assert_eq!(
        first,
        json!({"found": 2, "queued": 2, "privacy_queued": 1}),
        "{first}"
    );
    eventually(Duration::from_secs(20), "every policy job finished", || async {
        count(&pool, "SELECT count(*) FROM memwarden.jobs WHERE kind IN ('memory-flush', 'memory-privacy') AND status = 'succeeded'").await == 3
    })
    .await;

    let user =
        |prefix: &str, g: i32, ssn: &str| ("user".to_string(), format!("{prefix} {g} ssn {ssn}"));
    let kept: Vec<_> = (7..=10).map(|g| user("r", g, "123-45-6789")).collect();
    assert_eq!(
        entries_of(&pool, replicated).await,
        kept,
        "FIFO keeps the newest 4 of 10"
    );
    let within_rows: Vec<_> = (1..=3).map(|g| user("w", g, "123-45-6789")).collect();
    assert_eq!(
        entries_of(&pool, within).await,
        within_rows,
        "3 of 4 is within the limit"
    );
    // Half of the 8 go into one summary (redacted as it is written); the privacy job the
    // catch-up queued ahead of the flush redacts the 4 kept.
    let rows = entries_of(&pool, late).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let (role, summary) = &rows[0];
    assert_eq!(role, "system", "{rows:?}");
    assert!(summary.starts_with("Summary of "), "{summary}");
    assert!(
        summary.contains("[SSN]") && !summary.contains("123-45-6789"),
        "{summary}"
    );
    let redacted: Vec<_> = (5..=8).map(|g| user("l", g, "[SSN]")).collect();
    assert_eq!(rows[1..], redacted[..], "{rows:?}");

    let second = catch_up(&d, &pool).await;
    assert_eq!(
        second,
        json!({"found": 0, "queued": 0, "privacy_queued": 0}),
        "{second}"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'memory-flush'"
        )
        .await,
        2,
        "the second catch-up enqueued no flush"
    );
    d.assert_no_panic("memory-policies catch-up");
}
