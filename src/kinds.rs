//! The registry of job kinds this daemon runs: each kind maps to the function that does it.

use std::path::PathBuf;
use std::time::Duration;

use memwarden_jobs::eviction::{
    self, EvictionArgs, EvictionError, EvictionSettings, RetentionPeriod,
};

use crate::config::Settings;
use crate::queue::probe::ProbeHandler;
use crate::queue::purge::PurgeHandler;
use crate::queue::{Handler, JobContext, Outcome, Registry};

pub fn registry(settings: &Settings) -> Registry {
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
    if settings.testing.probe_kinds {
        registry = registry.register("probe", ProbeHandler);
    }
    registry
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
