//! The client commands as a newcomer types them: args a kind refuses are refused before
//! anything is enqueued (CLI and HTTP), memories are listed with where their enrichment
//! stands, and a 401 says which variables the CLI reads.

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::{count, Daemon, TestDb, ADMIN, API};

fn cli(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(args)
        .arg("--addr")
        .arg(&d.addr)
        .env("MEMWARDEN_API_TOKEN", API)
        .env("MEMWARDEN_ADMIN_TOKEN", ADMIN)
        .env_remove("MEMWARDEN_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn args_a_kind_refuses_are_refused_at_enqueue_and_nothing_is_written() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    let jobs = || count(&pool, "SELECT count(*) FROM memwarden.jobs");

    let r = d
        .post(
            "/v1/jobs",
            json!({"kind": "job-purge", "args": {"bogus": 1}}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_args");
    assert!(v["detail"].as_str().unwrap().contains("bogus"), "{v}");
    let r = d
        .post(
            "/v1/jobs",
            json!({"kind": "eviction", "args": {"retention_period": 90}}),
        )
        .await;
    assert_eq!(r.status(), 400, "a wrong type is refused too");
    // Found by the fuzz on 2026-12-02: a year PostgreSQL cannot store was a 500.
    let r = d
        .post(
            "/v1/jobs",
            json!({"kind": "probe", "run_at": "-4713-01-01T00:00:00-00:00"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("run_at"), "{v}");

    let out = cli(&d, &["enqueue", "job-purge", "--args", r#"{"bogus": 1}"#]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("bogus"), "{err}");
    assert_eq!(jobs().await, 0, "nothing was enqueued");

    let out = cli(
        &d,
        &[
            "enqueue",
            "job-purge",
            "--args",
            r#"{"older_than": "2026-01-01T00:00:00Z", "dry_run": true}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(jobs().await, 1);
}

#[tokio::test]
async fn memories_list_shows_owner_type_and_enrichment_state_with_filters() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    // Two owners; the trigger would enrich them, so the daemon is quiet while we look.
    let d = Daemon::start(&db.url).await;
    d.quiet().await;
    for (owner, kind, content) in [
        ("alice", "Decision", "We chose PostgreSQL."),
        ("alice", "Preference", "Alice likes Rust."),
        ("bob", "Context", "Bob asked about reembed."),
    ] {
        sqlx::query("INSERT INTO memories (owner_id, memory_type, content) VALUES ($1, $2, $3)")
            .bind(owner)
            .bind(kind)
            .bind(content)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE memories SET enriched_at = now(), enrichment_version = $1 WHERE memory_type = 'Decision'")
        .bind(memwarden_jobs::enrichment::ENRICHMENT_VERSION)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE memories SET deleted_at = now() WHERE owner_id = 'bob'")
        .execute(&pool)
        .await
        .unwrap();

    let v = d.get_json("/v1/memories?owner=alice").await;
    let states: Vec<(&str, &str)> = v["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["memory_type"].as_str().unwrap(),
                m["enrichment"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("Preference", "pending"), ("Decision", "enriched")]
    );
    let v = d.get_json("/v1/memories").await;
    assert_eq!(
        v["memories"].as_array().unwrap().len(),
        2,
        "deleted ones only when asked"
    );
    let v = d.get_json("/v1/memories?state=deleted").await;
    assert_eq!(v["memories"][0]["owner_id"], "bob");
    let v = d.get_json("/v1/memories?limit=1").await;
    let next = v["next_cursor"].as_str().expect("a second page");
    let v = d
        .get_json(&format!("/v1/memories?limit=1&cursor={next}"))
        .await;
    assert_eq!(v["memories"][0]["memory_type"], "Decision");
    assert_eq!(d.get("/v1/memories?state=sideways").await.status(), 400);
    assert_eq!(d.get("/v1/memories?cursor=garbage").await.status(), 400);

    let out = cli(&d, &["memories", "list", "--owner", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("id ") && lines[0].contains("enrichment"),
        "{text}"
    );
    assert!(
        lines[1].contains("alice") && lines[1].contains("pending"),
        "{text}"
    );
    let column = lines[0].find("enrichment").unwrap();
    assert_eq!(&lines[1][column..column + 7], "pending", "aligned: {text}");
}

#[tokio::test]
async fn a_401_names_the_headers_and_the_variables_the_cli_reads() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let r = reqwest::get(d.url("/v1/status")).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("Authorization: Bearer") && detail.contains("MEMWARDEN_API_TOKEN"),
        "{detail}"
    );
    let r = reqwest::Client::new()
        .post(d.url("/v1/admin/drain"))
        .bearer_auth(API)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("X-Admin-Token") && detail.contains("MEMWARDEN_ADMIN_TOKEN"),
        "{detail}"
    );
}
