//! AutoMem's wire details, as its operators' scripts and clients meet them: `/health` with no
//! token, the token variables AutoMem reads, `"force": true` on reprocess, and the memory
//! fields its clients read after enrichment.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{admin_curl, count, eventually, wait_enriched, Daemon, TestDb, API};

/// AutoMem's `/health` answers without a token, counts the store, and reports drift.
#[tokio::test]
async fn health_without_a_token_counts_the_store() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    sqlx::query(
        "INSERT INTO memories (owner_id, content) SELECT 'o', 'note ' || g FROM generate_series(1, 3) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    wait_enriched(&pool, Duration::from_secs(30)).await;
    let r = reqwest::get(d.url("/health")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "healthy", "{v}");
    assert_eq!(v["postgres"], "connected");
    assert_eq!(
        (v["memory_count"].as_i64(), v["vector_count"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(v["sync_status"], "synced");
    assert_eq!(v["enrichment"]["status"], "running");
    assert_eq!(v["enrichment"]["queue_depth"], 0);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));

    sqlx::query("DELETE FROM memory_embeddings WHERE memory_id = (SELECT min(id::text)::uuid FROM memories)")
        .execute(&pool)
        .await
        .unwrap();
    let v: Value = reqwest::get(d.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["sync_status"], "drift_detected", "{v}");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["vector_count"], 2);
    // /healthz stays, and is as cheap as before.
    assert_eq!(d.status_of("/healthz").await, Some(200));
}

/// With only AutoMem's variables set (`AUTOMEM_API_TOKEN`, `ADMIN_API_TOKEN`), its admin curl
/// works; before, the daemon answered 403 "Admin token not configured".
#[tokio::test]
async fn automem_token_variables_are_read() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).with_vendor_tokens().ready().await;
    let id = Uuid::new_v4();
    let (code, v) = admin_curl(&d.url("/enrichment/reprocess"), &json!({"ids": [id]}));
    assert_eq!(code, "202", "{v}");
    let r = reqwest::Client::new()
        .post(d.url("/enrichment/reprocess"))
        .bearer_auth(API)
        .header("X-Admin-Token", "wrong")
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .get(d.url("/v1/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the API token is the one AutoMem's variable set"
    );
}

/// AutoMem's documented reprocess sends `"force": true`; the run records `forced`, and the
/// memory carries the fields AutoMem's clients read.
#[tokio::test]
async fn forced_reprocess_and_the_fields_automem_clients_read() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    for (i, content) in [
        "Decided to use Postgres with Grace Hopper. The queue stays.",
        "Decided to use Postgres for the queue again",
    ]
    .iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO memories (owner_id, memory_type, content, tags, metadata, created_at) \
             VALUES ('alice', 'Decision', $1, '{Project/Alpha:API}', '{\"source\": \"cli\"}', now() - make_interval(mins => $2))",
        )
        .bind(content)
        .bind(10 - i as i32)
        .execute(&pool)
        .await
        .unwrap();
    }
    wait_enriched(&pool, Duration::from_secs(30)).await;
    let id: Uuid = sqlx::query_scalar("SELECT id FROM memories WHERE content LIKE '%Grace%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (code, v) = admin_curl(
        &d.url("/enrichment/reprocess"),
        &json!({"ids": [id], "force": true}),
    );
    assert_eq!(code, "202", "{v}");
    eventually(Duration::from_secs(20), "the forced run wrote", || async {
        count(
            &pool,
            &format!("SELECT count(*) FROM memories WHERE id = '{id}' AND metadata->'enrichment'->>'forced' = 'true'"),
        )
        .await
            == 1
    })
    .await;
    let (tags, prefixes, summary, enriched, processed, metadata): (
        Vec<String>,
        Vec<String>,
        Option<String>,
        bool,
        bool,
        Value,
    ) = sqlx::query_as(
        "SELECT tags, tag_prefixes, summary, enriched, processed, metadata FROM memories WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        tags.contains(&"entity:people:grace-hopper".to_string()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"entity:tools:postgres".to_string()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"Project/Alpha:API".to_string()),
        "the caller's tag kept"
    );
    for p in [
        "project",
        "project:alpha",
        "project:alpha:api",
        "entity",
        "entity:people",
        "entity:people:grace-hopper",
    ] {
        assert!(prefixes.contains(&p.to_string()), "{p} in {prefixes:?}");
    }
    assert_eq!(
        summary.as_deref(),
        Some("Decided to use Postgres with Grace Hopper.")
    );
    assert!(enriched && processed);
    assert_eq!(metadata["source"], "cli", "the caller's metadata kept");
    assert_eq!(
        metadata["entities"]["people"],
        json!(["Grace Hopper"]),
        "{metadata}"
    );
    assert_eq!(
        metadata["entities"]["tools"],
        json!(["Postgres"]),
        "{metadata}"
    );
    let e = &metadata["enrichment"];
    assert_eq!(e["forced"], true);
    assert!(e["last_run"].as_str().is_some(), "{e}");
    assert!(e["temporal_links"].is_number());
    assert!(e["patterns_detected"].is_array());
    let neighbours = e["semantic_neighbors"].as_array().unwrap();
    for n in neighbours {
        assert!(n["id"].is_string() && n["score"].is_number(), "{n}");
    }
    let other: (Value, bool) = sqlx::query_as(
        "SELECT metadata->'enrichment'->'forced', enriched FROM memories WHERE id <> $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        other,
        (json!(false), true),
        "a write-triggered run is not forced"
    );

    // A content change: not enriched for it until the next run, but processed before.
    sqlx::query("UPDATE memories SET content = 'Now SQLite' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let (enriched, processed): (bool, bool) =
        sqlx::query_as("SELECT enriched, processed FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!enriched && processed);
}
