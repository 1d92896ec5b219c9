//! A Memory Service database worked on in place, on PostgreSQL with pgvector (skipped, with a
//! line saying so, on a server without it: CI runs the suite on PostgreSQL 18 with pgvector).
//! The tables are built from tests/fixtures/memory_service_schema.sql in `public`, beside
//! memwarden's own schema, filled with groups, forks, memberships, attachments and
//! embeddings, and checked row by row after each operation.

use std::path::Path;
use std::time::Duration;

use memwarden_jobs::eviction::{
    evict, EvictionReport, EvictionSettings, EvictionStore, ResourceType, RetentionPeriod,
};
use memwarden_jobs::memory_service::{self, AttachmentStore, MemoryServiceStore};
use memwarden_jobs::NoProgress;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::count;
pub use crate::common::memory_service::{embed, group, memory_service_db, store};

fn settings(store: MemoryServiceStore) -> EvictionSettings {
    EvictionSettings {
        batch_size: 2,
        pause: Duration::from_millis(1),
        max_transaction: Duration::from_secs(5),
        blobs_dir: "unused".into(),
        store: EvictionStore::MemoryService(store),
    }
}

async fn evict_ms(
    pool: &PgPool,
    settings: &EvictionSettings,
    types: &[ResourceType],
    dry_run: bool,
) -> EvictionReport {
    evict(
        pool,
        &RetentionPeriod::parse(Some("P1D")).unwrap(),
        types,
        dry_run,
        settings,
        &CancellationToken::new(),
        &NoProgress,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn eviction_removes_whole_groups_and_writes_memory_services_tasks_and_events() {
    let Some((_db, pool)) = memory_service_db().await else {
        return;
    };
    let (old, [root, fork], old_entries) = group(&pool, Some("2 days"), 3).await;
    let (recent, _, _) = group(&pool, Some("1 hour"), 2).await;
    let (live, _, live_entries) = group(&pool, None, 2).await;
    for e in old_entries.iter().chain(&live_entries) {
        embed(&pool, *e, "hash-v1", 4).await;
    }
    let settings = settings(store(AttachmentStore::LargeObjects));

    let dry = evict_ms(&pool, &settings, &[ResourceType::Conversations], true).await;
    assert_eq!((dry.conversation_groups, dry.conversations), (1, 2));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.conversation_groups").await,
        3
    );

    let report = evict_ms(&pool, &settings, &[ResourceType::Conversations], false).await;
    assert_eq!(
        (
            report.conversation_groups,
            report.conversations,
            report.conversation_entries
        ),
        (1, 2, 6)
    );
    let groups: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM public.conversation_groups ORDER BY archived_at NULLS LAST",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        groups,
        vec![recent, live],
        "only the group past retention went"
    );
    for (table, column) in [
        ("conversations", "conversation_group_id"),
        ("entries", "conversation_group_id"),
        ("conversation_memberships", "conversation_group_id"),
        ("conversation_ancestry", "conversation_group_id"),
        ("entry_embeddings", "conversation_group_id"),
    ] {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM public.{table} WHERE {column} = $1"
        ))
        .bind(old)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} of the evicted group");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.entry_embeddings").await,
        live_entries.len() as i64,
        "the live group's embeddings stay"
    );
    let tasks: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT task_type, task_body FROM public.tasks")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        tasks,
        vec![(
            "vector_store_delete".to_string(),
            serde_json::json!({"conversationGroupId": old.to_string()})
        )]
    );
    let events: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT event, kind, data FROM public.outbox_events ORDER BY tx_seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = |c: &str| {
        (
            "deleted".to_string(),
            "conversation".to_string(),
            serde_json::json!({"conversation": c, "conversation_group": old.to_string(),
                               "members": ["alice", "bob"]}),
        )
    };
    assert_eq!(
        events,
        vec![expected(&root), expected(&fork)],
        "root first, as created"
    );

    let again = evict_ms(&pool, &settings, &[ResourceType::Conversations], false).await;
    assert_eq!(again.conversation_groups, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM public.tasks").await, 1);
}

/// An attachment row; `entry` links it, `expires` (SQL interval from now) bounds an unlinked one.
async fn attachment(pool: &PgPool, key: &str, entry: Option<Uuid>, expires: Option<&str>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO public.attachments (id, storage_key, content_type, size, user_id, entry_id, expires_at) \
         VALUES ($1, $2, 'text/plain', 5, 'alice', $3, now() + $4::interval)",
    )
    .bind(id)
    .bind(key)
    .bind(entry)
    .bind(expires)
    .execute(pool)
    .await
    .unwrap();
    id
}

fn write_file(dir: &Path, key: &str) -> std::path::PathBuf {
    let path = memory_service::attachment_file(dir, key).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"bytes").unwrap();
    path
}

#[tokio::test]
async fn orphaned_attachments_go_and_a_shared_file_stays_while_shared() {
    let Some((_db, pool)) = memory_service_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, _, old_entries) = group(&pool, Some("2 days"), 1).await;
    let (_, _, live_entries) = group(&pool, None, 1).await;
    let [shared, solo, expired, pending, kept] = [
        "shared-key",
        "solo-key",
        "expired-key",
        "pending-key",
        "kept-key",
    ]
    .map(|k| write_file(dir.path(), k));
    let a_shared_old = attachment(&pool, "shared-key", Some(old_entries[0]), None).await;
    let a_shared_live = attachment(&pool, "shared-key", Some(live_entries[0]), None).await;
    let a_solo = attachment(&pool, "solo-key", Some(old_entries[1]), None).await;
    let a_expired = attachment(&pool, "expired-key", None, Some("-1 hour")).await;
    let a_pending = attachment(&pool, "pending-key", None, Some("1 hour")).await;
    let a_kept = attachment(&pool, "kept-key", Some(live_entries[1]), None).await;
    let settings = settings(store(AttachmentStore::Filesystem {
        dir: dir.path().to_path_buf(),
    }));

    let types = [ResourceType::Conversations, ResourceType::Attachments];
    let report = evict_ms(&pool, &settings, &types, false).await;
    assert_eq!(report.conversation_groups, 1);
    assert_eq!(
        (report.attachments, report.blobs_freed, report.bytes_freed),
        (3, 2, 10)
    );
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM public.attachments ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = vec![a_shared_live, a_pending, a_kept];
    expected.sort();
    assert_eq!(left, expected);
    assert!(!left.contains(&a_shared_old) && !left.contains(&a_solo) && !left.contains(&a_expired));
    assert!(
        shared.exists(),
        "another attachment still has the shared key"
    );
    assert!(!solo.exists() && !expired.exists(), "unshared files go");
    assert!(pending.exists() && kept.exists());
}

#[tokio::test]
async fn large_objects_are_unlinked_with_their_last_attachment() {
    let Some((_db, pool)) = memory_service_db().await else {
        return;
    };
    let (_, _, live_entries) = group(&pool, None, 1).await;
    let lo = |pool: PgPool| async move {
        let oid: i64 = sqlx::query_scalar("SELECT lo_from_bytea(0, 'bytes')::bigint")
            .fetch_one(&pool)
            .await
            .unwrap();
        oid.to_string()
    };
    let (gone, shared) = (lo(pool.clone()).await, lo(pool.clone()).await);
    attachment(&pool, &gone, Some(Uuid::new_v4()), None).await;
    attachment(&pool, &shared, None, Some("-1 hour")).await;
    attachment(&pool, &shared, Some(live_entries[0]), None).await;
    let settings = settings(store(AttachmentStore::LargeObjects));

    let report = evict_ms(&pool, &settings, &[ResourceType::Attachments], false).await;
    assert_eq!((report.attachments, report.blobs_freed), (2, 1));
    let exists = |oid: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1::bigint::oid)",
            )
            .bind(oid.parse::<i64>().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(
        !exists(gone).await,
        "the large object of an attachment whose entry is gone"
    );
    assert!(exists(shared).await, "still linked by a live attachment");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.attachments").await,
        1
    );
}
