//! Builds the embedding and extraction providers of the memory-store domain from settings.

use std::num::NonZeroU32;
use std::sync::Arc;

use memwarden_jobs::embedding::{CoalesceSettings, CoalescingEmbedder};
use memwarden_jobs::reembed::BulkSettings;
use memwarden_jobs::{
    Embedder, EnrichmentSettings, Extractor, HashEmbedder, LlmExtractionConfig, LlmExtractor,
    OpenAiEmbedder, OpenAiEmbeddingConfig, RuleExtractor,
};

use crate::config::{EmbeddingProvider, ExtractionProvider, Settings};

pub fn embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let e = &settings.embedding;
    Ok(match e.provider {
        EmbeddingProvider::Openai => Arc::new(OpenAiEmbedder::new(OpenAiEmbeddingConfig {
            base_url: e.base_url.clone(),
            api_key: e.api_key.clone(),
            model: e.model.clone(),
            dimensions: e.dimensions.map(NonZeroU32::get),
            max_batch_inputs: e.max_batch_inputs,
            max_batch_tokens: e.max_batch_tokens,
            timeout: e.timeout,
            max_retries: e.max_retries,
            ..OpenAiEmbeddingConfig::default()
        })?),
        EmbeddingProvider::Hash => Arc::new(HashEmbedder::new(
            e.expected_dims().unwrap_or(HashEmbedder::DEFAULT_DIMS),
        )),
    })
}

/// The embedder enrichment uses. For an `openai` provider, its requests are paced to
/// `requests_per_minute` and `tokens_per_minute`, at most `concurrency` in flight, and with
/// `embedding.coalesce` the embeddings of concurrent enrichments share requests; without it,
/// each memory is its own request. Unpaced, a burst of enrichments meets the provider's 429s,
/// and their `retry-after-ms` of a few milliseconds spends a job's attempts in seconds.
pub fn enrichment_embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let base = embedder(settings)?;
    let e = &settings.embedding;
    if e.provider != EmbeddingProvider::Openai {
        return Ok(base);
    }
    Ok(Arc::new(CoalescingEmbedder::new(
        base,
        CoalesceSettings {
            max_inputs: if e.coalesce { e.max_batch_inputs } else { 1 },
            max_wait: e.coalesce_wait_ms,
            max_in_flight: e.concurrency.get() as usize,
            requests_per_minute: Some(e.requests_per_minute.get()),
            tokens_per_minute: e.tokens_per_minute.map(NonZeroU32::get),
        },
    )))
}

pub fn extractor(settings: &Settings) -> anyhow::Result<Arc<dyn Extractor>> {
    let x = &settings.extraction;
    Ok(match x.provider {
        ExtractionProvider::Llm => Arc::new(LlmExtractor::new(LlmExtractionConfig {
            base_url: x
                .base_url
                .clone()
                .unwrap_or_else(|| settings.embedding.base_url.clone()),
            api_key: x
                .api_key
                .clone()
                .or_else(|| settings.embedding.api_key.clone()),
            model: x.model.clone(),
            timeout: settings.embedding.timeout,
            ..LlmExtractionConfig::default()
        })?),
        ExtractionProvider::Rules => {
            Arc::new(RuleExtractor::new(x.tools.clone(), x.projects.clone()))
        }
    })
}

/// How bulk work (reembed, sync) uses the provider: requests are paced to
/// `requests_per_minute` only for a remote provider (the `hash` embedder makes no requests).
pub fn bulk_settings(settings: &Settings) -> BulkSettings {
    let e = &settings.embedding;
    BulkSettings {
        concurrency: e.concurrency.get() as usize,
        requests_per_minute: (e.provider == EmbeddingProvider::Openai)
            .then_some(e.requests_per_minute.get()),
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
