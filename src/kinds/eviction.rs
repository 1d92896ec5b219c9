//! `eviction`: the domain's `evict`, stopped at a batch boundary by the job's token or a
//! drain; what it removed is counted in `memwarden_evicted_total{resource}`.

use std::path::PathBuf;
use std::time::Duration;

use memwarden_jobs::eviction::{
    self, EvictionArgs, EvictionError, EvictionReport, EvictionSettings, EvictionStore,
    RetentionPeriod,
};

use super::{report, stopped_early};
use crate::config::Settings;
use crate::queue::{Handler, JobContext, Outcome};
use crate::telemetry::metrics::EVICTED;

pub struct EvictionHandler {
    settings: EvictionSettings,
}

impl EvictionHandler {
    pub fn new(settings: &Settings) -> Self {
        EvictionHandler {
            settings: EvictionSettings {
                batch_size: settings.eviction.batch_size.get().into(),
                pause: settings.eviction.pause_ms,
                max_transaction: settings.eviction.max_transaction_ms,
                blobs_dir: PathBuf::from(&settings.blobs.dir),
                store: match settings.store.memory_service() {
                    Some(store) => EvictionStore::MemoryService(store),
                    None => EvictionStore::Native,
                },
            },
        }
    }
}

fn count_evicted(r: &EvictionReport) {
    for (resource, n) in [
        ("conversation_groups", r.conversation_groups),
        ("conversations", r.conversations),
        ("conversation_entries", r.conversation_entries),
        ("attachments", r.attachments),
        ("memories", r.memories),
        ("blobs", r.blobs_freed),
    ] {
        if n > 0 {
            metrics::counter!(EVICTED, "resource" => resource).increment(n as u64);
        }
    }
}

#[async_trait::async_trait]
impl Handler for EvictionHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: EvictionArgs = match job.args() {
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
        let result = eviction::evict(
            &job.pool,
            &retention,
            &types,
            args.dry_run,
            &self.settings,
            &stop,
            &job.progress,
        )
        .await;
        if let Ok(r) = &result {
            if !r.dry_run {
                count_evicted(r);
            }
        }
        match result {
            Ok(r) if r.interrupted => stopped_early(&job),
            Ok(r) => report(&r),
            Err(EvictionError::Input(e)) => Outcome::Discard(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(6 * 3600)
    }
}
