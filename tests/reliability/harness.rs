//! The reliability suite's own helpers, over the shared harness of `tests/common` (the
//! PostgreSQL, the daemon binary, the checks): a private cluster for the scenarios that stop
//! and start PostgreSQL, fast lease timings, the ledger every scenario ends with, and the
//! summary table.

use std::io::Write;
use std::time::Duration;

use memwarden::devdb::ThrowawayPostgres;
use sqlx::PgPool;

#[path = "../common/mod.rs"]
mod common;
pub use common::checks::{count, eventually, tail};
pub use common::daemon::{admin_client, Daemon, ADMIN, API};
pub use common::pg::{migrate_at, pool_of, sql_at, TestDb};

/// Short timings for every daemon of the suite: a dead worker's jobs are rescued within
/// lease + reaper interval = 2.5 s.
pub const FAST: &str = "[queue]\nlease = 2\nheartbeat = 0.5\nreaper_interval = 0.5\n";
pub const LEASE_S: f64 = 2.0;

pub const REAPER_S: f64 = 0.5;

/// A PostgreSQL cluster of the scenario's own, so it can be stopped and started.
pub struct PrivateCluster {
    pg: ThrowawayPostgres,
    pub url: String,
}

impl PrivateCluster {
    /// Starts a cluster and creates a migrated database `db` on it.
    pub fn start(db: &str) -> PrivateCluster {
        let pg = ThrowawayPostgres::start(true).expect("starting a private PostgreSQL cluster");
        sql_at(&pg.url("postgres"), &format!("CREATE DATABASE {db}"));
        let url = pg.url(db);
        migrate_at(&url);
        PrivateCluster { pg, url }
    }

    /// `pg_ctl stop -m fast`: every session is cut.
    pub fn stop_server(&self) {
        self.pg.pg_ctl("stop").expect("pg_ctl stop");
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_server(&self) {
        self.pg.pg_ctl("start").expect("pg_ctl start");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.pg.stop();
    }
}

/// Enqueues `n` probe jobs with these args in one statement (the SQL enqueue function).
pub async fn enqueue(pool: &PgPool, n: i64, args: &serde_json::Value) {
    sqlx::query("SELECT memwarden.enqueue('probe', $1::jsonb) FROM generate_series(1, $2)")
        .bind(args)
        .bind(n)
        .execute(pool)
        .await
        .expect("enqueueing probe jobs");
}

/// Counts of jobs by status.
pub async fn statuses(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT status, count(*) FROM memwarden.jobs WHERE kind = 'probe' GROUP BY status ORDER BY status",
    )
        .fetch_all(pool)
        .await
        .expect("counting jobs by status")
}

pub async fn succeeded(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'",
    )
    .await
}

/// The accounting every scenario ends with: every job succeeded exactly once, every job's
/// effect applied, and every extra execution explained by an attempt that did not succeed
/// (lost, failed or interrupted) of the same job.
pub struct Ledger {
    pub jobs: i64,
    pub succeeded: i64,
    pub lost_attempts: i64,
    pub failed_attempts: i64,
    /// Executions beyond the first, summed over jobs.
    pub extra_executions: i64,
    /// Jobs executed more than once.
    pub jobs_rerun: i64,
    /// Extra executions of a job beyond its lost attempts.
    pub beyond_lost: i64,
    /// Extra executions of a job beyond all its unsuccessful attempts: must be 0.
    pub unexplained: i64,
}

/// The attempts of the scenario's `probe` jobs.
const PROBE_ATTEMPTS: &str =
    "memwarden.job_attempts a JOIN memwarden.jobs j ON j.id = a.job_id AND j.kind = 'probe'";

impl Ledger {
    /// The report's "duplicates" cell: effects no attempt explains, and the re-runs that the
    /// lost and failed attempts do explain.
    pub fn duplicates(&self) -> String {
        format!(
            "{} (+{} re-runs after {} lost / {} failed attempts)",
            self.unexplained, self.extra_executions, self.lost_attempts, self.failed_attempts
        )
    }

    pub async fn read(pool: &PgPool) -> Ledger {
        let c = |sql: String| async move { count(pool, &sql).await };
        let per_job_beyond = |outcomes: &str| {
            format!(
                "SELECT COALESCE(sum(GREATEST(e.executions - 1 - \
                   (SELECT count(*) FROM memwarden.job_attempts a WHERE a.job_id = e.job_id AND {outcomes}), 0)), 0)::bigint \
                 FROM memwarden_probe_effects e"
            )
        };
        Ledger {
            jobs: c("SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe'".into()).await,
            succeeded: c(
                "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'succeeded'"
                    .into(),
            )
            .await,
            lost_attempts: c(format!(
                "SELECT count(*) FROM {PROBE_ATTEMPTS} WHERE a.outcome = 'lost'"
            ))
            .await,
            failed_attempts: c(format!(
                "SELECT count(*) FROM {PROBE_ATTEMPTS} WHERE a.outcome = 'failed'"
            ))
            .await,
            extra_executions: c(
                "SELECT COALESCE(sum(executions - 1), 0)::bigint FROM memwarden_probe_effects"
                    .into(),
            )
            .await,
            jobs_rerun: c(
                "SELECT count(*) FROM memwarden_probe_effects WHERE executions > 1".into(),
            )
            .await,
            beyond_lost: c(per_job_beyond("a.outcome = 'lost'")).await,
            unexplained: c(per_job_beyond("a.outcome <> 'succeeded'")).await,
        }
    }

    /// Asserts what every scenario promises about its `effect` jobs: nothing lost, each job
    /// succeeded exactly once, each effect applied, no re-execution without a failed or lost
    /// attempt to explain it.
    pub async fn assert_nothing_lost(pool: &PgPool, what: &str) -> Ledger {
        let l = Ledger::read(pool).await;
        assert_eq!(
            l.succeeded,
            l.jobs,
            "{what}: every job succeeded: {:?}",
            statuses(pool).await
        );
        let succeeded_attempts = count(
            pool,
            &format!("SELECT count(*) FROM {PROBE_ATTEMPTS} WHERE a.outcome = 'succeeded'"),
        )
        .await;
        assert_eq!(
            succeeded_attempts, l.jobs,
            "{what}: exactly one succeeded attempt per job"
        );
        let twice = count(
            pool,
            "SELECT count(*) FROM (SELECT job_id FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') AND outcome = 'succeeded' \
             GROUP BY job_id HAVING count(*) > 1) x",
        )
        .await;
        assert_eq!(twice, 0, "{what}: no job succeeded twice");
        let effect_jobs = count(
            pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND (args->>'effect')::boolean",
        )
        .await;
        let applied = count(
            pool,
            "SELECT count(*) FROM memwarden.jobs j JOIN memwarden_probe_effects e ON e.job_id = j.id \
             WHERE j.kind = 'probe' AND (j.args->>'effect')::boolean AND e.executions >= 1",
        )
        .await;
        assert_eq!(applied, effect_jobs, "{what}: every job's effect applied");
        let open = count(
            pool,
            "SELECT count(*) FROM memwarden.job_attempts WHERE job_id IN (SELECT id FROM memwarden.jobs WHERE kind = 'probe') AND finished_at IS NULL",
        )
        .await;
        assert_eq!(open, 0, "{what}: no attempt left open");
        let running = count(
            pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'",
        )
        .await;
        assert_eq!(running, 0, "{what}: no job left running");
        assert_eq!(
            l.unexplained, 0,
            "{what}: every re-execution is explained by an unsuccessful attempt of that job"
        );
        l
    }
}

/// `MEMWARDEN_RELIABILITY_LONG=1`: the by-hand mode, with more jobs, faults and rounds.
pub fn long() -> bool {
    matches!(
        std::env::var("MEMWARDEN_RELIABILITY_LONG").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// `short` in CI, `long` by hand.
pub fn scale<T>(short: T, long_: T) -> T {
    if long() {
        long_
    } else {
        short
    }
}

/// One row of the suite's table.
pub struct Row {
    pub scenario: &'static str,
    pub runs: String,
    pub faults: String,
    pub jobs: String,
    pub lost: i64,
    pub duplicates: String,
    pub worst_recovery: String,
    pub wall: Duration,
}

/// Prints the row with the common prefix `RELIABILITY|`, straight to the process's stderr so
/// that it shows in a plain `cargo test` run (the test harness captures `eprintln!` only).
pub fn report(row: Row) {
    let line = format!(
        "RELIABILITY| {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
        row.scenario,
        row.runs,
        row.faults,
        row.jobs,
        row.lost,
        row.duplicates,
        row.worst_recovery,
        row.wall.as_secs_f64()
    );
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

pub fn secs(d: f64) -> String {
    format!("{d:.2} s")
}
