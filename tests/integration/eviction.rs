//! Memory Service's evict route on the real daemon: synchronous, with SSE progress, and bad
//! input. What eviction removes is the domain's, tested in `jobs/tests/domain/eviction.rs`.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::fixtures::conversation;
use crate::harness::{count, Daemon, TestDb};

async fn evict_daemon(db: &TestDb, blobs: &Path) -> Daemon {
    Daemon::builder(&db.url)
        .config(&format!(
            "[blobs]\ndir = \"{}\"\n[eviction]\npause_ms = 1\nbatch_size = 3\n",
            blobs.display()
        ))
        .ready()
        .await
}

/// A migrated database, its pool, a blob directory and a daemon evicting into it.
async fn evict_setup() -> (TestDb, sqlx::PgPool, tempfile::TempDir, Daemon) {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = evict_daemon(&db, dir.path()).await;
    (db, pool, dir, d)
}

/// `memwarden <args> --addr <daemon>` with the admin's tokens.
fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(args)
        .args(["--addr", &d.addr])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
        .output()
        .unwrap()
}

#[tokio::test]
async fn memory_service_evict_sync_sse_and_bad_input() {
    let (_db, pool, _dir, d) = evict_setup().await;
    for _ in 0..10 {
        conversation(&pool, Some("40 days"), 4).await;
    }

    // Memory Service's curl: POST /v1/admin/evict with camelCase, 204 when done.
    let r = d
        .post("/v1/admin/evict", json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"], "justification": "GDPR cleanup"}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(count(&pool, "SELECT count(*) FROM conversations").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM conversation_entries").await,
        0
    );

    // And with SSE progress, which ends at 100.
    for _ in 0..10 {
        conversation(&pool, Some("40 days"), 4).await;
    }
    let body = d
        .post("/v1/admin/evict?async=true", json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"], "justification": "cleanup"}))
        .await
        .text()
        .await
        .unwrap();
    let progress: Vec<i64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok()?["progress"].as_i64())
        .collect();
    assert_eq!(progress.last(), Some(&100), "{body}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {body}"
    );
    assert!(!body.contains("event: error"), "{body}");

    for (body, needle) in [
        (
            json!({"retentionPeriod": "ninety days"}),
            "retention_period",
        ),
        (json!({"retentionPeriod": "-P1D"}), "negative"),
        (json!({}), "required"),
        (
            json!({"retentionPeriod": "P1D", "resourceTypes": ["tables"]}),
            "resource_types",
        ),
        (json!({"retentionPeriod": 90}), "retention"),
    ] {
        for path in ["/v1/admin/evict", "/v1/work/evict"] {
            let r = d.post(path, body.clone()).await;
            assert_eq!(r.status(), 400, "{path} {body}");
            let v: Value = r.json().await.unwrap();
            assert!(
                v["detail"].as_str().unwrap().contains(needle),
                "{path} {body} -> {v}"
            );
        }
    }

    // Native: 202 with where to look, then the report through ?wait=true.
    let r = d
        .post(
            "/v1/work/evict",
            json!({"retention_period": "P1D", "dry_run": true}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = d
        .post(
            "/v1/work/evict?wait=true",
            json!({"retention_period": "P1D", "resource_types": ["attachments"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["report"]["retention_period"], "P1D");

    // The CLI follows the job and prints the report.
    let out = cli(
        &d,
        &[
            "evict",
            "--retention",
            "P90D",
            "--types",
            "conversations,attachments",
            "--dry-run",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
}

/// Only ISO 8601: `"5 minutes"` once parsed as a friendly duration and evicted a conversation
/// deleted 10 minutes before. Refused on the HTTP API, the CLI and the config, and nothing goes.
#[tokio::test]
async fn friendly_durations_are_refused_everywhere_and_nothing_is_evicted() {
    let (_db, pool, dir, d) = evict_setup().await;
    conversation(&pool, Some("10 minutes"), 2).await;
    for period in ["5 minutes", "90 days", "3 weeks"] {
        for path in ["/v1/admin/evict", "/v1/work/evict?wait=true"] {
            let r = d
                .post(
                    path,
                    json!({"retentionPeriod": period, "justification": "t"}),
                )
                .await;
            assert_eq!(r.status(), 400, "{path} {period}");
            let v: Value = r.json().await.unwrap();
            assert!(v["detail"].as_str().unwrap().contains("ISO 8601"), "{v}");
        }
    }
    let out = cli(&d, &["evict", "--retention", "5 minutes"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ISO 8601"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[eviction]\nretention = \"5 minutes\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ISO 8601"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM conversations").await, 1);
}

/// An attempt that fails mid-run is `event: error` with `{"error": ...}` on Memory Service's
/// stream even though the job is retried; the stream then follows the retry to 100.
#[tokio::test]
async fn a_failed_attempt_is_an_sse_error_and_the_stream_follows_the_retry() {
    let (_db, pool, _dir, d) = evict_setup().await;
    for _ in 0..4 {
        conversation(&pool, Some("40 days"), 2).await;
    }
    // The first deleting statement fails; a sequence is not rolled back with it.
    sqlx::raw_sql(
        "CREATE SEQUENCE public.evict_failures; \
         CREATE FUNCTION public.fail_first_evict() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF nextval('public.evict_failures') = 1 THEN RAISE EXCEPTION 'simulated disk failure'; END IF; RETURN NULL; END $$; \
         CREATE TRIGGER fail_first_evict BEFORE DELETE ON memwarden.conversations \
         FOR EACH STATEMENT EXECUTE FUNCTION public.fail_first_evict();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let body = d
        .post(
            "/v1/admin/evict?async=true",
            json!({"retentionPeriod": "P30D", "justification": "cleanup"}),
        )
        .await
        .text()
        .await
        .unwrap();
    let error_at = body
        .find("event: error")
        .unwrap_or_else(|| panic!("{body}"));
    let data = body[error_at..]
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let v: Value = serde_json::from_str(data).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("simulated disk failure"),
        "{v}"
    );
    let last: Value = serde_json::from_str(
        body.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last, json!({"progress": 100}), "{body}");
    assert_eq!(body.matches("event: error").count(), 1, "{body}");
    assert_eq!(count(&pool, "SELECT count(*) FROM conversations").await, 0);
}
