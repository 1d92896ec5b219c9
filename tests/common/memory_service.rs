//! A Memory Service database beside memwarden's schema, for the tests of the memory-service
//! store (the domain's and the daemon's): its tables, built in `public` from
//! tests/fixtures/memory_service_schema.sql, and rows of them.

use memwarden_jobs::memory_service::{AttachmentStore, MemoryServiceStore};
use sqlx::PgPool;
use uuid::Uuid;

use super::pg::TestDb;

const SCHEMA: &str = include_str!("../fixtures/memory_service_schema.sql");

/// A migrated database with Memory Service's tables in `public`, or `None` without pgvector.
pub async fn memory_service_db() -> Option<(TestDb, PgPool)> {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    if !available {
        eprintln!("skipped: this PostgreSQL has no pgvector (MEMWARDEN_TEST_PG=18 runs it)");
        return None;
    }
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql(&format!(
        "SET LOCAL search_path = public, memwarden; {SCHEMA}"
    ))
    .execute(&mut *tx)
    .await
    .expect("building Memory Service's tables");
    tx.commit().await.unwrap();
    Some((db, pool))
}

pub fn store(attachments: AttachmentStore) -> MemoryServiceStore {
    MemoryServiceStore {
        schema: Default::default(),
        attachments,
    }
}

/// A group with a root conversation, its fork, two members and `entries` entries in each
/// conversation; archived `archived` ago (SQL interval) or live. Returns the group, the two
/// conversations and the entries' ids.
pub async fn group(
    pool: &PgPool,
    archived: Option<&str>,
    entries: usize,
) -> (Uuid, [String; 2], Vec<Uuid>) {
    let g = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO public.conversation_groups (id, archived_at) \
         VALUES ($1, now() - $2::interval)",
    )
    .bind(g)
    .bind(archived)
    .execute(pool)
    .await
    .unwrap();
    let root = format!("conv-{}", g.simple());
    let fork = format!("fork-{}", g.simple());
    for (id, parent) in [(&root, None), (&fork, Some(&root))] {
        sqlx::query(
            "INSERT INTO public.conversations (id, owner_user_id, client_id, conversation_group_id, \
               started_by_conversation_id, created_at) \
             VALUES ($1, 'alice', 'app', $2, $3, now() - CASE WHEN $3 IS NULL THEN interval '1 minute' ELSE interval '0' END)",
        )
        .bind(id)
        .bind(g)
        .bind(parent)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO public.conversation_ancestry \
           (conversation_group_id, descendant_conversation_id, ancestor_conversation_id, depth) \
         VALUES ($1, $2, $2, 0), ($1, $3, $3, 0), ($1, $3, $2, 1)",
    )
    .bind(g)
    .bind(&root)
    .bind(&fork)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO public.conversation_memberships (conversation_group_id, user_id, access_level, created_at) \
         VALUES ($1, 'alice', 'owner', now() - interval '1 minute'), ($1, 'bob', 'reader', now())",
    )
    .bind(g)
    .execute(pool)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for conversation in [&root, &fork] {
        for n in 0..entries {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO public.entries (id, conversation_id, conversation_group_id, channel, \
                   content_type, content, indexed_content) \
                 VALUES ($1, $2, $3, 'history', 'application/json', '\\x7b7d', $4)",
            )
            .bind(id)
            .bind(conversation)
            .bind(g)
            .bind(format!("entry {n} of {conversation}"))
            .execute(pool)
            .await
            .unwrap();
            ids.push(id);
        }
    }
    (g, [root, fork], ids)
}

/// An embedding for an entry, of `model` and `dims`.
pub async fn embed(pool: &PgPool, entry: Uuid, model: &str, dims: usize) {
    let vector = format!("[{}]", vec!["0.5"; dims].join(","));
    sqlx::query(
        "INSERT INTO public.entry_embeddings (entry_id, conversation_id, conversation_group_id, embedding, model) \
         SELECT id, conversation_id, conversation_group_id, $2::vector, $3 FROM public.entries WHERE id = $1",
    )
    .bind(entry)
    .bind(vector)
    .bind(model)
    .execute(pool)
    .await
    .unwrap();
}
