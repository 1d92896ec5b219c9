//! The enrichment's statements against the memory store: one read of everything the pipeline
//! needs about a memory, one write of everything it derived, and the link to its pattern.
//!
//! The write is a single statement (data-modifying CTEs), so it is atomic without an explicit
//! transaction and costs one round trip. It is gated on the content hash the pipeline read:
//! if the memory was edited or deleted in the meantime, nothing is written and the caller
//! starts over on the new content.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::EnrichError;
use crate::extraction::Entity;

/// A memory with the context its enrichment needs.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct MemoryContext {
    pub owner_id: String,
    pub memory_type: String,
    pub content: String,
    pub content_hash: String,
    pub deleted: bool,
    /// Up to `cap` earlier live memories of the owner within the window, nearest first.
    pub preceded: Vec<Uuid>,
    /// The contents (first 2000 characters) of up to `type_sample` other live memories of
    /// the same type, most recent first.
    pub type_sample: Vec<String>,
}

/// Reads the memory; `None` when there is no such row.
pub(super) async fn load(
    pool: &PgPool,
    memory_id: Uuid,
    preceded_window: Duration,
    preceded_cap: usize,
    type_sample: usize,
) -> Result<Option<MemoryContext>, EnrichError> {
    // "Earlier" is (created_at, id) order, so memories inserted in one statement (same
    // created_at) still get a stable order; the window is relative to the memory's own
    // creation, so re-enriching later gives the same edges.
    //
    // The two limits are written into the statement, not bound: PostgreSQL prices a generic
    // plan's `LIMIT $n` as a tenth of the rows, so with bound limits it judged the generic plan
    // dearer than a custom one and planned this statement again on every call. They come from
    // settings (integers), so there is one statement text per configuration.
    let sql = format!(
        "SELECT m.owner_id, m.memory_type, m.content, m.content_hash, \
                m.deleted_at IS NOT NULL AS deleted, \
                ARRAY(SELECT p.id FROM memories p \
                      WHERE p.owner_id = m.owner_id AND p.deleted_at IS NULL \
                        AND (p.created_at, p.id) < (m.created_at, m.id) \
                        AND p.created_at >= m.created_at - $2 * interval '1 second' \
                      ORDER BY p.created_at DESC, p.id DESC LIMIT {preceded_cap}) AS preceded, \
                ARRAY(SELECT left(t.content, 2000) FROM memories t \
                      WHERE t.memory_type = m.memory_type AND t.deleted_at IS NULL AND t.id <> m.id \
                      ORDER BY t.created_at DESC, t.id DESC LIMIT {type_sample}) AS type_sample \
         FROM memories m WHERE m.id = $1"
    );
    sqlx::query_as::<_, MemoryContext>(&sql)
        .bind(memory_id)
        .bind(preceded_window.as_secs_f64())
        .fetch_optional(pool)
        .await
        .map_err(EnrichError::db("reading the memory"))
}

/// One directed edge to upsert.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Edge {
    pub src: Uuid,
    pub dst: Uuid,
    pub kind: &'static str,
    pub weight: f32,
}

/// Everything derived for one memory.
pub(super) struct Derived<'a> {
    pub memory_id: Uuid,
    /// The content hash the pipeline worked from: the gate.
    pub content_hash: &'a str,
    pub version: i32,
    pub entities: &'a [Entity],
    pub edges: &'a [Edge],
    /// Whether the memory's SIMILAR_TO edges of its previous content must go.
    pub replace_similar: bool,
    /// AutoMem's `metadata.entities`, replacing the previous run's.
    pub entities_metadata: serde_json::Value,
    /// AutoMem's `metadata.enrichment`, to which the write adds `last_run`.
    pub enrichment_metadata: serde_json::Value,
    pub summary: Option<String>,
}

/// The pattern a memory exemplifies.
pub(super) struct PatternLink<'a> {
    pub memory_id: Uuid,
    /// The content hash the pipeline worked from: the gate.
    pub content_hash: &'a str,
    pub pattern_id: Uuid,
    pub memory_type: &'a str,
    pub terms: &'a [String],
}

/// The memory's new `enriched_at`: kept when it is already current for this content and
/// pipeline version, so a rerun (a retry, a forced reprocess) leaves the same row. AutoMem's
/// `metadata.enrichment.last_run` is the same instant.
const ENRICHED_AT: &str = "CASE WHEN enriched_at IS NOT NULL AND enrichment_version = $4 \
                           AND enriched_at >= updated_at THEN enriched_at ELSE now() END";

/// Writes the derived rows; `false` when the memory changed or went away since it was read.
///
/// Every part is an upsert that leaves unchanged rows alone, so writing the same result
/// twice leaves the same rows:
/// - the memory: `entity:` tags replaced by the current ones (other tags kept, in order),
///   `enrichment_version`, `enriched_at` (kept when it is already current), `summary`, and
///   `metadata.entities` and `metadata.enrichment` replaced (other keys kept; metadata that is
///   not an object is kept under `_raw_metadata`, as AutoMem does);
/// - entities: rows no longer found are deleted, the others upserted;
/// - edges: inserted in key order, so concurrent enrichments of neighbours lock them in the
///   same order and do not deadlock; a changed weight is updated.
pub(super) async fn write(pool: &PgPool, d: &Derived<'_>) -> Result<bool, EnrichError> {
    let tags: Vec<String> = d.entities.iter().map(Entity::tag).collect();
    let categories: Vec<&str> = d.entities.iter().map(|e| e.category.as_str()).collect();
    let values: Vec<&str> = d.entities.iter().map(|e| e.value.as_str()).collect();
    let slugs: Vec<&str> = d.entities.iter().map(|e| e.slug.as_str()).collect();
    let srcs: Vec<Uuid> = d.edges.iter().map(|e| e.src).collect();
    let dsts: Vec<Uuid> = d.edges.iter().map(|e| e.dst).collect();
    let kinds: Vec<&str> = d.edges.iter().map(|e| e.kind).collect();
    let weights: Vec<f32> = d.edges.iter().map(|e| e.weight).collect();
    sqlx::query_scalar(&format!(
        "WITH m AS ( \
             UPDATE memories SET \
                 tags = ARRAY(SELECT t FROM unnest(tags) WITH ORDINALITY AS u(t, o) \
                              WHERE t NOT LIKE 'entity:%' ORDER BY o) || $3::text[], \
                 enriched_at = {ENRICHED_AT}, \
                 enrichment_version = $4, \
                 summary = $13, \
                 metadata = CASE WHEN jsonb_typeof(metadata) = 'object' \
                                 THEN metadata - 'entities' - 'enrichment' \
                                 ELSE jsonb_build_object('_raw_metadata', metadata) END \
                            || jsonb_build_object('entities', $14::jsonb, \
                                   'enrichment', $15::jsonb || jsonb_build_object('last_run', {ENRICHED_AT})) \
             WHERE id = $1 AND content_hash = $2 AND deleted_at IS NULL \
             RETURNING id), \
         entities_gone AS ( \
             DELETE FROM memory_entities e USING m WHERE e.memory_id = m.id \
               AND (e.category, e.slug) NOT IN (SELECT * FROM unnest($5::text[], $7::text[]))), \
         entities_new AS ( \
             INSERT INTO memory_entities (memory_id, category, value, slug) \
             SELECT m.id, n.c, n.v, n.s FROM m, unnest($5::text[], $6::text[], $7::text[]) AS n(c, v, s) \
             ON CONFLICT (memory_id, category, slug) DO UPDATE SET value = EXCLUDED.value \
               WHERE memory_entities.value IS DISTINCT FROM EXCLUDED.value), \
         similar_gone AS ( \
             DELETE FROM memory_edges e USING m \
             WHERE $12 AND e.kind = 'SIMILAR_TO' AND (e.src_id = m.id OR e.dst_id = m.id) \
               AND (e.src_id, e.dst_id, e.kind) NOT IN \
                   (SELECT * FROM unnest($8::uuid[], $9::uuid[], $10::text[]))), \
         edges AS ( \
             INSERT INTO memory_edges (src_id, dst_id, kind, weight) \
             SELECT n.s, n.d, n.k, n.w \
             FROM m, unnest($8::uuid[], $9::uuid[], $10::text[], $11::real[]) AS n(s, d, k, w) \
             ORDER BY n.s, n.d, n.k \
             ON CONFLICT (src_id, dst_id, kind) DO UPDATE SET weight = EXCLUDED.weight \
               WHERE memory_edges.weight IS DISTINCT FROM EXCLUDED.weight \
             RETURNING 1) \
         SELECT EXISTS (SELECT 1 FROM m)",
    ))
    .bind(d.memory_id)
    .bind(d.content_hash)
    .bind(&tags)
    .bind(d.version)
    .bind(&categories)
    .bind(&values)
    .bind(&slugs)
    .bind(&srcs)
    .bind(&dsts)
    .bind(&kinds)
    .bind(&weights)
    .bind(d.replace_similar)
    .bind(&d.summary)
    .bind(&d.entities_metadata)
    .bind(&d.enrichment_metadata)
    .fetch_one(pool)
    .await
    .map_err(EnrichError::db("writing the enrichment"))
}

/// Links the memory to its type's pattern; `false` when the memory changed or went away.
///
/// A statement of its own, after [`write`]: every enrichment of a type touches the type's one
/// pattern row, and inside the larger write that row stayed locked for the whole write and its
/// commit, which made enrichments of a type run one at a time. Here it is locked only for this
/// short statement. The edge and the observation it counts are still written together: the
/// pattern gains an observation (and confidence, and fresh terms) only when the memory's
/// EXEMPLIFIES edge is new, so re-enriching a memory never counts it twice.
pub(super) async fn link_pattern(pool: &PgPool, l: &PatternLink<'_>) -> Result<bool, EnrichError> {
    sqlx::query_scalar(
        "WITH m AS ( \
             SELECT id FROM memories WHERE id = $1 AND content_hash = $2 AND deleted_at IS NULL), \
         edge AS ( \
             INSERT INTO memory_edges (src_id, dst_id, kind, weight) \
             SELECT m.id, $3, $6, 1.0 FROM m \
             ON CONFLICT (src_id, dst_id, kind) DO NOTHING \
             RETURNING 1), \
         pattern AS ( \
             INSERT INTO patterns AS p (id, memory_type, terms, confidence, observations) \
             SELECT $3, $4, $5::text[], 0.35, 1 FROM m \
             ON CONFLICT (memory_type) DO UPDATE SET \
                 observations = p.observations + 1, \
                 confidence = least(0.95, 0.35 + 0.05 * p.observations), \
                 terms = EXCLUDED.terms \
               WHERE EXISTS (SELECT 1 FROM edge) \
             RETURNING id) \
         SELECT EXISTS (SELECT 1 FROM m)",
    )
    .bind(l.memory_id)
    .bind(l.content_hash)
    .bind(l.pattern_id)
    .bind(l.memory_type)
    .bind(l.terms)
    .bind(super::EXEMPLIFIES)
    .fetch_one(pool)
    .await
    .map_err(EnrichError::db("linking the pattern"))
}
