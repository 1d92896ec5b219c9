//! GoodMem's RetrieveMemory log policies, sent as GoodMem's REST reference writes them
//! (camelCase bodies, `x-api-key`), and what memwarden does with them: the matching SQL
//! function the retrieval server calls, and the retention of the log rows.
//! Size: one scenario per item of the feature (create/get/delete, conditions, list, roles and
//! audit, matching and retention), each on one daemon; their shared helpers are a few lines.

use serde_json::{json, Value};

use crate::harness::{wait_job, Daemon, TestDb};

const ADMIN_KEY: &str = "goodmem-admin-key";
const AUDITOR_KEY: &str = "goodmem-auditor-key";
const INDEXER_KEY: &str = "goodmem-indexer-key";
const BASE: &str = "/v1/admin/retrieve-memory-log-policies";

async fn daemon(db: &TestDb) -> Daemon {
    Daemon::builder(&db.url)
        .with_role_keys("goodmem")
        .ready()
        .await
}

async fn send(
    d: &Daemon,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, d.url(path))
        .header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create(d: &Daemon, body: Value) -> (u16, Value) {
    send(d, reqwest::Method::POST, BASE, ADMIN_KEY, Some(body)).await
}

async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    send(d, reqwest::Method::GET, path, ADMIN_KEY, None).await
}

fn ids(page: &Value) -> Vec<String> {
    page["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn create_get_delete_as_goodmem_writes_them() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    // GoodMem's reference example, with its client-chosen id and a window from the past on.
    let (status, p) = create(
        &d,
        json!({
            "policyId": "40000000-0000-4000-8000-000000000301",
            "displayName": "Security audit policy",
            "description": "Capture security-sensitive retrievals.",
            "condition": {"matchAll": false, "anyOf": [
                {"requestorUserIds": ["10000000-0000-4000-8000-000000000301"]},
                {"spaceIds": ["30000000-0000-4000-8000-000000000301"], "spaceLabelSelectors": {"env": "prod"}}
            ]},
            "activeFrom": 1_700_000_000_123_i64,
            "labels": {"owner": "security", "env": "prod"}
        }),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["policyId"], "40000000-0000-4000-8000-000000000301");
    assert_eq!(
        p["activeFrom"], 1_700_000_000_123_i64,
        "milliseconds kept exactly"
    );
    assert!(p.get("activeUntil").is_none());
    assert_eq!(p["currentlyActive"], true);
    assert_eq!(p["createdById"], "goodmem-admin");
    assert_eq!(p["updatedById"], "goodmem-admin");
    assert_eq!(p["labels"]["owner"], "security");
    assert_eq!(
        p["condition"]["anyOf"][1]["spaceLabelSelectors"]["env"],
        "prod"
    );
    assert!(p["createdAt"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(p.get("deletedAt").is_none());

    // The same id again is 409, whatever the rest says.
    let (status, dup) = create(
        &d,
        json!({"policyId": "40000000-0000-4000-8000-000000000301", "displayName": "x", "condition": {"matchAll": true}}),
    )
    .await;
    assert_eq!((status, dup["code"].as_str()), (409, Some("policy_exists")));

    let path = format!("{BASE}/40000000-0000-4000-8000-000000000301");
    let (status, got) = get(&d, &path).await;
    assert_eq!(status, 200);
    assert_eq!(got, p);

    // A future window: not active now; an open window created without activeFrom: active.
    let (_, future) = create(
        &d,
        json!({"display_name": "later", "condition": {"match_all": true},
               "active_from": 32_503_680_000_000_i64, "active_until": 32_503_766_400_000_i64}),
    )
    .await;
    assert_eq!(future["currentlyActive"], false, "{future}");
    assert_eq!(future["activeUntil"], 32_503_766_400_000_i64);

    // Delete with a reason: tombstoned once; a second delete keeps the first tombstone.
    let (status, _) = send(
        &d,
        reqwest::Method::DELETE,
        &path,
        ADMIN_KEY,
        Some(json!({"reason": "Replaced by narrower policy."})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(&d, &path).await;
    assert_eq!(
        status, 404,
        "a tombstoned policy is not found without includeDeleted"
    );
    let (status, dead) = get(&d, &format!("{path}?includeDeleted=true")).await;
    assert_eq!(status, 200);
    assert_eq!(dead["deleteReason"], "Replaced by narrower policy.");
    assert_eq!(dead["deletedById"], "goodmem-admin");
    assert_eq!(dead["currentlyActive"], false);
    let first_deleted_at = dead["deletedAt"].as_i64().unwrap();
    let (status, _) = send(&d, reqwest::Method::DELETE, &path, ADMIN_KEY, None).await;
    assert_eq!(status, 204, "delete is idempotent");
    let (_, again) = get(&d, &format!("{path}?include_deleted=true")).await;
    assert_eq!(again["deletedAt"], first_deleted_at);
    assert_eq!(again["deleteReason"], "Replaced by narrower policy.");

    let (status, _) = send(
        &d,
        reqwest::Method::DELETE,
        &format!("{BASE}/40000000-0000-4000-8000-000000000999"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, bad) = get(&d, &format!("{BASE}/not-a-uuid")).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_id")));
}

#[tokio::test]
async fn conditions_are_validated_as_goodmem_does() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let clause = json!({"apiKeyIds": ["550e8400-e29b-41d4-a716-446655440000"]});
    for (condition, field) in [
        (
            json!({"matchAll": true, "anyOf": [clause]}),
            "condition.anyOf",
        ),
        (json!({"matchAll": false}), "condition.anyOf"),
        (json!({}), "condition.anyOf"),
        (json!({"anyOf": []}), "condition.anyOf"),
        (json!({"anyOf": [clause, {}]}), "condition.anyOf[1]"),
        (json!({"anyOf": [{"spaceIds": []}]}), "condition.anyOf[0]"),
        (
            json!({"anyOf": [{"spaceIds": ["nope"]}]}),
            "condition.anyOf[0].spaceIds",
        ),
        (
            json!({"anyOf": [{"colour": ["red"]}]}),
            "condition.anyOf[0]",
        ),
    ] {
        let (status, p) = create(&d, json!({"displayName": "p", "condition": condition})).await;
        assert_eq!(status, 400, "{condition} → {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "{condition}: {p}"
        );
    }
    for (body, field) in [
        (json!({"condition": {"matchAll": true}}), "displayName"),
        (
            json!({"displayName": "  ", "condition": {"matchAll": true}}),
            "displayName",
        ),
        (json!({"displayName": "p"}), "condition"),
        (
            json!({"displayName": "p", "condition": {"matchAll": true}, "activeFrom": 10, "activeUntil": 10}),
            "activeUntil",
        ),
        (
            json!({"displayName": "p", "condition": {"matchAll": true}, "activeFrom": -1}),
            "activeFrom",
        ),
        (
            json!({"displayName": "p", "condition": {"matchAll": true}, "activeUntil": i64::MAX}),
            "activeUntil",
        ),
    ] {
        let (status, p) = create(&d, body.clone()).await;
        assert_eq!(status, 400, "{body} → {p}");
        assert!(p["detail"].as_str().unwrap().contains(field), "{body}: {p}");
    }
    // A scoped clause of one dimension, and matchAll alone, are accepted.
    let (status, p) = create(
        &d,
        json!({"displayName": "key", "condition": {"anyOf": [clause]}}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["condition"]["matchAll"], false);
    let (status, _) = create(
        &d,
        json!({"displayName": "all", "condition": {"matchAll": true, "anyOf": []}}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let db = TestDb::migrated();
    let d = daemon(&db).await;
    let all = json!({"matchAll": true});
    let mut made = Vec::new();
    for (name, env, from, until) in [
        ("Alpha audit", "prod", 1_000_i64, None),
        ("beta AUDIT", "prod", 1_000, Some(2_000_i64)),
        ("Gamma", "dev", 1_000, None),
        ("delta audit", "prod", 5_000, None),
    ] {
        let mut body = json!({"displayName": name, "condition": all, "activeFrom": from, "labels": {"env": env, "team": "nlp"}});
        if let Some(u) = until {
            body["activeUntil"] = json!(u);
        }
        let (status, p) = create(&d, body).await;
        assert_eq!(status, 200, "{p}");
        made.push(p["policyId"].as_str().unwrap().to_string());
    }
    let (status, page) = get(&d, BASE).await;
    assert_eq!(status, 200, "{page}");
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(ids(&page), newest_first, "created_at DESCENDING by default");
    assert!(page.get("nextToken").is_none());

    let (_, page) = get(&d, &format!("{BASE}?nameFilter=AUDIT&label.env=prod&label[team]=nlp&sortBy=display_name&sortOrder=ASCENDING")).await;
    assert_eq!(
        ids(&page),
        vec![made[0].clone(), made[1].clone(), made[3].clone()]
    );
    let (_, page) = get(&d, &format!("{BASE}?activeAt=1500&sortOrder=ASCENDING")).await;
    assert_eq!(ids(&page), made[..3].to_vec());
    let (_, page) = get(&d, &format!("{BASE}?activeAt=2000&label.env=prod")).await;
    assert_eq!(
        ids(&page),
        vec![made[0].clone()],
        "activeUntil is exclusive"
    );

    // Pages of two, each sort order, until no token is left.
    for (sort, order) in [
        ("created_at", "ASCENDING"),
        ("display_name", "DESCENDING"),
        ("updated_at", "DESCENDING"),
    ] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("{BASE}?maxResults=2&sortBy={sort}&sortOrder={order}");
            if let Some(t) = &token {
                path.push_str(&format!("&nextToken={t}"));
            }
            let (status, page) = get(&d, &path).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(ids(&page));
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let mut want = made.clone();
        want.sort();
        let mut got = seen.clone();
        got.sort();
        assert_eq!(got, want, "{sort} {order}: every policy once: {seen:?}");
    }

    // A tombstoned policy is listed only with includeDeleted.
    let (status, _) = send(
        &d,
        reqwest::Method::DELETE,
        &format!("{BASE}/{}", made[2]),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, page) = get(&d, BASE).await;
    assert!(!ids(&page).contains(&made[2]));
    let (_, page) = get(&d, &format!("{BASE}?includeDeleted=true")).await;
    assert!(ids(&page).contains(&made[2]));

    // Bad input is 400 problem+json naming the parameter.
    let (_, first) = get(&d, &format!("{BASE}?maxResults=1")).await;
    let token = first["nextToken"].as_str().unwrap();
    for query in [
        "sortBy=size".to_string(),
        "sortOrder=SIDEWAYS".into(),
        "maxResults=0".into(),
        "activeAt=soon".into(),
        "includeDeleted=maybe".into(),
        "nextToken=bm90LW91cnM".into(),
        format!("nextToken={token}&sortBy=display_name"),
    ] {
        let (status, p) = get(&d, &format!("{BASE}?{query}")).await;
        assert_eq!(
            (status, p["code"].as_str()),
            (400, Some("invalid_query")),
            "{query}: {p}"
        );
    }
}

#[tokio::test]
async fn auditors_read_admins_write_indexers_neither_and_every_call_is_audited() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db).await;
    let body = json!({"displayName": "p", "condition": {"matchAll": true}, "justification": "INC-42 review"});
    let (status, p) = send(
        &d,
        reqwest::Method::POST,
        BASE,
        AUDITOR_KEY,
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, p["title"].as_str()), (403, Some("Forbidden")));
    let (status, p) = create(&d, body).await;
    assert_eq!(status, 200);
    let path = format!("{BASE}/{}", p["policyId"].as_str().unwrap());
    assert_eq!(
        send(&d, reqwest::Method::GET, &path, AUDITOR_KEY, None)
            .await
            .0,
        200
    );
    assert_eq!(
        send(&d, reqwest::Method::GET, BASE, AUDITOR_KEY, None)
            .await
            .0,
        200
    );
    assert_eq!(
        send(&d, reqwest::Method::DELETE, &path, AUDITOR_KEY, None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(&d, reqwest::Method::GET, BASE, INDEXER_KEY, None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            &d,
            reqwest::Method::POST,
            BASE,
            INDEXER_KEY,
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(&d, reqwest::Method::GET, BASE, "wrong", None).await.0,
        401
    );

    let rows: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT caller, method, status, justification FROM memwarden.audit_log \
          WHERE path LIKE '/v1/admin/retrieve-memory-log-policies%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let calls: Vec<(&str, &str, i32)> = rows
        .iter()
        .map(|(c, m, s, _)| (c.as_str(), m.as_str(), *s))
        .collect();
    assert_eq!(
        &calls[..7],
        &[
            ("goodmem-auditor", "POST", 403),
            ("goodmem-admin", "POST", 200),
            ("goodmem-auditor", "GET", 200),
            ("goodmem-auditor", "GET", 200),
            ("goodmem-auditor", "DELETE", 403),
            ("goodmem-indexer", "GET", 403),
            ("goodmem-indexer", "POST", 403),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[1].3.as_deref(), Some("INC-42 review"));
}

#[tokio::test]
async fn the_retrieval_server_asks_which_policies_match_and_old_log_rows_are_purged() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = daemon(&db).await;
    let user = "10000000-0000-4000-8000-000000000001";
    let key = "20000000-0000-4000-8000-000000000002";
    let space = "30000000-0000-4000-8000-000000000003";
    let mut made = Vec::new();
    for (name, condition) in [
        ("by user", json!({"anyOf": [{"requestorUserIds": [user]}]})),
        (
            "by key and its label",
            json!({"anyOf": [{"apiKeyIds": [key], "apiKeyLabelSelectors": {"tier": "gold"}}]}),
        ),
        (
            "by space label",
            json!({"anyOf": [{"spaceLabelSelectors": {"env": "prod"}}]}),
        ),
        ("by space id", json!({"anyOf": [{"spaceIds": [space]}]})),
    ] {
        let (status, p) = create(
            &d,
            json!({"displayName": name, "condition": condition, "activeFrom": 0}),
        )
        .await;
        assert_eq!(status, 200, "{p}");
        made.push(p["policyId"].as_str().unwrap().to_string());
    }
    let matching = |user: Option<&'static str>,
                    key: Option<&'static str>,
                    spaces: Vec<&'static str>,
                    key_labels: Value,
                    space_labels: Value| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT policy_id::text FROM memwarden.matching_retrieve_log_policies($1::uuid, $2::uuid, $3::uuid[], $4, $5)",
            )
            .bind(user)
            .bind(key)
            .bind(spaces)
            .bind(key_labels)
            .bind(space_labels)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        matching(Some(user), None, vec![], json!({}), json!([])).await,
        vec![made[0].clone()]
    );
    assert_eq!(
        matching(
            None,
            Some(key),
            vec![],
            json!({"tier": "silver"}),
            json!([])
        )
        .await,
        Vec::<String>::new(),
        "every dimension of a clause must match"
    );
    assert_eq!(
        matching(
            None,
            Some(key),
            vec![],
            json!({"tier": "gold", "x": "y"}),
            json!([])
        )
        .await,
        vec![made[1].clone()]
    );
    assert_eq!(
        matching(
            None,
            None,
            vec![space],
            json!({}),
            json!([{"env": "dev"}, {"env": "prod"}])
        )
        .await,
        vec![made[2].clone(), made[3].clone()]
    );
    // A match-all policy matches everyone; a tombstoned one nobody.
    let (_, all) = create(
        &d,
        json!({"displayName": "all", "condition": {"matchAll": true}, "activeFrom": 0}),
    )
    .await;
    let all_id = all["policyId"].as_str().unwrap().to_string();
    assert_eq!(
        matching(None, None, vec![], json!({}), json!([])).await,
        vec![all_id.clone()]
    );
    send(
        &d,
        reqwest::Method::DELETE,
        &format!("{BASE}/{all_id}"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert!(matching(None, None, vec![], json!({}), json!([]))
        .await
        .is_empty());

    // The log rows the retrieval server writes, old and new, each of the three sources.
    sqlx::query(
        "INSERT INTO memwarden.retrieve_memory_logs (created_at, source, policy_ids, request) \
         SELECT now() - make_interval(days => d), s, CASE WHEN s = 'CALLER_OPT_IN' THEN '{}'::uuid[] ELSE ARRAY[$1::uuid] END, '{}' \
           FROM unnest(ARRAY[40, 31, 29, 1]) d, unnest(ARRAY['CALLER_OPT_IN', 'POLICY', 'CALLER_OPT_IN_AND_POLICY']) s",
    )
    .bind(&made[0])
    .execute(&pool)
    .await
    .unwrap();
    let refused = sqlx::query(
        "INSERT INTO memwarden.retrieve_memory_logs (source, request) VALUES ('SOMETIMES', '{}')",
    )
    .execute(&pool)
    .await;
    assert!(refused.is_err(), "the source is one of the three");

    let job: String = sqlx::query_scalar(
        "SELECT memwarden.enqueue('retrieve-log-retention', jsonb_build_object('retention_s', 30 * 86400))::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    wait_job(&pool, &job, "succeeded").await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM memwarden.retrieve_memory_logs WHERE created_at < now() - interval '30 days'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM memwarden.retrieve_memory_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((left, kept), (0, 6));
    let result: Value = sqlx::query_scalar("SELECT result FROM memwarden.jobs WHERE id = $1::uuid")
        .bind(&job)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(result["deleted"], 6, "{result}");

    // The daily schedule is there by default, with the configured retention.
    let (status, s) = get(&d, "/v1/schedules/retrieve-log-retention").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["kind"], "retrieve-log-retention");
    assert_eq!(s["args"]["retention_s"], 30.0 * 86400.0);
}
