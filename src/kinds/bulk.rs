//! `reembed` and `sync`: bulk work over every memory, checkpointed on the job row, stopping at
//! its next batch when the daemon drains.

use std::sync::Arc;
use std::time::Duration;

use memwarden_jobs::bulk::{Corpus, MemoryCorpus};
use memwarden_jobs::memory_service::EntryCorpus;
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::PgVectorIndex;
use tokio::sync::watch;

use super::{provider_failure, report, stopped_early};
use crate::config::Settings;
use crate::queue::{Handler, JobContext, Outcome};
use crate::telemetry::metrics::SYNC_DRIFT;

/// Bulk jobs resume from their checkpoint, so a few attempts go a long way; a provider that
/// stays down fails the job instead of retrying it for days.
const BULK_MAX_ATTEMPTS: i32 = 5;
const BULK_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What a bulk job runs with: the providers of the settings in force, and a token that also
/// fires when the daemon starts to drain.
struct BulkRun {
    embedder: Arc<dyn memwarden_jobs::Embedder>,
    corpus: Arc<dyn Corpus>,
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
            corpus: corpus(&settings, &job.pool),
            settings: crate::providers::bulk_settings(&settings),
            stop,
            _watching: watching,
        })
    }
}

/// What the bulk jobs embed: memwarden's memories, or a Memory Service database's entries.
fn corpus(settings: &Settings, pool: &sqlx::PgPool) -> Arc<dyn Corpus> {
    match settings.store.memory_service() {
        Some(store) => Arc::new(EntryCorpus::new(pool.clone(), &store)),
        None => Arc::new(MemoryCorpus::new(
            pool.clone(),
            Arc::new(PgVectorIndex::new(pool.clone())),
        )),
    }
}

pub struct ReembedHandler {
    pub settings: watch::Receiver<Arc<Settings>>,
}

#[async_trait::async_trait]
impl Handler for ReembedHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let (args, run) = match job
            .args::<ReembedArgs>()
            .and_then(|a| BulkRun::prepare(&self.settings, &job).map(|r| (a, r)))
        {
            Ok(ready) => ready,
            Err(outcome) => return outcome,
        };
        let result = memwarden_jobs::reembed::reembed(
            run.corpus.clone(),
            run.embedder.clone(),
            &args,
            &run.settings,
            job.checkpoint.as_ref(),
            &run.stop,
            &job.progress,
        )
        .await;
        match result {
            Ok(r) if r.status == "interrupted" => stopped_early(&job),
            Ok(r) => report(&r),
            Err(e) => provider_failure(
                e.to_string(),
                e.is_retryable(),
                e.retry_after(),
                e.is_rate_limited(),
            ),
        }
    }

    fn timeout(&self) -> Duration {
        BULK_TIMEOUT
    }

    fn max_attempts(&self) -> Option<i32> {
        Some(BULK_MAX_ATTEMPTS)
    }
}

/// Its findings go to the `memwarden_sync_drift{kind}` gauge (drift left after a repair;
/// found, on a dry run). Drift never touches readiness.
pub struct SyncHandler {
    pub settings: watch::Receiver<Arc<Settings>>,
}

#[async_trait::async_trait]
impl Handler for SyncHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let (args, run) = match job
            .args::<SyncArgs>()
            .and_then(|a| BulkRun::prepare(&self.settings, &job).map(|r| (a, r)))
        {
            Ok(ready) => ready,
            Err(outcome) => return outcome,
        };
        let result = memwarden_jobs::sync::sync(
            run.corpus.clone(),
            run.embedder.clone(),
            &args,
            &run.settings,
            &run.stop,
            &job.progress,
        )
        .await;
        match result {
            Ok(r) => {
                for (kind, drift) in r.remaining.kinds() {
                    metrics::gauge!(SYNC_DRIFT, "kind" => kind).set(drift.count as f64);
                }
                if r.status == "interrupted" {
                    return stopped_early(&job);
                }
                report(&r)
            }
            Err(e) => provider_failure(
                e.to_string(),
                e.is_retryable(),
                e.retry_after(),
                e.is_rate_limited(),
            ),
        }
    }

    fn timeout(&self) -> Duration {
        BULK_TIMEOUT
    }

    fn max_attempts(&self) -> Option<i32> {
        Some(BULK_MAX_ATTEMPTS)
    }
}
