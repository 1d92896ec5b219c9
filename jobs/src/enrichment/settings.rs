//! The enrichment pipeline's tunables, with the defaults spec/jobs.md gives.

use std::time::Duration;

use super::ENRICHMENT_VERSION;

/// The pipeline's tunables.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichmentSettings {
    /// The least cosine similarity of a SIMILAR_TO edge (0.8).
    pub similarity_threshold: f32,
    /// The most SIMILAR_TO neighbours one enrichment links (5).
    pub top_k: usize,
    /// How far back PRECEDED_BY looks from a memory's creation (7 days).
    pub preceded_window: Duration,
    /// The most PRECEDED_BY edges per memory (5).
    pub preceded_cap: usize,
    /// How many other live memories of a type must exist before its pattern is linked (3).
    pub pattern_min_others: usize,
    /// Written to `enrichment_version` ([`ENRICHMENT_VERSION`]).
    pub version: i32,
}

impl Default for EnrichmentSettings {
    fn default() -> Self {
        EnrichmentSettings {
            similarity_threshold: 0.8,
            top_k: 5,
            preceded_window: Duration::from_secs(7 * 24 * 3600),
            preceded_cap: 5,
            pattern_min_others: 3,
            version: ENRICHMENT_VERSION,
        }
    }
}
