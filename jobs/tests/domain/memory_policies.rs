//! The work memory configurations drive, against a real PostgreSQL: flush (trim and summary,
//! all or nothing), expiry past the ttl, and the privacy policy, row by row.

use std::time::Duration;

use memwarden_jobs::memory_config::MemoryConfig;
use memwarden_jobs::memory_policies::{
    apply_privacy, estimate_tokens, expire_entries, flush_conversation, MemoryPrivacyArgs,
    PolicySettings, PrivacyTarget,
};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{count, TestDb};

pub async fn config(pool: &PgPool, id: &str, v: serde_json::Value) {
    let c: MemoryConfig = serde_json::from_value(v).unwrap();
    c.validate().unwrap();
    sqlx::query(
        "INSERT INTO memory_configs (project, id, config, etag) VALUES ('default', $1, $2, 'x')",
    )
    .bind(id)
    .bind(serde_json::to_value(&c).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

/// A conversation under `config_id` with `n` entries, the i-th `i` minutes after a base
/// `age_days` ago (content "message i. more"), oldest first.
pub async fn conversation(pool: &PgPool, config_id: Option<&str>, n: i32, age_days: i32) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) VALUES ('o', $1) RETURNING id",
    )
    .bind(config_id)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content, created_at) \
         SELECT $1, 'user', 'message ' || g || '. more words here', \
                now() - make_interval(days => $3) + make_interval(mins => g) \
           FROM generate_series(1, $2) g",
    )
    .bind(id)
    .bind(n)
    .bind(age_days)
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn entries(pool: &PgPool, id: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT role, content FROM conversation_entries WHERE conversation_id = $1 ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A fresh database with one configuration, `id`.
async fn configured(id: &str, v: serde_json::Value) -> (TestDb, PgPool) {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    config(&pool, id, v).await;
    (db, pool)
}

pub fn persistence() -> serde_json::Value {
    json!({"type": "postgres", "ttl": "24h"})
}

#[tokio::test]
async fn fifo_trims_to_max_messages_keeping_the_newest() {
    let (_db, pool) = configured(
        "fifo",
        json!({"type": "message_count_based", "max_messages": 5,
        "flushing": {"type": "simple_fifo"}, "persistence": persistence()}),
    )
    .await;
    let c = conversation(&pool, Some("fifo"), 12, 0).await;
    let r = flush_conversation(&pool, c).await.unwrap();
    assert_eq!((r.entries_before, r.deleted, r.entries_after), (12, 7, 5));
    let kept: Vec<String> = entries(&pool, c)
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let want: Vec<String> = (8..=12)
        .map(|i| format!("message {i}. more words here"))
        .collect();
    assert_eq!(kept, want);
    let again = flush_conversation(&pool, c).await.unwrap();
    assert_eq!(
        again.deleted, 0,
        "a rerun is under the limit and does nothing"
    );
}

#[tokio::test]
async fn token_limits_with_the_threshold_trim_by_tokens() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    // Each entry is 26 or 27 characters: 7 tokens. 100 × 0.5 = 50 tokens: seven entries fit.
    config(
        &pool,
        "tok",
        json!({"type": "token_based", "max_tokens": 100,
        "flushing": {"type": "token_aware_lru", "summarize_threshold": 0.5},
        "persistence": persistence()}),
    )
    .await;
    let c = conversation(&pool, Some("tok"), 9, 0).await;
    assert_eq!(estimate_tokens("message 1. more words here"), 7);
    let r = flush_conversation(&pool, c).await.unwrap();
    assert!(r.tokens_after <= 50, "{r:?}");
    assert!(
        r.tokens_after + 7 > 50,
        "no more is deleted than needed: {r:?}"
    );
    assert_eq!(entries(&pool, c).await.len() as u64, r.entries_after);
}

#[tokio::test]
async fn hybrid_summary_replaces_the_oldest_with_one_entry_in_their_place() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    config(&pool, "sum", json!({"type": "message_count_based", "max_messages": 10,
        "flushing": {"type": "hybrid_summary", "summary_tokens": 12, "summarize_oldest_percent": 50},
        "persistence": persistence()})).await;
    let c = conversation(&pool, Some("sum"), 12, 0).await;
    let oldest: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT min(created_at) FROM conversation_entries WHERE conversation_id = $1",
    )
    .bind(c)
    .fetch_one(&pool)
    .await
    .unwrap();
    let r = flush_conversation(&pool, c).await.unwrap();
    assert!(r.summarised);
    assert_eq!(r.deleted, 6, "50% of 12");
    let rows = entries(&pool, c).await;
    assert_eq!(rows.len(), 7);
    let (role, summary) = &rows[0];
    assert_eq!(role, "system");
    assert!(
        summary.starts_with("Summary of 6 earlier messages: "),
        "{summary}"
    );
    assert!(estimate_tokens(summary) <= 12, "{summary}");
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT created_at FROM conversation_entries WHERE conversation_id = $1 AND role = 'system'",
    )
    .bind(c)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(at, oldest, "the summary takes the oldest entry's place");
    let rest: Vec<String> = rows[1..].iter().map(|(_, t)| t.clone()).collect();
    let want: Vec<String> = (7..=12)
        .map(|i| format!("message {i}. more words here"))
        .collect();
    assert_eq!(rest, want, "the newer entries are untouched");
    assert_eq!(flush_conversation(&pool, c).await.unwrap().deleted, 0);
}

#[tokio::test]
async fn a_flush_that_fails_leaves_every_entry() {
    let (_db, pool) = configured(
        "sum",
        json!({"type": "message_count_based", "max_messages": 3,
        "flushing": {"type": "hybrid_summary"}, "persistence": persistence()}),
    )
    .await;
    let c = conversation(&pool, Some("sum"), 8, 0).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_summary() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'no summaries today'; END $$; \
         CREATE TRIGGER refuse_summary BEFORE INSERT ON conversation_entries \
           FOR EACH ROW WHEN (NEW.role = 'system') EXECUTE FUNCTION refuse_summary();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = entries(&pool, c).await;
    let e = flush_conversation(&pool, c).await.unwrap_err();
    assert!(e.to_string().contains("no summaries today"), "{e}");
    assert_eq!(entries(&pool, c).await, before);
}

#[tokio::test]
async fn expiry_removes_only_entries_past_the_ttl_of_their_configuration() {
    let (_db, pool) = configured(
        "day",
        json!({"type": "buffer", "persistence": {"type": "postgres", "ttl": "24h"}}),
    )
    .await;
    config(
        &pool,
        "week",
        json!({"type": "buffer", "persistence": {"type": "postgres", "ttl": "7d"}}),
    )
    .await;
    let old_day = conversation(&pool, Some("day"), 5, 2).await;
    let new_day = conversation(&pool, Some("day"), 5, 0).await;
    let old_week = conversation(&pool, Some("week"), 5, 2).await;
    let none = conversation(&pool, None, 5, 30).await;
    let settings = PolicySettings {
        batch_size: 2,
        pause: Duration::from_millis(1),
    };

    let stopped = CancellationToken::new();
    stopped.cancel();
    let r = expire_entries(&pool, None, None, &settings, &stopped)
        .await
        .unwrap();
    assert!(r.interrupted);
    assert_eq!(
        r.deleted, 0,
        "a stop before the first batch deletes nothing"
    );

    let r = expire_entries(&pool, None, None, &settings, &CancellationToken::new())
        .await
        .unwrap();
    assert!(!r.interrupted);
    assert_eq!((r.configs, r.deleted), (2, 5));
    assert_eq!(
        r.batches,
        3 + 1,
        "2 + 2 + 1 for `day`, one empty batch for `week`"
    );
    for (c, left) in [(old_day, 0), (new_day, 5), (old_week, 5), (none, 5)] {
        assert_eq!(entries(&pool, c).await.len(), left);
    }
}

#[tokio::test]
async fn privacy_redacts_and_drops_and_leaves_others_alone() {
    let (_db, pool) = configured(
        "pii",
        json!({"type": "buffer", "persistence": persistence(),
        "privacy_policy": {"redact_patterns": ["\\b\\d{3}-\\d{2}-\\d{4}\\b"],
                           "non_persistable_message_types": ["system"],
                           "default_redaction_string": "[SSN]"}}),
    )
    .await;
    let mut ids = Vec::new();
    for cfg in [Some("pii"), Some("pii"), None] {
        let c = conversation(&pool, cfg, 0, 0).await;
        sqlx::query(
            "INSERT INTO conversation_entries (conversation_id, role, content) VALUES \
             ($1, 'user', 'my ssn is 123-45-6789, ok'), ($1, 'system', 'be terse'), \
             ($1, 'assistant', 'noted')",
        )
        .bind(c)
        .execute(&pool)
        .await
        .unwrap();
        ids.push(c);
    }
    let settings = PolicySettings::default();
    let stop = CancellationToken::new();
    let r = apply_privacy(
        &pool,
        &PrivacyTarget::Conversation(ids[0]),
        &settings,
        &stop,
    )
    .await
    .unwrap();
    assert_eq!((r.redacted, r.deleted, r.scanned), (1, 1, 3));
    let mut rows = entries(&pool, ids[0]).await;
    rows.sort();
    assert_eq!(
        rows,
        [
            ("assistant".to_string(), "noted".to_string()),
            ("user".into(), "my ssn is [SSN], ok".into())
        ]
    );
    let again = apply_privacy(
        &pool,
        &PrivacyTarget::Conversation(ids[0]),
        &settings,
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(
        (again.redacted, again.deleted),
        (0, 0),
        "only changed rows are rewritten"
    );

    // The policy-changed args of the HTTP layer reach every conversation of the configuration.
    let args: MemoryPrivacyArgs =
        serde_json::from_value(json!({"project": "default", "memory_id": "pii"})).unwrap();
    assert_eq!(args, MemoryPrivacyArgs::policy_changed("default", "pii"));
    let r = apply_privacy(&pool, &args.target().unwrap(), &settings, &stop)
        .await
        .unwrap();
    assert_eq!((r.conversations, r.redacted, r.deleted), (2, 1, 1));
    assert_eq!(entries(&pool, ids[1]).await.len(), 2);

    let r = apply_privacy(
        &pool,
        &PrivacyTarget::Conversation(ids[2]),
        &settings,
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(r.skipped, Some("no memory configuration"));
    assert_eq!(
        entries(&pool, ids[2]).await.len(),
        3,
        "no configuration, untouched"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM conversation_entries WHERE content LIKE '%123-45%'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_stop_ends_privacy_between_conversations() {
    let (_db, pool) = configured(
        "pii",
        json!({"type": "buffer", "persistence": persistence(),
        "privacy_policy": {"redact_patterns": ["message"]}}),
    )
    .await;
    conversation(&pool, Some("pii"), 3, 0).await;
    let stop = CancellationToken::new();
    stop.cancel();
    let target = MemoryPrivacyArgs::policy_changed("default", "pii")
        .target()
        .unwrap();
    let r = apply_privacy(&pool, &target, &PolicySettings::default(), &stop)
        .await
        .unwrap();
    assert!(r.interrupted);
    assert_eq!(r.conversations, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM conversation_entries WHERE content LIKE 'message%'"
        )
        .await,
        3
    );
}
