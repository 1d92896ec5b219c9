//! The daemon pointed at a Memory Service database (`store.kind = "memory-service"`): the same
//! API calls evict it, and re-embed and repair its `entry_embeddings`; an unknown schema
//! version keeps it from starting. Row-by-row checks of each operation are the domain's
//! (`jobs/tests/domain/memory_service*.rs`). Needs pgvector (MEMWARDEN_TEST_PG=18).

use serde_json::json;

use crate::harness::memory_service::{embed, group, memory_service_db};
use crate::harness::{admin_curl, count, Daemon};

const CONFIG: &str = "[store]\nkind = \"memory-service\"\nattachments = \"large-objects\"\n\
                      [eviction]\npause_ms = 1\n";

#[tokio::test]
async fn the_native_api_calls_evict_reembed_and_repair_a_memory_service_database() {
    let Some((db, pool)) = memory_service_db().await else {
        return;
    };
    let (old, _, _) = group(&pool, Some("40 days"), 2).await;
    let (_, _, live) = group(&pool, None, 3).await;
    embed(&pool, live[0], "an-older-model", 384).await;
    let d = Daemon::builder(&db.url)
        .config(CONFIG)
        .schedules_off()
        .ready()
        .await;
    assert!(
        d.logs().contains("working on a Memory Service database"),
        "{}",
        d.logs()
    );

    // Memory Service's own evict call.
    let r = d
        .post(
            "/v1/admin/evict",
            json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations", "attachments"],
                   "justification": "retention"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.conversation_groups WHERE id = $1")
            .bind(old)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM public.tasks WHERE task_type = 'vector_store_delete'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.outbox_events").await,
        2
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.conversations").await,
        2,
        "the live group's"
    );
    // memwarden's own tables are untouched by it.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM memwarden.conversations").await,
        0
    );

    // And with Server-Sent-Events progress, as Memory Service's clients ask for it.
    let (sse_group, _, _) = group(&pool, Some("40 days"), 1).await;
    let body = d
        .post(
            "/v1/admin/evict?async=true",
            json!({"retentionPeriod": "P30D", "resourceTypes": ["conversations"],
                   "justification": "retention"}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#""progress":100"#) && !body.contains("event: error"),
        "{body}"
    );
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.conversation_groups WHERE id = $1")
            .bind(sse_group)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM public.tasks").await, 2);
    let audited = count(
        &pool,
        "SELECT count(*) FROM memwarden.audit_log WHERE justification = 'retention'",
    )
    .await;
    assert!(audited >= 2, "both evict calls are audited: {audited}");

    // A memories resource is not a Memory Service one: the job says so.
    let r = d
        .post(
            "/v1/work/evict?wait=true",
            json!({"retention_period": "P30D", "resource_types": ["memories"]}),
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("keeps no `memories`"), "{body}");

    // AutoMem's sync, dry run then repair, over entry_embeddings.
    let (code, report) = admin_curl(&d.url("/admin/sync"), &json!({"dry_run": true}));
    assert_eq!(code, "200", "{report}");
    let drift = &report["scan"]["drift"];
    assert_eq!(
        (
            drift["missing"]["count"].as_i64(),
            drift["model_mismatch"]["count"].as_i64()
        ),
        (Some(5), Some(1)),
        "{drift}"
    );
    let (code, report) = admin_curl(&d.url("/admin/sync"), &json!({}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["repair"]["reembedded"], 6, "{report}");
    let (_, report) = admin_curl(&d.url("/admin/sync"), &json!({"dry_run": true}));
    let total: i64 = ["missing", "stale", "model_mismatch", "orphaned"]
        .iter()
        .map(|k| report["scan"]["drift"][*k]["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 0, "{report}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.entry_embeddings WHERE model = 'hash-v1' AND vector_dims(embedding) = 384").await,
        6
    );
    // And AutoMem's reembed, forced: every live entry again.
    let (code, report) = admin_curl(&d.url("/admin/reembed"), &json!({"force": true}));
    assert_eq!(code, "200", "{report}");
    assert_eq!(report["processed"], 6, "{report}");
    d.assert_no_panic("memory-service store");
}

#[tokio::test]
async fn an_unknown_memory_service_schema_version_stops_the_start_with_the_reason() {
    let Some((db, pool)) = memory_service_db().await else {
        return;
    };
    sqlx::query("UPDATE public.schema_metadata SET value = '2' WHERE key = 'core_schema_version'")
        .execute(&pool)
        .await
        .unwrap();
    let mut d = Daemon::builder(&db.url)
        .config(CONFIG)
        .schedules_off()
        .spawn();
    let status = d.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let logs = d.logs();
    assert!(
        logs.contains("core schema version is `2`") && logs.contains("it knows 1"),
        "{logs}"
    );
    // Nothing of Memory Service's was touched on the way.
    assert_eq!(count(&pool, "SELECT count(*) FROM public.tasks").await, 0);
}
