//! The job kinds this daemon runs: each kind maps to the domain function that does it. The
//! registry is built from the live settings, so the kinds whose work depends on them follow
//! a config reload.

mod bulk;
mod enrichment;
mod eviction;
mod memory_policies;
mod retrieve_logs;

use std::sync::Arc;
use std::time::Duration;

use memwarden_jobs::eviction::EvictionArgs;
use memwarden_jobs::memory_policies::{
    MemoryExpiryArgs, MemoryFlushArgs, MemoryPoliciesCatchUpArgs, MemoryPrivacyArgs, PolicySettings,
};
use memwarden_jobs::reembed::ReembedArgs;
use memwarden_jobs::retrieve_logs::RetrieveLogRetentionArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::{CatchUpArgs, EnrichmentArgs};
use tokio::sync::watch;

use crate::config::Settings;
use crate::queue::probe::{ProbeArgs, ProbeHandler};
use crate::queue::purge::{PurgeArgs, PurgeHandler};
use crate::queue::{JobContext, Outcome, Registry};

pub use enrichment::ENRICHMENT_STATS;

/// The kinds of this daemon, following the live settings where a kind's work depends on them.
pub fn registry(live: watch::Receiver<Arc<Settings>>) -> anyhow::Result<Registry> {
    let snapshot = live.borrow().clone();
    let settings: &Settings = &snapshot;
    // Fail at start, not on the first job, when the configured providers cannot be built.
    crate::providers::embedder(settings)?;
    crate::providers::extractor(settings)?;
    let mut registry = Registry::new()
        .register_kind::<PurgeArgs>(PurgeHandler {
            min_retention: settings.purge.min_retention,
            batch_size: settings.purge.batch_size.get().into(),
        })
        .register_kind::<EvictionArgs>(eviction::EvictionHandler::new(settings))
        .register_kind::<RetrieveLogRetentionArgs>(retrieve_logs::RetrieveLogRetentionHandler::new(
            settings,
        ))
        .register_kind::<EnrichmentArgs>(enrichment::EnrichmentHandler::new(live.clone()))
        .register_kind::<ReembedArgs>(bulk::ReembedHandler {
            settings: live.clone(),
        })
        .register_kind::<SyncArgs>(bulk::SyncHandler { settings: live })
        .register_kind::<CatchUpArgs>(enrichment::CatchUpHandler::new(settings))
        .register_kind::<MemoryFlushArgs>(memory_policies::MemoryFlushHandler)
        .register_kind::<MemoryExpiryArgs>(memory_policies::MemoryExpiryHandler {
            settings: PolicySettings::default(),
        })
        .register_kind::<MemoryPrivacyArgs>(memory_policies::MemoryPrivacyHandler {
            settings: PolicySettings::default(),
        })
        .register_kind::<MemoryPoliciesCatchUpArgs>(memory_policies::MemoryPoliciesCatchUpHandler);
    if settings.testing.probe_kinds {
        registry = registry.register_kind::<ProbeArgs>(ProbeHandler);
    }
    Ok(registry)
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

/// A failed job: retried (from its checkpoint, for bulk work) when the cause can pass, else
/// failed at once.
fn failure(error: String, retryable: bool, retry_after: Option<Duration>) -> Outcome {
    match (retryable, retry_after) {
        (false, _) => Outcome::Discard(error),
        (true, Some(after)) => Outcome::RetryAfter(after, error),
        (true, None) => Outcome::Failed(error),
    }
}

/// How long a job held back by a provider's 429 waits when the provider did not say (± 10 %,
/// so the jobs a 429 stopped together do not come back together): the provider client has
/// already backed off exponentially within the attempt before giving up on it.
const THROTTLE_WAIT: Duration = Duration::from_secs(30);

fn throttle_wait() -> Duration {
    crate::queue::backoff::jittered(THROTTLE_WAIT)
}

/// A failed job whose work goes through a provider: a 429 (`rate_limited`) snoozes it without
/// using an attempt (see [`Outcome::Throttled`]); anything else is a [`failure`].
fn provider_failure(
    error: String,
    retryable: bool,
    retry_after: Option<Duration>,
    rate_limited: bool,
) -> Outcome {
    if rate_limited {
        Outcome::Throttled(retry_after.unwrap_or_else(throttle_wait), error)
    } else {
        failure(error, retryable, retry_after)
    }
}

/// A report as the job's `result`.
fn report<T: serde::Serialize>(report: &T) -> Outcome {
    Outcome::Succeeded(serde_json::to_value(report).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_snoozes_for_the_providers_wait_and_other_failures_use_an_attempt() {
        let given = Duration::from_secs(7);
        assert_eq!(
            provider_failure("429".into(), true, Some(given), true),
            Outcome::Throttled(given, "429".into())
        );
        match provider_failure("429".into(), true, None, true) {
            Outcome::Throttled(wait, _) => assert!(
                (Duration::from_secs(27)..=Duration::from_secs(33)).contains(&wait),
                "{wait:?}"
            ),
            other => panic!("a 429 without Retry-After: {other:?}"),
        }
        assert_eq!(
            provider_failure("5xx".into(), true, None, false),
            Outcome::Failed("5xx".into())
        );
        assert_eq!(
            provider_failure("quota".into(), false, None, false),
            Outcome::Discard("quota".into())
        );
    }
}
