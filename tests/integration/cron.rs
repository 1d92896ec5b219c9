//! Cron across replicas and the schedules API with ETags.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{admin_client, Daemon, TestDb};

/// Three daemons on one database, a schedule every second, for 10 s: each tick is enqueued
/// exactly once, and none is skipped.
#[tokio::test]
async fn three_replicas_fire_each_tick_exactly_once() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let schedule =
        "[[schedules]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"probe\"\n";
    let mut daemons: Vec<Daemon> = Vec::new();
    for _ in 0..3 {
        daemons.push(Daemon::builder(&db.url).config(schedule).ready().await);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(daemons);

    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT unique_key FROM memwarden.jobs WHERE unique_key LIKE 'cron:every-second:%' ORDER BY unique_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut distinct = keys.clone();
    distinct.dedup();
    assert_eq!(
        keys.len(),
        distinct.len(),
        "a tick was enqueued twice: {keys:?}"
    );
    assert!(
        keys.len() >= 9,
        "about ten ticks in ten seconds, got {}",
        keys.len()
    );
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = keys
        .iter()
        .map(|k| k.trim_start_matches("cron:every-second:").parse().unwrap())
        .collect();
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            1,
            "no tick skipped: {keys:?}"
        );
    }
}

#[tokio::test]
async fn catches_up_once_after_downtime() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    let c = admin_client();
    let r = c
        .put(d.url("/v1/schedules/minutely"))
        .json(&json!({"cron": "0 * * * * *", "kind": "probe", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    drop(d);
    // Pretend the daemons were down for an hour.
    sqlx::query("UPDATE memwarden.schedules SET last_tick_at = now() - interval '1 hour' WHERE name = 'minutely'")
        .execute(&pool)
        .await
        .unwrap();
    // The catch-up is the latest missed tick, one job; when the wait below crosses a minute,
    // the restarted daemon also fires that minute's own tick, as it should (a ten-run on
    // 2026-12-02 counted 2 at 06:05:00 when this test asserted exactly 1).
    let now = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT now()")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let restarted_at = now().await;
    let _d = Daemon::start(&db.url).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ended_at = now().await;
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT substring(unique_key FROM length('cron:minutely:') + 1)::timestamptz \
         FROM memwarden.jobs WHERE unique_key LIKE 'cron:minutely:%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        ticks
            .iter()
            .all(|t| *t > restarted_at - chrono::Duration::seconds(60)),
        "sixty missed ticks catch up as the latest one only: {ticks:?}"
    );
    let minute = |t: chrono::DateTime<chrono::Utc>| t.timestamp().div_euclid(60);
    let crossed = minute(ended_at) - minute(restarted_at);
    assert!(
        !ticks.is_empty() && ticks.len() as i64 <= 1 + crossed,
        "one catch-up, plus {crossed} minute(s) crossed while waiting: {ticks:?}"
    );
}

async fn put(
    d: &Daemon,
    name: &str,
    precondition: (&str, &str),
    body: &Value,
) -> reqwest::Response {
    admin_client()
        .put(d.url(&format!("/v1/schedules/{name}")))
        .header(precondition.0, precondition.1)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn schedules_api_with_etags() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let c = admin_client();

    let list: Value = d.get("/v1/schedules").await.json().await.unwrap();
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"job-purge"),
        "the default job-purge schedule exists: {names:?}"
    );

    let body = json!({"cron": "0 0 * * * *", "kind": "probe", "args": {"sleep_ms": 1}});
    let r = put(&d, "nightly", ("if-none-match", "*"), &body).await;
    assert_eq!(r.status(), 201);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    let r = put(&d, "nightly", ("if-none-match", "*"), &body).await;
    assert_eq!(r.status(), 412, "If-None-Match: * only creates");

    let changed = json!({"cron": "0 30 * * * *", "kind": "probe"});
    let r = put(&d, "nightly", ("if-match", "\"stale\""), &changed).await;
    assert_eq!(r.status(), 412);
    let r = put(&d, "nightly", ("if-match", &etag), &changed).await;
    assert_eq!(r.status(), 200);
    let new_etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let got = d.get("/v1/schedules/nightly").await;
    assert_eq!(got.headers()["etag"].to_str().unwrap(), new_etag);

    let bad = c
        .put(d.url("/v1/schedules/bad"))
        .json(&json!({"cron": "whenever", "kind": "probe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("cron"));

    let r = c
        .delete(d.url("/v1/schedules/nightly"))
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "delete with a stale ETag");
    let r = c
        .delete(d.url("/v1/schedules/nightly"))
        .header("if-match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.get("/v1/schedules/nightly").await.status(), 404);
}

#[tokio::test]
async fn a_config_reload_updates_the_schedules() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    let config = d.log.parent().unwrap().join("memwarden.toml");
    std::fs::write(
        &config,
        "[[schedules]]\nname = \"from-reload\"\ncron = \"0 0 * * * *\"\nkind = \"probe\"\n",
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    crate::harness::eventually(
        Duration::from_secs(5),
        "the new schedule is in the table",
        || async { d.get("/v1/schedules/from-reload").await.status() == 200 },
    )
    .await;
    std::fs::write(&config, "").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    crate::harness::eventually(
        Duration::from_secs(5),
        "the removed schedule is gone",
        || async { d.get("/v1/schedules/from-reload").await.status() == 404 },
    )
    .await;
}
