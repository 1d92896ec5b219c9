//! The memory-configuration kinds: `memory-flush`, `memory-expiry` and `memory-privacy` run
//! the domain's `memory_policies`, stopped at a batch boundary by the job's token or a drain;
//! `memory-policies-catchup` enqueues a flush for each conversation found over its limits.
//! What they change is counted in `memwarden_memory_policy_entries_total{action}`.

use std::time::Duration;

use memwarden_jobs::memory_policies::{
    self, MemoryExpiryArgs, MemoryFlushArgs, MemoryPoliciesCatchUpArgs, MemoryPrivacyArgs,
    PolicyError, PolicySettings,
};
use memwarden_jobs::JobArgs;

use super::{failure, report, stopped_early};
use crate::queue::{Handler, JobContext, Outcome};
use crate::telemetry::metrics::MEMORY_POLICY_ENTRIES;

fn count(action: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(MEMORY_POLICY_ENTRIES, "action" => action).increment(n);
    }
}

fn failed(e: PolicyError) -> Outcome {
    let retryable = e.is_retryable();
    failure(e.to_string(), retryable, None)
}

/// A batched job's outcome: handed on when it stopped at a batch boundary, else its report.
fn batched_outcome<R: serde::Serialize>(
    job: &JobContext,
    result: Result<(bool, R), PolicyError>,
) -> Outcome {
    match result {
        Ok((true, _)) => stopped_early(job),
        Ok((false, r)) => report(&r),
        Err(e) => failed(e),
    }
}

pub struct MemoryFlushHandler;

#[async_trait::async_trait]
impl Handler for MemoryFlushHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: MemoryFlushArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        match memory_policies::flush_conversation(&job.pool, args.conversation_id).await {
            Ok(r) => {
                count(
                    if r.summarised {
                        "summarised"
                    } else {
                        "trimmed"
                    },
                    r.deleted,
                );
                report(&r)
            }
            Err(e) => failed(e),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}

pub struct MemoryExpiryHandler {
    pub settings: PolicySettings,
}

#[async_trait::async_trait]
impl Handler for MemoryExpiryHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: MemoryExpiryArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let (stop, _watching) = job.cancel_or_drain();
        let result = memory_policies::expire_entries(
            &job.pool,
            args.project.as_deref(),
            args.memory_id.as_deref(),
            &self.settings,
            &stop,
        )
        .await;
        let result = result.inspect(|r| count("expired", r.deleted as u64));
        batched_outcome(&job, result.map(|r| (r.interrupted, r)))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

pub struct MemoryPrivacyHandler {
    pub settings: PolicySettings,
}

#[async_trait::async_trait]
impl Handler for MemoryPrivacyHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: MemoryPrivacyArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let target = match args.target() {
            Ok(t) => t,
            Err(e) => return Outcome::Discard(e.to_string()),
        };
        let (stop, _watching) = job.cancel_or_drain();
        let result = memory_policies::apply_privacy(&job.pool, &target, &self.settings, &stop)
            .await
            .inspect(|r| {
                count("redacted", r.redacted);
                count("dropped", r.deleted);
            });
        batched_outcome(&job, result.map(|r| (r.interrupted, r)))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// The most conversations one catch-up enqueues; the next tick takes the rest.
const CATCH_UP_LIMIT: i64 = 10_000;

pub struct MemoryPoliciesCatchUpHandler;

#[async_trait::async_trait]
impl Handler for MemoryPoliciesCatchUpHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        if let Err(outcome) = job.args::<MemoryPoliciesCatchUpArgs>() {
            return outcome;
        }
        let ids = match memory_policies::conversations_over_limits(&job.pool, CATCH_UP_LIMIT).await
        {
            Ok(ids) => ids,
            Err(e) => return failed(e),
        };
        // The unique keys the entry trigger uses, so a job already queued is not doubled. A
        // conversation the trigger missed may have missed its privacy job too: where its
        // configuration has a policy, that is queued ahead of the flush (priority 10), so what
        // the flush keeps and summarises is redacted first.
        let queued: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
            "SELECT (SELECT count(enqueue($2, jsonb_build_object('conversation_id', c.id), 'default', \
                       10::int2, NULL, 25, $2 || ':' || c.id)) \
                       FROM conversations c \
                       JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id \
                      WHERE c.id = ANY($3) AND jsonb_typeof(m.config -> 'privacy_policy') = 'object'), \
                    (SELECT count(enqueue($1, jsonb_build_object('conversation_id', id), 'default', 0::int2, \
                       NULL, 25, $1 || ':' || id)) FROM unnest($3::uuid[]) AS id)",
        )
        .bind(MemoryFlushArgs::KIND)
        .bind(MemoryPrivacyArgs::KIND)
        .bind(&ids)
        .fetch_one(&job.pool)
        .await;
        match queued {
            Ok((privacy, n)) => Outcome::Succeeded(
                serde_json::json!({"found": ids.len(), "queued": n, "privacy_queued": privacy}),
            ),
            Err(e) => Outcome::Failed(format!("memory-policies catch-up enqueue failed: {e}")),
        }
    }
}
