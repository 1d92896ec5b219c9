//! The queue engine through the real daemon: outcomes, retries, uniqueness, cancel and
//! retry, pause, pagination, crash recovery and drains under load.
//!
//! Size: one scenario per guarantee of spec/queue.md, each end to end on the daemon binary;
//! the loops' own tests sit beside them in src/queue.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::harness::{admin_client, count, eventually, tail, within, Daemon, TestDb};

async fn job(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/v1/jobs/{id}")).await.json().await.unwrap()
}

async fn wait_status(d: &Daemon, id: &str, want: &str, limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let j = job(d, id).await;
        if j["status"] == want {
            return j;
        }
        assert!(
            t0.elapsed() < limit,
            "job {id} is {} not {want}: {j}",
            j["status"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn outcomes_retries_backoff_discard_snooze_panic_and_timeout() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url)
        .config("[kinds.probe]\nbackoff_base = 0.2\nbackoff_cap = 0.5\ntimeout = 1")
        .ready()
        .await;

    let ok = id_of(&d.enqueue(json!({"kind": "probe", "args": {}})).await);
    let j = wait_status(&d, &ok, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(j["result"]["probe"], "ok");
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(j["attempts"][0]["outcome"], "succeeded");

    // Fails twice, then succeeds: three attempts, the backoff persisted in run_at.
    let flaky = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"fail_until_attempt": 2}}))
            .await,
    );
    let j = wait_status(&d, &flaky, "succeeded", Duration::from_secs(10)).await;
    let outcomes: Vec<&str> = j["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    assert_eq!(j["attempt"], 3);

    // Attempts exhausted: failed, with the error on the job.
    let doomed = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"fail_until_attempt": 9}, "max_attempts": 2}))
            .await,
    );
    let j = wait_status(&d, &doomed, "failed", Duration::from_secs(10)).await;
    assert_eq!(j["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(j["last_error"], "probe failed attempt 2");

    // Discard fails at once whatever attempts remain.
    let discard = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"discard": true}}))
            .await,
    );
    let j = wait_status(&d, &discard, "failed", Duration::from_secs(5)).await;
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1);

    // A panic fails only that attempt, with the panic message, and the loop lives on.
    let panicky = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"panic": true}, "max_attempts": 1}))
            .await,
    );
    let j = wait_status(&d, &panicky, "failed", Duration::from_secs(5)).await;
    assert!(
        j["last_error"]
            .as_str()
            .unwrap()
            .contains("probe asked to panic"),
        "{j}"
    );

    // Snooze does not use an attempt.
    let snooze = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"snooze_ms": 300}}))
            .await,
    );
    let j = wait_status(&d, &snooze, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(j["attempt"], 1, "the snoozed run did not count: {j}");
    assert_eq!(
        j["attempts"].as_array().unwrap().len(),
        1,
        "a snooze records no attempt: {j}"
    );
    let created: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(j["created_at"].clone()).unwrap();
    let started: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(j["started_at"].clone()).unwrap();
    assert!(
        (started - created).num_milliseconds() >= 300,
        "it ran after the snooze: {j}"
    );

    // Past the kind's timeout: cancelled cooperatively, recorded as timed_out.
    let slow = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"sleep_ms": 5000}, "max_attempts": 1}))
            .await,
    );
    let j = wait_status(&d, &slow, "failed", Duration::from_secs(10)).await;
    assert_eq!(j["attempts"][0]["outcome"], "timed_out");

    // Retry after: the handler's own delay.
    let later = id_of(
        &d.enqueue(
            json!({"kind": "probe", "args": {"fail_until_attempt": 1, "retry_after_ms": 700}}),
        )
        .await,
    );
    let j = wait_status(&d, &later, "succeeded", Duration::from_secs(5)).await;
    let first_end: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(j["attempts"][0]["finished_at"].clone()).unwrap();
    let second_start: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(j["attempts"][1]["started_at"].clone()).unwrap();
    assert!((second_start - first_end).num_milliseconds() >= 600, "{j}");

    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "memwarden_jobs_finished_total{kind=\"probe\",queue=\"default\",outcome=\"succeeded\"}"
    ));
    assert!(metrics.contains("memwarden_job_duration_seconds_bucket"));
}

#[tokio::test]
async fn backoff_is_persisted_in_run_at() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .config("[kinds.probe]\nbackoff_base = 30")
        .ready()
        .await;
    let id = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"fail_until_attempt": 1}}))
            .await,
    );
    wait_status(&d, &id, "retryable", Duration::from_secs(5)).await;
    let delay: f64 = sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM j.run_at - a.finished_at)::float8 FROM memwarden.jobs j JOIN memwarden.job_attempts a ON a.job_id = j.id WHERE j.id = $1::uuid")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        (26.0..=34.0).contains(&delay),
        "first retry after base ±10 %: {delay}"
    );
}

#[tokio::test]
async fn unique_keys_priorities_and_scheduled_jobs() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    d.quiet().await; // nothing runs while we set up

    let a = d
        .enqueue(json!({"kind": "probe", "args": {}, "unique_key": "u-1"}))
        .await;
    let r = d
        .post(
            "/v1/jobs",
            json!({"kind": "probe", "args": {"sleep_ms": 1}, "unique_key": "u-1"}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "a duplicate unique key answers 200 with the existing id"
    );
    let b: Value = r.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["duplicate"], true);

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = d
        .enqueue(json!({"kind": "probe", "args": {}, "run_at": future}))
        .await;
    assert_eq!(job(&d, &id_of(&scheduled)).await["status"], "scheduled");
    let low = d
        .enqueue(json!({"kind": "probe", "args": {}, "priority": -5}))
        .await;
    let high = d
        .enqueue(json!({"kind": "probe", "args": {}, "priority": 10}))
        .await;

    d.post("/v1/admin/resume", json!({})).await;
    let h = wait_status(&d, &id_of(&high), "succeeded", Duration::from_secs(5)).await;
    let l = wait_status(&d, &id_of(&low), "succeeded", Duration::from_secs(5)).await;
    assert!(
        h["started_at"].as_str().unwrap() <= l["started_at"].as_str().unwrap(),
        "higher priority runs first"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        job(&d, &id_of(&scheduled)).await["status"],
        "scheduled",
        "run_at in the future waits"
    );

    // Once the first job with the key is done, the key is free again.
    wait_status(&d, &id_of(&a), "succeeded", Duration::from_secs(5)).await;
    let c = d
        .enqueue(json!({"kind": "probe", "args": {}, "unique_key": "u-1"}))
        .await;
    assert_ne!(c["id"], a["id"]);
}

#[tokio::test]
async fn sql_enqueue_function_wakes_a_worker_and_dedups() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .config("[queue]\npoll_interval_ms = 60000")
        .ready()
        .await;
    let t0 = Instant::now();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT memwarden.enqueue('probe', '{}'::jsonb)")
        .fetch_one(&pool)
        .await
        .unwrap();
    wait_status(&d, &id.to_string(), "succeeded", Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "woken by NOTIFY, not by the 60 s poll"
    );
    let a: uuid::Uuid = sqlx::query_scalar(
        "SELECT memwarden.enqueue('probe', '{\"sleep_ms\": 2000}'::jsonb, p_unique_key => 'k')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let b: uuid::Uuid =
        sqlx::query_scalar("SELECT memwarden.enqueue('probe', '{}'::jsonb, p_unique_key => 'k')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(a, b);
    assert!(a.get_version_num() == 7);
}

#[tokio::test]
async fn cancel_and_retry() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;

    // A running job gets its token fired and ends as canceled.
    let running = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {"sleep_ms": 20000}}))
            .await,
    );
    wait_status(&d, &running, "running", Duration::from_secs(5)).await;
    let r = d
        .post(&format!("/v1/jobs/{running}/cancel"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let j = wait_status(&d, &running, "canceled", Duration::from_secs(5)).await;
    assert_eq!(j["attempts"][0]["outcome"], "canceled");

    // A scheduled job is canceled at once.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = id_of(
        &d.enqueue(json!({"kind": "probe", "args": {}, "run_at": future}))
            .await,
    );
    let v: Value = d
        .post(&format!("/v1/jobs/{later}/cancel"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "canceled");
    // Canceling it again is a conflict that says why.
    let r = d.post(&format!("/v1/jobs/{later}/cancel"), json!({})).await;
    assert_eq!(r.status(), 409);

    // Retry: back to available with a fresh budget, and it runs.
    let v: Value = d
        .post(&format!("/v1/jobs/{later}/retry"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "available");
    let j = wait_status(&d, &later, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(j["attempt"], 1);
    let r = d.post(&format!("/v1/jobs/{later}/retry"), json!({})).await;
    assert_eq!(r.status(), 409, "a succeeded job is not retried");
    let r = d
        .post(
            &format!("/v1/jobs/{}/retry", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn pause_resume_and_paginated_lists() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let c = admin_client();
    assert_eq!(
        d.post("/v1/queues/default/pause", json!({})).await.status(),
        200
    );
    let ids: Vec<String> =
        futures::future::join_all((0..7).map(|_| d.enqueue(json!({"kind": "probe", "args": {}}))))
            .await
            .iter()
            .map(id_of)
            .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q: Value = d.get("/v1/queues").await.json().await.unwrap();
    let default = q["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["paused"], true);
    assert_eq!(
        count(
            &db.pool().await,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'available'"
        )
        .await,
        7,
        "nothing is claimed from a paused queue"
    );

    // Pages of 3 cover all 7, newest first, linked by cursor and Link header.
    let mut seen = Vec::new();
    let mut url = d.url("/v1/jobs?limit=3&kind=probe");
    loop {
        let r = c.get(&url).send().await.unwrap();
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        seen.extend(v["jobs"].as_array().unwrap().iter().map(id_of));
        match v["next_cursor"].as_str() {
            Some(cur) => {
                assert!(link.unwrap().contains("rel=\"next\""));
                url = d.url(&format!("/v1/jobs?limit=3&kind=probe&cursor={cur}"));
            }
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);
    let r = d.get("/v1/jobs?cursor=garbage").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_cursor");
    assert_eq!(d.get("/v1/jobs?limit=501").await.status(), 400);
    assert_eq!(d.get("/v1/jobs?status=sideways").await.status(), 400);

    assert_eq!(
        d.post("/v1/queues/default/resume", json!({}))
            .await
            .status(),
        200
    );
    for id in &ids {
        wait_status(&d, id, "succeeded", Duration::from_secs(5)).await;
    }
}

/// A worker killed with SIGKILL mid-batch: every job still ends succeeded, each killed
/// attempt is recorded as `lost`, and each job's effect is applied exactly once.
#[tokio::test]
async fn sigkill_mid_batch_loses_nothing() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let fast = "[queue]\nlease = 2\nheartbeat = 0.5\nreaper_interval = 0.5\n[queues.default]\nconcurrency = 8";
    let mut victim = Daemon::builder(&db.url).config(fast).ready().await;
    let n = 200;
    sqlx::query("SELECT memwarden.enqueue('probe', '{\"sleep_ms\": 50, \"effect\": true}'::jsonb) FROM generate_series(1, $1) g")
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "some jobs done and some running",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'",
            )
            .await
                > 10
                && count(
                    &pool,
                    "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'",
                )
                .await
                    > 0
        },
    )
    .await;
    victim.signal(Signal::SIGKILL);
    victim.wait_exit(Duration::from_secs(5)).await.unwrap();
    let held = count(
        &pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'",
    )
    .await;
    assert!(held > 0, "the killed worker held jobs");

    let rescuer = Daemon::builder(&db.url).config(fast).ready().await;
    let all_succeeded = within(Duration::from_secs(30), || async {
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'",
        )
        .await
            == n as i64
    })
    .await;
    if !all_succeeded {
        panic!(
            "not every job succeeded within 30 s of the rescuer's start\n{}\nrescuer's log:\n{}",
            unfinished_jobs(&pool).await,
            tail(&rescuer.logs(), 40)
        );
    }
    let lost = count(
        &pool,
        "SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') AND outcome = 'lost'",
    )
    .await;
    assert_eq!(
        lost, held,
        "each attempt the dead worker held is recorded as lost"
    );
    let effects = count(&pool, "SELECT count(*) FROM memwarden_probe_effects").await;
    assert_eq!(effects, n as i64, "every job applied its effect");
    let extra = count(
        &pool,
        "SELECT COALESCE(sum(executions - 1), 0)::bigint FROM memwarden_probe_effects",
    )
    .await;
    assert!(
        extra <= lost,
        "re-executions ({extra}) come only from lost attempts ({lost})"
    );
    let succeeded_attempts = count(
        &pool,
        "SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') AND outcome = 'succeeded'",
    )
    .await;
    assert_eq!(
        succeeded_attempts, n as i64,
        "each job succeeded exactly once"
    );
}

/// What a test that waited in vain needs to see: the jobs not yet succeeded, with their
/// attempts, leases and errors, the attempts so far, and the backends still connected.
async fn unfinished_jobs(pool: &PgPool) -> String {
    let lines = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| vec![e.to_string()])
            .join("\n")
    };
    let jobs = lines(
        "SELECT format('%s attempt %s, lease %s (%s s left), run_at in %s s: %s', status, attempt, \
           lease_owner, round(extract(epoch FROM lease_expires_at - now())::numeric, 2), \
           round(extract(epoch FROM run_at - now())::numeric, 2), last_error) \
         FROM memwarden.jobs WHERE kind = 'probe' AND status <> 'succeeded' ORDER BY id LIMIT 20",
    )
    .await;
    let attempts = lines(
        "SELECT format('%s: %s', outcome, count(*)) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') GROUP BY outcome ORDER BY outcome",
    )
    .await;
    let backends = lines(
        "SELECT format('%s %s: %s', application_name, state, left(query, 100)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    format!("unfinished jobs:\n{jobs}\nattempts:\n{attempts}\nother backends:\n{backends}")
}

/// SIGTERM with 1,000 jobs queued and 24 running: exit 0 within the longest job's remaining
/// time plus a margin, nothing left running, the unstarted jobs still available.
#[tokio::test]
async fn drain_under_load_leaves_nothing_running() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut d = Daemon::builder(&db.url)
        .config("[queues.default]\nconcurrency = 24\nprefetch = 48")
        .ready()
        .await;
    d.quiet().await; // nothing runs while we set up
    sqlx::query("SELECT memwarden.enqueue('probe', '{\"sleep_ms\": 1000}'::jsonb) FROM generate_series(1, 1024)")
        .execute(&pool)
        .await
        .unwrap();
    d.post("/v1/admin/resume", json!({})).await;
    eventually(Duration::from_secs(5), "24 running", || async {
        count(&pool, "SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe')").await == 0
            && count(
                &pool,
                "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'",
            )
            .await
                >= 24
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10)).await.expect("exits");
    let took = t0.elapsed();
    eprintln!(
        "drain under load: exit {} ms after SIGTERM (jobs of 1000 ms, ~800 ms left)",
        took.as_millis()
    );
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(1000 + 500), "took {took:?}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'"
        )
        .await,
        0
    );
    let done = count(
        &pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'",
    )
    .await;
    assert!(done >= 24, "the running jobs finished: {done}");
    let available = count(
        &pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'available' AND attempt = 0",
    )
    .await;
    assert_eq!(
        done + available,
        1024,
        "the rest are available with their attempt budget untouched"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') AND outcome <> 'succeeded'"
        )
        .await,
        0
    );
}
