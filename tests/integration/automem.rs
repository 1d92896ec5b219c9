//! Enrichment through the runtime: plain SQL inserts are enriched with no call to memwarden,
//! AutoMem's status drains, and AutoMem's own curl for reprocess works.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::harness::{count, eventually, wait_enriched, Daemon, TestDb, API};

async fn insert_memories(pool: &sqlx::PgPool, n: i64, owners: i64) {
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at) \
         SELECT 'owner-' || (g % $2), (ARRAY['Decision','Preference','Insight','Context'])[1 + g % 4], \
                'memory ' || g || ' about postgres queues and rust services, note ' || (g % 7) || ' by Alice Walker', \
                now() - (g || ' seconds')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .bind(owners)
    .execute(pool)
    .await
    .unwrap();
}

async fn enrichment_status(d: &Daemon) -> Value {
    reqwest::get(d.url("/enrichment/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_inserts_are_enriched_and_the_status_drains() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .config("[queues.default]\nconcurrency = 8")
        .ready()
        .await;
    insert_memories(&pool, 400, 20).await;
    wait_enriched(&pool, Duration::from_secs(60)).await;
    eventually(
        Duration::from_secs(10),
        "status drains to queue_depth 0",
        || async { enrichment_status(&d).await["queue_depth"] == 0 },
    )
    .await;
    let s = enrichment_status(&d).await;
    assert_eq!(s["status"], "running");
    assert_eq!(s["processed"], 400, "{s}");
    assert_eq!(s["failed"], 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        400
    );
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM memory_edges WHERE kind = 'PRECEDED_BY'"
        )
        .await
            > 0
    );
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("memwarden_enrichment_processed_total 400"),
        "metrics count enrichments"
    );
}

/// AutoMem's documented curl: `Authorization: Bearer $AUTOMEM_API_TOKEN` plus
/// `X-Admin-Token: $ADMIN_API_TOKEN`, body `{"ids": [...]}`.
#[tokio::test]
async fn automem_reprocess_curl_works() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    insert_memories(&pool, 3, 1).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM memories ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    wait_enriched(&pool, Duration::from_secs(20)).await;
    let (code, v) =
        crate::harness::admin_curl(&d.url("/enrichment/reprocess"), &json!({"ids": ids}));
    assert_eq!(code, "202", "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["count"], 3);
    // Forced: three more jobs even though the memories were just enriched.
    eventually(Duration::from_secs(20), "reprocessed", || async {
        count(&pool, "SELECT count(*) FROM memwarden.jobs WHERE kind = 'enrichment' AND status = 'succeeded'").await == 6
    })
    .await;

    for body in [
        json!({"ids": []}),
        json!({}),
        json!({"ids": ["not-a-uuid"]}),
    ] {
        let r = d.post("/enrichment/reprocess", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = reqwest::Client::new()
        .post(d.url("/enrichment/reprocess"))
        .bearer_auth(API)
        .json(&json!({"ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is required too");
}

/// Killed with SIGKILL halfway and restarted: every memory still ends enriched, with no
/// duplicate entities or edges.
#[tokio::test]
async fn sigkill_halfway_still_enriches_every_memory_once_in_effect() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let fast = "[queue]\nlease = 2\nheartbeat = 0.5\nreaper_interval = 0.5\n[queues.default]\nconcurrency = 4";
    let mut first = Daemon::builder(&db.url).config(fast).ready().await;
    insert_memories(&pool, 300, 10).await;
    eventually(Duration::from_secs(30), "about half enriched", || async {
        count(
            &pool,
            "SELECT count(*) FROM memories WHERE enriched_at IS NOT NULL",
        )
        .await
            >= 100
    })
    .await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5)).await.unwrap();
    let _second = Daemon::builder(&db.url).config(fast).ready().await;
    wait_enriched(&pool, Duration::from_secs(90)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        300
    );
    let dup_entities = count(
        &pool,
        "SELECT count(*) FROM (SELECT memory_id, category, slug FROM memory_entities GROUP BY 1, 2, 3 HAVING count(*) > 1) x",
    )
    .await;
    let dup_edges = count(&pool, "SELECT count(*) FROM (SELECT src_id, dst_id, kind FROM memory_edges GROUP BY 1, 2, 3 HAVING count(*) > 1) x").await;
    assert_eq!((dup_entities, dup_edges), (0, 0));
    let dup_tags = count(&pool, "SELECT count(*) FROM memories WHERE cardinality(tags) <> (SELECT count(DISTINCT t) FROM unnest(tags) t)").await;
    assert_eq!(dup_tags, 0, "no tag added twice");
}

/// Provider settings reload live: after a SIGHUP that changes `[embedding]`, the next
/// enrichment uses the new embedder.
#[tokio::test]
async fn provider_settings_reload_live() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    insert_memories(&pool, 1, 1).await;
    eventually(
        Duration::from_secs(20),
        "enriched with the default 384 dims",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM memory_embeddings WHERE dims = 384",
            )
            .await
                == 1
        },
    )
    .await;
    let config = d.log.parent().unwrap().join("memwarden.toml");
    std::fs::write(
        &config,
        "[embedding]\nprovider = \"hash\"\ndimensions = 64\n",
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    eventually(Duration::from_secs(5), "reloaded", || async {
        d.logs().contains("configuration reloaded")
    })
    .await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM memories")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        d.post("/enrichment/reprocess", json!({"ids": [id]}))
            .await
            .status(),
        202
    );
    eventually(
        Duration::from_secs(20),
        "re-embedded with 64 dims",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM memory_embeddings WHERE dims = 64",
            )
            .await
                == 1
        },
    )
    .await;
}

/// The catch-up job enqueues enrichment for exactly the memories that need it: a memory written
/// while the trigger was off, and one enriched by an older pipeline version. Not one that is
/// enriched and current, nor a soft-deleted one.
#[tokio::test]
async fn catch_up_job_enqueues_only_memories_that_need_enrichment() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    sqlx::query("ALTER TABLE memories DISABLE TRIGGER memories_enqueue_enrichment_insert")
        .execute(&pool)
        .await
        .unwrap();
    insert_memories(&pool, 4, 1).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM memories ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let (never, older, current, deleted) = (ids[0], ids[1], ids[2], ids[3]);
    for (id, set) in [
        (older, "enriched_at = now(), enrichment_version = 0"),
        (current, "enriched_at = now(), enrichment_version = 2"),
        (deleted, "deleted_at = now()"),
    ] {
        sqlx::query(&format!("UPDATE memories SET {set} WHERE id = $1"))
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }

    let _d = Daemon::start(&db.url).await;
    let job: String =
        sqlx::query_scalar("SELECT memwarden.enqueue('enrichment-catchup', '{}')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    crate::harness::wait_job(&pool, &job, "succeeded").await;
    let result: Value = sqlx::query_scalar("SELECT result FROM memwarden.jobs WHERE id = $1::uuid")
        .bind(&job)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(result, json!({"found": 2, "queued": 2}));
    let mut enqueued: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT (args->>'memory_id')::uuid FROM memwarden.jobs WHERE kind = 'enrichment'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    enqueued.sort();
    let mut expected = vec![never, older];
    expected.sort();
    assert_eq!(enqueued, expected);
}
