//! Builds the embedding and extraction providers of the memory-store domain from settings.

use std::sync::Arc;
use std::time::Duration;

use memwarden_jobs::reembed::BulkSettings;
use memwarden_jobs::{
    Embedder, EnrichmentSettings, Extractor, HashEmbedder, LlmExtractionConfig, LlmExtractor,
    OpenAiEmbedder, OpenAiEmbeddingConfig, RuleExtractor,
};

use crate::config::Settings;

/// The `hash` embedder's size when `embedding.dimensions` is not set.
pub const HASH_DIMS: usize = 384;

pub fn embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let e = &settings.embedding;
    Ok(match e.provider.as_str() {
        "openai" => Arc::new(OpenAiEmbedder::new(OpenAiEmbeddingConfig {
            base_url: e.base_url.clone(),
            api_key: e.api_key.clone(),
            model: e.model.clone(),
            dimensions: e.dimensions,
            max_batch_inputs: e.max_batch_inputs,
            max_batch_tokens: e.max_batch_tokens,
            timeout: Duration::from_secs_f64(e.timeout),
            max_retries: e.max_retries,
            ..OpenAiEmbeddingConfig::default()
        })?),
        _ => Arc::new(HashEmbedder::new(
            e.dimensions.map(|d| d as usize).unwrap_or(HASH_DIMS),
        )),
    })
}

pub fn extractor(settings: &Settings) -> anyhow::Result<Arc<dyn Extractor>> {
    let x = &settings.extraction;
    Ok(match x.provider.as_str() {
        "llm" => Arc::new(LlmExtractor::new(LlmExtractionConfig {
            base_url: x
                .base_url
                .clone()
                .unwrap_or_else(|| settings.embedding.base_url.clone()),
            api_key: x
                .api_key
                .clone()
                .or_else(|| settings.embedding.api_key.clone()),
            model: x.model.clone(),
            timeout: Duration::from_secs_f64(settings.embedding.timeout),
            ..LlmExtractionConfig::default()
        })?),
        _ => Arc::new(RuleExtractor::new(x.tools.clone(), x.projects.clone())),
    })
}

/// How bulk work (reembed, sync) uses the provider: requests are paced to
/// `requests_per_minute` only for a remote provider (the `hash` embedder makes no requests).
pub fn bulk_settings(settings: &Settings) -> BulkSettings {
    let e = &settings.embedding;
    BulkSettings {
        concurrency: e.concurrency.max(1) as usize,
        requests_per_minute: (e.provider == "openai").then_some(e.requests_per_minute),
        ..BulkSettings::default()
    }
}

pub fn enrichment_settings(settings: &Settings) -> EnrichmentSettings {
    EnrichmentSettings {
        similarity_threshold: settings.enrichment.similarity_threshold,
        top_k: settings.enrichment.top_k,
        ..EnrichmentSettings::default()
    }
}
