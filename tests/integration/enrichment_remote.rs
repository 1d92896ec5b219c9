//! Enrichment with a remote embedder: the embeddings of concurrent enrichments reach the
//! provider in batched requests, every memory still gets its own vector, and with
//! `embedding.coalesce = false` it is one request per memory again.

use std::time::Duration;

use crate::harness::fake_openai::{rate_limited, slow_fake_openai, Reply};
use crate::harness::{count, wait_enriched, wait_job, Daemon, TestDb};

const MEMORIES: i64 = 48;

/// Enriches `MEMORIES` memories through a provider of 100 ms per request; the requests it saw.
async fn enrich_through_provider(coalesce: bool) -> usize {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let (fake, base) = slow_fake_openai(
        vec![],
        Reply::Vectors { dims: 16 },
        Duration::from_millis(100),
    )
    .await;
    let d = Daemon::builder(&db.url)
        .config(&format!(
            "[embedding]\nprovider = \"openai\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\n\
             dimensions = 16\ncoalesce = {coalesce}\n[queues.default]\nconcurrency = 16\n"
        ))
        .ready()
        .await;
    sqlx::query(
        "INSERT INTO memories (owner_id, content) \
         SELECT 'owner-' || (g % 4), 'memory ' || g || ' about rust and postgres' FROM generate_series(1, $1) g",
    )
    .bind(MEMORIES)
    .execute(&pool)
    .await
    .unwrap();
    wait_enriched(&pool, Duration::from_secs(60)).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings WHERE dims = 16"
        )
        .await,
        MEMORIES,
        "every memory has its vector"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM jobs WHERE kind = 'enrichment' AND status = 'failed'"
        )
        .await,
        0
    );
    let requests = fake.requests();
    let inputs: usize = requests
        .iter()
        .map(|r| r["input"].as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!(inputs as i64, MEMORIES, "each memory embedded once");
    d.assert_no_panic("remote enrichment");
    requests.len()
}

#[tokio::test]
async fn concurrent_enrichments_share_provider_requests() {
    let requests = enrich_through_provider(true).await;
    // 16 workers wait on the provider together, so requests carry several memories each.
    assert!(
        requests <= (MEMORIES as usize) / 3,
        "{requests} requests for {MEMORIES} memories"
    );
}

#[tokio::test]
async fn without_coalescing_it_is_one_request_per_memory() {
    assert_eq!(enrich_through_provider(false).await, MEMORIES as usize);
}

/// A provider's 429 holds the job back without using an attempt: the job waits out the
/// `Retry-After` and runs again as the same attempt, so a long throttle cannot fail it.
#[tokio::test]
async fn a_rate_limited_enrichment_waits_without_using_an_attempt() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let (fake, base) = slow_fake_openai(
        vec![rate_limited("1"), rate_limited("1")],
        Reply::Vectors { dims: 16 },
        Duration::ZERO,
    )
    .await;
    // No retries inside the attempt: each 429 goes back to the queue.
    let d = Daemon::builder(&db.url)
        .config(&format!(
            "[embedding]\nprovider = \"openai\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\n\
             dimensions = 16\nmax_retries = 0\n"
        ))
        .ready()
        .await;
    sqlx::query("INSERT INTO memories (owner_id, content) VALUES ('owner', 'a memory about rust')")
        .execute(&pool)
        .await
        .unwrap();
    wait_enriched(&pool, Duration::from_secs(30)).await;
    assert_eq!(fake.requests().len(), 3, "two 429s, then the vectors");
    // The memory is written before the job's completion, which the completer batches.
    let id: String = sqlx::query_scalar("SELECT id::text FROM jobs WHERE kind = 'enrichment'")
        .fetch_one(&pool)
        .await
        .unwrap();
    wait_job(&pool, &id, "succeeded").await;
    let (status, attempt, last_error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT status, attempt, last_error FROM jobs WHERE kind = 'enrichment'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempt), ("succeeded", 1));
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("rate limited")),
        "the wait's reason is kept: {last_error:?}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM job_attempts").await,
        1,
        "only the attempt that ran is recorded"
    );
    d.assert_no_panic("rate-limited enrichment");
}
