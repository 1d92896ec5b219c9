//! The test harness: one PostgreSQL per test process (`DATABASE_URL` when set, otherwise a
//! private throwaway cluster from the local server binaries), a fresh database per test
//! (copied from a migrated template), and the real daemon binary on a free port.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::PgPool;

pub const API: &str = "test-api-token";
pub const ADMIN: &str = "test-admin-token";

#[path = "../common/pg.rs"]
mod pg;
pub use pg::TestDb;
#[path = "../common/checks.rs"]
mod checks;
#[path = "../common/schedules.rs"]
mod schedules;
use checks::bound_control_addr;
pub use checks::{count, eventually, free_port, tail, within};

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
    wait_ready: bool,
    admin_token: bool,
}

impl DaemonBuilder {
    pub fn without_admin_token(mut self) -> Self {
        self.admin_token = false;
        self
    }

    /// No default schedule fires (job-purge, sync, eviction, enrichment catch-up): only the
    /// jobs the test makes run.
    pub fn without_default_schedules(self) -> Self {
        self.config(schedules::NO_DEFAULT_SCHEDULES)
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn spawn(self) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("memwarden.toml");
        std::fs::write(&config_path, &self.config).unwrap();
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
            .env("MEMWARDEN_API_TOKEN", API)
            .env("MEMWARDEN_TESTING__PROBE_KINDS", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if self.admin_token {
            cmd.env("MEMWARDEN_ADMIN_TOKEN", ADMIN);
        } else {
            cmd.env_remove("MEMWARDEN_ADMIN_TOKEN");
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
        let d = Daemon {
            child,
            addr,
            log,
            spawned,
            _dir: dir,
        };
        if self.wait_ready {
            d.wait_ready(Duration::from_secs(20));
        }
        d
    }
}

impl Daemon {
    pub fn builder(database_url: &str) -> DaemonBuilder {
        DaemonBuilder {
            database_url: Some(database_url.to_string()),
            config: String::new(),
            env: Vec::new(),
            wait_ready: true,
            admin_token: true,
        }
    }

    pub fn start(database_url: &str) -> Daemon {
        Self::builder(database_url).spawn()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Polls `/readyz` until 200; panics with the log if it never comes. Returns the time since
    /// the process was spawned.
    pub fn wait_ready(&self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if http_status(&self.url("/readyz")) == Some(200) {
                return self.spawned.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("daemon not ready within {limit:?}; log:\n{}", self.logs());
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("sending a signal");
    }

    /// Waits for the process to exit; None if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
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
        eventually(Duration::from_secs(3), "QUIESCED after SIGTSTP", || async {
            self.state().await == "QUIESCED"
        })
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

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking GET's status code, for polling from sync code.
pub fn http_status(url: &str) -> Option<u16> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// An HTTP client with the admin's dual token.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {API}").parse().unwrap());
    headers.insert("x-admin-token", ADMIN.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A Python virtualenv with the GoodMem SDK, made once under target/ and reused.
pub fn goodmem_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("goodmem-venv");
        let python = venv.join("bin").join("python");
        let ok = python.exists()
            && Command::new(&python)
                .args(["-c", "import goodmem, importlib.metadata as m; assert m.version('goodmem') == '0.1.43'"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if !ok {
            let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 -m venv");
            assert!(status.success(), "creating the goodmem venv");
            let status = Command::new(venv.join("bin").join("pip"))
                .args(["install", "-q", "goodmem==0.1.43"])
                .status()
                .expect("pip install goodmem");
            assert!(status.success(), "pip install goodmem==0.1.43");
        }
        python
    })
    .clone()
}

/// Runs a Python snippet with the GoodMem SDK; returns stdout, panics with stderr on failure.
pub fn run_goodmem(script: &str, env: &[(&str, &str)]) -> String {
    let python = goodmem_python();
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running python");
    assert!(
        out.status.success(),
        "python failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn job_status(pool: &PgPool, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM memwarden.jobs WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("the job exists")
}

/// Waits until the job has this status.
pub async fn wait_job(pool: &PgPool, id: &str, status: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("job {id} is {status}"),
        || async { job_status(pool, id).await == status },
    )
    .await;
}

/// `curl -X POST` with the admin's dual token (`Authorization: Bearer` plus `X-Admin-Token`)
/// and a JSON body, as AutoMem's admin scripts call it: the status code and the JSON reply
/// (null when the reply is not JSON).
pub fn admin_curl(url: &str, body: &serde_json::Value) -> (String, serde_json::Value) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", url])
        .args([
            "-H",
            &format!("Authorization: Bearer {API}"),
            "-H",
            &format!("X-Admin-Token: {ADMIN}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            "-w",
            "\n%{http_code}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.to_string(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
