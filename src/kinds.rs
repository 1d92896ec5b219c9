//! The registry of job kinds this daemon runs: each kind maps to the function that does it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memwarden_jobs::eviction::{
    self, EvictionArgs, EvictionError, EvictionSettings, RetentionPeriod,
};
use memwarden_jobs::{memories_needing_enrichment, Enricher, EnrichmentArgs};

use tokio::sync::watch;

use crate::config::{EmbeddingSettings, EnrichmentConfig, ExtractionSettings, Settings};
use crate::queue::probe::ProbeHandler;
use crate::queue::purge::PurgeHandler;
use crate::queue::{Handler, JobContext, Outcome, Registry};

/// The kinds of this daemon, following the live settings where a kind's work depends on them.
pub fn registry(live: watch::Receiver<Arc<Settings>>) -> anyhow::Result<Registry> {
    let snapshot = live.borrow().clone();
    let settings: &Settings = &snapshot;
    // Fail at start, not on the first job, when the configured providers cannot be built.
    crate::providers::embedder(settings)?;
    crate::providers::extractor(settings)?;
    let mut registry = Registry::new().register(
        "job-purge",
        PurgeHandler {
            min_retention: Duration::from_secs_f64(settings.purge.min_retention),
            batch_size: settings.purge.batch_size,
        },
    );
    registry = registry.register(
        "eviction",
        EvictionHandler {
            settings: EvictionSettings {
                batch_size: settings.eviction.batch_size,
                pause: Duration::from_millis(settings.eviction.pause_ms),
                blobs_dir: PathBuf::from(&settings.blobs.dir),
            },
        },
    );
    registry = registry
        .register(
            "enrichment",
            EnrichmentHandler {
                settings: live,
                current: Mutex::new(None),
            },
        )
        .register(
            "enrichment-catchup",
            CatchUpHandler {
                version: crate::providers::enrichment_settings(settings).version,
                limit: settings.enrichment.catchup_limit,
            },
        );
    if settings.testing.probe_kinds {
        registry = registry.register("probe", ProbeHandler);
    }
    Ok(registry)
}

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

/// `enrichment`: one memory through the pipeline. The enricher (and its vector cache) is
/// built once, on the first job, with the queue's pool.
struct EnrichmentHandler {
    /// The live settings; the providers follow `[embedding]`, `[extraction]` and
    /// `[enrichment]` across config reloads.
    settings: watch::Receiver<Arc<Settings>>,
    /// The enricher (with its vector cache) and the settings sections it was built from.
    current: Mutex<Option<(ProviderSections, Enricher)>>,
}

type ProviderSections = (EmbeddingSettings, ExtractionSettings, EnrichmentConfig);

impl EnrichmentHandler {
    /// The enricher for the settings in force: built on the first job, rebuilt after a
    /// reload that changed the provider sections.
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
            crate::providers::embedder(&settings)?,
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
        let args: EnrichmentArgs = match serde_json::from_value(job.args.clone()) {
            Ok(a) => a,
            Err(e) => return Outcome::Discard(format!("bad enrichment args: {e}")),
        };
        let enricher = match self.enricher(&job.pool) {
            Ok(e) => e,
            Err(e) => return Outcome::Failed(format!("cannot build the providers: {e:#}")),
        };
        match enricher.enrich(args.memory_id).await {
            Ok(report) => {
                ENRICHMENT_STATS.processed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("memwarden_enrichment_processed_total").increment(1);
                Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default())
            }
            Err(e) => {
                ENRICHMENT_STATS.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("memwarden_enrichment_failed_total").increment(1);
                match (e.is_retryable(), e.retry_after()) {
                    (false, _) => Outcome::Discard(e.to_string()),
                    (true, Some(after)) => Outcome::RetryAfter(after, e.to_string()),
                    (true, None) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}

/// `enrichment-catchup`: enqueues memories whose enrichment is missing or stale, at the
/// priority of bulk work (below new writes), unique per memory.
struct CatchUpHandler {
    version: i32,
    limit: i64,
}

#[async_trait::async_trait]
impl Handler for CatchUpHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let ids = match memories_needing_enrichment(&job.pool, self.version, self.limit).await {
            Ok(ids) => ids,
            Err(e) => return Outcome::Failed(format!("catch-up query failed: {e}")),
        };
        let queued: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT count(memwarden.enqueue('enrichment', jsonb_build_object('memory_id', id), 'default', 0::int2, \
             NULL, 25, 'enrichment:' || id)) FROM unnest($1::uuid[]) AS id",
        )
        .bind(&ids)
        .fetch_one(&job.pool)
        .await;
        match queued {
            Ok(n) => Outcome::Succeeded(serde_json::json!({"found": ids.len(), "queued": n})),
            Err(e) => Outcome::Failed(format!("catch-up enqueue failed: {e}")),
        }
    }
}

/// `eviction`: the domain's `evict`, stopped at a batch boundary by the job's token.
struct EvictionHandler {
    settings: EvictionSettings,
}

#[async_trait::async_trait]
impl Handler for EvictionHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: EvictionArgs = match serde_json::from_value(job.args.clone()) {
            Ok(a) => a,
            Err(e) => return Outcome::Discard(format!("bad eviction args: {e}")),
        };
        let parsed = RetentionPeriod::parse(Some(&args.retention_period))
            .and_then(|r| eviction::parse_resource_types(&args.resource_types).map(|t| (r, t)));
        let (retention, types) = match parsed {
            Ok(p) => p,
            Err(e) => return Outcome::Discard(e.to_string()),
        };
        match eviction::evict(
            &job.pool,
            &retention,
            &types,
            args.dry_run,
            &self.settings,
            &job.cancel,
            &job.progress,
        )
        .await
        {
            Ok(report) if report.interrupted => Outcome::Failed(
                "stopped at a batch boundary; the retry continues where it stopped".into(),
            ),
            Ok(report) => Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default()),
            Err(EvictionError::Input(e)) => Outcome::Discard(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }
}
