//! The OpenAI-compatible providers against a local server that speaks the embeddings and
//! chat-completions APIs, errors and headers included (`common::fake_openai`).

use std::time::{Duration, Instant};

use memwarden_jobs::{
    enrich, EmbedError, Embedder, EnrichError, EnrichmentSettings, Extractor, HashEmbedder,
    LlmExtractionConfig, LlmExtractor, OpenAiEmbedder, RuleExtractor,
};
use serde_json::json;

use crate::common::fake_openai::{fake_openai, openai, quota, rate_limited, server_error, Reply};
use crate::common::{count, TestDb};
use crate::support::*;

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
            "entity:concepts:feature-hashing",
            "entity:people:ada-lovelace",
            "entity:tools:postgres"
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
