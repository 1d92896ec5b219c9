//! The GoodMem Python SDK (goodmem==0.1.43, from PyPI) against memwarden, unchanged.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{eventually, http_status, run_goodmem, Daemon, TestDb};

const ADMIN_KEY: &str = "goodmem-admin-key";

async fn daemon(db: &TestDb) -> Daemon {
    Daemon::builder(&db.url)
        .config(&format!("[[auth.keys]]\nclient_id = \"goodmem-sdk\"\nrole = \"admin\"\ntoken = \"{ADMIN_KEY}\"\n"))
        .ready().await
}

#[tokio::test]
async fn sdk_drain_then_resume() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    // `timeoutSec` is GoodMem's int32: past it, or negative, is 400 and no drain.
    for timeout in [serde_json::json!(2147483648u64), serde_json::json!(-1)] {
        let r = reqwest::Client::new()
            .post(d.url("/v1/admin:drain"))
            .header("x-api-key", ADMIN_KEY)
            .json(&serde_json::json!({"timeoutSec": timeout, "waitForQuiesce": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{timeout}");
        let v: Value = r.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains("timeoutSec"), "{v}");
        assert_eq!(http_status(&d.url("/readyz")), Some(200), "not drained");
    }
    let out = run_goodmem(
        "import os, json\n\
         from goodmem import Goodmem\n\
         c = Goodmem(base_url=os.environ['BASE'], api_key=os.environ['KEY'])\n\
         r = c.admin.drain(timeout_sec=0)\n\
         print(json.dumps({'state': r.state, 'quiesced': r.quiesced, 'message': r.message}))\n",
        &[("BASE", &format!("http://{}", d.addr)), ("KEY", ADMIN_KEY)],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["state"] == "DRAINING" || v["state"] == "QUIESCED", "{v}");
    assert_eq!(v["quiesced"], v["state"] == "QUIESCED");
    assert_eq!(http_status(&d.url("/readyz")), Some(503));

    let r = reqwest::Client::new()
        .post(d.url("/v1/admin/resume"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(3), "READY again", || async {
        http_status(&d.url("/readyz")) == Some(200)
    })
    .await;
}

#[tokio::test]
async fn sdk_purge_dry_run_then_real() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db).await;
    // Terminal jobs from two days ago, with attempts and references; plus fresh and live ones.
    sqlx::query(
        "INSERT INTO memwarden.jobs (id, kind, status, attempt, finished_at, created_at) \
         SELECT memwarden.uuid_v7(now() - interval '2 days'), 'probe', (ARRAY['succeeded','failed','canceled'])[1 + g % 3], 1, \
                now() - interval '2 days', now() - interval '2 days' FROM generate_series(1, 30) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memwarden.job_attempts (job_id, attempt, worker, started_at, finished_at, outcome) \
         SELECT id, 1, 'w', finished_at, finished_at, 'succeeded' FROM memwarden.jobs WHERE kind = 'probe'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memwarden.job_references (job_id, resource_type, resource_id) \
         SELECT id, 'memory', id::text FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO memwarden.jobs (id, kind, status, finished_at) VALUES (memwarden.uuid_v7(), 'probe', 'succeeded', now())")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO memwarden.jobs (id, kind, status, run_at) VALUES (memwarden.uuid_v7(), 'probe', 'available', now() + interval '1 day')")
        .execute(&pool)
        .await
        .unwrap();

    let script = "import os, json, datetime\n\
         from goodmem import Goodmem\n\
         c = Goodmem(base_url=os.environ['BASE'], api_key=os.environ['KEY'])\n\
         cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).isoformat()\n\
         out = []\n\
         for dry in (True, False):\n\
         \x20   r = c.admin.background_jobs.purge(older_than=cutoff, dry_run=dry)\n\
         \x20   out.append({'jobs': r.jobs_purged, 'attempts': r.attempts_purged, 'refs': r.references_purged, 'dry': r.dry_run})\n\
         print(json.dumps(out))\n";
    let out = run_goodmem(
        script,
        &[("BASE", &format!("http://{}", d.addr)), ("KEY", ADMIN_KEY)],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"jobs": 30, "attempts": 30, "refs": 10, "dry": true})
    );
    assert_eq!(
        v[1],
        serde_json::json!({"jobs": 30, "attempts": 30, "refs": 10, "dry": false})
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2, "the fresh terminal job and the live one stay");
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}

#[tokio::test]
async fn purge_rejects_bad_input_with_a_named_problem() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let c = reqwest::Client::new();
    let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let recent = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
    for (body, needle) in [
        (
            serde_json::json!({"olderThan": old, "statuses": ["RUNNING"]}),
            "RUNNING",
        ),
        (
            serde_json::json!({"olderThan": old, "statuses": ["BACKGROUND_JOB_EXPLODED"]}),
            "BACKGROUND_JOB_EXPLODED",
        ),
        (serde_json::json!({"olderThan": old, "limit": -1}), "limit"),
        // GoodMem's `limit` is an int32.
        (
            serde_json::json!({"olderThan": old, "limit": 2147483648u64}),
            "limit",
        ),
        (serde_json::json!({"olderThan": recent}), "older_than"),
        (
            serde_json::json!({"olderThan": "last tuesday"}),
            "older_than",
        ),
        (serde_json::json!({}), "older_than"),
    ] {
        let r = c
            .post(d.url("/v1/admin/background-jobs:purge"))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{body} -> {v}"
        );
    }
    // Aliases and limit 0 are fine.
    let r = c
        .post(d.url("/v1/admin/background-jobs:purge"))
        .header("x-api-key", ADMIN_KEY)
        .json(&serde_json::json!({"olderThan": old, "statuses": ["SUCCEEDED", "canceled", "BACKGROUND_JOB_FAILED"], "limit": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jobsPurged"], 0);
    assert_eq!(v["dryRun"], false);
}

/// `admin.license.reload()` rereads memwarden's config file: UNCHANGED, then LOADED after an
/// edit, FAILED (the old config stays) after a broken edit, NOT_FOUND once the file is gone.
#[tokio::test]
async fn sdk_license_reload_follows_the_config_file() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let config = d.log.parent().unwrap().join("memwarden.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let reload = || {
        let out = run_goodmem(
            "import os, json\n\
             from goodmem import Goodmem\n\
             c = Goodmem(base_url=os.environ['BASE'], api_key=os.environ['KEY'])\n\
             r = c.admin.license.reload()\n\
             lic = r.active_license\n\
             print(json.dumps({'status': r.status, 'message': r.message, 'sha': lic.sha256 if lic else None, 'filename': lic.filename if lic else None}))\n",
            &[("BASE", &format!("http://{}", d.addr)), ("KEY", ADMIN_KEY)],
        );
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let concurrency = || async {
        let v = d.get_json("/v1/status").await;
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "default")
            .unwrap()["concurrency"]
            .clone()
    };

    let first = reload();
    assert_eq!(first["status"], "UNCHANGED", "{first}");
    assert_eq!(
        first["filename"], "memwarden.toml",
        "the name, not the path"
    );
    // New bytes with the same settings: LOADED, with the new sha256.
    std::fs::write(&config, format!("# edited by hand\n{original}")).unwrap();
    let commented = reload();
    assert_eq!(commented["status"], "LOADED", "{commented}");
    assert_ne!(commented["sha"], first["sha"]);
    assert_eq!(reload()["status"], "UNCHANGED", "the same file again");
    std::fs::write(
        &config,
        format!("{original}\n[queues.default]\nconcurrency = 4\n"),
    )
    .unwrap();
    let loaded = reload();
    assert_eq!(loaded["status"], "LOADED", "{loaded}");
    assert_ne!(loaded["sha"], first["sha"]);
    assert_eq!(concurrency().await, 4);

    std::fs::write(&config, "[queues.default]\nconcurrency = -3\n").unwrap();
    let failed = reload();
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("queues.default.concurrency"),
        "{failed}"
    );
    assert_eq!(
        failed["sha"], loaded["sha"],
        "the active file is still the last good one"
    );
    assert_eq!(concurrency().await, 4, "the old config stays active");

    std::fs::remove_file(&config).unwrap();
    let missing = reload();
    assert_eq!(missing["status"], "NOT_FOUND", "{missing}");
    assert_eq!(concurrency().await, 4);
}
