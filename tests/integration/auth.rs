//! Authentication, roles and problem+json errors on the control port.

use serde_json::{json, Value};

use crate::harness::{Daemon, TestDb, ADMIN, API};

const KEYS: &str = r#"
[[auth.keys]]
client_id = "sdk-admin"
role = "admin"
token = "key-admin-secret"

[[auth.keys]]
client_id = "auditor-bot"
role = "auditor"
token_sha256 = "6e4bb37dc6a8a2c2b3c31b5a6a3f3c0f4ac0f5a4ec2ea5b4da22bdb9bbd6cb1f"

[[auth.keys]]
client_id = "indexer-bot"
role = "indexer"
token = "key-indexer-secret"
"#;

async fn problem(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/problem+json", "status {status}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert_eq!(
        v["error"], v["title"],
        "the extra `error` member equals the title"
    );
    for member in ["type", "title", "detail", "instance", "code"] {
        assert!(!v[member].is_null(), "problem lacks `{member}`: {v}");
    }
    (status, v)
}

fn auditor_token_sha() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b"key-auditor-secret"))
}

async fn daemon(db: &TestDb) -> Daemon {
    let keys = KEYS.replace(
        "6e4bb37dc6a8a2c2b3c31b5a6a3f3c0f4ac0f5a4ec2ea5b4da22bdb9bbd6cb1f",
        &auditor_token_sha(),
    );
    Daemon::builder(&db.url).config(&keys).ready().await
}

#[tokio::test]
async fn missing_or_wrong_tokens_get_the_specified_problems() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let c = reqwest::Client::new();

    let (s, v) = problem(c.get(d.url("/v1/status"))).await;
    assert_eq!((s, v["title"].as_str().unwrap()), (401, "Unauthorized"));
    assert_eq!(v["instance"], "/v1/status");

    let (s, v) = problem(c.get(d.url("/v1/status")).bearer_auth("wrong")).await;
    assert_eq!((s, v["title"].as_str().unwrap()), (401, "Unauthorized"));

    // API token alone on an admin route: the admin token is missing.
    let (s, v) = problem(c.post(d.url("/v1/admin/drain")).bearer_auth(API)).await;
    assert_eq!(
        (s, v["title"].as_str().unwrap()),
        (401, "Admin authorization required")
    );
    let (s, _) = problem(
        c.post(d.url("/v1/admin/drain"))
            .bearer_auth(API)
            .header("x-admin-token", "nope"),
    )
    .await;
    assert_eq!(s, 401);

    // The auditor may read, not write.
    let r = c
        .get(d.url("/v1/status"))
        .header("x-api-key", "key-auditor-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = problem(
        c.post(d.url("/v1/admin/drain"))
            .header("x-api-key", "key-auditor-secret"),
    )
    .await;
    assert_eq!((s, v["title"].as_str().unwrap()), (403, "Forbidden"));

    // The indexer may enqueue its kinds only, and read nothing.
    let (s, _) = problem(
        c.post(d.url("/v1/jobs"))
            .bearer_auth("key-indexer-secret")
            .json(&json!({"kind": "job-purge", "args": {}})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = problem(c.get(d.url("/v1/jobs")).bearer_auth("key-indexer-secret")).await;
    assert_eq!(s, 403);

    // The dual token, in every accepted position.
    for req in [
        c.get(d.url("/v1/status"))
            .bearer_auth(API)
            .header("x-admin-token", ADMIN),
        c.get(d.url("/v1/status"))
            .header("x-api-key", API)
            .header("x-admin-api-key", ADMIN),
        c.get(d.url(&format!("/v1/status?api_key={API}&admin_token={ADMIN}"))),
        c.get(d.url("/v1/status"))
            .header("x-api-key", "key-admin-secret"),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 200);
    }

    // Health, readiness and metrics need nothing.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.get(d.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn admin_token_not_configured_is_403() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).without_admin_token().ready().await;
    let (s, v) = problem(
        reqwest::Client::new()
            .post(d.url("/v1/admin/drain"))
            .bearer_auth(API),
    )
    .await;
    assert_eq!(
        (s, v["title"].as_str().unwrap()),
        (403, "Admin token not configured")
    );
}

#[tokio::test]
async fn bad_bodies_are_400_problems_naming_the_field_and_tokens_never_reach_the_log() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let c = crate::harness::admin_client();

    let (s, v) = problem(c.post(d.url("/v1/jobs")).body("{\"kind\": ")).await;
    assert_eq!(s, 400);
    assert_eq!(v["code"], "malformed_json");
    let (s, v) = problem(
        crate::harness::admin_client()
            .post(d.url("/v1/admin/drain"))
            .json(&json!({"timeout_sec": "soon"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("timeout_sec"), "{v}");
    let (s, v) = problem(
        crate::harness::admin_client()
            .post(d.url("/v1/jobs"))
            .json(&json!({"kind": "no-such-kind"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("kind"), "{v}");
    let (s, v) = problem(
        crate::harness::admin_client()
            .post(d.url("/v1/jobs"))
            .json(&json!({"kind": "probe", "args": [1]})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("args"), "{v}");
    let (s, v) = problem(
        crate::harness::admin_client()
            .post(d.url("/v1/admin:drain"))
            .json(&json!({"timeoutSec": -1})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = problem(crate::harness::admin_client().get(d.url("/v1/jobs/not-a-uuid"))).await;
    assert_eq!(s, 400);
    let (s, _) = problem(crate::harness::admin_client().get(d.url("/v1/no/such/route"))).await;
    assert_eq!(s, 404);

    // Tokens in every position, then search the log for them.
    let _ = reqwest::Client::new()
        .get(d.url("/v1/status?api_key=key-admin-secret&admin_token=query-secret"))
        .send()
        .await
        .unwrap();
    let _ = reqwest::Client::new()
        .get(d.url("/v1/status"))
        .bearer_auth("wrong-bearer-secret")
        .send()
        .await
        .unwrap();
    let log = d.logs();
    for secret in [
        API,
        ADMIN,
        "key-admin-secret",
        "query-secret",
        "wrong-bearer-secret",
        "key-indexer-secret",
    ] {
        assert!(!log.contains(secret), "the log shows `{secret}`");
    }
}
