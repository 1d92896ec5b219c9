//! `GET /openapi.json` covers every route, and schemathesis (PyPI) fuzzes the control port
//! against it: no 5xx, and every response matches its documented status, type and schema.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::harness::{Daemon, TestDb, ADMIN, API};

/// Every operation the router serves.
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/status"),
    ("post", "/v1/admin/drain"),
    ("post", "/v1/admin:drain"),
    ("post", "/v1/admin/resume"),
    ("post", "/v1/admin/config/reload"),
    ("post", "/v1/admin/license:reload"),
    ("post", "/v1/admin/background-jobs:purge"),
    ("post", "/v1/admin/retrieve-memory-log-policies"),
    ("get", "/v1/admin/retrieve-memory-log-policies"),
    ("get", "/v1/admin/retrieve-memory-log-policies/{id}"),
    ("delete", "/v1/admin/retrieve-memory-log-policies/{id}"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("post", "/v1/jobs/{id}/cancel"),
    ("post", "/v1/jobs/{id}/retry"),
    ("post", "/v1/jobs/purge"),
    ("get", "/v1/queues"),
    ("get", "/v1/memories"),
    ("post", "/v1/queues/{name}/pause"),
    ("post", "/v1/queues/{name}/resume"),
    ("get", "/v1/schedules"),
    ("get", "/v1/schedules/{name}"),
    ("put", "/v1/schedules/{name}"),
    ("delete", "/v1/schedules/{name}"),
    ("get", "/v1/events"),
    ("get", "/v1/admin/events"),
    ("get", "/v1/audit"),
    ("post", "/v1/admin/evict"),
    ("get", "/v1/admin/conversations"),
    ("get", "/v1/admin/conversations/{id}"),
    ("delete", "/v1/admin/conversations/{id}"),
    ("post", "/v1/admin/conversations/{id}/restore"),
    ("get", "/v1/admin/attachments"),
    ("get", "/v1/admin/attachments/{id}"),
    ("delete", "/v1/admin/attachments/{id}"),
    ("get", "/v1/admin/attachments/{id}/content"),
    ("get", "/v1/admin/attachments/{id}/download-url"),
    ("get", "/v1/attachments/download/{token}/{filename}"),
    ("get", "/api/v0/memories"),
    ("get", "/api/v0/memories/{memory_id}"),
    ("put", "/api/v0/memories/{memory_id}"),
    ("delete", "/api/v0/memories/{memory_id}"),
    ("post", "/v1/work/evict"),
    ("get", "/enrichment/status"),
    ("get", "/health"),
    ("post", "/enrichment/reprocess"),
    ("post", "/v1/work/reprocess"),
    ("post", "/admin/reembed"),
    ("post", "/admin/sync"),
    ("post", "/v1/work/reembed"),
    ("post", "/v1/work/sync"),
];

#[tokio::test]
async fn openapi_documents_every_route() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let doc: Value = reqwest::get(d.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in OPERATIONS {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        OPERATIONS.len(),
        "an operation is documented that the router does not serve"
    );
}

fn schemathesis() -> PathBuf {
    static ST: OnceLock<PathBuf> = OnceLock::new();
    ST.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("schemathesis-venv");
        let st = venv.join("bin").join("st");
        if !st.exists() {
            crate::harness::notice(
                "installing schemathesis==4.32.5 from PyPI into target/schemathesis-venv (first run only, about a minute)",
            );
            assert!(Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap()
                .success());
            // Pinned, with the hypothesis it was run with: a new release can generate other
            // cases or check more, and CI must not change under an unchanged tree.
            let ok = Command::new(venv.join("bin").join("pip"))
                .args([
                    "install",
                    "-q",
                    "schemathesis==4.32.5",
                    "hypothesis==6.170.15",
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok, "pip install schemathesis");
        }
        st
    })
    .clone()
}

fn run_schemathesis(d: &Daemon, checks: &str, scope: &[&str]) {
    let out = Command::new(schemathesis())
        .args(["run", &d.url("/openapi.json")])
        .args([
            "-H",
            &format!("Authorization: Bearer {API}"),
            "-H",
            &format!("X-Admin-Token: {ADMIN}"),
        ])
        .args(["--checks", checks])
        .args(scope)
        .args([
            "--max-examples",
            "15",
            "--request-timeout",
            "10",
            // One worker: hypothesis' lambda-description cache is not thread-safe ("AST
            // constructor recursion depth mismatch" under two workers, seen in CI).
            "--workers",
            "1",
            "--generation-deterministic",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Tested"))
        .collect();
    eprintln!("schemathesis {checks}: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !d.logs().contains("panicked"),
        "the daemon panicked:\n{}",
        d.logs()
    );
}

/// The routes that wait for the job they enqueue (always, or with `?wait=true`): a fuzzed
/// drain or queue pause would leave them waiting, so they are fuzzed on a daemon of their own.
const WAITING: &[&str] = &[
    "/admin/reembed",
    "/admin/sync",
    "/v1/work/reembed",
    "/v1/work/sync",
    "/v1/work/evict",
    "/v1/admin/evict",
    "/v1/work/reprocess",
];

fn paths(flag: &str, paths: &[&str]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| [flag.to_string(), p.to_string()])
        .collect()
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_every_response_matches_its_schema() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let all_checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
    // The event streams never end, so they are not fuzzed; /readyz and /healthz answer 503 by
    // design once a fuzzed drain has run, so they are checked for conformance only, below.
    let mut excluded = paths(
        "--exclude-path",
        &["/v1/events", "/v1/admin/events", "/readyz", "/healthz"],
    );
    excluded.extend(paths("--exclude-path", WAITING));
    let excluded: Vec<&str> = excluded.iter().map(String::as_str).collect();
    run_schemathesis(&d, all_checks, &excluded);
    run_schemathesis(
        &d,
        "status_code_conformance,content_type_conformance,response_schema_conformance",
        &["--include-path", "/readyz", "--include-path", "/healthz"],
    );

    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    let waiting = paths("--include-path", WAITING);
    let waiting: Vec<&str> = waiting.iter().map(String::as_str).collect();
    run_schemathesis(&d, all_checks, &waiting);
}
