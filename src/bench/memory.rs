//! `memwarden bench memory`: N conversations of 30 entries each, over a `hybrid_summary`
//! configuration's 20-message limit, flushed by the real `memory-flush` domain function with
//! the offline summariser at a given concurrency (conversations/s); then the configuration's
//! privacy policy (an SSN pattern) re-applied to all of them (time per entry scanned); then
//! the write path with and without redaction (`memory_write`).

use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use memwarden_jobs::memory_policies::{
    apply_privacy, flush_conversation, MemoryPrivacyArgs, PolicySettings,
};
use tokio_util::sync::CancellationToken;

use super::memory_load::{insert_config, CONTENT, SSN_PATTERN};
use super::memory_write::{write_path, WriteLoad};
use super::support::{in_fresh_database, migrated_pool};

const ENTRIES: i32 = 30;
pub async fn memory(
    server_url: &str,
    conversations: i64,
    concurrency: usize,
    write: WriteLoad,
) -> Result<()> {
    // 0 leaves a part out, so the write path can be run alone.
    if conversations > 0 {
        in_fresh_database(server_url, "memory", |url| {
            run(url, conversations, concurrency)
        })
        .await?;
    }
    if write.conversations > 0 {
        write_path(server_url, write, concurrency as u32).await?;
    }
    Ok(())
}

async fn run(url: String, conversations: i64, concurrency: usize) -> Result<()> {
    let pool = migrated_pool(&url).await?;
    let config = serde_json::json!({"type": "message_count_based", "max_messages": 20,
        "flushing": {"type": "hybrid_summary", "summary_tokens": 200, "summarize_oldest_percent": 50},
        "persistence": {"type": "postgres", "ttl": "720h"},
        "privacy_policy": {"redact_patterns": [SSN_PATTERN]}});
    insert_config(&pool, &config).await?;
    // Loaded without the entry trigger: the bench runs the functions itself.
    sqlx::query(
        "ALTER TABLE conversation_entries DISABLE TRIGGER conversation_entries_enqueue_policies",
    )
    .execute(&pool)
    .await?;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) \
         SELECT 'bench', 'bench' FROM generate_series(1, $1) RETURNING id",
    )
    .bind(conversations)
    .fetch_all(&pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO conversation_entries (conversation_id, role, content, created_at) \
         SELECT c.id, 'user', {CONTENT}, now() - make_interval(mins => 100 - g) \
           FROM conversations c, generate_series(1, $1) g"
    ))
    .bind(ENTRIES)
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;

    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let pool = pool.clone();
            async move { flush_conversation(&pool, id).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut summarised = 0;
    for r in results {
        summarised += u64::from(r?.summarised);
    }
    println!(
        "flush: {conversations} conversations of {ENTRIES} entries, {summarised} summarised, \
         concurrency {concurrency}: {secs:.2} s, {:.0} conversations/s",
        conversations as f64 / secs
    );

    let started = Instant::now();
    let target = MemoryPrivacyArgs::policy_changed("default", "bench").target()?;
    let r = apply_privacy(
        &pool,
        &target,
        &PolicySettings::default(),
        &CancellationToken::new(),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "privacy: {} conversations, {} entries scanned, {} redacted: {secs:.2} s, {:.1} µs per entry",
        r.conversations,
        r.scanned,
        r.redacted,
        secs * 1e6 / r.scanned.max(1) as f64
    );
    Ok(())
}
