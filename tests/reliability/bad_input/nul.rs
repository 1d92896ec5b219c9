//! NUL characters, which PostgreSQL cannot store in text or jsonb: in a text field the request
//! is a 400, and in an admin call's justification the audit row is still written.

use crate::harness::{Daemon, TestDb};

/// A NUL character in a text field would reach PostgreSQL, which cannot store it in text or
/// jsonb: the request is a 400 that says so, never a 500. (The general property in
/// `control_port` finds this too; these are the cases that once were 500s, kept by name.)
#[tokio::test]
async fn nul_in_text_fields_is_a_400() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    d.quiet().await;
    let cases = [
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {}, "unique_key": "a\u{0}b"}),
        ),
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {"note": "a\u{0}b"}}),
        ),
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {"a\u{0}b": 1}}),
        ),
        (
            "PUT",
            "/v1/schedules/nul",
            serde_json::json!({"cron": "0 0 * * * *", "kind": "probe", "args": {"note": "a\u{0}b"}}),
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        let r = crate::harness::admin_client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                d.url(path),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status != 400 {
            failures.push(format!(
                "{method} {path} {body}: {status} {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every admin call is audited, allowed or refused (a row in `memwarden.audit_log`), even when
/// its `justification` holds a NUL character, which PostgreSQL text cannot store. Regression:
/// the audit insert used to fail ("audit row not written") while the call itself took effect
/// (the pause routes read no body, so nothing refused the NUL).
#[tokio::test]
async fn a_nul_in_the_justification_never_skips_the_audit_row() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url).ready().await;
    let rows =
        || async { crate::harness::count(&pool, "SELECT count(*) FROM memwarden.audit_log").await };
    let client = crate::harness::admin_client();
    let mut problems = Vec::new();
    for (queue, query, body) in [
        ("nul-body", "", "{\"justification\": \"a\\u0000b\"}"),
        ("nul-query", "?justification=a%00b", ""),
    ] {
        let before = rows().await;
        let r = client
            .post(d.url(&format!("/v1/queues/{queue}/pause{query}")))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        // The audit row is written before the reply goes out.
        let audited = rows().await - before;
        let paused: Option<bool> =
            sqlx::query_scalar("SELECT paused FROM memwarden.queues WHERE name = $1")
                .bind(queue)
                .fetch_optional(&pool)
                .await
                .unwrap();
        if audited != 1 {
            problems.push(format!(
                "pause {queue}{query}: {status}, paused = {paused:?}, {audited} audit rows"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nlog: {}",
        problems.join("\n"),
        d.logs()
            .lines()
            .filter(|l| l.contains("audit row not written"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
