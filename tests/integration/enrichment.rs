//! The memory store and the enrichment pipeline (memwarden-jobs), against a real PostgreSQL;
//! the OpenAI-compatible providers against a small local axum server that speaks the
//! embeddings and chat-completions APIs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memwarden_jobs::embedding::cosine;
use memwarden_jobs::enrichment::{pattern_id, EXEMPLIFIES, PRECEDED_BY, SIMILAR_TO};
use memwarden_jobs::vector::{EmbeddingRecord, NeighbourQuery, DEFAULT_CACHE_BYTES};
use memwarden_jobs::{
    enrich, memories_needing_enrichment, EmbedError, Embedder, EnrichError, Enricher,
    EnrichmentSettings, EnrichmentStatus, Extractor, HashEmbedder, LlmExtractionConfig,
    LlmExtractor, OpenAiEmbedder, PgVectorIndex, RuleExtractor, VectorIndex,
};
use serde_json::{json, Value};
use sha2::Digest;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fake_openai::{fake_openai, openai, quota, rate_limited, server_error, Reply};
use crate::harness::{count, TestDb};

// ---------------------------------------------------------------------------------------
// The memory store.

async fn insert(
    pool: &PgPool,
    owner: &str,
    memory_type: &str,
    content: &str,
    age: Duration,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO memories (owner_id, memory_type, content, created_at, updated_at) \
         VALUES ($1, $2, $3, now() - $4 * interval '1 second', now() - $4 * interval '1 second') \
         RETURNING id",
    )
    .bind(owner)
    .bind(memory_type)
    .bind(content)
    .bind(age.as_secs_f64())
    .fetch_one(pool)
    .await
    .expect("inserting a memory")
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Every row of the memory store, as text, in a stable order.
async fn snapshot(pool: &PgPool) -> String {
    let mut out = String::new();
    for table in [
        "memories",
        "memory_embeddings",
        "memory_entities",
        "memory_edges",
        "patterns",
    ] {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '') FROM {table} x"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push_str(&format!("== {table}\n{rows}\n"));
    }
    out
}

async fn edges_from(pool: &PgPool, src: Uuid, kind: &str) -> Vec<(Uuid, f32)> {
    sqlx::query_as(
        "SELECT dst_id, weight FROM memory_edges WHERE src_id = $1 AND kind = $2 ORDER BY weight DESC, dst_id",
    )
    .bind(src)
    .bind(kind)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn enrich_hash(pool: &PgPool, id: Uuid) -> memwarden_jobs::EnrichmentReport {
    enrich(
        pool,
        id,
        &HashEmbedder::default(),
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .expect("enrichment")
}

// ---------------------------------------------------------------------------------------
// The trigger.

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

// ---------------------------------------------------------------------------------------
// The OpenAI-compatible embedder.

#[tokio::test]
async fn openai_request_shape_batching_and_dimensions() {
    let (fake, base) = fake_openai(vec![], Reply::Vectors { dims: 48 }).await;
    let texts: Vec<String> = (0..7)
        .map(|i| format!("memory number {i} about postgres"))
        .collect();

    // By input count, with `dimensions`.
    let mut config = openai(&base, "text-embedding-3-small", Some(64));
    config.max_batch_inputs = 3;
    let e = OpenAiEmbedder::new(config).unwrap();
    assert_eq!(
        (e.provider(), e.model(), e.dims()),
        ("openai", "text-embedding-3-small", 64)
    );
    let vectors = e.embed(&texts).await.unwrap();
    let reference = HashEmbedder::new(64);
    assert_eq!(vectors.len(), 7);
    for (v, t) in vectors.iter().zip(&texts) {
        assert_eq!(
            v,
            &reference.embed_one(t),
            "vectors come back in input order"
        );
    }
    let requests = fake.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(requests[0]["model"], "text-embedding-3-small");
    assert_eq!(requests[0]["dimensions"], 64);
    assert_eq!(requests[0]["encoding_format"], "float");
    assert_eq!(requests[1]["input"][0], texts[3]);
    {
        let seen = fake.embeddings.lock().unwrap();
        assert_eq!(seen[0].headers["authorization"], "Bearer sk-test");
        assert!(seen[0].headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
    }

    // By token budget (chars / 4): 40-character texts are 10 tokens; a budget of 25 fits two.
    fake.embeddings.lock().unwrap().clear();
    let mut config = openai(&base, "text-embedding-3-small", Some(16));
    config.max_batch_tokens = 25;
    let e = OpenAiEmbedder::new(config).unwrap();
    let long: Vec<String> = (0..5).map(|i| format!("{i:0>40}")).collect();
    assert_eq!(e.embed(&long).await.unwrap().len(), 5);
    let sizes: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);

    // Without `dimensions`, none is sent, and a model of unknown size learns it.
    fake.embeddings.lock().unwrap().clear();
    let mut config = openai(&base, "nomic-embed-text", None);
    config.api_key = None;
    let e = OpenAiEmbedder::new(config).unwrap();
    assert_eq!(e.dims(), 0);
    assert_eq!(e.embed(&texts[..2]).await.unwrap()[0].len(), 48);
    assert_eq!(e.dims(), 48);
    {
        let seen = fake.embeddings.lock().unwrap();
        assert!(seen[0].body.get("dimensions").is_none(), "{}", seen[0].body);
        assert!(seen[0].headers.get("authorization").is_none());
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 1, "no request for no input");
}

#[tokio::test]
async fn openai_429_with_retry_after_waits_then_succeeds() {
    let (fake, base) = fake_openai(vec![rate_limited("1")], Reply::Vectors { dims: 8 }).await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    let t0 = Instant::now();
    let v = e.embed(&["hello".to_string()]).await.unwrap();
    assert_eq!(v.len(), 1);
    let seen = fake.embeddings.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(
        waited < Duration::from_secs(3),
        "waited {waited:?}: Retry-After, not backoff"
    );
    assert!(t0.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn openai_429_without_retry_after_backs_off_and_long_waits_go_to_the_queue() {
    // No Retry-After: exponential backoff, then the rate limit is reported.
    let (fake, base) = fake_openai(vec![], rate_limited("")).await;
    let mut config = openai(&base, "m", Some(8));
    config.max_retries = 2;
    let e = OpenAiEmbedder::new(config).unwrap();
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::RateLimited { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(fake.requests().len(), 3, "one try and two retries");

    // A Retry-After longer than the longest wait is handed back for the queue to honour.
    let (fake, base) = fake_openai(vec![], rate_limited("120")).await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn openai_5xx_is_retried_then_reported_as_transient() {
    let (fake, base) = fake_openai(
        vec![server_error(503), server_error(500)],
        Reply::Vectors { dims: 8 },
    )
    .await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    assert_eq!(e.embed(&["hello".to_string()]).await.unwrap().len(), 1);
    assert_eq!(fake.requests().len(), 3);

    let (fake, base) = fake_openai(vec![], server_error(502)).await;
    let mut config = openai(&base, "m", Some(8));
    config.max_retries = 1;
    let e = OpenAiEmbedder::new(config).unwrap();
    let err = e.embed(&["hello".to_string()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::Transient(_)), "{err}");
    assert_eq!(fake.requests().len(), 2);

    // Nothing listening: a connection failure is transient too.
    let mut config = openai("http://127.0.0.1:9/v1", "m", Some(8));
    config.max_retries = 0;
    let err = OpenAiEmbedder::new(config)
        .unwrap()
        .embed(&["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::Transient(_)), "{err}");

    // Other 4xx: refused at once.
    let (fake, base) = fake_openai(
        vec![],
        Reply::Fail {
            status: 400,
            headers: vec![],
            body: json!({"error": {"message": "model not found", "type": "invalid_request_error"}}),
        },
    )
    .await;
    let err = OpenAiEmbedder::new(openai(&base, "m", Some(8)))
        .unwrap()
        .embed(&["x".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EmbedError::Permanent(ref m) if m.contains("model not found")),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn insufficient_quota_fails_at_once_with_the_error() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let (fake, base) = fake_openai(vec![], quota()).await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    let id = insert(&pool, "alice", "Context", "some memory", hours(0)).await;
    let t0 = Instant::now();
    let err = enrich(
        &pool,
        id,
        &e,
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "no retries: {:?}",
        t0.elapsed()
    );
    assert_eq!(fake.requests().len(), 1);
    assert!(
        matches!(err, EnrichError::Embed(EmbedError::QuotaExceeded(_))),
        "{err}"
    );
    assert!(!err.is_retryable(), "the job fails instead of looping");
    let message = err.to_string();
    assert!(message.contains("insufficient_quota"), "{message}");
    assert!(message.contains("exceeded your current quota"), "{message}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        0
    );
}

#[tokio::test]
async fn wrong_count_or_dims_stores_nothing() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let id = insert(
        &pool,
        "alice",
        "Context",
        "Ada Lovelace wrote about engines",
        hours(0),
    )
    .await;
    let before = snapshot(&pool).await;

    // Too few vectors.
    let (_fake, base) = fake_openai(vec![], Reply::Short { dims: 8 }).await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    let err = enrich(
        &pool,
        id,
        &e,
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnrichError::Embed(EmbedError::BadResponse(_))),
        "{err}"
    );
    assert_eq!(snapshot(&pool).await, before);

    // Vectors of the wrong size: asked for 8, the server ignores `dimensions` and sends 32.
    let (fake, base) = fake_openai(vec![], Reply::Vectors { dims: 32 }).await;
    let e = OpenAiEmbedder::new(openai(&base, "text-embedding-3-small", None)).unwrap();
    let err = enrich(
        &pool,
        id,
        &e,
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnrichError::Embed(EmbedError::BadResponse(ref m)) if m.contains("1536")),
        "{err}"
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "a bad answer is not retried in-process"
    );
    assert_eq!(snapshot(&pool).await, before);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memories WHERE enriched_at IS NOT NULL"
        )
        .await,
        0
    );

    // The same memory with a working provider: enriched, with the provider's vector.
    let (_fake, base) = fake_openai(vec![], Reply::Vectors { dims: 8 }).await;
    let e = OpenAiEmbedder::new(openai(&base, "m", Some(8))).unwrap();
    let report = enrich(
        &pool,
        id,
        &e,
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap();
    assert!(report.embedded);
    let (model, dims): (String, i32) =
        sqlx::query_as("SELECT model, dims FROM memory_embeddings WHERE memory_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((model.as_str(), dims), ("m", 8));
}

#[tokio::test]
async fn llm_extractor_asks_for_a_json_schema_answer() {
    let (fake, base) = fake_openai(vec![], Reply::Vectors { dims: 8 }).await;
    let x = LlmExtractor::new(LlmExtractionConfig {
        base_url: base,
        api_key: Some("sk-test".into()),
        model: "gpt-test".into(),
        ..Default::default()
    })
    .unwrap();
    let entities = x
        .extract("Ada Lovelace stored it in Postgres")
        .await
        .unwrap();
    let tags: Vec<String> = entities.iter().map(|e| e.tag()).collect();
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "entity:concept:feature-hashing",
            "entity:person:ada-lovelace",
            "entity:tool:postgres"
        ]
    );
    {
        let chats = fake.chats.lock().unwrap();
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0]["model"], "gpt-test");
        assert_eq!(chats[0]["response_format"]["type"], "json_schema");
        assert_eq!(chats[0]["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            chats[0]["messages"][1]["content"],
            "Ada Lovelace stored it in Postgres"
        );
    }

    // As the pipeline's extractor: its entities are stored and tagged.
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let id = insert(
        &pool,
        "alice",
        "Context",
        "whatever the model says",
        hours(0),
    )
    .await;
    let report = enrich(
        &pool,
        id,
        &HashEmbedder::default(),
        &x,
        &EnrichmentSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.entities, 3);
    let stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT category, value, slug FROM memory_entities WHERE memory_id = $1 ORDER BY category",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored[0],
        (
            "concept".into(),
            "feature hashing".into(),
            "feature-hashing".into()
        )
    );
    assert_eq!(fake.chats.lock().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// The pipeline.

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

/// Twelve words of one topic with the words at `changed` replaced: one changed word keeps the
/// hash-embedding cosine to the original near 0.9; three push it under 0.8.
fn variant(changed: &[usize], tag: &str) -> String {
    let base = "kubernetes helm deploy pipeline staging cluster rollout canary traffic shifting metrics alerts";
    base.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if changed.contains(&i) {
                format!("{w}{tag}{i}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    let mut ranked: Vec<(Uuid, f32)> = near.iter().map(|id| (*id, similarity[id])).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(5);
    assert_eq!(out, ranked, "the five most similar, weight = cosine");
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
            "entity:person:ada-lovelace",
            "entity:tool:postgres",
            "entity:url:https-example-com-adr-1",
            "entity:hashtag:infra",
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
    assert_eq!(tags, vec!["entity:person:alan-turing"]);
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
async fn catch_up_finds_missing_and_stale_enrichments() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let a = insert(&pool, "alice", "Context", "first", hours(3)).await;
    let b = insert(&pool, "alice", "Context", "second", hours(2)).await;
    let c = insert(&pool, "alice", "Context", "third", hours(1)).await;
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(
        memories_needing_enrichment(&pool, 1, 100).await.unwrap(),
        all
    );
    assert_eq!(
        memories_needing_enrichment(&pool, 1, 2).await.unwrap(),
        all[..2]
    );

    for id in [a, b, c] {
        enrich_hash(&pool, id).await;
    }
    assert!(memories_needing_enrichment(&pool, 1, 100)
        .await
        .unwrap()
        .is_empty());
    // A newer pipeline version makes every memory stale.
    assert_eq!(
        memories_needing_enrichment(&pool, 2, 100).await.unwrap(),
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
        memories_needing_enrichment(&pool, 1, 100).await.unwrap(),
        stale
    );
}

#[tokio::test]
async fn concurrent_enrichment_of_many_owners() {
    let db = TestDb::migrated();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&db.url)
        .await
        .unwrap();
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

#[tokio::test]
async fn vector_index_round_trip() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let index = PgVectorIndex::new(pool.clone());
    let id = insert(&pool, "alice", "Context", "x", hours(0)).await;
    assert!(index.get(id).await.unwrap().is_none());
    let record = EmbeddingRecord {
        memory_id: id,
        model: "m".into(),
        content_hash: "h".into(),
        vector: vec![0.6, 0.8],
    };
    index.upsert(std::slice::from_ref(&record)).await.unwrap();
    let stored = index.get(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.model.as_str(), stored.dims, stored.vector.as_slice()),
        ("m", 2, &[0.6f32, 0.8][..])
    );
    assert!(stored.is_fresh("h", "m", 2));
    // Replaced whole, including a size change.
    index
        .upsert(&[EmbeddingRecord {
            vector: vec![1.0, 0.0, 0.0],
            content_hash: "h2".into(),
            ..record
        }])
        .await
        .unwrap();
    let stored = index.get(id).await.unwrap().unwrap();
    assert_eq!((stored.dims, stored.content_hash.as_str()), (3, "h2"));
    assert!(index.delete(id).await.unwrap());
    assert!(!index.delete(id).await.unwrap());
}

/// The spec's enrichment figure (10,000 memories over 100 owners, hash embedder), measured
/// in-process with 8 concurrent enrichments (`ENRICH_BENCH_WORKERS` to change). Ignored by
/// default: run it with
/// `cargo test --release --test integration enrichment_throughput -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn enrichment_throughput_10k_memories_100_owners() {
    let workers: u32 = std::env::var("ENRICH_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(8);
    let db = TestDb::migrated();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(workers)
        .connect(&db.url)
        .await
        .unwrap();
    // Plain SQL inserts, as the memory service writes them: 20 words each from a 300-word
    // vocabulary, so an owner's memories overlap a little, plus some near-duplicates.
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at) \
         SELECT 'owner-' || (g % 100), (ARRAY['Decision','Preference','Insight','Context','Pattern'])[1 + g % 5], \
                CASE WHEN g % 10 = 0 THEN 'Ada Lovelace moved the deploy pipeline to Kubernetes on ' || (g % 3) \
                     ELSE (SELECT string_agg('word' || (1 + (hashint4(g * 31 + i) & 255) % 300), ' ') \
                           FROM generate_series(1, 20) i) || ' with Postgres #ops' END, \
                now() - (g || ' seconds')::interval \
         FROM generate_series(1, 10000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let ids = memories_needing_enrichment(&pool, 1, 20_000).await.unwrap();
    assert_eq!(ids.len(), 10_000);
    let queue = Arc::new(Mutex::new(ids));
    let enricher = Enricher::new(
        pool.clone(),
        Arc::new(HashEmbedder::default()),
        Arc::new(RuleExtractor::default()),
        EnrichmentSettings::default(),
    );
    let t0 = Instant::now();
    let workers: Vec<_> = (0..workers)
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
        "enrichment: 10000 memories over 100 owners in {elapsed:.2?}: {:.0} memories/s",
        10_000.0 / elapsed.as_secs_f64()
    );
    assert!(memories_needing_enrichment(&pool, 1, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn cached_index_never_uses_a_rewritten_vector() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let cached = PgVectorIndex::with_cache(pool.clone(), DEFAULT_CACHE_BYTES);
    let other_replica = PgVectorIndex::new(pool.clone());
    let a = insert(&pool, "alice", "Context", "a", hours(2)).await;
    let b = insert(&pool, "alice", "Context", "b", hours(1)).await;
    let record = |id: Uuid, vector: Vec<f32>| EmbeddingRecord {
        memory_id: id,
        model: "m".into(),
        content_hash: "h".into(),
        vector,
    };
    let query = NeighbourQuery {
        owner_id: "alice",
        model: "m",
        vector: &[1.0, 0.0],
        exclude: None,
        threshold: 0.5,
        k: 5,
    };
    let ids = |hits: Vec<memwarden_jobs::vector::Neighbour>| -> Vec<Uuid> {
        hits.iter().map(|n| n.memory_id).collect()
    };
    cached.upsert(&[record(a, vec![1.0, 0.0])]).await.unwrap();
    other_replica
        .upsert(&[record(b, vec![1.0, 0.1])])
        .await
        .unwrap();
    assert_eq!(ids(cached.nearest(&query).await.unwrap()), vec![a, b]);

    // Another replica rewrites both; the cache must notice.
    other_replica
        .upsert(&[record(a, vec![0.0, 1.0]), record(b, vec![1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(ids(cached.nearest(&query).await.unwrap()), vec![b]);
    // A soft-deleted memory is not a neighbour, cached or not.
    sqlx::query("UPDATE memories SET deleted_at = now() WHERE id = $1")
        .bind(b)
        .execute(&pool)
        .await
        .unwrap();
    assert!(cached.nearest(&query).await.unwrap().is_empty());
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
        vec!["entity:person:grace-hopper"],
        "the new content's entities"
    );
    assert!(
        enriched && fresh,
        "enriched, with the new content's embedding"
    );
}
