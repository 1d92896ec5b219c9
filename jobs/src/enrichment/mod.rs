//! Enrichment: AutoMem's pipeline for one memory, made durable (spec/jobs.md, steps 1–6).
//!
//! 1. The embedding is made fresh: computed when missing, or when it was computed from other
//!    content (its `content_hash`) or with another model or size.
//! 2. Entities are extracted; the memory's `memory_entities` rows and `entity:` tags are
//!    replaced by them.
//! 3. PRECEDED_BY: up to `preceded_cap` earlier memories of the owner within
//!    `preceded_window` of this one's creation, nearest first.
//! 4. SIMILAR_TO: the `top_k` neighbours of the owner (never another owner's) at cosine ≥
//!    `similarity_threshold`, in both directions, weight = similarity.
//! 5. EXEMPLIFIES: once `pattern_min_others` other live memories share its type, the memory
//!    is linked to that type's pattern, which is created or observed once more.
//! 6. `enriched_at` and `enrichment_version` are set, with what AutoMem's clients read:
//!    `metadata.entities`, `metadata.enrichment` and `summary` (see `automem.rs`).
//!
//! Provider calls happen first, outside any transaction; all database writes of steps 2–6
//! are then one statement, gated on the content the pipeline read (see `store.rs`). Every
//! write is an upsert, so running the pipeline twice leaves the same rows, and dropping the
//! future at any point leaves the store consistent (at worst a fresh embedding is stored
//! without the rest, which the next run reuses).

pub mod automem;
mod catch_up;
mod outcome;
mod patterns;
mod settings;
mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

pub use catch_up::{memories_needing_enrichment, CatchUpArgs, NEEDS_ENRICHMENT};
pub use outcome::{EnrichError, EnrichmentReport, EnrichmentStatus, SkipReason};
pub use patterns::{pattern_confidence, pattern_id, top_terms, PATTERN_SAMPLE, PATTERN_TERMS};
pub use settings::EnrichmentSettings;

use crate::embedding::{validate_vectors, Embedder};
use crate::extraction::{normalize, Extractor};
use crate::vector::{
    EmbeddingRecord, NeighbourQuery, PgVectorIndex, VectorIndex, DEFAULT_CACHE_BYTES,
};
use crate::JobArgs;
use store::{Derived, Edge, PatternLink};

/// The pipeline version written to `enrichment_version`. Raise it when the pipeline changes
/// what it derives, and the catch-up schedule re-enriches every older memory.
///
/// 2 (2026-12-02): entity tags take AutoMem's plural categories (`entity:people:...`), and the
/// metadata and summary AutoMem's clients read are written.
pub const ENRICHMENT_VERSION: i32 = 2;

/// Edge kinds of `memory_edges`.
pub const PRECEDED_BY: &str = "PRECEDED_BY";
pub const SIMILAR_TO: &str = "SIMILAR_TO";
pub const EXEMPLIFIES: &str = "EXEMPLIFIES";

/// How often the content may change under a running enrichment before it gives up and lets
/// the queue retry later.
const MAX_CONTENT_RACES: usize = 3;

/// The arguments of an `enrichment` job: `{"memory_id": "<uuid>"}`, as the trigger writes them,
/// with `"forced": true` when an operator asked for it (a reprocess), which the memory's
/// `metadata.enrichment.forced` records as AutoMem's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichmentArgs {
    pub memory_id: Uuid,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

impl JobArgs for EnrichmentArgs {
    const KIND: &'static str = "enrichment";
}

impl EnrichmentArgs {
    /// The priority of enrichment for a fresh write (the trigger's); bulk work uses 0.
    pub const PRIORITY: i16 = 10;

    /// The job's unique key, the same as the trigger's, so that a memory has at most one
    /// pending enrichment however it was requested.
    pub fn unique_key(&self) -> String {
        format!("enrichment:{}", self.memory_id)
    }
}

/// The enrichment job's long-lived parts, built once by the runtime and shared by every
/// enrichment: the providers, the settings, and a [`PgVectorIndex`] with its vector cache
/// (which is what makes it faster than calling [`enrich`] per job).
#[derive(Clone)]
pub struct Enricher {
    pool: PgPool,
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    extractor: Arc<dyn Extractor>,
    settings: EnrichmentSettings,
}

impl Enricher {
    /// An enricher over the built-in index, caching up to [`DEFAULT_CACHE_BYTES`] of vectors.
    pub fn new(
        pool: PgPool,
        embedder: Arc<dyn Embedder>,
        extractor: Arc<dyn Extractor>,
        settings: EnrichmentSettings,
    ) -> Self {
        let index = Arc::new(PgVectorIndex::with_cache(pool.clone(), DEFAULT_CACHE_BYTES));
        Enricher {
            pool,
            index,
            embedder,
            extractor,
            settings,
        }
    }

    /// The same, with another vector index (an external one, or a differently sized cache).
    pub fn with_index(mut self, index: Arc<dyn VectorIndex>) -> Self {
        self.index = index;
        self
    }

    /// Enriches one memory (see [`enrich`]).
    pub async fn enrich(&self, memory_id: Uuid) -> Result<EnrichmentReport, EnrichError> {
        self.run(&EnrichmentArgs {
            memory_id,
            forced: false,
        })
        .await
    }

    /// Runs one enrichment job.
    pub async fn run(&self, args: &EnrichmentArgs) -> Result<EnrichmentReport, EnrichError> {
        enrich_with_index(
            &self.pool,
            &*self.index,
            args,
            &*self.embedder,
            &*self.extractor,
            &self.settings,
        )
        .await
    }

    pub fn settings(&self) -> &EnrichmentSettings {
        &self.settings
    }

    pub fn embedder(&self) -> &dyn Embedder {
        &*self.embedder
    }
}

/// Enriches one memory with the built-in vector index (`memory_embeddings`), uncached: for
/// one-off calls. A worker that enriches many memories should hold an [`Enricher`].
pub async fn enrich(
    pool: &PgPool,
    memory_id: Uuid,
    embedder: &dyn Embedder,
    extractor: &dyn Extractor,
    settings: &EnrichmentSettings,
) -> Result<EnrichmentReport, EnrichError> {
    let index = PgVectorIndex::new(pool.clone());
    let args = EnrichmentArgs {
        memory_id,
        forced: false,
    };
    enrich_with_index(pool, &index, &args, embedder, extractor, settings).await
}

/// Enriches one memory, with embeddings kept in `index`.
pub async fn enrich_with_index(
    pool: &PgPool,
    index: &dyn VectorIndex,
    args: &EnrichmentArgs,
    embedder: &dyn Embedder,
    extractor: &dyn Extractor,
    settings: &EnrichmentSettings,
) -> Result<EnrichmentReport, EnrichError> {
    let memory_id = args.memory_id;
    for _ in 0..MAX_CONTENT_RACES {
        match enrich_once(pool, index, args, embedder, extractor, settings).await {
            Ok(Some(report)) => {
                tracing::debug!(?report, "memory enriched");
                return Ok(report);
            }
            // The memory changed or went away under us: read it again.
            Ok(None) => continue,
            Err(e) if e.is_lost_race() => {
                tracing::debug!(%memory_id, error = %e, "enrichment write lost a race; retrying");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(EnrichError::ContentChanging { memory_id })
}

/// One pass; `None` when the memory changed between the read and the write.
async fn enrich_once(
    pool: &PgPool,
    index: &dyn VectorIndex,
    args: &EnrichmentArgs,
    embedder: &dyn Embedder,
    extractor: &dyn Extractor,
    settings: &EnrichmentSettings,
) -> Result<Option<EnrichmentReport>, EnrichError> {
    let memory_id = args.memory_id;
    let memory = match store::load(
        pool,
        memory_id,
        settings.preceded_window,
        settings.preceded_cap,
        // Enough to tell whether the type has `pattern_min_others`, and a sample for terms.
        PATTERN_SAMPLE.max(settings.pattern_min_others),
    )
    .await?
    {
        None => {
            return Ok(Some(EnrichmentReport::skipped(
                memory_id,
                SkipReason::Missing,
            )))
        }
        Some(m) if m.deleted => {
            return Ok(Some(EnrichmentReport::skipped(
                memory_id,
                SkipReason::Deleted,
            )))
        }
        Some(m) => m,
    };

    // 1. A fresh embedding.
    let stored = index.get(memory_id).await?;
    let (vector, embedded, replaced) = match stored {
        Some(s) if s.is_fresh(&memory.content_hash, embedder.model(), embedder.dims()) => {
            (s.vector, false, false)
        }
        previous => {
            let mut vectors = embedder
                .embed(std::slice::from_ref(&memory.content))
                .await?;
            // Providers validate their answers; checked again here because a wrong vector
            // must never reach the index, whatever the embedder.
            validate_vectors(1, embedder.dims(), &vectors)?;
            let vector = vectors.pop().expect("validated: one vector");
            index
                .upsert(&[EmbeddingRecord {
                    memory_id,
                    model: embedder.model().to_string(),
                    content_hash: memory.content_hash.clone(),
                    vector: vector.clone(),
                }])
                .await?;
            (vector, true, previous.is_some())
        }
    };

    // 2. Entities.
    let entities = normalize(extractor.extract(&memory.content).await?);

    // 4. Neighbours (3 came with the memory).
    let neighbours = index
        .nearest(&NeighbourQuery {
            owner_id: &memory.owner_id,
            model: embedder.model(),
            vector: &vector,
            exclude: Some(memory_id),
            threshold: settings.similarity_threshold,
            k: settings.top_k,
        })
        .await?;

    // 5. The pattern, once enough others share the type.
    let pattern = (memory.type_sample.len() >= settings.pattern_min_others).then(|| {
        let texts = std::iter::once(memory.content.as_str())
            .chain(memory.type_sample.iter().map(String::as_str));
        (
            pattern_id(&memory.memory_type),
            top_terms(texts, PATTERN_TERMS),
        )
    });

    let mut edges = Vec::with_capacity(memory.preceded.len() + 2 * neighbours.len() + 1);
    edges.extend(memory.preceded.iter().map(|&dst| Edge {
        src: memory_id,
        dst,
        kind: PRECEDED_BY,
        weight: 1.0,
    }));
    for n in &neighbours {
        for (src, dst) in [(memory_id, n.memory_id), (n.memory_id, memory_id)] {
            edges.push(Edge {
                src,
                dst,
                kind: SIMILAR_TO,
                weight: n.similarity,
            });
        }
    }

    let detected = pattern.as_ref().map(|(_, terms)| automem::DetectedPattern {
        memory_type: &memory.memory_type,
        similar_memories: memory.type_sample.len(),
        key_terms: terms,
    });
    let enrichment = automem::enrichment_metadata(
        args.forced,
        memory.preceded.len(),
        detected,
        neighbours.iter().map(|n| (n.memory_id, n.similarity)),
    );

    // 2–6 in one statement.
    let written = store::write(
        pool,
        &Derived {
            memory_id,
            content_hash: &memory.content_hash,
            version: settings.version,
            entities: &entities,
            edges: &edges,
            replace_similar: replaced,
            entities_metadata: automem::entities_metadata(&entities),
            enrichment_metadata: enrichment,
            summary: automem::summary(&memory.content),
        },
    )
    .await?;
    if !written {
        return Ok(None);
    }
    if let Some((pattern_id, terms)) = &pattern {
        let linked = store::link_pattern(
            pool,
            &PatternLink {
                memory_id,
                content_hash: &memory.content_hash,
                pattern_id: *pattern_id,
                memory_type: &memory.memory_type,
                terms,
            },
        )
        .await?;
        if !linked {
            return Ok(None);
        }
    }
    Ok(Some(EnrichmentReport {
        memory_id,
        status: EnrichmentStatus::Enriched,
        reason: None,
        embedded,
        entities: entities.len(),
        preceded_by: memory.preceded.len(),
        similar_to: neighbours.len(),
        pattern: pattern.map(|(id, _)| id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_shape_and_key() {
        let id = Uuid::from_u128(7);
        let args = EnrichmentArgs {
            memory_id: id,
            forced: false,
        };
        assert_eq!(
            serde_json::to_value(args).unwrap(),
            serde_json::json!({"memory_id": id})
        );
        let forced: EnrichmentArgs =
            serde_json::from_value(serde_json::json!({"memory_id": id, "forced": true})).unwrap();
        assert!(forced.forced);
        assert_eq!(args.unique_key(), format!("enrichment:{id}"));
        assert_eq!(EnrichmentArgs::KIND, "enrichment");
    }
}
