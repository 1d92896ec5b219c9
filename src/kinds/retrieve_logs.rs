//! `retrieve-log-retention`: the domain's `purge_retrieve_logs`, stopped at a batch boundary by
//! the job's token or a drain; a stopped run is handed on, and the next one continues.

use std::time::Duration;

use memwarden_jobs::retrieve_logs::{
    self, RetentionError, RetentionSettings, RetrieveLogRetentionArgs,
};

use super::{report, stopped_early};
use crate::config::Settings;
use crate::queue::{Handler, JobContext, Outcome};

pub struct RetrieveLogRetentionHandler {
    settings: RetentionSettings,
}

impl RetrieveLogRetentionHandler {
    pub fn new(settings: &Settings) -> Self {
        RetrieveLogRetentionHandler {
            settings: RetentionSettings {
                batch_size: settings.retrieve_logs.batch_size.get().into(),
                pause: settings.retrieve_logs.pause_ms,
            },
        }
    }
}

#[async_trait::async_trait]
impl Handler for RetrieveLogRetentionHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: RetrieveLogRetentionArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let retention = match retrieve_logs::retention_of(&args) {
            Ok(r) => r,
            Err(e) => return Outcome::Discard(e.to_string()),
        };
        let (stop, _watching) = job.cancel_or_drain();
        match retrieve_logs::purge_retrieve_logs(&job.pool, retention, &self.settings, &stop).await
        {
            Ok(r) if r.interrupted => stopped_early(&job),
            Ok(r) => report(&r),
            Err(RetentionError::Input(e)) => Outcome::Discard(e),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}
