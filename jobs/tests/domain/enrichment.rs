//! The enrichment pipeline as a whole: idempotent, skipping what is gone, many owners at once,
//! and a content change during a run.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use memwarden_jobs::enrichment::SIMILAR_TO;
use memwarden_jobs::{
    enrich, memories_needing_enrichment, Enricher, EnrichmentSettings, EnrichmentStatus, Extractor,
    HashEmbedder, RuleExtractor,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{count, TestDb};
use crate::support::*;

#[tokio::test]
async fn enriching_a_memory_twice_leaves_the_same_rows() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut ids = Vec::new();
    for (i, (owner, memory_type, content)) in [
        (
            "alice",
            "Decision",
            "Ada Lovelace chose Postgres for the queue, see https://example.com/adr/1 #infra",
        ),
        (
            "alice",
            "Decision",
            "Ada Lovelace chose Postgres for the queue again on 2024-05-01 #infra",
        ),
        (
            "alice",
            "Insight",
            "Grace Hopper at Acme Labs says the queue needs backoff; mail grace@example.com",
        ),
        (
            "alice",
            "Decision",
            "Chose Rust and Tokio for the worker, ping @ops",
        ),
        (
            "alice",
            "Decision",
            "Chose Rust and Tokio for the worker, ping @ops today",
        ),
        (
            "bob",
            "Decision",
            "Chose Rust and Tokio for the worker, ping @ops",
        ),
        (
            "alice",
            "Insight",
            "Kubernetes drains pods with SIGTERM before SIGKILL",
        ),
    ]
    .iter()
    .enumerate()
    {
        ids.push(insert(&pool, owner, memory_type, content, hours(10 - i as u64)).await);
    }
    sqlx::query("UPDATE memories SET tags = '{keep-me,entity:tool:stale}' WHERE id = $1")
        .bind(ids[0])
        .execute(&pool)
        .await
        .unwrap();

    for &id in &ids {
        let first = enrich_hash(&pool, id).await;
        assert_eq!(first.status, EnrichmentStatus::Enriched);
        assert!(first.embedded);
        let after_first = snapshot(&pool).await;
        let second = enrich_hash(&pool, id).await;
        assert!(!second.embedded, "the stored embedding is fresh");
        assert_eq!(
            (
                second.entities,
                second.preceded_by,
                second.similar_to,
                second.pattern
            ),
            (
                first.entities,
                first.preceded_by,
                first.similar_to,
                first.pattern
            )
        );
        assert_eq!(
            snapshot(&pool).await,
            after_first,
            "second enrichment of {id} changed rows"
        );
    }

    // Entities and tags of the first memory: other tags kept, entity tags replaced.
    let tags: Vec<String> = sqlx::query_scalar("SELECT tags FROM memories WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        tags,
        [
            "keep-me",
            "entity:people:ada-lovelace",
            "entity:tools:postgres",
            "entity:urls:https-example-com-adr-1",
            "entity:hashtags:infra",
        ]
    );
    let entities: i64 = count(
        &pool,
        &format!(
            "SELECT count(*) FROM memory_entities WHERE memory_id = '{}'",
            ids[0]
        ),
    )
    .await;
    assert_eq!(entities, 4);

    // A content change: a new embedding, new entities, the old similarity edges gone.
    let before: Vec<(Uuid, f32)> = edges_from(&pool, ids[3], SIMILAR_TO).await;
    assert!(!before.is_empty());
    sqlx::query("UPDATE memories SET content = 'Lunch at noon with Alan Turing' WHERE id = $1")
        .bind(ids[3])
        .execute(&pool)
        .await
        .unwrap();
    let report = enrich_hash(&pool, ids[3]).await;
    assert!(report.embedded);
    assert_eq!(report.similar_to, 0);
    assert!(edges_from(&pool, ids[3], SIMILAR_TO).await.is_empty());
    for (n, _) in before {
        assert!(!edges_from(&pool, n, SIMILAR_TO)
            .await
            .iter()
            .any(|(d, _)| *d == ids[3]));
    }
    let tags: Vec<String> = sqlx::query_scalar("SELECT tags FROM memories WHERE id = $1")
        .bind(ids[3])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tags, vec!["entity:people:alan-turing"]);
}

#[tokio::test]
async fn a_deleted_or_missing_memory_is_skipped() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let id = insert(
        &pool,
        "alice",
        "Context",
        "Ada Lovelace and Postgres",
        hours(0),
    )
    .await;
    sqlx::query("UPDATE memories SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let before = snapshot(&pool).await;
    let report = enrich_hash(&pool, id).await;
    assert_eq!(report.status, EnrichmentStatus::Skipped);
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["status"], "skipped");
    assert_eq!(v["reason"], "deleted");
    assert_eq!(snapshot(&pool).await, before, "nothing written");

    let missing = enrich_hash(&pool, Uuid::new_v4()).await;
    assert_eq!(missing.status, EnrichmentStatus::Skipped);
    assert_eq!(serde_json::to_value(&missing).unwrap()["reason"], "missing");
}

#[tokio::test]
async fn concurrent_enrichment_of_many_owners() {
    let db = TestDb::migrated();
    let pool = crate::common::pg::pool_of_size(&db.url, 8).await;
    // 600 memories over 12 owners, four types, many near-duplicates, in one plain INSERT.
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at) \
         SELECT 'owner-' || (g % 12), (ARRAY['Decision','Preference','Insight','Context'])[1 + g % 4], \
                'Ada Lovelace deployed service ' || (g % 7) || ' with Postgres and Kubernetes on cluster ' || (g % 3) || ' #ops', \
                now() - (g || ' minutes')::interval \
         FROM generate_series(1, 600) g",
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
        600
    );

    let ids = memories_needing_enrichment(&pool, 1, 10_000).await.unwrap();
    assert_eq!(ids.len(), 600);
    let queue = Arc::new(Mutex::new(ids));
    let enricher = Enricher::new(
        pool.clone(),
        Arc::new(HashEmbedder::default()),
        Arc::new(RuleExtractor::default()),
        EnrichmentSettings::default(),
    );
    let t0 = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (queue, enricher) = (queue.clone(), enricher.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let report = enricher
                        .enrich(id)
                        .await
                        .unwrap_or_else(|e| panic!("enriching {id}: {e}"));
                    assert_eq!(report.status, EnrichmentStatus::Enriched);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "enriched 600 memories in {elapsed:?} ({:.0}/s, debug build)",
        600.0 / elapsed.as_secs_f64()
    );

    assert!(memories_needing_enrichment(&pool, 1, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        600
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM patterns").await, 4);
    assert_eq!(
        count(&pool, "SELECT sum(observations) FROM patterns").await,
        count(
            &pool,
            "SELECT count(*) FROM memory_edges WHERE kind = 'EXEMPLIFIES'"
        )
        .await,
        "every observation is one memory"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_edges WHERE kind = 'EXEMPLIFIES'"
        )
        .await,
        600
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_edges e JOIN memories s ON s.id = e.src_id \
                      JOIN memories d ON d.id = e.dst_id WHERE e.kind = 'SIMILAR_TO' AND s.owner_id <> d.owner_id").await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_edges e WHERE kind = 'SIMILAR_TO' AND NOT EXISTS \
                      (SELECT 1 FROM memory_edges r WHERE r.src_id = e.dst_id AND r.dst_id = e.src_id AND r.kind = 'SIMILAR_TO')").await,
        0,
        "every SIMILAR_TO edge has its reverse"
    );
    assert_eq!(count(&pool, "SELECT max(n) FROM (SELECT count(*) AS n FROM memory_edges WHERE kind = 'PRECEDED_BY' GROUP BY src_id) x").await, 5);
}

/// An extractor that edits the memory the first time it runs, as a writer racing the job.
struct EditingExtractor {
    pool: PgPool,
    memory_id: Uuid,
    edited: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Extractor for EditingExtractor {
    async fn extract(
        &self,
        text: &str,
    ) -> Result<Vec<memwarden_jobs::Entity>, memwarden_jobs::ExtractError> {
        if !self.edited.swap(true, std::sync::atomic::Ordering::SeqCst) {
            sqlx::query("UPDATE memories SET content = 'Grace Hopper rewrote this' WHERE id = $1")
                .bind(self.memory_id)
                .execute(&self.pool)
                .await
                .unwrap();
        }
        RuleExtractor::default().extract(text).await
    }
}

#[tokio::test]
async fn a_content_change_during_enrichment_is_not_lost() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let id = insert(
        &pool,
        "alice",
        "Context",
        "Ada Lovelace wrote this",
        hours(0),
    )
    .await;
    let extractor = EditingExtractor {
        pool: pool.clone(),
        memory_id: id,
        edited: false.into(),
    };
    let report = enrich(
        &pool,
        id,
        &HashEmbedder::default(),
        &extractor,
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, EnrichmentStatus::Enriched);
    let (tags, enriched, fresh): (Vec<String>, bool, bool) = sqlx::query_as(
        "SELECT m.tags, m.enriched_at IS NOT NULL, e.content_hash = m.content_hash \
         FROM memories m JOIN memory_embeddings e ON e.memory_id = m.id WHERE m.id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        tags,
        vec!["entity:people:grace-hopper"],
        "the new content's entities"
    );
    assert!(
        enriched && fresh,
        "enriched, with the new content's embedding"
    );
}
