//! Compozy's memory-configuration API as Compozy's clients call it: PUT to create and, with
//! the strong ETag they read, to update; the `{data, error, message, status}` envelope; lists
//! paged by opaque `v2:` cursors with `Link` headers; deletes refused while referenced.
//! Size: three scenarios (writes under ETags, paging, delete and roles), each on one daemon,
//! sharing one configuration literal; splitting them would only spread the helpers.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Daemon, TestDb};

const ADMIN_KEY: &str = "compozy-admin-key";
const AUDITOR_KEY: &str = "compozy-auditor-key";
const INDEXER_KEY: &str = "compozy-indexer-key";

async fn daemon(db: &TestDb) -> Daemon {
    Daemon::builder(&db.url)
        .with_role_keys("compozy")
        .ready()
        .await
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn send(
    d: &Daemon,
    method: Method,
    path: &str,
    key: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = reqwest::Client::new()
        .request(method, d.url(path))
        .header("x-api-key", key);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn put(d: &Daemon, path: &str, if_match: Option<&str>, body: Value) -> Reply {
    send(d, Method::PUT, path, ADMIN_KEY, if_match, Some(body)).await
}

async fn get(d: &Daemon, path: &str) -> Reply {
    send(d, Method::GET, path, AUDITOR_KEY, None, None).await
}

fn etag(r: &Reply) -> String {
    r.headers["etag"].to_str().unwrap().to_string()
}

/// A configuration as Compozy's docs write one: token-based, summarised, persisted a week,
/// SSNs redacted.
fn conversation_memory() -> Value {
    json!({
        "resource": "memory",
        "id": "conversation",
        "description": "Conversation memory with summaries",
        "type": "token_based",
        "max_tokens": 4000,
        "max_messages": 100,
        "token_allocation": {"short_term": 0.6, "long_term": 0.3, "system": 0.1},
        "flushing": {"type": "hybrid_summary", "summarize_threshold": 0.8, "summary_tokens": 500,
                     "summarize_oldest_percent": 30},
        "persistence": {"type": "redis", "ttl": "168h"},
        "privacy_policy": {"redact_patterns": ["\\b\\d{3}-\\d{2}-\\d{4}\\b"],
                           "non_persistable_message_types": ["system"],
                           "default_redaction_string": "[REDACTED]"},
        "token_provider": {"provider": "openai", "model": "gpt-4o", "api_key": "sk-secret-value"}
    })
}

#[tokio::test]
async fn put_creates_then_updates_only_with_the_current_strong_etag() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db).await;
    let path = "/api/v0/memories/conversation";

    let r = put(&d, path, None, conversation_memory()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["location"], "/api/v0/memories/conversation");
    assert_eq!(
        (r.body["status"].as_u64(), r.body["message"].as_str()),
        (Some(201), Some("memory created"))
    );
    assert!(r.body["error"].is_null());
    assert_eq!(
        r.body["data"]["token_provider"]["api_key"], "********",
        "{}",
        r.body
    );
    let created = etag(&r);
    assert!(
        created.starts_with('"') && created.len() == 66,
        "a quoted sha256: {created}"
    );

    let r = get(&d, path).await;
    assert_eq!((r.status, etag(&r)), (200, created.clone()));
    assert_eq!(r.body["data"]["flushing"]["type"], "hybrid_summary");
    assert_eq!(r.body["data"]["token_provider"]["api_key"], "********");
    assert_eq!(r.body["message"], "memory retrieved");

    let mut changed = conversation_memory();
    changed["max_messages"] = json!(50);
    // Without If-Match, with `*`, a weak tag or a stale tag, nothing changes.
    assert_eq!(put(&d, path, None, changed.clone()).await.status, 428);
    let weak = format!("W/{created}");
    for bad in ["*", weak.as_str(), "unquoted"] {
        let r = put(&d, path, Some(bad), changed.clone()).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("invalid_if_match")),
            "{bad}: {}",
            r.body
        );
    }
    assert_eq!(
        put(&d, path, Some("\"0000\""), changed.clone())
            .await
            .status,
        412
    );
    assert_eq!(
        etag(&get(&d, path).await),
        created,
        "still the first version"
    );

    // The current tag updates, and sending the masked key back keeps the stored one.
    changed["token_provider"]["api_key"] = json!("********");
    let r = put(&d, path, Some(&created), changed.clone()).await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (200, Some("memory updated")),
        "{}",
        r.body
    );
    let updated = etag(&r);
    assert_ne!(updated, created);
    let key: String = sqlx::query_scalar("SELECT config #>> '{token_provider,api_key}' FROM memory_configs WHERE id = 'conversation'")
        .fetch_one(&pool).await.unwrap();
    assert_eq!(key, "sk-secret-value");
    // The old tag is stale now.
    assert_eq!(
        put(&d, path, Some(&created), changed.clone()).await.status,
        412
    );

    // A PUT that fails validation names the field and changes nothing.
    let cases = [
        (
            &["flushing", "summarize_threshold"][..],
            json!(1.5),
            "flushing.summarize_threshold",
        ),
        (
            &["token_allocation", "system"][..],
            json!(0.3),
            "token_allocation",
        ),
        (&["type"][..], json!("vector"), "type"),
        (
            &["persistence", "ttl"][..],
            json!("a while"),
            "persistence.ttl",
        ),
        (
            &["privacy_policy", "redact_patterns"][..],
            json!(["(?P<x>"]),
            "privacy_policy.redact_patterns[0]",
        ),
        (
            &["flushing", "summarize_oldest_percent"][..],
            json!(0),
            "flushing.summarize_oldest_percent",
        ),
        (&["id"][..], json!("another"), "id"),
    ];
    for (at, value, field) in cases {
        let mut bad = changed.clone();
        let mut v = &mut bad;
        for p in &at[..at.len() - 1] {
            v = &mut v[*p];
        }
        v[at[at.len() - 1]] = value;
        let r = put(&d, path, Some(&updated), bad).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().contains(field),
            "{field}: {}",
            r.body
        );
    }
    let r = put(&d, path, Some(&updated), json!({"type": "buffer"})).await;
    assert_eq!(r.status, 400, "persistence is required: {}", r.body);
    assert_eq!(
        etag(&get(&d, path).await),
        updated,
        "no failed PUT changed it"
    );
    assert_eq!(get(&d, "/api/v0/memories/not%20a%20name").await.status, 400);
    assert_eq!(get(&d, "/api/v0/memories/absent").await.status, 404);
    d.assert_no_panic("compozy put");
}

#[tokio::test]
async fn lists_page_both_ways_by_opaque_cursor_within_a_project() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let mut body = conversation_memory();
    body.as_object_mut().unwrap().remove("id");
    for i in 1..=7 {
        let r = put(
            &d,
            &format!("/api/v0/memories/mem-{i}?project=p1"),
            None,
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    put(&d, "/api/v0/memories/other", None, body.clone()).await;

    let ids = |r: &Reply| -> Vec<String> {
        r.body["data"]["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = get(&d, "/api/v0/memories?project=p1&limit=3").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r), ["mem-1", "mem-2", "mem-3"]);
    let page = &r.body["data"]["page"];
    assert_eq!(
        (page["limit"].as_i64(), page["total"].as_i64()),
        (Some(3), Some(7))
    );
    assert!(page.get("prev_cursor").is_none());
    assert!(
        r.body["data"]["memories"][0]["etag"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    let link = r.headers["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("rel=\"next\"") && !link.contains("rel=\"prev\""),
        "{link}"
    );
    let next = page["next_cursor"].as_str().unwrap().to_string();
    assert!(link.contains(&next), "{link}");
    assert_eq!(base64_decoded(&next), "v2:after:mem-3");

    let r = get(
        &d,
        &format!("/api/v0/memories?project=p1&limit=3&cursor={next}"),
    )
    .await;
    assert_eq!(ids(&r), ["mem-4", "mem-5", "mem-6"]);
    let prev = r.body["data"]["page"]["prev_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(base64_decoded(&prev), "v2:before:mem-4");
    let link = r.headers["link"].to_str().unwrap();
    assert!(
        link.contains("rel=\"next\"") && link.contains("rel=\"prev\""),
        "{link}"
    );
    let back = get(
        &d,
        &format!("/api/v0/memories?project=p1&limit=3&cursor={prev}"),
    )
    .await;
    assert_eq!(ids(&back), ["mem-1", "mem-2", "mem-3"]);
    let last = r.body["data"]["page"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let r = get(
        &d,
        &format!("/api/v0/memories?project=p1&limit=3&cursor={last}"),
    )
    .await;
    assert_eq!(ids(&r), ["mem-7"]);
    assert!(r.body["data"]["page"].get("next_cursor").is_none());

    assert_eq!(
        ids(&get(&d, "/api/v0/memories?project=p1&q=mem-7").await),
        ["mem-7"]
    );
    assert_eq!(
        ids(&get(&d, "/api/v0/memories").await),
        ["other"],
        "the default project"
    );
    assert_eq!(
        get(&d, "/api/v0/memories/mem-1").await.status,
        404,
        "another project's"
    );
    assert_eq!(
        get(&d, "/api/v0/memories/mem-1?project=p1").await.status,
        200
    );

    let r = get(&d, "/api/v0/memories?cursor=not-a-cursor").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["code"], "invalid_cursor");
    assert_eq!(get(&d, "/api/v0/memories?limit=501").await.status, 400);
    assert_eq!(get(&d, "/api/v0/memories?limit=0").await.status, 400);
    assert_eq!(get(&d, "/api/v0/memories?project=../x").await.status, 400);
}

fn base64_decoded(cursor: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn delete_waits_for_no_conversation_to_reference_it_and_roles_hold() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db).await;
    let path = "/api/v0/memories/conversation";
    let tag = etag(&put(&d, path, None, conversation_memory()).await);
    let c: uuid::Uuid = sqlx::query_scalar("INSERT INTO conversations (owner_id, memory_config_id) VALUES ('alice', 'conversation') RETURNING id")
        .fetch_one(&pool).await.unwrap();

    let r = send(&d, Method::DELETE, path, ADMIN_KEY, None, None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("memory_referenced")),
        "{}",
        r.body
    );
    sqlx::query("UPDATE conversations SET memory_config_id = NULL WHERE id = $1")
        .bind(c)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        send(&d, Method::DELETE, path, ADMIN_KEY, Some("\"stale\""), None)
            .await
            .status,
        412
    );

    for key in [AUDITOR_KEY, INDEXER_KEY] {
        assert_eq!(
            send(&d, Method::DELETE, path, key, None, None).await.status,
            403
        );
        assert_eq!(
            send(
                &d,
                Method::PUT,
                path,
                key,
                Some(&tag),
                Some(conversation_memory())
            )
            .await
            .status,
            403
        );
    }
    assert_eq!(
        send(&d, Method::GET, path, INDEXER_KEY, None, None)
            .await
            .status,
        403
    );
    assert_eq!(get(&d, path).await.status, 200, "the auditor reads");

    assert_eq!(
        send(&d, Method::DELETE, path, ADMIN_KEY, Some(&tag), None)
            .await
            .status,
        204
    );
    assert_eq!(
        send(&d, Method::DELETE, path, ADMIN_KEY, None, None)
            .await
            .status,
        404
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memwarden.audit_log WHERE path = $1 AND method = 'DELETE'",
    )
    .bind(path)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 6, "every delete is audited, refused ones too");
}
