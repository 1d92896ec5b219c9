//! What the domain tests share: memories inserted with plain SQL, the rows enrichment
//! leaves, and one enrichment with the hash embedder.

use std::time::Duration;

use memwarden_jobs::{enrich, EnrichmentSettings, HashEmbedder, RuleExtractor};
use sqlx::PgPool;
use uuid::Uuid;

pub async fn insert(
    pool: &PgPool,
    owner: &str,
    memory_type: &str,
    content: &str,
    age: Duration,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO memories (owner_id, memory_type, content, created_at, updated_at) \
         VALUES ($1, $2, $3, now() - $4 * interval '1 second', now() - $4 * interval '1 second') \
         RETURNING id",
    )
    .bind(owner)
    .bind(memory_type)
    .bind(content)
    .bind(age.as_secs_f64())
    .fetch_one(pool)
    .await
    .expect("inserting a memory")
}

pub fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Every row of the memory store, as text, in a stable order.
pub async fn snapshot(pool: &PgPool) -> String {
    let mut out = String::new();
    for table in [
        "memories",
        "memory_embeddings",
        "memory_entities",
        "memory_edges",
        "patterns",
    ] {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '') FROM {table} x"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push_str(&format!("== {table}\n{rows}\n"));
    }
    out
}

pub async fn edges_from(pool: &PgPool, src: Uuid, kind: &str) -> Vec<(Uuid, f32)> {
    sqlx::query_as(
        "SELECT dst_id, weight FROM memory_edges WHERE src_id = $1 AND kind = $2 ORDER BY weight DESC, dst_id",
    )
    .bind(src)
    .bind(kind)
    .fetch_all(pool)
    .await
    .unwrap()
}

pub async fn enrich_hash(pool: &PgPool, id: Uuid) -> memwarden_jobs::EnrichmentReport {
    enrich(
        pool,
        id,
        &HashEmbedder::default(),
        &RuleExtractor::default(),
        &EnrichmentSettings::default(),
    )
    .await
    .expect("enrichment")
}

/// Twelve words of one topic with the words at `changed` replaced: one changed word keeps the
/// hash-embedding cosine to the original near 0.9; three push it under 0.8.
pub fn variant(changed: &[usize], tag: &str) -> String {
    let base = "kubernetes helm deploy pipeline staging cluster rollout canary traffic shifting metrics alerts";
    base.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if changed.contains(&i) {
                format!("{w}{tag}{i}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
