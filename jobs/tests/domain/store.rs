//! The memory store's own behaviour: the trigger that enqueues enrichment, and the catch-up
//! query that finds what the trigger could not.

use memwarden_jobs::enrichment::ENRICHMENT_VERSION as CURRENT;
use memwarden_jobs::memories_needing_enrichment;
use serde_json::{json, Value};
use sha2::Digest;

use crate::common::{count, TestDb};
use crate::support::*;

#[tokio::test]
async fn trigger_enqueues_one_enrichment_per_insert_and_content_change() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let id = insert(
        &pool,
        "alice",
        "Decision",
        "Use Postgres for the queue",
        hours(0),
    )
    .await;
    let jobs: Vec<(String, Value, i16, Option<String>, String)> = sqlx::query_as(
        "SELECT kind, args, priority, unique_key, status FROM memwarden.jobs ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (kind, args, priority, key, status) = &jobs[0];
    assert_eq!(kind, "enrichment");
    assert_eq!(args, &json!({"memory_id": id}));
    assert_eq!(*priority, 10);
    assert_eq!(key.as_deref(), Some(format!("enrichment:{id}").as_str()));
    assert_eq!(status, "available");
    let args: memwarden_jobs::EnrichmentArgs = serde_json::from_value(args.clone()).unwrap();
    assert_eq!(args.unique_key(), key.clone().unwrap());

    // The content hash is the database's: sha256 hex of the content.
    let hash: String = sqlx::query_scalar("SELECT content_hash FROM memories WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        hash,
        hex::encode(sha2::Sha256::digest("Use Postgres for the queue"))
    );

    // A multi-row insert: one job per row; a row inserted already deleted: none.
    sqlx::query(
        "INSERT INTO memories (owner_id, content) SELECT 'bob', 'note ' || g FROM generate_series(1, 3) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memories (owner_id, content, deleted_at) VALUES ('bob', 'gone', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'enrichment'"
        )
        .await,
        4
    );

    // While a job is pending, a content change is absorbed by it.
    sqlx::query("UPDATE memories SET content = 'Use Postgres for the queue, v2' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let per_memory =
        format!("SELECT count(*) FROM memwarden.jobs WHERE unique_key = 'enrichment:{id}'");
    assert_eq!(count(&pool, &per_memory).await, 1);

    // Once it has run: other updates enqueue nothing, a content change enqueues one job.
    sqlx::query("UPDATE memwarden.jobs SET status = 'succeeded', finished_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    for sql in [
        "UPDATE memories SET metadata = '{\"k\": 1}', tags = '{x}', importance = 0.9 WHERE id = $1",
        "UPDATE memories SET content = content WHERE id = $1",
        "UPDATE memories SET enriched_at = now(), enrichment_version = 1 WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
    }
    assert_eq!(count(&pool, &per_memory).await, 1);
    sqlx::query("UPDATE memories SET content = 'Use SQLite instead' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(count(&pool, &per_memory).await, 2);
    let pending: i16 = sqlx::query_scalar(
        "SELECT priority FROM memwarden.jobs WHERE unique_key = $1 AND status = 'available'",
    )
    .bind(format!("enrichment:{id}"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 10);

    // The content change re-hashed the content and marked the memory as not enriched.
    let (hash, enriched): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT content_hash, enriched_at FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        hash,
        hex::encode(sha2::Sha256::digest("Use SQLite instead"))
    );
    assert!(enriched.is_none());
}

#[tokio::test]
async fn catch_up_finds_missing_and_stale_enrichments() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let a = insert(&pool, "alice", "Context", "first", hours(3)).await;
    let b = insert(&pool, "alice", "Context", "second", hours(2)).await;
    let c = insert(&pool, "alice", "Context", "third", hours(1)).await;
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(
        memories_needing_enrichment(&pool, CURRENT, 100)
            .await
            .unwrap(),
        all
    );
    assert_eq!(
        memories_needing_enrichment(&pool, CURRENT, 2)
            .await
            .unwrap(),
        all[..2]
    );

    for id in [a, b, c] {
        enrich_hash(&pool, id).await;
    }
    assert!(memories_needing_enrichment(&pool, CURRENT, 100)
        .await
        .unwrap()
        .is_empty());
    // A newer pipeline version makes every memory stale.
    assert_eq!(
        memories_needing_enrichment(&pool, CURRENT + 1, 100)
            .await
            .unwrap(),
        all
    );

    // A content change, and an update that moves updated_at past enriched_at, are stale; a
    // soft-deleted memory is not work.
    sqlx::query("UPDATE memories SET content = 'first, edited' WHERE id = $1")
        .bind(a)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE memories SET updated_at = now() + interval '1 minute' WHERE id = $1")
        .bind(b)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE memories SET deleted_at = now(), content = 'gone' WHERE id = $1")
        .bind(c)
        .execute(&pool)
        .await
        .unwrap();
    let mut stale = vec![a, b];
    stale.sort();
    assert_eq!(
        memories_needing_enrichment(&pool, CURRENT, 100)
            .await
            .unwrap(),
        stale
    );
}
