//! Validates the deployment assets under `deploy/` with the tools operators use on them:
//! `systemd-analyze` for the unit, `promtool` for the alert rules and their unit tests,
//! `kubernetes-validate` (PyPI, offline schemas) for the manifests, and parsers for the Grafana
//! dashboard and the Dockerfile. No database is needed.
//!
//! Missing tools are installed on first use when running as root: `promtool` and
//! `systemd-analyze` from Debian's `prometheus` and `systemd` packages, and
//! `kubernetes-validate` into a virtualenv under `target/deploy-venv` (reused afterwards).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{LazyLock, Mutex, OnceLock};

use memwarden::telemetry::metrics;

use serde_json::Value;

/// The version of PyPI `kubernetes-validate` the venv gets.
const KUBERNETES_VALIDATE: &str = "1.37.0";
/// Kubernetes versions the manifests must validate against: native sidecars (init containers
/// with `restartPolicy: Always`) are on by default from 1.29.
const K8S_VERSIONS: &[&str] = &["1.30.0", "1.33.0"];
/// Custom resources the Kubernetes schemas do not know; checked by hand below.
const CUSTOM_KINDS: &[(&str, &str)] = &[
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
];

/// Every metric the daemon exports (`telemetry::metrics::ALL`), without the `memwarden_`
/// prefix, and the histograms among them (exported as `_bucket`, `_sum` and `_count`).
static METRICS: LazyLock<Vec<&'static str>> = LazyLock::new(|| unprefixed(metrics::ALL));
static HISTOGRAMS: LazyLock<Vec<&'static str>> = LazyLock::new(|| unprefixed(metrics::HISTOGRAMS));

fn unprefixed(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .map(|m| {
            m.strip_prefix("memwarden_")
                .expect("every metric is prefixed")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Serializes apt-get (tests run in parallel and dpkg has one lock); true once updated.
static APT: Mutex<bool> = Mutex::new(false);

/// Installs Debian's `package` (apt-get update first, once per test run). Needs root.
fn apt_install(updated: &mut bool, package: &str) {
    if !*updated {
        let out = run(Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
        assert!(
            out.status.success(),
            "apt-get update failed:\n{}",
            text(&out)
        );
        *updated = true;
    }
    let out = run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(
        out.status.success(),
        "apt-get install {package} failed:\n{}",
        text(&out)
    );
}

/// The path of `binary`, installing Debian's `package` first when it is missing and we are root.
fn ensure_tool(binary: &str, package: &str) -> PathBuf {
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = on_path(binary) {
        return found;
    }
    if is_root() {
        apt_install(&mut updated, package);
    }
    on_path(binary).unwrap_or_else(|| {
        panic!(
            "`{binary}` is not on PATH and could not be installed: install Debian's `{package}` package \
             (apt-get install {package}), or run the tests as root so they install it themselves"
        )
    })
}

/// A Python with `kubernetes-validate` (and PyYAML, its dependency), in `target/deploy-venv`.
fn deploy_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = root().join("target").join("deploy-venv");
        let python = venv.join("bin").join("python");
        let check = format!(
            "import importlib.metadata as m, yaml, kubernetes_validate; \
             assert m.version('kubernetes-validate') == '{KUBERNETES_VALIDATE}'"
        );
        let ready = |python: &Path| {
            python.exists()
                && Command::new(python)
                    .args(["-c", &check])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
        };
        if !ready(&python) {
            if !python.exists() {
                let python3 = ensure_tool("python3", "python3-venv");
                let make_venv = || {
                    run(Command::new(&python3)
                        .args(["-m", "venv", "--clear"])
                        .arg(&venv))
                };
                let mut out = make_venv();
                if !out.status.success() && is_root() {
                    // Debian's own python3 makes venvs only with python3-venv (ensurepip).
                    apt_install(
                        &mut APT.lock().unwrap_or_else(|e| e.into_inner()),
                        "python3-venv",
                    );
                    out = make_venv();
                }
                assert!(
                    out.status.success(),
                    "python3 -m venv {} failed:\n{}",
                    venv.display(),
                    text(&out)
                );
            }
            let out = run(Command::new(venv.join("bin").join("pip")).args([
                "install",
                "-q",
                "--disable-pip-version-check",
                &format!("kubernetes-validate=={KUBERNETES_VALIDATE}"),
            ]));
            assert!(
                out.status.success(),
                "pip install kubernetes-validate failed:\n{}",
                text(&out)
            );
            assert!(
                ready(&python),
                "kubernetes-validate is still not importable from {}",
                python.display()
            );
        }
        python
    })
    .clone()
}

/// Every YAML document in `path`, as JSON (PyYAML's safe loader; empty documents dropped).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  json.dump(docs, sys.stdout)";
    let out = run(Command::new(deploy_python()).args(["-c", script]).arg(path));
    assert!(
        out.status.success(),
        "parsing YAML in {}:\n{}",
        path.display(),
        text(&out)
    );
    match serde_json::from_slice(&out.stdout).expect("PyYAML's output is JSON") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn yaml_document(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(
        docs.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string at {pointer} in {v}"))
}

fn arr_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The identifiers `memwarden_...` that occur in `s`.
fn metric_names(s: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(pos) = s[i..].find("memwarden_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(s[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// The exported metric a series name belongs to (`..._bucket` of a histogram → the histogram).
fn known_metric(series: &str) -> Option<&'static str> {
    let bare = series.strip_prefix("memwarden_")?;
    METRICS.iter().copied().find(|m| {
        *m == bare
            || (HISTOGRAMS.contains(m)
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| bare.strip_suffix(suffix) == Some(*m)))
    })
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

/// `(section, key, value)` for each assignment of a unit file, in order.
fn unit_directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The single value of `key` in `[Service]`.
fn service_value(directives: &[(String, String, String)], key: &str) -> String {
    let values: Vec<&String> = directives
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "[Service] should set {key}= exactly once, got {values:?}"
    );
    values[0].clone()
}

/// Runs `systemd-analyze verify` on `unit` (written into a temp dir under its own name) and
/// returns what is wrong: a failed run, or any complaint about the unit, such as an unknown key,
/// an unknown section or a value systemd cannot parse (those it only warns about and ignores).
fn verify_unit(analyze: &Path, unit: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memwarden.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems: Vec<String> = stderr
        .lines()
        .filter(|line| {
            let line = line.trim();
            !line.is_empty()
                && (line.contains("memwarden.service")
                    || [
                        "Unknown key",
                        "Unknown lvalue",
                        "Unknown section",
                        "Failed to parse",
                        "ignoring",
                    ]
                    .iter()
                    .any(|marker| line.contains(marker)))
        })
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        problems.push(format!("systemd-analyze verify failed:\n{}", text(&out)));
    }
    problems
}

/// The unit as installed, with the daemon's path pointed at the binary cargo built, since
/// `systemd-analyze verify` checks that every Exec*= command exists and is executable.
fn unit_for_verify() -> String {
    let unit = read(&deploy("systemd/memwarden.service"));
    let binary = env!("CARGO_BIN_EXE_memwarden");
    assert!(
        !binary.contains(char::is_whitespace),
        "cargo's binary path has spaces: {binary}"
    );
    unit.lines()
        .map(|line| {
            if line.trim_start().starts_with("Exec") {
                line.replace("/usr/local/bin/memwarden", binary)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn systemd_unit_verifies() {
    let analyze = ensure_tool("systemd-analyze", "systemd");
    let unit = read(&deploy("systemd/memwarden.service"));
    let d = unit_directives(&unit);

    // What operations.md fixes.
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/memwarden run --config /etc/memwarden/memwarden.toml --log-format json",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("WatchdogSec", "30"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("EnvironmentFile", "-/etc/memwarden/env"),
    ] {
        assert_eq!(service_value(&d, key), want, "[Service] {key}=");
    }
    assert!(
        d.iter()
            .any(|(s, k, v)| s == "Service" && k == "SystemCallFilter" && v == "@system-service"),
        "SystemCallFilter=@system-service is missing"
    );
    // TimeoutStopSec must leave room for shutdown.grace_period (the example config's, 25 s).
    let stop: f64 = service_value(&d, "TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in plain seconds");
    let example: toml::Table = read(&deploy("systemd/memwarden.toml.example"))
        .parse()
        .unwrap();
    let grace = example["shutdown"]["grace_period"]
        .as_float()
        .or_else(|| {
            example["shutdown"]["grace_period"]
                .as_integer()
                .map(|i| i as f64)
        })
        .expect("shutdown.grace_period in the example config");
    assert!(
        stop > grace.max(25.0),
        "TimeoutStopSec={stop} must exceed the grace period {grace}"
    );

    // The real thing: systemd's own parser, with every warning treated as an error.
    let verifiable = unit_for_verify();
    let problems = verify_unit(&analyze, &verifiable);
    assert!(
        problems.is_empty(),
        "systemd-analyze verify complains:\n{}",
        problems.join("\n")
    );

    // The check has teeth: each of these broken units must be caught.
    for (what, from, to) in [
        ("a misspelled key", "WatchdogSec=30", "WatchdogSecs=30"),
        ("a bad Type", "Type=notify", "Type=notfy"),
        (
            "an unknown syscall group",
            "@system-service",
            "@sytem-service",
        ),
        (
            "a bad time value",
            "TimeoutStopSec=",
            "TimeoutStopSec=forty",
        ),
        ("a misspelled section", "[Service]", "[Servise]"),
        (
            "a missing binary",
            env!("CARGO_BIN_EXE_memwarden"),
            "/nonexistent/bin/memwarden",
        ),
    ] {
        assert!(
            verifiable.contains(from),
            "mutation source `{from}` not in the unit"
        );
        let broken = verifiable.replacen(from, to, 1);
        let problems = verify_unit(&analyze, &broken);
        assert!(
            !problems.is_empty(),
            "systemd-analyze verify did not catch {what} ({to})"
        );
    }

    // And its hardening holds: systemd's exposure score stays at or below 2.0 ("OK").
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memwarden.service");
    std::fs::write(&path, &verifiable).unwrap();
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&path));
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.0:\n{}",
        text(&out)
    );
}

#[test]
fn systemd_example_config_is_accepted() {
    let example = deploy("systemd/memwarden.toml.example");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memwarden"));
    cmd.arg("config").arg("check").arg("--config").arg(&example);
    for (key, _) in std::env::vars() {
        if key == "DATABASE_URL" || key.starts_with("MEMWARDEN_") {
            cmd.env_remove(key);
        }
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "memwarden config check rejects the example:\n{}",
        text(&out)
    );

    // It shows the keys operators look for.
    let body = read(&example);
    let table: toml::Table = body.parse().unwrap();
    for (section, keys) in [
        ("database", &["migrate"][..]),
        ("control", &["addr"]),
        ("shutdown", &["grace_period"]),
        ("log", &["level"]),
        (
            "queue",
            &["poll_interval_ms", "lease", "heartbeat", "reaper_interval"],
        ),
    ] {
        for key in keys {
            assert!(
                table[section].get(key).is_some(),
                "example lacks {section}.{key}"
            );
        }
    }
    assert!(
        table["queues"]["default"].get("concurrency").is_some(),
        "example lacks queues.default.concurrency"
    );
    for key in ["url", "listen_url", "api_token", "admin_token"] {
        assert!(
            body.contains(&format!("# {key} = ")),
            "example does not document `{key}`"
        );
    }
    let keys = table["auth"]["keys"].as_array().expect("[[auth.keys]]");
    assert!(keys
        .iter()
        .all(|k| k.get("client_id").is_some() && k.get("role").is_some()));
    let schedules = table["schedules"].as_array().expect("[[schedules]]");
    for s in schedules {
        for key in ["name", "cron", "kind", "queue", "enabled", "timezone"] {
            assert!(s.get(key).is_some(), "schedule {s:?} lacks {key}");
        }
        let fields = s["cron"].as_str().unwrap().split_whitespace().count();
        assert_eq!(fields, 6, "cron has six fields, seconds first: {s:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// The alerting rules of alerts.yml: name → the rule (as JSON).
fn alert_rules() -> BTreeMap<String, Value> {
    let rules = yaml_document(&deploy("prometheus/alerts.yml"));
    let mut alerts = BTreeMap::new();
    for group in arr_at(&rules, "/groups") {
        for rule in arr_at(group, "/rules") {
            if let Some(name) = rule.get("alert").and_then(Value::as_str) {
                assert!(
                    alerts.insert(name.to_string(), rule.clone()).is_none(),
                    "alert {name} twice"
                );
            }
        }
    }
    alerts
}

#[test]
fn promtool_check_rules() {
    let promtool = ensure_tool("promtool", "prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .arg(deploy("prometheus/alerts.yml")));
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        text(&out)
    );

    // The alerts operations.md asks for, by what they watch.
    let alerts = alert_rules();
    let exprs: Vec<(&String, &str)> = alerts
        .iter()
        .map(|(n, r)| (n, str_at(r, "/expr")))
        .collect();
    let watching = |needle: &str| exprs.iter().any(|(_, e)| e.contains(needle));
    for (what, needle) in [
        (
            "queue backlog growing",
            "memwarden_queue_depth{status=\"available\"}",
        ),
        (
            "oldest job too old",
            "memwarden_queue_oldest_available_age_seconds",
        ),
        (
            "failure ratio",
            "memwarden_jobs_finished_total{outcome=\"failed\"}",
        ),
        ("worker loop stopped", "memwarden_loop_restarts_total"),
        ("target down", "up{job=\"memwarden\"}"),
        (
            "not ready",
            "memwarden_lifecycle_state{state=\"READY\"} == 0",
        ),
        ("sync drift persisting", "memwarden_sync_drift"),
    ] {
        assert!(
            watching(needle),
            "no alert for {what} (an expr with `{needle}`)"
        );
    }
    let not_ready = alerts
        .values()
        .find(|r| str_at(r, "/expr").contains("memwarden_lifecycle_state"))
        .unwrap();
    assert_eq!(str_at(not_ready, "/for"), "10m", "not ready for 10 minutes");
    let drift = alerts
        .values()
        .find(|r| str_at(r, "/expr").contains("memwarden_sync_drift"))
        .unwrap();
    assert_eq!(str_at(drift, "/for"), "2h", "sync drift for 2 hours");
    for (name, rule) in &alerts {
        assert!(
            rule.pointer("/labels/severity").is_some(),
            "{name} has no severity"
        );
        assert!(
            rule.pointer("/annotations/summary").is_some(),
            "{name} has no summary"
        );
        for series in metric_names(str_at(rule, "/expr")) {
            assert!(
                known_metric(&series).is_some(),
                "{name} uses `{series}`, which memwarden does not export"
            );
        }
    }
}

#[test]
fn promtool_test_rules() {
    let promtool = ensure_tool("promtool", "prometheus");
    let tests_file = deploy("prometheus/alerts_test.yml");
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests_file));
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));

    // Every alert is made to fire somewhere, and is shown quiet somewhere.
    let alerts = alert_rules();
    let tests = yaml_document(&tests_file);
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in arr_at(&tests, "/tests") {
        for check in arr_at(case, "/alert_rule_test") {
            let name = str_at(check, "/alertname").to_string();
            assert!(
                alerts.contains_key(&name),
                "alerts_test.yml tests unknown alert {name}"
            );
            if arr_at(check, "/exp_alerts").is_empty() {
                quiet.insert(name);
            } else {
                fired.insert(name);
            }
        }
    }
    for name in alerts.keys() {
        assert!(fired.contains(name), "no test makes {name} fire");
        assert!(quiet.contains(name), "no test shows {name} staying quiet");
    }

    // The tests have teeth: an alert whose expression never matches fails them.
    let rules = yaml_document(&deploy("prometheus/alerts.yml"));
    for name in alerts.keys() {
        let mut broken = rules.clone();
        for group in broken["groups"].as_array_mut().unwrap() {
            for rule in group["rules"].as_array_mut().unwrap() {
                if rule.get("alert").and_then(Value::as_str) == Some(name) {
                    rule["expr"] = Value::String("vector(1) == 0".into());
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        // JSON is YAML, so promtool reads the modified rules as they are.
        std::fs::write(
            dir.path().join("alerts.yml"),
            serde_json::to_string_pretty(&broken).unwrap(),
        )
        .unwrap();
        std::fs::copy(&tests_file, dir.path().join("alerts_test.yml")).unwrap();
        let out = run(Command::new(&promtool)
            .args(["test", "rules"])
            .arg(dir.path().join("alerts_test.yml")));
        let report = text(&out);
        assert!(
            !out.status.success(),
            "promtool test still passes with {name} disabled"
        );
        assert!(
            report.contains(&format!("alertname: {name},")),
            "the failure does not name {name}:\n{report}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

fn k8s_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for name in [
        "sidecar.yaml",
        "deployment.yaml",
        "keda-scaledobject.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "deploy/k8s/{name} is missing"
        );
    }
    files
}

fn is_custom(doc: &Value) -> bool {
    CUSTOM_KINDS
        .iter()
        .any(|(api, kind)| doc["apiVersion"] == *api && doc["kind"] == *kind)
}

/// Runs kubernetes-validate; returns its report lines and whether it succeeded.
fn kubernetes_validate(files: &[PathBuf], versions: &[&str]) -> (Vec<String>, bool) {
    let mut cmd = Command::new(deploy_python());
    cmd.args(["-m", "kubernetes_validate", "--strict"]);
    for v in versions {
        cmd.args(["-k", v]);
    }
    let out = run(cmd.args(files));
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect();
    (lines, out.status.success())
}

/// A workload's pod template.
fn pod_template(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => doc.pointer("/spec/template"),
        _ => None,
    }
}

/// Whether every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// All containers of a pod spec, init containers (sidecars) included.
fn all_containers(pod_spec: &Value) -> Vec<&Value> {
    arr_at(pod_spec, "/initContainers")
        .iter()
        .chain(arr_at(pod_spec, "/containers"))
        .collect()
}

fn is_memwarden(container: &Value) -> bool {
    container["name"] == "memwarden"
        || container["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("memwarden"))
}

/// The container port a probe or a Service targets: a number, or the name of a port.
fn resolve_port(container: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    let name = port.as_str()?;
    arr_at(container, "/ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
}

fn env_var<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    arr_at(container, "/env").iter().find(|e| e["name"] == name)
}

/// Checks one memwarden container against operations.md; `grace` is its pod's
/// terminationGracePeriodSeconds.
fn check_memwarden_container(file: &str, c: &Value, grace: i64) {
    let at = |what: &str| format!("{file}: memwarden container: {what}");
    assert_eq!(
        c.pointer("/readinessProbe/httpGet/path"),
        Some(&Value::from("/readyz")),
        "{}",
        at("readinessProbe on /readyz")
    );
    assert_eq!(
        c.pointer("/livenessProbe/httpGet/path"),
        Some(&Value::from("/healthz")),
        "{}",
        at("livenessProbe on /healthz")
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = c
            .pointer(&format!("/{probe}/httpGet/port"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            resolve_port(c, &port),
            Some(9420),
            "{}",
            at(&format!("{probe} port is 9420"))
        );
    }
    let command: Vec<&str> = arr_at(c, "/lifecycle/preStop/exec/command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        command.starts_with(&["memwarden", "drain", "--wait", "--timeout", "20"]),
        "{}: {command:?}",
        at("preStop runs `memwarden drain --wait --timeout 20`")
    );
    if let Some(i) = command.iter().position(|a| *a == "--addr") {
        assert_eq!(
            command.get(i + 1),
            Some(&"127.0.0.1:9420"),
            "{}",
            at("drain --addr")
        );
    }
    assert_eq!(
        env_var(c, "MEMWARDEN_CONTROL__ADDR").and_then(|e| e["value"].as_str()),
        Some("0.0.0.0:9420"),
        "{}",
        at("MEMWARDEN_CONTROL__ADDR=0.0.0.0:9420")
    );
    for secret in [
        "DATABASE_URL",
        "MEMWARDEN_API_TOKEN",
        "MEMWARDEN_ADMIN_TOKEN",
    ] {
        let e = env_var(c, secret).unwrap_or_else(|| panic!("{}", at(&format!("no {secret}"))));
        assert!(
            e.pointer("/valueFrom/secretKeyRef/name").is_some() && e.get("value").is_none(),
            "{}",
            at(&format!("{secret} comes from a Secret"))
        );
    }
    assert!(
        arr_at(c, "/ports")
            .iter()
            .any(|p| p["containerPort"] == 9420),
        "{}",
        at("exposes 9420")
    );
    // The preStop drain (20 s), then SIGTERM's grace period (25 s), must fit.
    assert!(
        grace > 20 + 25,
        "{}",
        at(&format!("terminationGracePeriodSeconds {grace} <= 45"))
    );
}

#[test]
fn k8s_manifests_validate() {
    let files = k8s_files();
    let (lines, ok) = kubernetes_validate(&files, K8S_VERSIONS);
    let report = lines.join("\n");
    assert!(ok, "kubernetes-validate failed:\n{report}");

    // Each document: built-in kinds pass against every version; only the known custom
    // resources are skipped (no schema), and those are checked by hand below.
    let mut docs: Vec<(String, Value)> = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for doc in yaml_documents(file) {
            for key in ["apiVersion", "kind"] {
                assert!(doc[key].is_string(), "{name}: a document without {key}");
            }
            assert!(
                doc.pointer("/metadata/name").is_some(),
                "{name}: a document without metadata.name"
            );
            docs.push((name.clone(), doc));
        }
    }
    for line in &lines {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            continue;
        }
        let skipped_custom = line.starts_with("WARN")
            && CUSTOM_KINDS.iter().any(|(api, kind)| {
                line.contains(&format!(
                    "Couldn't find schema for kind {kind} with api version {api} "
                ))
            });
        assert!(
            skipped_custom,
            "unexpected kubernetes-validate output: {line}\n{report}"
        );
    }
    for (file, doc) in &docs {
        let kn = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap().to_lowercase(),
            str_at(doc, "/metadata/name")
        );
        for version in K8S_VERSIONS {
            let mm = version.rsplit_once('.').unwrap().0;
            let passed = format!("deploy/k8s/{file} passed for resource {kn} against version {mm}");
            let found = lines.iter().any(|l| l.contains(&passed));
            if is_custom(doc) {
                assert!(!found, "{kn} unexpectedly has a schema");
            } else {
                assert!(
                    found,
                    "{kn} in {file} was not validated against {version}:\n{report}"
                );
            }
        }
    }

    // The workloads.
    let workloads: Vec<&(String, Value)> = docs
        .iter()
        .filter(|(_, d)| pod_template(d).is_some())
        .collect();
    let mut memwarden_containers = 0;
    for (file, doc) in &workloads {
        let pod = pod_template(doc).unwrap();
        let spec = &pod["spec"];
        let grace = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
        for c in arr_at(spec, "/initContainers") {
            if is_memwarden(c) {
                assert_eq!(
                    file, "sidecar.yaml",
                    "memwarden runs as an init container only in the sidecar"
                );
                assert_eq!(
                    c["restartPolicy"], "Always",
                    "{file}: the sidecar needs restartPolicy: Always"
                );
                check_memwarden_container(file, c, grace);
                memwarden_containers += 1;
            }
        }
        for c in arr_at(spec, "/containers") {
            if is_memwarden(c) {
                check_memwarden_container(file, c, grace);
                memwarden_containers += 1;
            }
        }
        let labels = pod.pointer("/metadata/labels").cloned().unwrap_or_default();
        assert!(
            selects(&doc["spec"]["selector"]["matchLabels"], &labels),
            "{file}: the selector does not match the pod template's labels"
        );
    }
    assert!(
        memwarden_containers >= 2,
        "expected memwarden in sidecar.yaml and deployment.yaml"
    );
    let sidecar = workloads
        .iter()
        .find(|(f, _)| f == "sidecar.yaml")
        .expect("sidecar.yaml has a workload");
    let sidecar_spec = &pod_template(&sidecar.1).unwrap()["spec"];
    assert!(
        arr_at(sidecar_spec, "/initContainers")
            .iter()
            .any(is_memwarden),
        "sidecar.yaml: memwarden is a native sidecar (an init container)"
    );
    assert!(
        arr_at(sidecar_spec, "/containers")
            .iter()
            .any(|c| !is_memwarden(c)),
        "sidecar.yaml: the pod runs the memory service itself"
    );

    // deployment.yaml: N workers and a PodDisruptionBudget covering them.
    let worker = workloads
        .iter()
        .find(|(f, d)| f == "deployment.yaml" && d["kind"] == "Deployment")
        .map(|(_, d)| d)
        .expect("deployment.yaml has a Deployment");
    assert!(
        worker["spec"]["replicas"].as_i64().unwrap_or(1) >= 2,
        "the worker Deployment runs N > 1 replicas"
    );
    let worker_labels = &worker["spec"]["template"]["metadata"]["labels"];
    let pdb = docs
        .iter()
        .find(|(f, d)| f == "deployment.yaml" && d["kind"] == "PodDisruptionBudget")
        .map(|(_, d)| d)
        .expect("deployment.yaml has a PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"], worker_labels),
        "the PodDisruptionBudget does not select the workers"
    );

    // Services select pods, and their named target ports exist in those pods.
    let services: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "Service")
        .collect();
    for svc in &services {
        let name = str_at(svc, "/metadata/name");
        let pods: Vec<&Value> = workloads
            .iter()
            .filter_map(|(_, d)| pod_template(d))
            .filter(|p| selects(&svc["spec"]["selector"], &p["metadata"]["labels"]))
            .collect();
        assert!(
            !pods.is_empty(),
            "Service {name} selects no pod in deploy/k8s"
        );
        for port in arr_at(svc, "/spec/ports") {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            for pod in &pods {
                let served = all_containers(&pod["spec"]).iter().any(|c| {
                    resolve_port(c, target).is_some_and(|n| {
                        arr_at(c, "/ports").iter().any(|p| p["containerPort"] == n)
                    })
                });
                assert!(
                    served,
                    "Service {name}: targetPort {target} is not a container port of its pods"
                );
            }
        }
    }

    // ServiceMonitor (Prometheus Operator), checked by hand.
    let monitors: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(
        monitors.len(),
        1,
        "servicemonitor.yaml holds one ServiceMonitor"
    );
    let sm = monitors[0];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|s| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .collect();
    assert!(
        !selected.is_empty(),
        "the ServiceMonitor selects no Service"
    );
    assert!(
        selected
            .iter()
            .any(|s| str_at(s, "/metadata/name") == "memwarden"),
        "the ServiceMonitor selects the Service in servicemonitor.yaml"
    );
    let endpoints = arr_at(sm, "/spec/endpoints");
    assert!(!endpoints.is_empty(), "the ServiceMonitor has no endpoints");
    for ep in endpoints {
        let port = str_at(ep, "/port");
        assert_eq!(
            ep.get("path").and_then(Value::as_str).unwrap_or("/metrics"),
            "/metrics"
        );
        for svc in &selected {
            let svc_port = arr_at(svc, "/spec/ports")
                .iter()
                .find(|p| p["name"] == port)
                .unwrap_or_else(|| {
                    panic!(
                        "Service {} has no port named `{port}`",
                        str_at(svc, "/metadata/name")
                    )
                });
            assert_eq!(
                svc_port["port"], 9420,
                "the `{port}` port is the control port"
            );
        }
    }
    // Alerts match job="memwarden": the ServiceMonitor must name the job that way.
    let job_label = sm["spec"]["jobLabel"].as_str();
    for svc in &selected {
        let job = match job_label {
            Some(label) => svc["metadata"]["labels"][label].as_str(),
            None => svc["metadata"]["name"].as_str(),
        };
        assert_eq!(
            job,
            Some("memwarden"),
            "scrape job of Service {}",
            str_at(svc, "/metadata/name")
        );
    }

    // KEDA: a postgresql trigger on the queue depth of memwarden.jobs, scaling the workers.
    let scaled: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "ScaledObject")
        .collect();
    assert_eq!(
        scaled.len(),
        1,
        "keda-scaledobject.yaml holds one ScaledObject"
    );
    let so = scaled[0];
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(
        so.pointer("/spec/scaleTargetRef/name"),
        worker.pointer("/metadata/name"),
        "the ScaledObject scales the worker Deployment"
    );
    if let Some(kind) = so.pointer("/spec/scaleTargetRef/kind") {
        assert_eq!(kind, "Deployment");
    }
    let min = so["spec"]["minReplicaCount"].as_i64().unwrap_or(0);
    let max = so["spec"]["maxReplicaCount"].as_i64().unwrap_or(100);
    assert!(min >= 1, "minReplicaCount >= 1, so cron keeps ticking");
    assert!(max >= min, "maxReplicaCount >= minReplicaCount");
    let triggers = arr_at(so, "/spec/triggers");
    let pg: Vec<&Value> = triggers
        .iter()
        .filter(|t| t["type"] == "postgresql")
        .collect();
    assert_eq!(pg.len(), 1, "one postgresql trigger");
    let trigger = pg[0];
    let query = str_at(trigger, "/metadata/query");
    let squashed = query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    for needle in [
        "count(*)",
        "from memwarden.jobs",
        "'available'",
        "'retryable'",
        "run_at <= now()",
    ] {
        assert!(
            squashed.contains(needle),
            "the KEDA query lacks `{needle}`: {query}"
        );
    }
    for key in ["targetQueryValue", "activationTargetQueryValue"] {
        if let Some(v) = trigger["metadata"].get(key) {
            let s = v
                .as_str()
                .unwrap_or_else(|| panic!("KEDA metadata {key} must be a string, got {v}"));
            let n: f64 = s
                .parse()
                .unwrap_or_else(|_| panic!("{key}={s} is not a number"));
            assert!(n >= 0.0);
        }
    }
    assert!(
        trigger["metadata"]["targetQueryValue"].is_string(),
        "targetQueryValue is required"
    );
    for (k, v) in trigger["metadata"].as_object().unwrap() {
        assert!(
            v.is_string(),
            "KEDA trigger metadata values are strings: {k}={v}"
        );
    }
    let auth_name = str_at(trigger, "/authenticationRef/name");
    let auth = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "TriggerAuthentication" && d["metadata"]["name"] == auth_name)
        .unwrap_or_else(|| panic!("TriggerAuthentication {auth_name} is not in deploy/k8s"));
    assert_eq!(auth["apiVersion"], "keda.sh/v1alpha1");
    let connection = arr_at(auth, "/spec/secretTargetRef")
        .iter()
        .find(|r| r["parameter"] == "connection")
        .expect("the TriggerAuthentication provides the `connection` parameter");
    let worker_c = arr_at(&worker["spec"]["template"]["spec"], "/containers")
        .iter()
        .find(|c| is_memwarden(c))
        .unwrap();
    let db = env_var(worker_c, "DATABASE_URL").unwrap();
    assert_eq!(
        (connection.get("name"), connection.get("key")),
        (
            db.pointer("/valueFrom/secretKeyRef/name"),
            db.pointer("/valueFrom/secretKeyRef/key")
        ),
        "KEDA reads the same database URL Secret as the workers"
    );
}

#[test]
fn k8s_validation_rejects_unknown_fields() {
    // The strict schemas are really applied: a misspelled field and a field from a newer
    // Kubernetes both fail.
    let dir = tempfile::tempdir().unwrap();
    let good = read(&deploy("k8s/deployment.yaml"));
    assert!(good.contains("readOnlyRootFilesystem"));
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        good.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    )
    .unwrap();
    let (lines, ok) = kubernetes_validate(&[typo], &["1.30.0"]);
    assert!(!ok, "a misspelled field passed:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("readOnlyRootFileSystem")),
        "{}",
        lines.join("\n")
    );

    // Native sidecars do not exist before 1.28: the sidecar's restartPolicy is rejected there.
    let (lines, ok) = kubernetes_validate(&[deploy("k8s/sidecar.yaml")], &["1.27.0"]);
    assert!(
        !ok,
        "restartPolicy on an init container passed on 1.27:\n{}",
        lines.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy("grafana/memwarden-dashboard.json")))
        .expect("the dashboard is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in arr_at(dash, "/panels") {
        out.push(p);
        out.extend(arr_at(p, "/panels"));
    }
    out
}

fn exprs(dash: &Value) -> Vec<String> {
    panels(dash)
        .iter()
        .flat_map(|p| arr_at(p, "/targets"))
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn grafana_dashboard_covers_metrics() {
    let dash = dashboard();
    let schema = dash["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dash["title"].is_string() && dash["uid"].is_string());

    // A Prometheus data source variable, used by every panel and query.
    let vars = arr_at(&dash, "/templating/list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let ds_ref = format!("${{{}}}", str_at(ds, "/name"));
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let id = p["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        assert!(
            p.pointer("/gridPos/w").is_some() && p.pointer("/gridPos/h").is_some(),
            "panel {id} gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p.pointer("/datasource/uid").and_then(Value::as_str),
            Some(ds_ref.as_str()),
            "panel {id}"
        );
        let targets = arr_at(p, "/targets");
        assert!(
            !targets.is_empty(),
            "panel {id} ({}) has no query",
            p["title"]
        );
        for t in targets {
            assert_eq!(
                t.pointer("/datasource/uid").and_then(Value::as_str),
                Some(ds_ref.as_str())
            );
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {id}: empty expr"
            );
        }
    }
    // Variables used in queries are defined.
    let defined: BTreeSet<String> = vars
        .iter()
        .map(|v| str_at(v, "/name").to_string())
        .collect();
    let all = exprs(&dash);
    for e in &all {
        for part in e.split('$').skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("__") {
                assert!(
                    defined.contains(&name),
                    "`${name}` in `{e}` is not a dashboard variable"
                );
            }
        }
    }

    // Every exported metric is on some panel; histograms through their buckets (quantiles).
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    for m in METRICS.iter() {
        let series = if HISTOGRAMS.contains(m) {
            format!("memwarden_{m}_bucket")
        } else {
            format!("memwarden_{m}")
        };
        assert!(used.contains(&series), "no panel queries {series}");
    }
    for h in HISTOGRAMS.iter() {
        assert!(
            all.iter().any(|e| e.contains("histogram_quantile(0.99")
                && e.contains(&format!("memwarden_{h}_bucket"))),
            "no p99 panel for {h}"
        );
    }
    for series in &used {
        assert!(
            known_metric(series).is_some(),
            "the dashboard queries `{series}`, which memwarden does not export"
        );
    }
}

#[test]
fn grafana_dashboard_queries_parse() {
    // promtool parses PromQL when it checks rules: each panel query becomes a recording rule,
    // with Grafana's variables replaced by what they expand to.
    let promtool = ensure_tool("promtool", "prometheus");
    let all = exprs(&dashboard());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in all.iter().enumerate() {
        let expanded = e
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".*")
            .replace("$instance", ".*")
            .replace("$queue", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expanded).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = run(Command::new(&promtool).args(["check", "rules"]).arg(&path));
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}\n{rules}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------------

/// A Dockerfile stage: its base image, its name, and its instructions.
type Stage = (String, Option<String>, Vec<(String, String)>);

/// The Dockerfile's instructions as `(KEYWORD, arguments)`, continuation lines joined.
fn dockerfile_instructions(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (kw, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((kw.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    out
}

#[test]
fn dockerfile_is_conventional() {
    let body = read(&deploy("docker/Dockerfile"));
    let instructions = dockerfile_instructions(&body);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    for (kw, args) in &instructions {
        assert!(
            KNOWN.contains(&kw.as_str()),
            "unknown Dockerfile instruction {kw} {args}"
        );
    }

    // Split into stages.
    let mut stages: Vec<Stage> = Vec::new();
    for (kw, args) in &instructions {
        if kw == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => Some(alias.to_string()),
                [_] => None,
                _ => panic!("FROM {args}"),
            };
            stages.push((words[0].to_string(), alias, Vec::new()));
        } else {
            assert!(
                kw == "ARG" || !stages.is_empty(),
                "{kw} before the first FROM"
            );
            if let Some(stage) = stages.last_mut() {
                stage.2.push((kw.clone(), args.clone()));
            }
        }
    }
    assert!(
        stages.len() >= 2,
        "a multi-stage build: {} FROM",
        stages.len()
    );
    let (builder_image, builder_alias, builder) = &stages[0];
    assert_eq!(builder_image, "rust:1-bookworm");
    let builder_alias = builder_alias.as_deref().expect("the build stage is named");
    assert!(
        builder.iter().any(|(k, a)| k == "RUN"
            && a.contains("cargo build")
            && a.contains("--release")
            && a.contains("--locked")),
        "the build stage runs cargo build --release --locked"
    );
    // Every source the build stage copies exists in the repository (the context is its root).
    for (k, a) in builder.iter().filter(|(k, _)| k == "COPY" || k == "ADD") {
        let words: Vec<&str> = a
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        assert!(words.len() >= 2, "{k} {a}");
        for src in &words[..words.len() - 1] {
            assert!(
                root().join(src).exists(),
                "{k} {a}: `{src}` is not in the repository"
            );
        }
    }

    let (runtime_image, _, runtime) = stages.last().unwrap();
    assert_eq!(runtime_image, "debian:bookworm-slim");
    let has =
        |kw: &str, pred: &dyn Fn(&str) -> bool| runtime.iter().any(|(k, a)| k == kw && pred(a));
    assert!(
        has("RUN", &|a| a.contains("apt-get install")
            && a.contains("ca-certificates")
            && a.contains("curl")),
        "the runtime installs ca-certificates and curl"
    );
    assert!(
        has("COPY", &|a| a.contains(&format!("--from={builder_alias}"))
            && a.contains("memwarden")),
        "the runtime copies the binary from the build stage"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "USER {user} is root"
    );
    let healthcheck = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, a)| a.clone())
        .expect("a HEALTHCHECK");
    assert!(
        healthcheck.contains("CMD")
            && healthcheck.contains("curl")
            && healthcheck.contains("/healthz"),
        "HEALTHCHECK {healthcheck}"
    );
    assert!(
        healthcheck.contains("127.0.0.1:9420"),
        "HEALTHCHECK hits the control port: {healthcheck}"
    );
    assert!(
        has("EXPOSE", &|a| a
            .split_whitespace()
            .any(|p| p == "9420" || p == "9420/tcp")),
        "EXPOSE 9420"
    );
    assert!(
        has("ENV", &|a| a
            .replace(' ', "=")
            .contains("MEMWARDEN_CONTROL__ADDR=0.0.0.0:9420")),
        "ENV MEMWARDEN_CONTROL__ADDR=0.0.0.0:9420"
    );
    let last = |kw: &str| {
        runtime
            .iter()
            .rev()
            .find(|(k, _)| k == kw)
            .map(|(_, a)| a.clone())
    };
    let entrypoint: Value =
        serde_json::from_str(&last("ENTRYPOINT").expect("ENTRYPOINT")).expect("exec form");
    assert_eq!(entrypoint, serde_json::json!(["memwarden"]));
    let cmd: Value = serde_json::from_str(&last("CMD").expect("CMD")).expect("exec form");
    assert_eq!(cmd, serde_json::json!(["run"]));
}

// ---------------------------------------------------------------------------------------------
// README
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_readme_covers_every_asset() {
    let readme = read(&deploy("README.md"));
    let mut stack = vec![deploy("")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("README.md") {
                let rel = path
                    .strip_prefix(deploy(""))
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                assert!(
                    readme.contains(&rel),
                    "deploy/README.md does not mention {rel}"
                );
            }
        }
    }
    assert!(readme.contains("cargo test --test deploy_assets"));
}
