//! Conversations: the list as Memory Service filters and pages it, soft delete, and restore
//! until eviction has taken the conversation.

use reqwest::Method;
use serde_json::json;

use super::{call, daemon, get, ids, ADMIN_KEY};
use crate::harness::fixtures::conversation;
use crate::harness::{count, TestDb};

/// A conversation of `owner`, created `created_ago` ago.
async fn owned(
    pool: &sqlx::PgPool,
    owner: &str,
    created_ago: &str,
    deleted_ago: Option<&str>,
) -> String {
    let id = conversation(pool, deleted_ago, 1).await;
    sqlx::query(
        "UPDATE conversations SET owner_id = $2, created_at = now() - $3::interval WHERE id = $1",
    )
    .bind(id)
    .bind(owner)
    .bind(created_ago)
    .execute(pool)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn conversations_list_page_delete_and_restore_until_eviction() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&db, dir.path(), "").await;
    let a1 = owned(&pool, "alice", "5 days", None).await;
    let a2 = owned(&pool, "alice", "4 days", None).await;
    let a3 = owned(&pool, "alice", "3 days", Some("40 days")).await;
    let b1 = owned(&pool, "bob", "2 days", None).await;
    let b2 = owned(&pool, "bob", "1 day", Some("1 day")).await;

    // Live ones only, newest first, as Memory Service lists them.
    let (s, page) = get(&d, "/v1/admin/conversations").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(ids(&page), [b1.as_str(), a2.as_str(), a1.as_str()]);
    assert!(page["afterCursor"].is_null());
    assert_eq!(page["data"][0]["ownerUserId"], "bob");
    assert_eq!(page["data"][0]["archived"], false);
    assert!(page["data"][0]["deletedAt"].is_null());
    let (_, page) = get(
        &d,
        "/v1/admin/conversations?userId=alice&includeDeleted=true",
    )
    .await;
    assert_eq!(ids(&page), [a3.as_str(), a2.as_str(), a1.as_str()]);
    let (_, page) = get(&d, "/v1/admin/conversations?onlyDeleted=true").await;
    assert_eq!(ids(&page), [b2.as_str(), a3.as_str()]);
    assert_eq!(page["data"][1]["archived"], true);
    assert!(page["data"][1]["deletedAt"].is_string());
    // Memory Service's newer spelling means the same.
    let (_, page) = get(&d, "/v1/admin/conversations?archived=only").await;
    assert_eq!(ids(&page), [b2.as_str(), a3.as_str()]);

    // Pages of two follow each other to the end and cover the list once.
    let mut seen = Vec::new();
    let mut path = "/v1/admin/conversations?includeDeleted=true&limit=2".to_string();
    loop {
        let (s, page) = get(&d, &path).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page));
        match page["afterCursor"].as_str() {
            Some(c) => {
                path =
                    format!("/v1/admin/conversations?includeDeleted=true&limit=2&afterCursor={c}")
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            b2.as_str(),
            b1.as_str(),
            a3.as_str(),
            a2.as_str(),
            a1.as_str()
        ]
    );

    for bad in [
        "limit=0",
        "limit=1001",
        "afterCursor=not-a-uuid",
        "archived=sometimes",
        "includeDeleted=perhaps",
    ] {
        let (s, p) = get(&d, &format!("/v1/admin/conversations?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {p}");
    }
    let gone = uuid::Uuid::new_v4();
    let (s, p) = get(&d, &format!("/v1/admin/conversations?afterCursor={gone}")).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{p}"
    );

    // Soft-deleted ones are readable one by one too.
    let (s, c) = get(&d, &format!("/v1/admin/conversations/{a3}")).await;
    assert_eq!((s, c["archived"].as_bool()), (200, Some(true)), "{c}");
    assert_eq!(get(&d, "/v1/admin/conversations/nope").await.0, 400);
    assert_eq!(
        get(&d, &format!("/v1/admin/conversations/{gone}")).await.0,
        404
    );

    // Delete, with the justification in the body; again keeps the first time.
    let why = json!({"justification": "ticket 4711"});
    let mut deleted_at = Vec::new();
    for body in [Some(why.clone()), None] {
        let path = format!("/v1/admin/conversations/{a1}");
        assert_eq!(
            call(&d, Method::DELETE, &path, ADMIN_KEY, body).await.0,
            204
        );
        let at: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT deleted_at FROM conversations WHERE id = $1::uuid")
                .bind(&a1)
                .fetch_one(&pool)
                .await
                .unwrap();
        deleted_at.push(at);
    }
    let (first, again) = (deleted_at[0], deleted_at[1]);
    assert_eq!(
        first, again,
        "a second delete does not restart eviction's clock"
    );
    let (s, _) = call(
        &d,
        Method::DELETE,
        &format!("/v1/admin/conversations/{gone}"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(s, 404);

    // Restore gives the conversation back; restoring a live one is 409.
    let restore = |id: &str| format!("/v1/admin/conversations/{id}/restore");
    let (s, c) = call(
        &d,
        Method::POST,
        &restore(&a1),
        ADMIN_KEY,
        Some(why.clone()),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["id"].as_str(), c["archived"].as_bool()),
        (Some(a1.as_str()), Some(false))
    );
    assert!(c["deletedAt"].is_null());
    let (s, p) = call(&d, Method::POST, &restore(&a1), ADMIN_KEY, None).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("not_deleted")), "{p}");
    assert_eq!(
        call(
            &d,
            Method::POST,
            &restore(&gone.to_string()),
            ADMIN_KEY,
            None
        )
        .await
        .0,
        404
    );

    // What eviction removed is gone for good: 404 on read and on restore.
    let (s, _) = call(
        &d,
        Method::POST,
        "/v1/admin/evict",
        ADMIN_KEY,
        Some(json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"]})),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        get(&d, &format!("/v1/admin/conversations/{a3}")).await.0,
        404
    );
    assert_eq!(
        call(&d, Method::POST, &restore(&a3), ADMIN_KEY, None)
            .await
            .0,
        404
    );
    // The one soft-deleted a day ago is inside the retention and can still be restored.
    assert_eq!(
        call(&d, Method::POST, &restore(&b2), ADMIN_KEY, None)
            .await
            .0,
        200
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM conversations WHERE deleted_at IS NULL"
        )
        .await,
        4
    );

    // Every call is audited with its caller and justification.
    let audited: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT caller, method, status, justification FROM memwarden.audit_log \
         WHERE path = $1 ORDER BY id",
    )
    .bind(format!("/v1/admin/conversations/{a1}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        audited[0],
        (
            "ms-admin".into(),
            "DELETE".into(),
            204,
            Some("ticket 4711".into())
        )
    );
    assert_eq!(audited.len(), 2);
    d.assert_no_panic("admin conversations");
}
