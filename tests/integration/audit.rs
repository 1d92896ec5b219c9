//! The trust model: roles route by route, justification, and the hash-chained audit log.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{count, Daemon, TestDb, ADMIN, API};

const KEYS: &str = r#"
[[auth.keys]]
client_id = "auditor-1"
role = "auditor"
token = "auditor-secret-token"

[[auth.keys]]
client_id = "indexer-1"
role = "indexer"
token = "indexer-secret-token"
"#;

/// Every route that needs a role, with a body that would pass validation.
fn writes(job: &str) -> Vec<(&'static str, String, Value)> {
    let old = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    vec![
        ("POST", "/v1/admin/drain".into(), json!({})),
        ("POST", "/v1/admin:drain".into(), json!({})),
        ("POST", "/v1/admin/resume".into(), json!({})),
        ("POST", "/v1/admin/config/reload".into(), json!({})),
        ("POST", "/v1/admin/license:reload".into(), json!({})),
        (
            "POST",
            "/v1/admin/background-jobs:purge".into(),
            json!({"olderThan": old}),
        ),
        ("POST", "/v1/jobs/purge".into(), json!({"older_than": old})),
        ("POST", format!("/v1/jobs/{job}/cancel"), json!({})),
        ("POST", format!("/v1/jobs/{job}/retry"), json!({})),
        ("POST", "/v1/queues/default/pause".into(), json!({})),
        ("POST", "/v1/queues/default/resume".into(), json!({})),
        (
            "PUT",
            "/v1/schedules/matrix".into(),
            json!({"cron": "0 0 * * * *", "kind": "probe"}),
        ),
        ("DELETE", "/v1/schedules/matrix".into(), json!({})),
        ("POST", "/admin/sync".into(), json!({"dry_run": true})),
        ("POST", "/v1/work/sync".into(), json!({"dry_run": true})),
        (
            "POST",
            "/v1/work/evict".into(),
            json!({"retention_period": "P90D", "dry_run": true}),
        ),
        (
            "POST",
            "/v1/jobs".into(),
            json!({"kind": "probe", "args": {}}),
        ),
    ]
}

fn reads(job: &str) -> Vec<String> {
    [
        "/v1/status",
        "/v1/jobs",
        "/v1/queues",
        "/v1/schedules",
        "/v1/schedules/job-purge",
        "/v1/audit",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain([format!("/v1/jobs/{job}")])
    .collect()
}

/// caller, role, method, path, status, client_ip, justification
type AuditRow = (
    String,
    Option<String>,
    String,
    String,
    i32,
    Option<String>,
    Option<String>,
);

async fn call(d: &Daemon, token: &str, method: &str, path: &str, body: &Value) -> u16 {
    let c = reqwest::Client::new();
    let req = match method {
        "GET" => c.get(d.url(path)),
        "PUT" => c.put(d.url(path)).json(body),
        "DELETE" => c.delete(d.url(path)),
        _ => c.post(d.url(path)).json(body),
    };
    req.header("x-api-key", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn role_matrix_route_by_route() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).config(KEYS).ready().await;
    let job = d.probe(json!({})).await;

    for path in reads(&job) {
        assert_eq!(
            call(&d, "auditor-secret-token", "GET", &path, &json!({})).await,
            200,
            "auditor reads {path}"
        );
        assert_eq!(
            call(&d, "indexer-secret-token", "GET", &path, &json!({})).await,
            403,
            "indexer reads {path}"
        );
    }
    for (method, path, body) in writes(&job) {
        assert_eq!(
            call(&d, "auditor-secret-token", method, &path, &body).await,
            403,
            "auditor {method} {path}"
        );
        assert_eq!(
            call(&d, "indexer-secret-token", method, &path, &body).await,
            403,
            "indexer {method} {path}"
        );
    }
    // The indexer may enqueue its own kinds: the request gets past authorization (the
    // kinds of the memory store are validated after it).
    for kind in ["enrichment", "reembed"] {
        let status = call(
            &d,
            "indexer-secret-token",
            "POST",
            "/v1/jobs",
            &json!({"kind": kind, "args": {}}),
        )
        .await;
        assert_ne!(status, 403, "indexer enqueues {kind}");
        assert_ne!(status, 401, "indexer enqueues {kind}");
    }
    // Reembed is an indexer's work too; an auditor may not start it.
    for path in ["/v1/work/reembed", "/admin/reembed"] {
        let body = json!({"limit": 1});
        assert_eq!(
            call(&d, "auditor-secret-token", "POST", path, &body).await,
            403,
            "auditor POST {path}"
        );
    }
    assert_eq!(
        call(
            &d,
            "indexer-secret-token",
            "POST",
            "/v1/work/reembed",
            &json!({"limit": 1})
        )
        .await,
        202,
        "indexer POST /v1/work/reembed"
    );
    let r = reqwest::Client::new()
        .get(d.url("/v1/events"))
        .header("x-api-key", "auditor-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "the events stream requires a justification"
    );
}

#[tokio::test]
async fn required_justification_and_an_audit_entry_for_every_call() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url)
        .config(KEYS)
        // Memory Service's own variable, as its operators set it.
        .env("MEMORY_SERVICE_ADMIN_REQUIRE_JUSTIFICATION", "true")
        .ready()
        .await;
    let c = crate::harness::admin_client();

    let r = c
        .post(d.url("/v1/queues/default/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "justification_required");
    let r = c
        .post(d.url("/v1/queues/default/pause?justification=incident-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(d.url("/v1/queues/default/resume"))
        .json(&json!({"justification": "incident-42 over"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Refused calls are audited too.
    let r = reqwest::Client::new()
        .post(d.url("/v1/admin/drain?justification=nope"))
        .header("x-api-key", "auditor-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .get(d.url(&format!("/v1/status?api_key=wrong-{API}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT caller, role, method, path, status, client_ip, justification FROM memwarden.audit_log ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let find =
        |path: &str, status: i32| rows.iter().find(|r| r.3 == path && r.4 == status).cloned();
    let paused = find("/v1/queues/default/pause", 200).expect("the allowed pause is audited");
    assert_eq!(paused.0, "admin-token");
    assert_eq!(paused.1.as_deref(), Some("admin"));
    assert_eq!(paused.5.as_deref(), Some("127.0.0.1"));
    assert_eq!(paused.6.as_deref(), Some("incident-42"));
    assert_eq!(
        find("/v1/queues/default/resume", 200).unwrap().6.as_deref(),
        Some("incident-42 over")
    );
    assert!(
        find("/v1/queues/default/pause", 400).is_some(),
        "the call without justification is audited"
    );
    let refused = find("/v1/admin/drain", 403).expect("the refused drain is audited");
    assert_eq!(
        (refused.0.as_str(), refused.1.as_deref()),
        ("auditor-1", Some("auditor"))
    );
    assert_eq!(find("/v1/status", 401).unwrap().0, "unknown-token");

    let log = d.logs();
    assert!(
        log.contains("\"message\":\"Admin audit\""),
        "the tracing event"
    );
    assert!(log.contains("\"justification\":\"incident-42\""));
    assert!(
        log.contains("\"clientIP\":\"127.0.0.1\""),
        "the field named as Memory Service names it"
    );
    let audit_text: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(a)::text FROM memwarden.audit_log a")
            .fetch_all(&pool)
            .await
            .unwrap();
    for secret in [API, ADMIN, "auditor-secret-token", "indexer-secret-token"] {
        assert!(!log.contains(secret), "a log line shows `{secret}`");
        assert!(
            !audit_text.iter().any(|r| r.contains(secret)),
            "an audit row shows `{secret}`"
        );
    }
}

fn verify(db: &TestDb) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["audit", "verify", "--database-url", &db.url])
        .env_remove("MEMWARDEN_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn audit_verify_names_the_first_changed_or_removed_row() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    for i in 0..6 {
        d.get(&format!("/v1/status?justification=check-{i}")).await;
    }
    drop(d);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memwarden.audit_log").await,
        6
    );
    let (ok, out) = verify(&db);
    assert!(ok, "{out}");
    assert!(out.contains("6 rows"), "{out}");

    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM memwarden.audit_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE memwarden.audit_log SET justification = 'nothing to see' WHERE id = $1")
        .bind(ids[2])
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify(&db);
    assert!(!ok);
    assert!(
        out.contains(&format!("row {}", ids[2])) && out.contains("changed"),
        "{out}"
    );

    // Put it back, then remove a row instead: the break shows at the row after it.
    sqlx::query("UPDATE memwarden.audit_log SET justification = 'check-2' WHERE id = $1")
        .bind(ids[2])
        .execute(&pool)
        .await
        .unwrap();
    assert!(verify(&db).0);
    sqlx::query("DELETE FROM memwarden.audit_log WHERE id = $1")
        .bind(ids[4])
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify(&db);
    assert!(!ok);
    assert!(
        out.contains(&format!("row {}", ids[5])) && out.contains("removed"),
        "{out}"
    );
}
