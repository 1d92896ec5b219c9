//! The reliability suite's harness: one PostgreSQL per test process for the scenarios that do
//! not touch the server (`DATABASE_URL` when set, otherwise a private throwaway cluster), a
//! fresh database per scenario (copied from a migrated template), a private cluster for the
//! scenarios that stop and start PostgreSQL, and the real daemon binary as child processes.
//!
//! Adapted from `tests/integration/harness.rs`; the waits here are async, so a scenario can
//! feed jobs, kill daemons and poll the database from one task.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use memwarden::devdb::ThrowawayPostgres;
use nix::sys::signal::Signal;
use sqlx::PgPool;

pub const API: &str = "reliability-api-token";
pub const ADMIN: &str = "reliability-admin-token";

/// Short timings for every daemon of the suite: a dead worker's jobs are rescued within
/// lease + reaper interval = 2.5 s.
pub const FAST: &str = "[queue]\nlease = 2\nheartbeat = 0.5\nreaper_interval = 0.5\n";
pub const LEASE_S: f64 = 2.0;

pub const REAPER_S: f64 = 0.5;

#[path = "../common/checks.rs"]
mod checks;
#[path = "../common/pg.rs"]
mod pg;
/// Every daemon of the suite runs with the default schedules switched off, so that only the
/// scenario's own `probe` jobs exist: an hourly job-purge tick must not turn 20,000 jobs into
/// 20,001.
#[path = "../common/schedules.rs"]
mod schedules;
use checks::bound_control_addr;
pub use checks::{count, eventually, tail};
pub use pg::{migrate_at, pool_of, sql_at, TestDb};
use schedules::NO_DEFAULT_SCHEDULES as NO_CRON;

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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// A running `memwarden run` process.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct DaemonBuilder {
    database_url: String,
    config: String,
}

impl DaemonBuilder {
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    /// Spawns the process; does not wait for it to be ready.
    pub fn spawn(self) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("memwarden.toml");
        std::fs::write(&config_path, format!("{}{NO_CRON}", self.config)).unwrap();
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memwarden"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--control-addr")
            .arg("127.0.0.1:0")
            .arg("--log-format")
            .arg("json")
            .arg("--database-url")
            .arg(&self.database_url)
            .env_remove("DATABASE_URL")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("MEMWARDEN_CONFIG")
            .env("MEMWARDEN_API_TOKEN", API)
            .env("MEMWARDEN_ADMIN_TOKEN", ADMIN)
            .env("MEMWARDEN_TESTING__PROBE_KINDS", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("spawning memwarden");
        let addr = bound_control_addr(&mut child, &log, Duration::from_secs(20));
        Daemon {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// Spawns the process and waits for `/readyz` 200.
    pub async fn ready(self) -> Daemon {
        let d = self.spawn();
        d.wait_ready(Duration::from_secs(30)).await;
        d
    }
}

/// An HTTP client with the admin's dual token.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {API}").parse().unwrap());
    headers.insert("x-admin-token", ADMIN.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Daemon {
    pub fn builder(database_url: &str) -> DaemonBuilder {
        DaemonBuilder {
            database_url: database_url.to_string(),
            config: String::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The prefix of this process's worker identity (`lease_owner`, `job_attempts.worker`):
    /// `<hostname>:<pid>:`, followed by 8 random hex digits.
    pub fn worker_prefix(&self) -> String {
        format!("{}:{}:", hostname(), self.pid())
    }

    /// The status of `GET path`, None when the port does not answer.
    pub async fn status_of(&self, path: &str) -> Option<u16> {
        reqwest::Client::new()
            .get(self.url(path))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Polls `/readyz` until 200; panics with the log if it never comes.
    pub async fn wait_ready(&self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.status_of("/readyz").await == Some(200) {
                return t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "daemon not ready within {limit:?}; log:\n{}",
            tail(&self.logs(), 40)
        );
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("sending a signal");
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; None if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if t0.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        admin_client()
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("a JSON body")
    }

    /// The lifecycle state from `/v1/status`.
    pub async fn state(&self) -> String {
        self.get_json("/v1/status").await["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// SIGTSTP, then wait for QUIESCED: nothing is claimed from then on.
    pub async fn quiet(&self) {
        self.signal(Signal::SIGTSTP);
        eventually(
            Duration::from_secs(10),
            "QUIESCED after SIGTSTP",
            || async { self.state().await == "QUIESCED" },
        )
        .await;
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(self.url("/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }

    /// The sum of every series of a counter or gauge, and the series themselves.
    pub async fn metric(&self, name: &str) -> (f64, Vec<String>) {
        metric_in(&self.metrics().await, name)
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Panics if the daemon's log shows a panic.
    pub fn assert_no_panic(&self, what: &str) {
        let logs = self.logs();
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains("panicked")).collect();
        assert!(
            hits.is_empty(),
            "{what}: the daemon panicked:\n{}",
            hits.join("\n")
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of the values of every series of `name` in a Prometheus text page.
pub fn metric_in(page: &str, name: &str) -> (f64, Vec<String>) {
    let mut sum = 0.0;
    let mut series = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            series.push(line.to_string());
        }
    }
    (sum, series)
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
            "SELECT count(*) FROM (SELECT job_id FROM memwarden.job_attempts WHERE outcome = 'succeeded' \
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
            "SELECT count(*) FROM memwarden.job_attempts WHERE finished_at IS NULL",
        )
        .await;
        assert_eq!(open, 0, "{what}: no attempt left open");
        let running = count(
            pool,
            "SELECT count(*) FROM memwarden.jobs WHERE status = 'running'",
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
