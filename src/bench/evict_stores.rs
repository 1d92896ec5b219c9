//! `memwarden bench evict-stores`: eviction of the same number of entries from memwarden's own
//! store and from a Memory Service database (tests/fixtures/memory_service_schema.sql, which
//! needs pgvector), one after the other in one database, with the same batch settings: rows
//! per second and the longest batch of each, side by side.
//!
//! memwarden's store holds N/4 soft-deleted conversations of 4 entries; Memory Service's holds
//! N/4 archived groups of one conversation (one member) with 4 entries, each entry with an
//! embedding of `dims` dimensions, as Memory Service with pgvector keeps them. Both keep 1,000
//! live conversations, counted after.

use std::time::Instant;

use anyhow::{bail, Result};
use memwarden_jobs::eviction::{
    evict, EvictionReport, EvictionSettings, EvictionStore, ResourceType, RetentionPeriod,
};
use memwarden_jobs::memory_service::{AttachmentStore, MemoryServiceStore};
use sqlx::PgPool;

use super::support::{checkpoint, in_fresh_database, migrated_pool, rss_mb, work_pool};

const MEMORY_SERVICE_SCHEMA: &str = include_str!("../../tests/fixtures/memory_service_schema.sql");

/// What Memory Service's database is filled with.
#[derive(Debug, Clone, Copy)]
pub struct MemoryServiceFill {
    pub entries: i64,
    /// The size of each entry's embedding.
    pub dims: usize,
    /// Add an index on `entry_embeddings (conversation_id)`, which Memory Service's schema
    /// lacks: without it, each conversation's cascade reads every embedding
    /// (docs/performance.md, "Eviction on a Memory Service database").
    pub conversation_index: bool,
}

pub async fn evict_stores(
    server_url: &str,
    fill: MemoryServiceFill,
    settings: EvictionSettings,
) -> Result<()> {
    in_fresh_database(server_url, "evict_stores", |url| run(url, fill, settings)).await
}

async fn run(url: String, fill: MemoryServiceFill, settings: EvictionSettings) -> Result<()> {
    let MemoryServiceFill { entries, dims, .. } = fill;
    let pool = migrated_pool(&url).await?;
    let has_vector: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(&pool)
    .await?;
    if !has_vector {
        bail!("this PostgreSQL has no pgvector, which Memory Service's tables need");
    }
    let conversations = (entries / 4).max(1);
    let t = Instant::now();
    fill_native(&pool, conversations).await?;
    fill_memory_service(&pool, conversations, dims).await?;
    if fill.conversation_index {
        sqlx::query("CREATE INDEX ON public.entry_embeddings (conversation_id)")
            .execute(&pool)
            .await?;
    }
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    checkpoint(&pool).await;
    println!(
        "filled {conversations} conversations x 4 entries in each store ({:.1} s), embeddings of {dims} dims on Memory Service's, {} index on entry_embeddings (conversation_id)",
        t.elapsed().as_secs_f64(),
        if fill.conversation_index { "with an" } else { "without the" }
    );
    // Eviction runs as the daemon's handlers do, in a `memwarden-work` session.
    let work = work_pool(&url).await?;
    let memory_service = EvictionSettings {
        store: EvictionStore::MemoryService(MemoryServiceStore {
            schema: Default::default(),
            attachments: AttachmentStore::LargeObjects,
        }),
        ..settings.clone()
    };
    for (name, settings, live) in [
        (
            "memwarden",
            &settings,
            "SELECT count(*) FROM conversations WHERE deleted_at IS NULL",
        ),
        (
            "memory-service",
            &memory_service,
            "SELECT count(*) FROM public.conversation_groups WHERE archived_at IS NULL",
        ),
    ] {
        let (report, seconds) = timed_evict(&work, settings).await?;
        let rows = report.conversations + report.conversation_entries;
        let kept: i64 = sqlx::query_scalar(live).fetch_one(&pool).await?;
        println!(
            "{name:>14}: {} conversations, {} entries in {seconds:.2} s: {:.0} entries/s, {:.0} rows/s; \
             {} batches, longest {:.1} ms, {} over the {} ms limit; live kept {kept} of 1000",
            report.conversations,
            report.conversation_entries,
            report.conversation_entries as f64 / seconds,
            rows as f64 / seconds,
            report.batches,
            report.longest_batch_ms,
            report.batches_over_limit,
            settings.max_transaction.as_millis(),
        );
    }
    println!(
        "batch<={} pause={}ms; rss_mb={:.1}",
        settings.batch_size,
        settings.pause.as_millis(),
        rss_mb()
    );
    work.close().await;
    pool.close().await;
    Ok(())
}

async fn timed_evict(work: &PgPool, settings: &EvictionSettings) -> Result<(EvictionReport, f64)> {
    let t = Instant::now();
    let report = evict(
        work,
        &RetentionPeriod::parse(Some("P30D"))?,
        &[ResourceType::Conversations],
        false,
        settings,
        &tokio_util::sync::CancellationToken::new(),
        &memwarden_jobs::NoProgress,
    )
    .await?;
    Ok((report, t.elapsed().as_secs_f64()))
}

async fn fill_native(pool: &PgPool, conversations: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO conversations (owner_id, title, created_at, deleted_at) \
         SELECT 'owner-' || (g % 100), 'c', now() - interval '60 days', \
                now() - interval '40 days' - (g || ' seconds')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(conversations)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content) \
         SELECT c.id, 'user', 'entry ' || e FROM conversations c, generate_series(1, 4) e",
    )
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO conversations (owner_id, title) SELECT 'live', 'keep' FROM generate_series(1, 1000)")
        .execute(pool)
        .await?;
    Ok(())
}

async fn fill_memory_service(pool: &PgPool, conversations: i64, dims: usize) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(&format!(
        "SET LOCAL search_path = public, memwarden; {MEMORY_SERVICE_SCHEMA}"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let vector = format!("[{}]", vec!["0.1"; dims.max(1)].join(","));
    sqlx::query(
        "INSERT INTO public.conversation_groups (id, created_at, archived_at) \
         SELECT gen_random_uuid(), now() - interval '60 days', \
                now() - interval '40 days' - (g || ' seconds')::interval \
         FROM generate_series(1, $1) g \
         UNION ALL SELECT gen_random_uuid(), now(), NULL FROM generate_series(1, 1000)",
    )
    .bind(conversations)
    .execute(pool)
    .await?;
    for sql in [
        "INSERT INTO public.conversations (id, owner_user_id, client_id, conversation_group_id) \
         SELECT 'c-' || id, 'owner', 'app', id FROM public.conversation_groups",
        "INSERT INTO public.conversation_memberships (conversation_group_id, user_id, access_level) \
         SELECT id, 'owner', 'owner' FROM public.conversation_groups",
        "INSERT INTO public.entries (id, conversation_id, conversation_group_id, channel, content_type, \
           content, indexed_content) \
         SELECT gen_random_uuid(), c.id, c.conversation_group_id, 'history', 'text/plain', '\\x00', \
                'entry ' || e \
         FROM public.conversations c JOIN public.conversation_groups g ON g.id = c.conversation_group_id, \
              generate_series(1, 4) e WHERE g.archived_at IS NOT NULL",
    ] {
        sqlx::query(sql).execute(pool).await?;
    }
    sqlx::query(
        "INSERT INTO public.entry_embeddings (entry_id, conversation_id, conversation_group_id, embedding, model) \
         SELECT id, conversation_id, conversation_group_id, $1::vector, 'bench' FROM public.entries",
    )
    .bind(vector)
    .execute(pool)
    .await?;
    Ok(())
}
