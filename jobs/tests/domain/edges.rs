//! The edges enrichment writes: PRECEDED_BY, SIMILAR_TO and EXEMPLIFIES.

use std::collections::HashMap;

use memwarden_jobs::embedding::cosine;
use memwarden_jobs::enrichment::{pattern_id, EXEMPLIFIES, PRECEDED_BY, SIMILAR_TO};
use memwarden_jobs::vector::EmbeddingRecord;
use memwarden_jobs::{
    enrich, EnrichmentSettings, HashEmbedder, PgVectorIndex, RuleExtractor, VectorIndex,
};
use uuid::Uuid;

use crate::common::{count, TestDb};
use crate::support::*;

#[tokio::test]
async fn preceded_by_respects_the_window_the_cap_and_the_owner() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut earlier = HashMap::new();
    for days in [1, 2, 3, 4, 5, 6, 8, 10] {
        let id = insert(
            &pool,
            "alice",
            "Context",
            &format!("note from {days} days ago"),
            hours(24 * days),
        )
        .await;
        earlier.insert(days, id);
    }
    let deleted = insert(&pool, "alice", "Context", "deleted note", hours(12)).await;
    sqlx::query("UPDATE memories SET deleted_at = now() WHERE id = $1")
        .bind(deleted)
        .execute(&pool)
        .await
        .unwrap();
    insert(&pool, "bob", "Context", "bob's note an hour ago", hours(1)).await;
    let target = insert(&pool, "alice", "Context", "the newest note", hours(0)).await;
    // A later memory is not "earlier".
    sqlx::query("INSERT INTO memories (owner_id, content, created_at) VALUES ('alice', 'future', now() + interval '1 hour')")
        .execute(&pool)
        .await
        .unwrap();

    let report = enrich_hash(&pool, target).await;
    assert_eq!(report.preceded_by, 5);
    let linked: Vec<Uuid> = sqlx::query_scalar(
        "SELECT e.dst_id FROM memory_edges e JOIN memories m ON m.id = e.dst_id \
         WHERE e.src_id = $1 AND e.kind = 'PRECEDED_BY' ORDER BY m.created_at DESC",
    )
    .bind(target)
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<Uuid> = [1, 2, 3, 4, 5].iter().map(|d| earlier[d]).collect();
    assert_eq!(
        linked, expected,
        "the five nearest earlier ones, none older than 7 days"
    );

    // The window is relative to the memory's own creation: the 8-day-old one links to the
    // 10-day-old one (2 days before it), but not beyond 7 days.
    let report = enrich_hash(&pool, earlier[&8]).await;
    assert_eq!(report.preceded_by, 1);
    assert_eq!(
        edges_from(&pool, earlier[&8], PRECEDED_BY).await[0].0,
        earlier[&10]
    );
    assert_eq!(enrich_hash(&pool, earlier[&10]).await.preceded_by, 0);
}

#[tokio::test]
async fn similar_to_respects_threshold_cap_and_owner() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let embedder = HashEmbedder::default();
    let index = PgVectorIndex::new(pool.clone());
    let target_text = variant(&[], "");
    let target = insert(&pool, "alice", "Context", &target_text, hours(0)).await;

    // Seven near ones (one word changed), three far ones (three changed), one unrelated; and
    // another owner's exact copy, which must never be linked.
    let mut near = Vec::new();
    let mut far = Vec::new();
    for i in 0..7 {
        near.push(insert(&pool, "alice", "Context", &variant(&[i], "n"), hours(100)).await);
    }
    for i in 0..3 {
        far.push(
            insert(
                &pool,
                "alice",
                "Context",
                &variant(&[i, i + 4, i + 8], "f"),
                hours(100),
            )
            .await,
        );
    }
    let unrelated = insert(
        &pool,
        "alice",
        "Context",
        "grandma's lasagna recipe with fresh basil",
        hours(100),
    )
    .await;
    let other_owner = insert(&pool, "bob", "Context", &target_text, hours(100)).await;

    // Their embeddings, written straight into the index.
    let all: Vec<Uuid> = near
        .iter()
        .chain(&far)
        .chain([&unrelated, &other_owner])
        .copied()
        .collect();
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, content, content_hash FROM memories WHERE id = ANY($1)")
            .bind(&all)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut similarity = HashMap::new();
    let target_vector = embedder.embed_one(&target_text);
    let records: Vec<EmbeddingRecord> = rows
        .iter()
        .map(|(id, content, hash)| {
            let vector = embedder.embed_one(content);
            similarity.insert(*id, cosine(&target_vector, &vector));
            EmbeddingRecord {
                memory_id: *id,
                model: "hash-v1".into(),
                content_hash: hash.clone(),
                vector,
            }
        })
        .collect();
    index.upsert(&records).await.unwrap();
    for id in &near {
        assert!(similarity[id] >= 0.8, "near: {}", similarity[id]);
    }
    for id in &far {
        assert!(similarity[id] < 0.8, "far: {}", similarity[id]);
    }
    assert!(similarity[&other_owner] > 0.99);

    let report = enrich_hash(&pool, target).await;
    assert_eq!(report.similar_to, 5, "capped at top_k");
    let out = edges_from(&pool, target, SIMILAR_TO).await;
    assert_eq!(out.len(), 5);
    // The weight is the cosine, as computed here or by pgvector (which rounds differently in
    // the last bits, so near-ties may come in either order).
    let mut ranked: Vec<(Uuid, f32)> = near.iter().map(|id| (*id, similarity[id])).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let fifth = ranked[4].1;
    for (dst, weight) in &out {
        assert!(
            (weight - similarity[dst]).abs() < 1e-5,
            "weight = cosine: {out:?}"
        );
        assert!(
            similarity[dst] > fifth - 1e-5,
            "one of the five most similar: {out:?} {ranked:?}"
        );
    }
    assert!(
        out.windows(2).all(|w| w[0].1 >= w[1].1 - 1e-5),
        "most similar first: {out:?}"
    );
    for (dst, weight) in &out {
        let back = edges_from(&pool, *dst, SIMILAR_TO).await;
        assert_eq!(back, vec![(target, *weight)], "bidirectional, same weight");
    }
    assert!(
        edges_from(&pool, other_owner, SIMILAR_TO).await.is_empty(),
        "never across owners"
    );

    // A lower threshold reaches the far ones, still within the owner and the cap.
    let settings = EnrichmentSettings {
        similarity_threshold: 0.5,
        top_k: 20,
        ..Default::default()
    };
    enrich(
        &pool,
        target,
        &embedder,
        &RuleExtractor::default(),
        &settings,
    )
    .await
    .unwrap();
    let out: Vec<Uuid> = edges_from(&pool, target, SIMILAR_TO)
        .await
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(out.len(), 10, "{out:?}");
    assert!(!out.contains(&unrelated) && !out.contains(&other_owner));
}

#[tokio::test]
async fn exemplifies_only_once_three_others_share_the_type() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d1 = insert(
        &pool,
        "alice",
        "Decision",
        "Decided to deploy the queue on postgres",
        hours(5),
    )
    .await;
    assert_eq!(enrich_hash(&pool, d1).await.pattern, None);
    let d2 = insert(
        &pool,
        "bob",
        "Decision",
        "Decided to keep the deploy scripts in bash",
        hours(4),
    )
    .await;
    let d3 = insert(
        &pool,
        "carol",
        "Decision",
        "Decided the queue retries with backoff",
        hours(3),
    )
    .await;
    insert(&pool, "alice", "Preference", "Prefers tabs", hours(3)).await;
    assert_eq!(
        enrich_hash(&pool, d3).await.pattern,
        None,
        "two others are not enough"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM patterns").await, 0);

    let d4 = insert(
        &pool,
        "dave",
        "Decision",
        "Decided the deploy happens on fridays, queue drained",
        hours(2),
    )
    .await;
    let report = enrich_hash(&pool, d4).await;
    let pattern = pattern_id("Decision");
    assert_eq!(report.pattern, Some(pattern));
    let (memory_type, terms, confidence, observations): (String, Vec<String>, f32, i32) =
        sqlx::query_as(
            "SELECT memory_type, terms, confidence, observations FROM patterns WHERE id = $1",
        )
        .bind(pattern)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(memory_type, "Decision");
    assert_eq!((confidence, observations), (0.35, 1));
    assert_eq!(terms, vec!["decided", "deploy", "queue", "backoff", "bash"]);
    assert_eq!(
        edges_from(&pool, d4, EXEMPLIFIES).await,
        vec![(pattern, 1.0)]
    );

    // Re-enriching the same memory observes nothing new.
    enrich_hash(&pool, d4).await;
    let observations: i32 = sqlx::query_scalar("SELECT observations FROM patterns WHERE id = $1")
        .bind(pattern)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(observations, 1);

    // Each other member, enriched now that the type has enough memories, counts once.
    for id in [d1, d2, d3, d1, d2] {
        assert_eq!(enrich_hash(&pool, id).await.pattern, Some(pattern));
    }
    let (confidence, observations): (f32, i32) =
        sqlx::query_as("SELECT confidence, observations FROM patterns WHERE id = $1")
            .bind(pattern)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(observations, 4);
    assert!((confidence - 0.50).abs() < 1e-6, "{confidence}");
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM memory_edges WHERE kind = 'EXEMPLIFIES' AND dst_id = '{pattern}'")).await,
        4
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM patterns").await,
        1,
        "no Preference pattern"
    );
}
