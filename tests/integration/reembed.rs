//! reembed and sync through the real daemon: AutoMem's synchronous routes (with its curl), the
//! native work routes, the CLI, drift detection and repair, resuming after a drain, and the
//! provider edge (a fake OpenAI-compatible server: failures, a slow provider under a rate).
//!
//! Size: each route and failure mode is one end-to-end scenario over the same fixtures.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::harness::fake_openai::{fake_openai, server_error, slow_fake_openai, Reply};
use crate::harness::{
    admin_curl as curl, count, eventually, job_status, Daemon, TestDb, ADMIN, API,
};

/// `n` memories over 10 owners, with tags and metadata, inserted with plain SQL. Their
/// enrichment jobs are dropped, so that only the work under test writes embeddings.
async fn insert_memories(pool: &PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO memories (owner_id, content, tags, metadata) \
         SELECT 'owner-' || (g % 10), 'Memory ' || g || ' about postgres queues and rust', \
                ARRAY['t' || (g % 3)], jsonb_build_object('n', g) \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM memwarden.jobs WHERE kind = 'enrichment'")
        .execute(pool)
        .await
        .unwrap();
}

/// A daemon on `url` with `config`, and no background work but what the test asks for: the
/// enrichment catch-up and the hourly sync would write embeddings beside the work under test.
/// A daemon whose default schedules stay off whatever the suite's mode: the hourly sync would
/// repair the very drift these tests set up.
async fn daemon(url: &str, config: &str) -> Daemon {
    Daemon::builder(url)
        .config(config)
        .schedules_off()
        .ready()
        .await
}

/// The memories table as text: what reembed and sync must never change.
async fn memories_snapshot(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT COALESCE(string_agg(concat_ws('|', id, owner_id, memory_type, content, metadata, tags, \
             importance, content_hash, created_at, updated_at, deleted_at, enriched_at, enrichment_version), \
             E'\\n' ORDER BY id), '') FROM memories",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits for a job to reach a terminal status; returns its row as JSON.
async fn finished(d: &Daemon, id: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let job = d.get_json(&format!("/v1/jobs/{id}")).await;
        let status = job["status"].as_str().unwrap_or_default().to_string();
        if matches!(status.as_str(), "succeeded" | "failed" | "canceled") {
            return job;
        }
        assert!(start.elapsed() < limit, "job {id} still {status}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automem_reembed_embeds_what_is_missing_and_preserves_metadata() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 300).await;
    let before = memories_snapshot(&pool).await;
    let d = daemon(&db.url, "").await;

    // AutoMem's admin curl: Bearer plus X-Admin-Token, answered when the job ends.
    let (code, report) = curl(&d.url("/admin/reembed"), &json!({"batch_size": 50}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(
        report["status"], "success",
        "AutoMem's word for a finished reembed"
    );
    assert_eq!(report["processed"], 300);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["total"], 300);
    assert_eq!(report["batch_size"], 50);
    assert_eq!(report["metadata_preserved"], true);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id \
             WHERE e.content_hash = m.content_hash AND e.model = 'hash-v1' AND e.dims = 384"
        )
        .await,
        300
    );
    assert_eq!(memories_snapshot(&pool).await, before, "memories untouched");

    // Nothing is stale now: without force, nothing to do.
    let (code, report) = curl(&d.url("/admin/reembed"), &json!({}));
    assert_eq!(code, "200");
    assert_eq!(
        (report["processed"].as_i64(), report["total"].as_i64()),
        (Some(0), Some(0))
    );

    // force takes fresh ones too, and limit stops after that many, in id order.
    let stamp: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(embedded_at) FROM memory_embeddings")
            .fetch_one(&pool)
            .await
            .unwrap();
    let (code, report) = curl(
        &d.url("/admin/reembed"),
        &json!({"force": true, "limit": 120, "batch_size": 32}),
    );
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["processed"], 120);
    assert_eq!(report["total"], 120);
    let redone: Vec<Uuid> = sqlx::query_scalar(
        "SELECT memory_id FROM memory_embeddings WHERE embedded_at > $1 ORDER BY memory_id",
    )
    .bind(stamp)
    .fetch_all(&pool)
    .await
    .unwrap();
    let first: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM memories ORDER BY id LIMIT 120")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(redone, first, "the first 120 memories in id order");
    assert_eq!(memories_snapshot(&pool).await, before, "memories untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reembed_and_sync_input_is_400_naming_the_field() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db.url, "").await;
    let cases = [
        ("/admin/reembed", json!({"batch_size": 0}), "batch_size"),
        ("/admin/reembed", json!({"batch_size": -1}), "batch_size"),
        ("/admin/reembed", json!({"batch_size": 2049}), "batch_size"),
        ("/admin/reembed", json!({"batch_size": "32"}), "batch_size"),
        ("/admin/reembed", json!({"limit": "ten"}), "limit"),
        ("/admin/reembed", json!({"limit": -3}), "limit"),
        ("/admin/reembed", json!({"force": "yes"}), "force"),
        ("/admin/reembed", json!({"batch": 3}), "batch"),
        ("/v1/work/reembed", json!({"batch_size": 0}), "batch_size"),
        ("/v1/work/reembed", json!({"limit": "ten"}), "limit"),
        ("/admin/sync", json!({"batch_size": 5000}), "batch_size"),
        ("/admin/sync", json!({"dry_run": "true"}), "dry_run"),
        ("/v1/work/sync", json!({"batch_size": -2}), "batch_size"),
    ];
    for (path, body, field) in cases {
        let r = d.post(path, body.clone()).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path} {body}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(
            v["detail"].as_str().unwrap_or_default().contains(field),
            "{path} {body} -> {v}"
        );
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind IN ('reembed', 'sync')"
        )
        .await,
        0,
        "nothing enqueued"
    );
    // A malformed body, too.
    let r = crate::harness::admin_client()
        .post(d.url("/admin/reembed"))
        .header("content-type", "application/json")
        .body("{\"batch_size\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_finds_exactly_the_drift_and_repairs_it_without_touching_memories() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 1000).await;
    let d = daemon(&db.url, "").await;
    let (code, _) = curl(&d.url("/admin/reembed"), &json!({"batch_size": 100}));
    assert_eq!(code, "200");

    // 100 embeddings deleted, 100 contents changed, 100 memories soft-deleted (disjoint).
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM memories ORDER BY random()")
        .fetch_all(&pool)
        .await
        .unwrap();
    let (missing, rest) = ids.split_at(100);
    let (stale, rest) = rest.split_at(100);
    let orphaned = &rest[..100];
    // One transaction, which also drops the enrichment jobs the content change enqueues (the
    // enrichment would repair the stale ones itself).
    let mut tx = pool.begin().await.unwrap();
    for (sql, ids) in [
        (
            "DELETE FROM memory_embeddings WHERE memory_id = ANY($1)",
            missing,
        ),
        (
            "UPDATE memories SET content = content || ' (edited)' WHERE id = ANY($1)",
            stale,
        ),
        (
            "UPDATE memories SET deleted_at = now() WHERE id = ANY($1)",
            orphaned,
        ),
    ] {
        sqlx::query(sql).bind(ids).execute(&mut *tx).await.unwrap();
    }
    sqlx::query("DELETE FROM memwarden.jobs WHERE kind = 'enrichment'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before = memories_snapshot(&pool).await;
    let embeddings_before = count(&pool, "SELECT count(*) FROM memory_embeddings").await;

    let (code, report) = curl(&d.url("/admin/sync"), &json!({"dry_run": true}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["dry_run"], true);
    let drift = &report["scan"]["drift"];
    for (kind, expected, set) in [
        ("missing", 100, missing),
        ("stale", 100, stale),
        ("orphaned", 100, orphaned),
        ("model_mismatch", 0, &[][..]),
    ] {
        assert_eq!(drift[kind]["count"], expected, "{kind}: {drift}");
        let sample: Vec<Uuid> = serde_json::from_value(drift[kind]["sample"].clone()).unwrap();
        assert_eq!(sample.len(), expected.min(10), "{kind} sample");
        assert!(
            sample.iter().all(|id| set.contains(id)),
            "{kind} sample ids"
        );
        assert!(sample.windows(2).all(|w| w[0] < w[1]), "in id order");
    }
    assert_eq!(
        memories_snapshot(&pool).await,
        before,
        "a dry run changes nothing"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        embeddings_before
    );
    // The gauge shows the drift; readiness does not care.
    let metrics = d.get("/metrics").await.text().await.unwrap();
    for kind in ["missing", "stale", "orphaned"] {
        assert!(
            metrics.contains(&format!("memwarden_sync_drift{{kind=\"{kind}\"}} 100")),
            "{kind} gauge"
        );
    }
    assert_eq!(d.get("/readyz").await.status(), 200);

    // The real sync, natively, waiting for the report.
    let r = d
        .post("/v1/work/sync?wait=true", json!({"batch_size": 64}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let report = &v["report"];
    assert_eq!(report["status"], "complete", "{report}");
    assert_eq!(report["repair"]["reembedded"], 200);
    assert_eq!(report["repair"]["orphans_removed"], 100);
    for kind in ["missing", "stale", "model_mismatch", "orphaned"] {
        assert_eq!(
            report["remaining"][kind]["count"], 0,
            "{kind} left: {report}"
        );
    }
    assert_eq!(
        memories_snapshot(&pool).await,
        before,
        "sync never writes memories"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id \
             WHERE m.deleted_at IS NULL AND e.content_hash = m.content_hash"
        )
        .await,
        900
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        900
    );
    let metrics = d.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("memwarden_sync_drift{kind=\"missing\"} 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_finds_content_written_past_the_triggers() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 300).await;
    let d = daemon(&db.url, "").await;
    let (code, _) = curl(&d.url("/admin/reembed"), &json!({}));
    assert_eq!(code, "200");
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM memories ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    // As a logical-replication apply worker writes (session_replication_role = replica skips
    // every ordinary trigger), and as a restore with the table's triggers disabled does.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE memories SET content = content || ' (replicated)' WHERE id = ANY($1)")
        .bind(&ids[..40])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        "ALTER TABLE memories DISABLE TRIGGER ALL",
        "UPDATE memories SET content = 'restored ' || content WHERE id = ANY($1)",
        "ALTER TABLE memories ENABLE TRIGGER ALL",
    ] {
        sqlx::query(sql)
            .bind(&ids[40..70])
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM jobs WHERE kind = 'enrichment'").await,
        0,
        "no trigger ran"
    );

    let (code, report) = curl(&d.url("/admin/sync"), &json!({"dry_run": true}));
    assert_eq!(code, "200");
    assert_eq!(report["scan"]["drift"]["stale"]["count"], 70, "{report}");
    let (code, report) = curl(&d.url("/admin/sync"), &json!({}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["repair"]["reembedded"], 70);
    assert_eq!(report["remaining"]["stale"]["count"], 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings e JOIN memories m ON m.id = e.memory_id \
             WHERE e.content_hash = encode(sha256(convert_to(m.content, 'UTF8')), 'hex')"
        )
        .await,
        300,
        "every embedding is of its memory's current content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_is_model_mismatch_and_sync_leaves_no_old_dims() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 200).await;
    {
        let d = daemon(&db.url, "").await;
        let (code, _) = curl(&d.url("/admin/reembed"), &json!({}));
        assert_eq!(code, "200");
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings WHERE dims = 384"
        )
        .await,
        200
    );
    // The configured embedding changes size: every embedding is now of the wrong model.
    let d = daemon(&db.url, "[embedding]\ndimensions = 128").await;
    let (code, report) = curl(&d.url("/admin/sync"), &json!({"dry_run": true}));
    assert_eq!(code, "200");
    assert_eq!(
        report["scan"]["drift"]["model_mismatch"]["count"], 200,
        "{report}"
    );
    assert_eq!(report["scan"]["drift"]["stale"]["count"], 0);
    let (code, report) = curl(&d.url("/admin/sync"), &json!({"batch_size": 50}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["repair"]["reembedded"], 200);
    assert_eq!(report["remaining"]["model_mismatch"]["count"], 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memory_embeddings WHERE dims <> 128"
        )
        .await,
        0,
        "no embedding of the old size is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_fails_every_batch_fails_the_job_with_its_error() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 100).await;

    // Refused outright (a bad model): the job fails at once, through AutoMem's route too.
    let refused = Reply::Fail {
        status: 400,
        headers: vec![],
        body: json!({"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error"}}),
    };
    let (_fake, base) = fake_openai(vec![], refused).await;
    let provider = format!(
        "[embedding]\nprovider = \"openai\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\nmodel = \"nope\"\nmax_retries = 0"
    );
    let d = daemon(&db.url, &provider).await;
    let (code, problem) = curl(&d.url("/admin/reembed"), &json!({"batch_size": 10}));
    assert_eq!(code, "500", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{problem}"
    );
    drop(d);

    // Down (5xx on every try): retried from its checkpoint a few times, then failed, with
    // the provider's error on the job.
    let (fake, base) = fake_openai(vec![], server_error(503)).await;
    let provider = format!(
        "[embedding]\nprovider = \"openai\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\nmax_retries = 0\nconcurrency = 1\n\
         [kinds.reembed]\nbackoff_base = 0.05\nbackoff_cap = 0.2"
    );
    let d = daemon(&db.url, &provider).await;
    let r = d.post("/v1/work/reembed", json!({"batch_size": 10})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = finished(&d, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempt"], 5, "{job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("7 batches in a row failed"), "{error}");
    assert!(error.contains("unavailable"), "{error}");
    // Three batches on the first attempt (one request at a time), then one per retry: the
    // failure streak is part of the checkpoint, so a retry only probes the provider.
    assert_eq!(fake.requests().len(), 3 + 4);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_is_kept_busy_within_the_request_rate() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 40).await;
    let (fake, base) = slow_fake_openai(
        vec![],
        Reply::Vectors { dims: 16 },
        Duration::from_millis(200),
    )
    .await;
    let provider = format!(
        "[embedding]\nprovider = \"openai\"\nbase_url = \"{base}\"\napi_key = \"sk-test\"\n\
         dimensions = 16\nrequests_per_minute = 600\nconcurrency = 4"
    );
    let d = daemon(&db.url, &provider).await;
    let started = Instant::now();
    let (code, report) = curl(&d.url("/admin/reembed"), &json!({"batch_size": 1}));
    let took = started.elapsed();
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["processed"], 40);
    let mut seen: Vec<Instant> = fake
        .embeddings
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.at)
        .collect();
    assert_eq!(seen.len(), 40);
    seen.sort();
    // 600 a minute is one slot per 100 ms, and the first slot is after `started`. A request can
    // reach the fake late (a busy machine wakes its task late), never before its slot, so the
    // k-th arrival is no earlier than the k-th slot: `started + k × 100 ms`. Judging arrivals
    // against each other instead would fail whenever one is late and the next is punctual.
    // Unpaced, four 200 ms requests at a time would put the 5th arrival at about 200 ms.
    for (k, at) in seen.iter().enumerate() {
        let earliest = started + Duration::from_millis(100) * k as u32;
        assert!(
            *at + Duration::from_millis(1) >= earliest,
            "request {k} arrived {:?} before its slot",
            earliest - *at
        );
    }
    // Kept busy: requests overlap (200 ms each, one every 100 ms), so the whole run takes
    // about 4 s, not the 8 s of one request at a time.
    assert!(fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reembed_drained_halfway_resumes_after_its_last_batch() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    // Enough to stop halfway: reembed writes tens of thousands of vectors a second into
    // arrays, but a few hundred into an HNSW index (pgvector), which updates its graph for each.
    let in_hnsw = count(
        &pool,
        "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'memory_embeddings_hnsw_%'",
    )
    .await
        > 0;
    let n: i64 = if in_hnsw { 6_000 } else { 50_000 };
    insert_memories(&pool, n).await;
    let mut d = daemon(&db.url, "").await;
    let r = d.post("/v1/work/reembed", json!({"batch_size": 32})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        Duration::from_secs(60),
        "the reembed is well under way",
        || async {
            let done: Option<i64> = sqlx::query_scalar(
                "SELECT (checkpoint->>'processed')::bigint FROM memwarden.jobs WHERE id = $1::uuid",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
            done.is_some_and(|done| done >= n / 4)
        },
    )
    .await;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits after the drain");
    assert!(status.success(), "{status:?}");

    // Handed back, not lost: claimable again, the attempt recorded as interrupted, and the
    // checkpoint at its last write.
    assert_eq!(job_status(&pool, &id).await, "available");
    let (outcome, checkpoint): (String, Value) = sqlx::query_as(
        "SELECT a.outcome, j.checkpoint FROM memwarden.job_attempts a JOIN memwarden.jobs j ON j.id = a.job_id \
         WHERE a.job_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outcome, "interrupted");
    let first = checkpoint["processed"].as_i64().unwrap();
    assert!(first > 0 && first < n, "stopped halfway: {first}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        first,
        "what was counted is what was written"
    );

    let d = daemon(&db.url, "").await;
    let job = finished(&d, &id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let report = &job["result"];
    assert_eq!(report["processed"], n, "{report}");
    assert_eq!(report["failed"], 0);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    assert_eq!(runs[0]["processed"], first);
    assert_eq!(runs[1]["processed"], n - first);
    assert!(runs[0]["started_after"].is_null());
    assert_eq!(
        runs[1]["started_after"], runs[0]["last_id"],
        "the second run starts after the first one's last batch"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_routes_stream_progress_and_the_cli_follows() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 2000).await;
    let d = daemon(&db.url, "").await;

    // SSE: progress events, then the report.
    let body = crate::harness::admin_client()
        .post(d.url("/v1/work/reembed"))
        .header("accept", "text/event-stream")
        .json(&json!({"batch_size": 16}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("event: progress"), "{body}");
    assert!(body.contains("data: {\"progress\":100}"), "{body}");
    let report = body
        .split("event: report\ndata: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_else(|| panic!("a report event: {body}"));
    let report: Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["processed"], 2000);

    // The job row carries the progress too.
    let id: Uuid = sqlx::query_scalar("SELECT id FROM memwarden.jobs WHERE kind = 'reembed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(d.get_json(&format!("/v1/jobs/{id}")).await["progress"], 100);

    // The CLI: sync --dry-run, then reembed --force, each followed to its report.
    sqlx::query("DELETE FROM memory_embeddings WHERE memory_id IN (SELECT id FROM memories ORDER BY id LIMIT 7)")
        .execute(&pool)
        .await
        .unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .args(args)
            .args(["--addr", &d.addr])
            .env("MEMWARDEN_API_TOKEN", API)
            .env("MEMWARDEN_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let report = cli(&["sync", "--dry-run"]);
    assert_eq!(report["scan"]["drift"]["missing"]["count"], 7, "{report}");
    let report = cli(&[
        "reembed",
        "--force",
        "--batch-size",
        "500",
        "--limit",
        "1000",
    ]);
    assert_eq!(report["processed"], 1000, "{report}");
    assert_eq!(report["batch_size"], 500);

    // A bad flag value is refused by the server with the field named, and a non-zero exit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["reembed", "--batch-size", "0", "--addr", &d.addr])
        .env("MEMWARDEN_API_TOKEN", API)
        .env("MEMWARDEN_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch_size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_finishes_when_the_automem_client_goes_away() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    insert_memories(&pool, 1000).await;
    let d = daemon(&db.url, "").await;
    let gone = crate::harness::admin_client()
        .post(d.url("/admin/reembed"))
        .timeout(Duration::from_millis(30))
        .json(&json!({"batch_size": 8}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the report");
    eventually(
        Duration::from_secs(120),
        "the reembed finished anyway",
        || async {
            count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'reembed' AND status = 'succeeded'",
        )
        .await
            == 1
        },
    )
    .await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memory_embeddings").await,
        1000
    );
}
