//! Embeddings from any OpenAI-compatible `/embeddings` endpoint (OpenAI, Azure, vLLM, Ollama,
//! TEI).
//!
//! The request body is async-openai's `CreateEmbeddingRequest`, but the HTTP call is made with
//! reqwest directly: async-openai's client hides the response headers, so it cannot honour
//! `Retry-After`, and it retries 429s on its own schedule, which would hide them from the
//! metrics and hold a worker for up to 15 minutes. The retry policy here is the spec's:
//! 429 waits for `Retry-After` (else exponential backoff with jitter), `insufficient_quota`
//! fails at once, 5xx and timeouts are retried, other 4xx fail at once, and an answer of the
//! wrong length or dimension is an error, never a result.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput, EncodingFormat};
use async_trait::async_trait;
use rand::Rng;

use super::openai_wire::{classify_failure, error_chain, snippet, EmbeddingResponse};
use super::{count_inputs, count_request, validate_vectors, EmbedError, Embedder};

const PROVIDER: &str = "openai";

/// Settings of the OpenAI-compatible embedder. `Debug` masks the API key.
#[derive(Clone)]
pub struct OpenAiEmbeddingConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://vllm:8000/v1`;
    /// `/embeddings` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; none for local servers that need no key.
    pub api_key: Option<String>,
    pub model: String,
    /// Sent as `dimensions` only when set (text-embedding-3 models shorten their vectors).
    pub dimensions: Option<u32>,
    /// Inputs per request (OpenAI's limit is 2048).
    pub max_batch_inputs: usize,
    /// Estimated tokens per request (OpenAI's limit is 300,000), counting 4 characters a token.
    pub max_batch_tokens: usize,
    /// Per HTTP request, connection included.
    pub timeout: Duration,
    /// Retries of one request after a 429, a 5xx, a timeout or a connection failure.
    pub max_retries: u32,
    /// The first backoff delay; each retry doubles it, with jitter.
    pub backoff_base: Duration,
    /// The longest single wait: caps the backoff, and a `Retry-After` longer than this is
    /// not waited out in-process but returned as `RateLimited { retry_after }`, so the queue
    /// reschedules the job instead of a worker sleeping on it.
    pub max_backoff: Duration,
}

impl Default for OpenAiEmbeddingConfig {
    fn default() -> Self {
        OpenAiEmbeddingConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "text-embedding-3-small".into(),
            dimensions: None,
            max_batch_inputs: 2048,
            max_batch_tokens: 300_000,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for OpenAiEmbeddingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbeddingConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "********"))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("max_batch_inputs", &self.max_batch_inputs)
            .field("max_batch_tokens", &self.max_batch_tokens)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// The embedder for OpenAI-compatible endpoints (`provider = "openai"`).
pub struct OpenAiEmbedder {
    config: OpenAiEmbeddingConfig,
    url: String,
    http: reqwest::Client,
    /// The vector length: configured, known for the model, or learned from the first answer.
    dims: AtomicUsize,
}

impl OpenAiEmbedder {
    /// Builds the HTTP client (rustls, the system's root certificates).
    pub fn new(config: OpenAiEmbeddingConfig) -> Result<Self, EmbedError> {
        if config.model.trim().is_empty() {
            return Err(EmbedError::Permanent(
                "no embedding model configured".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| EmbedError::Permanent(format!("building the HTTP client: {e}")))?;
        let dims = config
            .dimensions
            .map(|d| d as usize)
            .or_else(|| native_dims(&config.model))
            .unwrap_or(0);
        Ok(OpenAiEmbedder {
            url: format!("{}/embeddings", config.base_url.trim_end_matches('/')),
            config,
            http,
            dims: AtomicUsize::new(dims),
        })
    }

    pub fn config(&self) -> &OpenAiEmbeddingConfig {
        &self.config
    }

    /// One batch, retried as the policy says.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut retries = 0;
        loop {
            let error = match self.request(batch).await {
                Ok(vectors) => {
                    count_request(PROVIDER, "ok");
                    count_inputs(PROVIDER, batch.len());
                    return Ok(vectors);
                }
                Err(e) => e,
            };
            count_request(PROVIDER, error.status_label());
            let wait = match &error {
                EmbedError::RateLimited {
                    retry_after: Some(after),
                    ..
                } if *after > self.config.max_backoff => return Err(error),
                EmbedError::RateLimited {
                    retry_after: Some(after),
                    ..
                } => *after,
                EmbedError::RateLimited { .. } | EmbedError::Transient(_) => {
                    backoff(retries, self.config.backoff_base, self.config.max_backoff)
                }
                _ => return Err(error),
            };
            if retries >= self.config.max_retries {
                return Err(error);
            }
            retries += 1;
            tracing::warn!(
                provider = PROVIDER,
                model = %self.config.model,
                inputs = batch.len(),
                retry = retries,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "embedding request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP request, classified.
    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = CreateEmbeddingRequest {
            model: self.config.model.clone(),
            input: EmbeddingInput::StringArray(batch.to_vec()),
            encoding_format: Some(EncodingFormat::Float),
            user: None,
            dimensions: self.config.dimensions,
        };
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            EmbedError::Transient(format!("POST {}: {}", self.url, error_chain(&e)))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| {
            EmbedError::Transient(format!(
                "reading the answer of POST {}: {}",
                self.url,
                error_chain(&e)
            ))
        })?;
        if status.is_success() {
            return self.parse_vectors(batch.len(), &bytes);
        }
        Err(classify_failure(status, &headers, &bytes))
    }

    fn parse_vectors(&self, inputs: usize, body: &[u8]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let parsed: EmbeddingResponse = serde_json::from_slice(body).map_err(|e| {
            EmbedError::BadResponse(format!(
                "unreadable embeddings answer ({e}): {}",
                snippet(body)
            ))
        })?;
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
        for (position, item) in parsed.data.into_iter().enumerate() {
            // `index` says which input a vector belongs to; servers that omit it answer in order.
            let i = item.index.map_or(position, |i| i as usize);
            match slots.get_mut(i) {
                Some(slot @ None) => *slot = Some(item.embedding),
                Some(Some(_)) => {
                    return Err(EmbedError::BadResponse(format!(
                        "two vectors for input {i}"
                    )))
                }
                None => {
                    return Err(EmbedError::BadResponse(format!(
                        "a vector for input {i} of {inputs}"
                    )))
                }
            }
        }
        let got = slots.iter().filter(|s| s.is_some()).count();
        if got != inputs {
            return Err(EmbedError::BadResponse(format!(
                "{got} vectors for {inputs} inputs"
            )));
        }
        let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
        let dims = self.dims.load(Ordering::Relaxed);
        validate_vectors(inputs, dims, &vectors)?;
        if dims == 0 {
            // First answer of a model of unknown size: hold every later answer to it.
            let learned = vectors[0].len();
            if let Err(other) =
                self.dims
                    .compare_exchange(0, learned, Ordering::Relaxed, Ordering::Relaxed)
            {
                validate_vectors(inputs, other, &vectors)?;
            }
        }
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn dims(&self) -> usize {
        self.dims.load(Ordering::Relaxed)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for range in plan_batches(
            texts,
            self.config.max_batch_inputs,
            self.config.max_batch_tokens,
        ) {
            out.extend(self.embed_batch(&texts[range]).await?);
        }
        Ok(out)
    }
}

/// Splits `texts` into consecutive request ranges of at most `max_inputs` inputs and at most
/// `max_tokens` estimated tokens each. A single text over the token budget goes alone (the
/// provider then decides), so every text is in exactly one range and order is kept.
pub fn plan_batches(texts: &[String], max_inputs: usize, max_tokens: usize) -> Vec<Range<usize>> {
    let max_inputs = max_inputs.max(1);
    let mut batches = Vec::new();
    let (mut start, mut tokens) = (0, 0usize);
    for (i, text) in texts.iter().enumerate() {
        let t = estimate_tokens(text);
        let count = i - start;
        if count > 0 && (count >= max_inputs || tokens + t > max_tokens) {
            batches.push(start..i);
            start = i;
            tokens = 0;
        }
        tokens += t;
    }
    if start < texts.len() {
        batches.push(start..texts.len());
    }
    batches
}

/// Tokens of a text, estimated as one per 4 characters (at least 1): close enough for English
/// with OpenAI's tokenizers, and it needs no tokenizer tables.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4).max(1)
}

/// Native vector sizes of OpenAI's models, so a wrong size is caught from the first answer.
pub fn native_dims(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// `base · 2^retry`, capped, with "equal jitter": half fixed, half random, so retries of many
/// workers spread out but none retries immediately.
fn backoff(retry: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << retry.min(16)).min(cap);
    let half = exp / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lens: &[usize]) -> Vec<String> {
        lens.iter().map(|n| "x".repeat(*n)).collect()
    }

    #[test]
    fn batches_by_input_count() {
        let t = texts(&[4; 5]);
        assert_eq!(plan_batches(&t, 2, 1000), vec![0..2, 2..4, 4..5]);
        assert_eq!(plan_batches(&t, 2048, 300_000), vec![0..5]);
        assert!(plan_batches(&[], 10, 10).is_empty());
    }

    #[test]
    fn batches_by_token_budget() {
        // 40 chars = 10 tokens each; a budget of 25 tokens fits two.
        let t = texts(&[40, 40, 40, 40, 40]);
        assert_eq!(plan_batches(&t, 100, 25), vec![0..2, 2..4, 4..5]);
        // An oversized text goes alone, and the next one starts a new batch.
        let t = texts(&[4, 400, 4, 4]);
        assert_eq!(plan_batches(&t, 100, 50), vec![0..1, 1..2, 2..4]);
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ééééé"), 2, "characters, not bytes");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for retry in 0..20 {
            let d = backoff(retry, base, cap);
            let exp = base.saturating_mul(1 << retry.min(16)).min(cap);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn debug_masks_the_key() {
        let c = OpenAiEmbeddingConfig {
            api_key: Some("sk-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("sk-secret"));
    }
}
