//! The registry of job kinds this daemon runs: each kind maps to the function that does it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memwarden_jobs::eviction::{
    self, EvictionArgs, EvictionError, EvictionSettings, RetentionPeriod,
};
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::{
    memories_needing_enrichment, Enricher, EnrichmentArgs, JobArgs, PgVectorIndex, NEEDS_ENRICHMENT,
};

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
                max_transaction: Duration::from_millis(settings.eviction.max_transaction_ms),
                blobs_dir: PathBuf::from(&settings.blobs.dir),
            },
        },
    );
    registry = registry
        .register(
            "enrichment",
            EnrichmentHandler {
                settings: live.clone(),
                current: Mutex::new(None),
            },
        )
        .register(
            "reembed",
            ReembedHandler {
                settings: live.clone(),
            },
        )
        .register("sync", SyncHandler { settings: live })
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
        let args: EnrichmentArgs = match args_of(&job) {
            Ok(a) => a,
            Err(outcome) => return outcome,
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
        // Checked again as each is enqueued: a memory whose trigger job finished since the
        // query is enriched already, and its unique key no longer stops a second job.
        let sql = format!(
            "SELECT count(memwarden.enqueue('enrichment', jsonb_build_object('memory_id', id), 'default', 0::int2, \
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

/// The outcome of a resumable job that stopped at a safe point: a drain hands it to the next
/// worker at once; a cancel, timeout or lost lease is decided by whoever stopped it.
fn stopped_early(job: &JobContext) -> Outcome {
    if job.draining() {
        Outcome::Yielded("stopped at a checkpoint for a drain; the next worker continues it".into())
    } else {
        Outcome::Failed("stopped at a checkpoint; the retry continues where it stopped".into())
    }
}

/// A failed bulk job: retried (from its checkpoint) when the cause can pass, else failed.
fn bulk_failure(error: String, retryable: bool, retry_after: Option<Duration>) -> Outcome {
    match (retryable, retry_after) {
        (false, _) => Outcome::Discard(error),
        (true, Some(after)) => Outcome::RetryAfter(after, error),
        (true, None) => Outcome::Failed(error),
    }
}

/// Bulk jobs resume from their checkpoint, so a few attempts go a long way; a provider that
/// stays down fails the job instead of retrying it for days.
const BULK_MAX_ATTEMPTS: i32 = 5;

/// What a bulk job (reembed, sync) runs with: the providers of the settings in force, and a
/// token that also fires when the daemon starts to drain.
struct BulkRun {
    embedder: Arc<dyn memwarden_jobs::Embedder>,
    index: PgVectorIndex,
    settings: memwarden_jobs::reembed::BulkSettings,
    stop: tokio_util::sync::CancellationToken,
    _watching: tokio_util::sync::DropGuard,
}

impl BulkRun {
    fn prepare(live: &watch::Receiver<Arc<Settings>>, job: &JobContext) -> Result<Self, Outcome> {
        let settings = live.borrow().clone();
        let embedder = crate::providers::embedder(&settings)
            .map_err(|e| Outcome::Failed(format!("cannot build the embedder: {e:#}")))?;
        let (stop, watching) = job.cancel_or_drain();
        Ok(BulkRun {
            embedder,
            index: PgVectorIndex::new(job.pool.clone()),
            settings: crate::providers::bulk_settings(&settings),
            stop,
            _watching: watching,
        })
    }
}

/// The job's args, or the outcome that discards a job whose args do not fit.
fn args_of<T: JobArgs>(job: &JobContext) -> Result<T, Outcome> {
    serde_json::from_value(job.args.clone())
        .map_err(|e| Outcome::Discard(format!("bad {} args: {e}", T::KIND)))
}

/// `reembed`: the domain's `reembed`, checkpointed on the job row, stopping at its next write
/// when the daemon drains.
struct ReembedHandler {
    settings: watch::Receiver<Arc<Settings>>,
}

#[async_trait::async_trait]
impl Handler for ReembedHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let (args, run) = match args_of::<ReembedArgs>(&job)
            .and_then(|a| BulkRun::prepare(&self.settings, &job).map(|r| (a, r)))
        {
            Ok(ready) => ready,
            Err(outcome) => return outcome,
        };
        let result = memwarden_jobs::reembed::reembed(
            &job.pool,
            run.embedder.clone(),
            &run.index,
            &args,
            &run.settings,
            &job.checkpoint,
            &run.stop,
            &job.progress,
        )
        .await;
        match result {
            Ok(report) if report.status == "interrupted" => stopped_early(&job),
            Ok(report) => Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default()),
            Err(e) => bulk_failure(e.to_string(), e.is_retryable(), e.retry_after()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }

    fn max_attempts(&self) -> Option<i32> {
        Some(BULK_MAX_ATTEMPTS)
    }
}

/// `sync`: the domain's `sync`; its findings go to the `memwarden_sync_drift{kind}` gauge
/// (drift left after a repair; found, on a dry run). Drift never touches readiness.
struct SyncHandler {
    settings: watch::Receiver<Arc<Settings>>,
}

#[async_trait::async_trait]
impl Handler for SyncHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let (args, run) = match args_of::<SyncArgs>(&job)
            .and_then(|a| BulkRun::prepare(&self.settings, &job).map(|r| (a, r)))
        {
            Ok(ready) => ready,
            Err(outcome) => return outcome,
        };
        let result = memwarden_jobs::sync::sync(
            &job.pool,
            run.embedder.clone(),
            &run.index,
            &args,
            &run.settings,
            &run.stop,
            &job.progress,
        )
        .await;
        match result {
            Ok(report) => {
                for (kind, drift) in report.remaining.kinds() {
                    metrics::gauge!("memwarden_sync_drift", "kind" => kind).set(drift.count as f64);
                }
                if report.status == "interrupted" {
                    return stopped_early(&job);
                }
                Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default())
            }
            Err(e) => bulk_failure(e.to_string(), e.is_retryable(), e.retry_after()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }

    fn max_attempts(&self) -> Option<i32> {
        Some(BULK_MAX_ATTEMPTS)
    }
}

/// `eviction`: the domain's `evict`, stopped at a batch boundary by the job's token.
struct EvictionHandler {
    settings: EvictionSettings,
}

#[async_trait::async_trait]
impl Handler for EvictionHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: EvictionArgs = match args_of(&job) {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let parsed = RetentionPeriod::parse(Some(&args.retention_period))
            .and_then(|r| eviction::parse_resource_types(&args.resource_types).map(|t| (r, t)));
        let (retention, types) = match parsed {
            Ok(p) => p,
            Err(e) => return Outcome::Discard(e.to_string()),
        };
        let (stop, _watching) = job.cancel_or_drain();
        match eviction::evict(
            &job.pool,
            &retention,
            &types,
            args.dry_run,
            &self.settings,
            &stop,
            &job.progress,
        )
        .await
        {
            Ok(report) if report.interrupted => stopped_early(&job),
            Ok(report) => Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default()),
            Err(EvictionError::Input(e)) => Outcome::Discard(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }
}
