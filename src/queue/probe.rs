//! Job kinds for harnesses, never registered in production: `probe`, whose args script what
//! it does (the tests and the reliability suite drive the daemon with it), and `bench-noop`,
//! which `memwarden bench` registers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::registry::{Handler, JobContext, Outcome};

/// `probe` args. Every field is optional; an empty object succeeds at once.
#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeArgs {
    /// Milliseconds to work, in 10 ms steps that watch the cancellation token.
    pub sleep_ms: u64,
    /// Snooze (without using an attempt) until the job is this many milliseconds old.
    pub snooze_ms: Option<u64>,
    /// Ignore cancellation while sleeping (a job that cannot stop).
    pub stubborn: bool,
    /// Fail attempts up to and including this one.
    pub fail_until_attempt: i32,
    pub discard: bool,
    pub panic: bool,
    pub retry_after_ms: Option<u64>,
    /// Insert a row into `memwarden_probe_effects` keyed by the job id, counting executions.
    pub effect: bool,
    /// Report progress in this many steps while sleeping.
    pub progress_steps: u32,
}

impl memwarden_jobs::JobArgs for ProbeArgs {
    const KIND: &'static str = "probe";
}

pub struct ProbeHandler;

#[async_trait::async_trait]
impl Handler for ProbeHandler {
    async fn run(&self, job: JobContext) -> Outcome {
        let args: ProbeArgs = match job.args() {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        if args.panic {
            panic!("probe asked to panic");
        }
        if args.discard {
            return Outcome::Discard("probe asked to discard".into());
        }
        if let Some(ms) = args.snooze_ms {
            // A snooze refunds the attempt, so the attempt number cannot tell a first run from
            // a snoozed one: the job's age can.
            let young: Result<bool, sqlx::Error> = sqlx::query_scalar(
                "SELECT now() - created_at < make_interval(secs => $2) FROM jobs WHERE id = $1",
            )
            .bind(job.id)
            .bind(ms as f64 / 1000.0)
            .fetch_one(&job.pool)
            .await;
            match young {
                Ok(true) => return Outcome::Snooze(Duration::from_millis(ms)),
                Ok(false) => {}
                Err(e) => return Outcome::Failed(format!("probe cannot read its job: {e}")),
            }
        }
        let steps = (args.sleep_ms / 10).max(1);
        for i in 0..steps {
            if args.sleep_ms == 0 {
                break;
            }
            if !args.stubborn && job.cancel.is_cancelled() {
                return Outcome::Failed("probe stopped by its cancellation token".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            if args.progress_steps > 0 {
                job.progress.set(((i + 1) * 100 / steps) as u8);
            }
        }
        if job.attempt <= args.fail_until_attempt {
            if let Some(ms) = args.retry_after_ms {
                return Outcome::RetryAfter(
                    Duration::from_millis(ms),
                    format!("probe failed attempt {}", job.attempt),
                );
            }
            return Outcome::Failed(format!("probe failed attempt {}", job.attempt));
        }
        if args.effect {
            let r = sqlx::query(
                "INSERT INTO memwarden_probe_effects (job_id, executions) VALUES ($1, 1) \
                 ON CONFLICT (job_id) DO UPDATE SET executions = memwarden_probe_effects.executions + 1",
            )
            .bind(job.id)
            .execute(&job.pool)
            .await;
            if let Err(e) = r {
                return Outcome::Failed(format!("probe effect not written: {e}"));
            }
        }
        Outcome::Succeeded(serde_json::json!({"probe": "ok", "attempt": job.attempt}))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Creates the probe's effect table (harness databases only).
pub async fn create_effects_table(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS memwarden_probe_effects (job_id uuid PRIMARY KEY, executions int NOT NULL)")
        .execute(pool)
        .await
        .map(|_| ())
}

/// The benchmark's job: nothing at all.
pub struct NoopHandler;

#[async_trait::async_trait]
impl Handler for NoopHandler {
    async fn run(&self, _job: JobContext) -> Outcome {
        Outcome::Succeeded(serde_json::Value::Null)
    }
}
