//! Attachments: the list by status with each blob's reference count, the bytes, signed
//! download URLs, deletes that keep a shared blob until its last attachment goes, and who may
//! do which.

use reqwest::Method;
use serde_json::json;

use super::{call, daemon, get, ids, send, ADMIN_KEY, AUDITOR_KEY, INDEXER_KEY, URL_KEY};
use crate::harness::fixtures::{blob, conversation};
use crate::harness::{count, TestDb};

/// An attachment of `owner` on blob `blob`, linked or not, expiring `expires_in` from now.
async fn attachment(
    pool: &sqlx::PgPool,
    owner: &str,
    blob: Option<uuid::Uuid>,
    status: &str,
    expires_in: Option<&str>,
) -> String {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO attachments (owner_id, blob_id, filename, content_type, status, expires_at) \
         VALUES ($1, $2, 'report 1.pdf', 'application/pdf', $3, now() + $4::interval) RETURNING id",
    )
    .bind(owner)
    .bind(blob)
    .bind(status)
    .bind(expires_in)
    .fetch_one(pool)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn attachments_list_stream_sign_and_share_their_blob_until_the_last_goes() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(
        &db,
        dir.path(),
        &format!("download_url_key = \"{URL_KEY}\"\ndownload_url_expires_in = 1"),
    )
    .await;
    let shared = blob(&pool, dir.path(), "shared-key", b"%PDF shared bytes", 2).await;
    let own = blob(&pool, dir.path(), "own-key", b"own bytes", 1).await;
    let first = attachment(&pool, "alice", Some(shared), "linked", None).await;
    let second = attachment(&pool, "bob", Some(shared), "linked", None).await;
    let expired = attachment(&pool, "alice", Some(own), "unlinked", Some("-1 hour")).await;
    let waiting = attachment(&pool, "alice", None, "unlinked", Some("1 hour")).await;

    let list = |q: &str| format!("/v1/admin/attachments?{q}");
    let (s, page) = get(&d, &list("")).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        ids(&page),
        [
            first.as_str(),
            second.as_str(),
            expired.as_str(),
            waiting.as_str()
        ],
        "oldest first, all by default"
    );
    assert_eq!(page["data"][0]["refCount"], 2);
    assert_eq!(page["data"][0]["storageKey"], "shared-key");
    assert_eq!(page["data"][0]["size"], 17);
    assert_eq!(page["data"][0]["contentType"], "application/pdf");
    assert_eq!(page["data"][2]["status"], "expired");
    assert_eq!(
        ids(&get(&d, &list("status=linked")).await.1),
        [first.as_str(), second.as_str()]
    );
    assert_eq!(
        ids(&get(&d, &list("status=unlinked")).await.1),
        [expired.as_str(), waiting.as_str()]
    );
    assert_eq!(
        ids(&get(&d, &list("status=expired")).await.1),
        [expired.as_str()]
    );
    assert_eq!(
        ids(&get(&d, &list("status=all&userId=bob")).await.1),
        [second.as_str()]
    );
    let (_, page) = get(&d, &list("limit=3")).await;
    let cursor = page["afterCursor"].as_str().unwrap().to_string();
    assert_eq!(
        ids(&get(&d, &list(&format!("limit=3&afterCursor={cursor}")))
            .await
            .1),
        [waiting.as_str()]
    );
    assert_eq!(get(&d, &list("status=gone")).await.0, 400);
    let (s, a) = get(&d, &format!("/v1/admin/attachments/{expired}")).await;
    assert_eq!((s, a["refCount"].as_i64()), (200, Some(1)), "{a}");

    // The bytes, with the stored content type and the asked disposition.
    let resp = send(
        &d,
        Method::GET,
        &format!("/v1/admin/attachments/{first}/content?disposition=attachment"),
        Some(AUDITOR_KEY),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"report_1.pdf\""
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"%PDF shared bytes");
    assert_eq!(
        get(&d, &format!("/v1/admin/attachments/{waiting}/content"))
            .await
            .0,
        404,
        "no blob yet"
    );

    // A signed URL serves the bytes without credentials, until it expires.
    let (s, signed) = get(
        &d,
        &format!("/v1/admin/attachments/{expired}/download-url?disposition=inline"),
    )
    .await;
    assert_eq!(s, 200, "{signed}");
    assert_eq!(signed["expiresIn"], 1);
    let url = signed["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("/v1/attachments/download/"), "{url}");
    let resp = send(&d, Method::GET, &url, None, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"],
        "inline; filename=\"report_1.pdf\""
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"own bytes");
    // Another attachment's id in a token signed for this one is refused.
    let tampered = url.replacen(&expired, &first, 1);
    assert_eq!(
        send(&d, Method::GET, &tampered, None, None).await.status(),
        403
    );
    let resigned = url.replacen("/download/", "/download/x", 1);
    let resp = send(&d, Method::GET, &resigned, None, None).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        send(&d, Method::GET, &url, None, None).await.status(),
        403,
        "expired"
    );

    // The blob's file goes with the last attachment that shares it, not before.
    let del = |id: &str| format!("/v1/admin/attachments/{id}");
    let why = json!({"justification": "cleanup"});
    assert_eq!(
        call(
            &d,
            Method::DELETE,
            &del(&first),
            ADMIN_KEY,
            Some(why.clone())
        )
        .await
        .0,
        204
    );
    assert!(dir.path().join("shared-key").exists());
    assert_eq!(get(&d, &del(&second)).await.1["refCount"], 1);
    assert_eq!(
        call(&d, Method::DELETE, &del(&second), ADMIN_KEY, Some(why))
            .await
            .0,
        204
    );
    assert!(!dir.path().join("shared-key").exists());
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM blobs WHERE storage_key = 'shared-key'"
        )
        .await,
        0
    );
    assert_eq!(
        call(&d, Method::DELETE, &del(&second), ADMIN_KEY, None)
            .await
            .0,
        404
    );
    assert_eq!(get(&d, &del(&second)).await.0, 404);
    assert!(
        dir.path().join("own-key").exists(),
        "another blob is untouched"
    );
    d.assert_no_panic("admin attachments");
}

#[tokio::test]
async fn auditors_read_admins_write_indexers_get_nothing_and_unsigned_urls_are_unavailable() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&db, dir.path(), "").await;
    let c = conversation(&pool, Some("1 day"), 1).await.to_string();
    let b = blob(&pool, dir.path(), "k", b"bytes", 1).await;
    let a = attachment(&pool, "alice", Some(b), "linked", None).await;
    let reads = [
        "/v1/admin/conversations".to_string(),
        format!("/v1/admin/conversations/{c}"),
        "/v1/admin/attachments".to_string(),
        format!("/v1/admin/attachments/{a}"),
        format!("/v1/admin/attachments/{a}/content"),
    ];
    for path in &reads {
        assert_eq!(
            call(&d, Method::GET, path, AUDITOR_KEY, None).await.0,
            200,
            "auditor GET {path}"
        );
        assert_eq!(
            call(&d, Method::GET, path, INDEXER_KEY, None).await.0,
            403,
            "indexer GET {path}"
        );
        assert_eq!(
            send(&d, Method::GET, path, None, None).await.status(),
            401,
            "anonymous GET {path}"
        );
    }
    let writes = [
        (Method::DELETE, format!("/v1/admin/conversations/{c}")),
        (Method::POST, format!("/v1/admin/conversations/{c}/restore")),
        (Method::DELETE, format!("/v1/admin/attachments/{a}")),
    ];
    for (method, path) in &writes {
        for key in [AUDITOR_KEY, INDEXER_KEY] {
            assert_eq!(
                call(&d, method.clone(), path, key, None).await.0,
                403,
                "{key} {method} {path}"
            );
        }
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM attachments").await,
        1,
        "nothing was written"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM conversations WHERE deleted_at IS NOT NULL"
        )
        .await,
        1
    );
    // Without a signing key there are no download URLs, and no token is accepted.
    let (s, p) = get(&d, &format!("/v1/admin/attachments/{a}/download-url")).await;
    assert_eq!((s, p["code"].as_str()), (503, Some("unavailable")), "{p}");
    let token = format!("{a}.9999999999.AAAA");
    assert_eq!(
        send(
            &d,
            Method::GET,
            &format!("/v1/attachments/download/{token}/f"),
            None,
            None
        )
        .await
        .status(),
        403
    );
    // The admin may: the delete keeps the conversation deleted, so the restore finds it so.
    let expected = [204, 200, 204];
    for ((method, path), status) in writes.iter().zip(expected) {
        let (s, body) = call(&d, method.clone(), path, ADMIN_KEY, None).await;
        assert_eq!(s, status, "admin {method} {path}: {body}");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM attachments").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM conversations WHERE deleted_at IS NULL"
        )
        .await,
        1
    );
}
