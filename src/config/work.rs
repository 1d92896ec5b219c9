//! What the work runs with: the embedding and extraction providers, enrichment's thresholds,
//! eviction's retention and batches, and where blobs live.

use std::num::NonZeroU32;
use std::time::Duration;

use memwarden_jobs::embedding::native_dims;
use memwarden_jobs::eviction::{ResourceType, RetentionPeriod};
use memwarden_jobs::vector::BackendChoice;
use memwarden_jobs::HashEmbedder;
use serde::{Deserialize, Serialize};
use serde_with::{serde_as, DurationMilliSeconds};

use super::seconds::PositiveSeconds;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    /// Offline feature hashing: deterministic, no network.
    #[default]
    Hash,
    /// Any OpenAI-compatible endpoint: OpenAI, Azure, vLLM, Ollama, TEI.
    Openai,
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    pub model: String,
    /// The `hash` embedder's size, or `dimensions` sent to an `openai` provider when set.
    pub dimensions: Option<NonZeroU32>,
    pub base_url: String,
    pub api_key: Option<String>,
    pub max_batch_inputs: usize,
    pub max_batch_tokens: usize,
    #[serde_as(as = "PositiveSeconds")]
    pub timeout: Duration,
    pub max_retries: u32,
    /// The most provider requests per minute that bulk work (reembed, sync) may make.
    pub requests_per_minute: NonZeroU32,
    /// Provider requests bulk work keeps in flight at once (within `requests_per_minute`).
    pub concurrency: NonZeroU32,
    /// Enrichment's embeddings of concurrent memories go to an `openai` provider in batched
    /// requests, paced to `requests_per_minute` and `tokens_per_minute`.
    pub coalesce: bool,
    /// How long the first memory of a batch waits for others (milliseconds).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub coalesce_wait_ms: Duration,
    /// The provider's tokens-per-minute limit, counting 4 characters a token; none: unpaced.
    pub tokens_per_minute: Option<NonZeroU32>,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: EmbeddingProvider::Hash,
            model: "text-embedding-3-small".into(),
            dimensions: None,
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            max_batch_inputs: 2048,
            max_batch_tokens: 300_000,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            requests_per_minute: NonZeroU32::new(3000).expect("non-zero"),
            concurrency: NonZeroU32::new(4).expect("non-zero"),
            coalesce: true,
            coalesce_wait_ms: Duration::from_millis(5),
            tokens_per_minute: None,
        }
    }
}

impl EmbeddingSettings {
    /// The size the embedder produces, when it is known before its first answer: the
    /// configured `dimensions`, the `hash` embedder's default, or an OpenAI model's own size.
    pub fn expected_dims(&self) -> Option<usize> {
        self.dimensions
            .map(|d| d.get() as usize)
            .or(match self.provider {
                EmbeddingProvider::Hash => Some(HashEmbedder::DEFAULT_DIMS),
                EmbeddingProvider::Openai => native_dims(&self.model),
            })
    }
}

/// Where vectors are kept (`memwarden_jobs::vector::backend`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// `auto` (pgvector when the server has it, else arrays), `pgvector` (or fail at start),
    /// or `array`.
    pub backend: BackendChoice,
    /// `hnsw.ef_search` for searches: candidates an HNSW scan keeps (pgvector's default 40).
    pub ef_search: NonZeroU32,
    /// `maintenance_work_mem` for HNSW index builds, in MiB; none: the server's.
    pub index_build_memory_mb: Option<NonZeroU32>,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            ef_search: NonZeroU32::new(40).expect("non-zero"),
            index_build_memory_mb: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExtractionProvider {
    /// Capitalised names, a dictionary of tools and projects, emails, URLs, handles, dates.
    #[default]
    Rules,
    /// Chat completions with a JSON-schema answer.
    Llm,
}

/// Entity extraction; `llm` uses the embedding provider's base URL and key unless set here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionSettings {
    pub provider: ExtractionProvider,
    pub model: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// Extra names the rules recognise as tools and as projects.
    pub tools: Vec<String>,
    pub projects: Vec<String>,
}

impl Default for ExtractionSettings {
    fn default() -> Self {
        Self {
            provider: ExtractionProvider::Rules,
            model: "gpt-4o-mini".into(),
            base_url: None,
            api_key: None,
            tools: Vec::new(),
            projects: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    pub similarity_threshold: f32,
    pub top_k: usize,
    /// Memories the 5-minute catch-up enqueues at most per run.
    pub catchup_limit: i64,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.8,
            top_k: 5,
            catchup_limit: 10_000,
        }
    }
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    /// The directory of blob files (one file per blob, named by its storage key), shared with
    /// the memory service.
    pub dir: String,
    /// The secret that signs the admin API's download URLs (HMAC-SHA256, at least 32
    /// characters). Without it the admin API issues none (503).
    pub download_url_key: Option<String>,
    /// How long a download URL stays valid, in seconds (Memory Service's default: 5 minutes).
    #[serde_as(as = "PositiveSeconds")]
    pub download_url_expires_in: Duration,
}

/// The shortest `blobs.download_url_key` accepted: 256 bits of base64 or hex.
pub const DOWNLOAD_URL_KEY_MIN: usize = 32;

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            dir: "blobs".into(),
            download_url_key: None,
            download_url_expires_in: Duration::from_secs(300),
        }
    }
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvictionConfig {
    /// The daily schedule's retention period (ISO 8601).
    pub retention: RetentionPeriod,
    /// What the daily schedule evicts.
    pub resource_types: Vec<ResourceType>,
    /// Rows per transaction, and the pause between transactions (milliseconds).
    pub batch_size: NonZeroU32,
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub pause_ms: Duration,
    /// The longest a batch transaction may hold its locks; batches shrink to stay inside it
    /// (milliseconds, at least 10).
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub max_transaction_ms: Duration,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        Self {
            retention: RetentionPeriod::parse(Some("P30D")).expect("a valid period"),
            resource_types: vec![ResourceType::Conversations, ResourceType::Attachments],
            batch_size: NonZeroU32::new(1000).expect("non-zero"),
            pause_ms: Duration::from_millis(100),
            max_transaction_ms: Duration::from_millis(100),
        }
    }
}

/// GoodMem's RetrieveMemory log rows (`retrieve_memory_logs`): how long they are kept, and
/// the batches of the daily `retrieve-log-retention` schedule that deletes older ones.
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrieveLogSettings {
    /// Rows older than this are deleted (seconds; default 30 days).
    #[serde_as(as = "PositiveSeconds")]
    pub retention: Duration,
    /// Rows per transaction, and the pause between transactions (milliseconds).
    pub batch_size: NonZeroU32,
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub pause_ms: Duration,
}

impl Default for RetrieveLogSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            batch_size: NonZeroU32::new(1000).expect("non-zero"),
            pause_ms: Duration::from_millis(50),
        }
    }
}
