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

#[tokio::test]
async fn memory_service_evict_sync_sse_and_bad_input() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = evict_daemon(&db, dir.path()).await;
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
    let body = crate::harness::admin_client()
        .post(d.url("/v1/admin/evict?async=true"))
        .json(&json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"], "justification": "cleanup"}))
        .send()
        .await
        .unwrap()
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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args([
            "evict",
            "--retention",
            "P90D",
            "--types",
            "conversations,attachments",
            "--dry-run",
            "--addr",
            &d.addr,
        ])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
}
