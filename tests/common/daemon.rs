//! The real daemon binary as a child process: `memwarden run` on a free port, with the test
//! tokens, the `probe` kind, JSON logs in a file of its own, and no default schedule firing
//! unless the test asks for one (or the suite runs with `MEMWARDEN_TEST_CRON=fast`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::checks::{bound_control_addr, eventually, metric_in, tail};
use super::schedules;

pub const API: &str = "test-api-token";
pub const ADMIN: &str = "test-admin-token";

/// A running `memwarden run` process.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
    spawned: Instant,
    _dir: tempfile::TempDir,
}

pub struct DaemonBuilder {
    database_url: Option<String>,
    config: String,
    env: Vec<(String, String)>,
    admin_token: bool,
    vendor_tokens: bool,
    default_schedules: bool,
    schedules_off: bool,
}

impl DaemonBuilder {
    pub fn without_admin_token(mut self) -> Self {
        self.admin_token = false;
        self
    }

    /// The test tokens as AutoMem's operators set them (`AUTOMEM_API_TOKEN`,
    /// `ADMIN_API_TOKEN`), and no `MEMWARDEN_*` token.
    pub fn with_vendor_tokens(mut self) -> Self {
        self.vendor_tokens = true;
        self
    }

    /// The four default schedules as they are in production (the cron tests need them).
    pub fn with_default_schedules(mut self) -> Self {
        self.default_schedules = true;
        self
    }

    /// The default schedules off even under `MEMWARDEN_TEST_CRON=fast`: for a test whose
    /// subject is the work a default schedule does too (sync repairing the drift it set up).
    pub fn schedules_off(mut self) -> Self {
        self.schedules_off = true;
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    /// One key per role, client `<prefix>-<role>` with the token `<prefix>-<role>-key`, as a
    /// vendor's operators configure their admin, auditor and indexer clients.
    pub fn with_role_keys(self, prefix: &str) -> Self {
        let keys: String = ["admin", "auditor", "indexer"]
            .iter()
            .map(|role| {
                format!(
                    "[[auth.keys]]\nclient_id = \"{prefix}-{role}\"\nrole = \"{role}\"\ntoken = \"{prefix}-{role}-key\"\n"
                )
            })
            .collect();
        self.config(&keys)
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Spawns the process and waits until it has bound its control port; not for READY.
    pub fn spawn(self) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("memwarden.toml");
        let mut config = self.config.clone();
        if self.schedules_off {
            config.push_str(&schedules::off());
        } else if !self.default_schedules {
            config.push_str(&schedules::for_tests());
        }
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memwarden"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--control-addr")
            .arg("127.0.0.1:0")
            .arg("--log-format")
            .arg("json")
            .env_remove("DATABASE_URL")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("MEMWARDEN_CONFIG")
            .env_remove("AUTOMEM_API_TOKEN")
            .env_remove("ADMIN_API_TOKEN")
            .env_remove("MEMORY_SERVICE_ADMIN_REQUIRE_JUSTIFICATION")
            .env("MEMWARDEN_API_TOKEN", API)
            .env("MEMWARDEN_TESTING__PROBE_KINDS", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if self.admin_token && !self.vendor_tokens {
            cmd.env("MEMWARDEN_ADMIN_TOKEN", ADMIN);
        } else {
            cmd.env_remove("MEMWARDEN_ADMIN_TOKEN");
        }
        if self.vendor_tokens {
            cmd.env_remove("MEMWARDEN_API_TOKEN")
                .env("AUTOMEM_API_TOKEN", API)
                .env("ADMIN_API_TOKEN", ADMIN);
        }
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("spawning memwarden");
        let addr = bound_control_addr(&mut child, &log, Duration::from_secs(20));
        Daemon {
            child,
            addr,
            log,
            spawned,
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
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

impl Daemon {
    pub fn builder(database_url: &str) -> DaemonBuilder {
        DaemonBuilder {
            database_url: Some(database_url.to_string()),
            config: String::new(),
            env: Vec::new(),
            admin_token: true,
            vendor_tokens: false,
            default_schedules: false,
            schedules_off: false,
        }
    }

    /// Spawns a daemon on `database_url` and waits until it is READY.
    pub async fn start(database_url: &str) -> Daemon {
        Self::builder(database_url).ready().await
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

    /// Polls `/readyz` until 200; panics with the log if it never comes. Returns the time since
    /// the process was spawned.
    pub async fn wait_ready(&self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.status_of("/readyz").await == Some(200) {
                return self.spawned.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "daemon not ready within {limit:?}; log:\n{}",
            tail(&self.logs(), 40)
        );
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
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

    /// GET with the admin's dual token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        admin_client()
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
    }

    /// POST a JSON body with the admin's dual token.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        admin_client()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// The lifecycle state from `/v1/status`.
    pub async fn state(&self) -> String {
        self.get_json("/v1/status").await["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// SIGTSTP, then wait for QUIESCED: nothing is claimed until `resume`.
    pub async fn quiet(&self) {
        self.signal(nix::sys::signal::Signal::SIGTSTP);
        eventually(
            Duration::from_secs(10),
            "QUIESCED after SIGTSTP",
            || async { self.state().await == "QUIESCED" },
        )
        .await;
    }

    /// Enqueues through `POST /v1/jobs`; returns the reply (`id`, `status`, `duplicate`).
    pub async fn enqueue(&self, body: serde_json::Value) -> serde_json::Value {
        let r = self.post("/v1/jobs", body).await;
        assert!(r.status().is_success(), "enqueue: {}", r.status());
        r.json().await.expect("a JSON body")
    }

    /// Enqueues a `probe` job with these args; returns its id.
    pub async fn probe(&self, args: serde_json::Value) -> String {
        let v = self
            .enqueue(serde_json::json!({"kind": "probe", "args": args}))
            .await;
        v["id"].as_str().expect("an id").to_string()
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
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
