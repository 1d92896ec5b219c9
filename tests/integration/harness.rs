//! The integration suite's own helpers, over the shared harness of `tests/common` (the
//! PostgreSQL, the daemon binary, the checks): blocking probes, the GoodMem SDK in a venv,
//! AutoMem's curl, and job status waits.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;

#[path = "../common/mod.rs"]
mod common;
pub use common::checks::{count, eventually, free_port, notice, tail, within};
pub use common::daemon::{admin_client, Daemon, ADMIN, API};
pub use common::pg::TestDb;
pub use common::{fake_openai, fixtures, memory_service};

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
            common::checks::notice("installing goodmem==0.1.43 from PyPI into target/goodmem-venv (first run only, about 20 s)");
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

/// Waits until no memory is left unenriched for its current content.
pub async fn wait_enriched(pool: &PgPool, limit: Duration) {
    eventually(limit, "every memory enriched", || async {
        count(
            pool,
            "SELECT count(*) FROM memories WHERE enriched_at IS NULL",
        )
        .await
            == 0
    })
    .await;
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
