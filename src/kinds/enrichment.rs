//! `enrichment` (one memory through the pipeline) and `enrichment-catchup` (the schedule that
//! finds memories whose enrichment is missing or stale).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memwarden_jobs::{memories_needing_enrichment, Enricher, EnrichmentArgs, NEEDS_ENRICHMENT};
use tokio::sync::watch;

use super::{provider_failure, report};
use crate::config::{EmbeddingSettings, EnrichmentConfig, ExtractionSettings, Settings};
use crate::queue::{Handler, JobContext, Outcome};
use crate::telemetry::metrics::{ENRICHMENT_FAILED, ENRICHMENT_PROCESSED};

/// Enrichment outcomes since the process started, for AutoMem's `/enrichment/status`.
#[derive(Default)]
pub struct EnrichmentStats {
    pub processed: AtomicU64,
    pub failed: AtomicU64,
}

pub static ENRICHMENT_STATS: EnrichmentStats = EnrichmentStats {
    processed: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

type ProviderSections = (EmbeddingSettings, ExtractionSettings, EnrichmentConfig);

/// The enricher (and its vector cache) is built on the first job, with the work pool, and
/// rebuilt after a reload that changed the provider sections.
pub struct EnrichmentHandler {
    settings: watch::Receiver<Arc<Settings>>,
    current: Mutex<Option<(ProviderSections, Enricher)>>,
}

impl EnrichmentHandler {
    pub fn new(settings: watch::Receiver<Arc<Settings>>) -> Self {
        EnrichmentHandler {
            settings,
            current: Mutex::new(None),
        }
    }

    fn enricher(&self, pool: &sqlx::PgPool) -> anyhow::Result<Enricher> {
        let settings = self.settings.borrow().clone();
        let sections = (
            settings.embedding.clone(),
            settings.extraction.clone(),
            settings.enrichment.clone(),
        );
        let mut current = self.current.lock().expect("enricher lock");
        if let Some((built_from, enricher)) = current.as_ref() {
            if *built_from == sections {
                return Ok(enricher.clone());
            }
            tracing::info!("provider settings changed: rebuilding the enricher");
        }
        let enricher = Enricher::new(
            pool.clone(),
            crate::providers::enrichment_embedder(&settings)?,
            crate::providers::extractor(&settings)?,
            crate::providers::enrichment_settings(&settings),
        );
        *current = Some((sections, enricher.clone()));
        Ok(enricher)
    }
}

#[async_trait::async_trait]
impl Handler for EnrichmentHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: EnrichmentArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let enricher = match self.enricher(&job.pool) {
            Ok(e) => e,
            Err(e) => return Outcome::Failed(format!("cannot build the providers: {e:#}")),
        };
        match enricher.run(&args).await {
            Ok(r) => {
                ENRICHMENT_STATS.processed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(ENRICHMENT_PROCESSED).increment(1);
                report(&r)
            }
            Err(e) => {
                ENRICHMENT_STATS.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(ENRICHMENT_FAILED).increment(1);
                provider_failure(
                    e.to_string(),
                    e.is_retryable(),
                    e.retry_after(),
                    e.is_rate_limited(),
                )
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}

/// Enqueues memories whose enrichment is missing or stale, at the priority of bulk work
/// (below new writes), unique per memory.
pub struct CatchUpHandler {
    version: i32,
    limit: i64,
}

impl CatchUpHandler {
    pub fn new(settings: &Settings) -> Self {
        CatchUpHandler {
            version: crate::providers::enrichment_settings(settings).version,
            limit: settings.enrichment.catchup_limit,
        }
    }
}

#[async_trait::async_trait]
impl Handler for CatchUpHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let ids = match memories_needing_enrichment(&job.pool, self.version, self.limit).await {
            Ok(ids) => ids,
            Err(e) => return Outcome::Failed(format!("catch-up query failed: {e}")),
        };
        // Checked again as each is enqueued: a memory whose trigger job finished since the
        // query is enriched already, and its unique key no longer stops a second job.
        let sql = format!(
            "SELECT count(enqueue('enrichment', jsonb_build_object('memory_id', id), 'default', 0::int2, \
             NULL, 25, 'enrichment:' || id)) FROM memories WHERE id = ANY($2::uuid[]) AND ({NEEDS_ENRICHMENT})"
        );
        let queued: Result<i64, sqlx::Error> = sqlx::query_scalar(&sql)
            .bind(self.version)
            .bind(&ids)
            .fetch_one(&job.pool)
            .await;
        match queued {
            Ok(n) => Outcome::Succeeded(serde_json::json!({"found": ids.len(), "queued": n})),
            Err(e) => Outcome::Failed(format!("catch-up enqueue failed: {e}")),
        }
    }
}
