//! What the deploy-asset checks share: paths into the repository, running a tool and reading
//! its output, installing a missing tool (`apt_install`, `ensure_tool`) and the Python venv
//! with `kubernetes-validate` (`deploy_python`), reading YAML through PyYAML, and the metrics
//! the daemon exports (`METRICS`, `HISTOGRAMS`, `metric_names`, `known_metric`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{LazyLock, Mutex, OnceLock};

use memwarden::telemetry::metrics;

use serde_json::Value;

/// The version of PyPI `kubernetes-validate` the venv gets.
const KUBERNETES_VALIDATE: &str = "1.37.0";

/// Every metric the daemon exports (`telemetry::metrics::ALL`), without the `memwarden_`
/// prefix, and the histograms among them (exported as `_bucket`, `_sum` and `_count`).
pub(crate) static METRICS: LazyLock<Vec<&'static str>> = LazyLock::new(|| unprefixed(metrics::ALL));
pub(crate) static HISTOGRAMS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| unprefixed(metrics::HISTOGRAMS));

fn unprefixed(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .map(|m| {
            m.strip_prefix("memwarden_")
                .expect("every metric is prefixed")
        })
        .collect()
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub(crate) fn text(out: &Output) -> String {
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
pub(crate) fn ensure_tool(binary: &str, package: &str) -> PathBuf {
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
pub(crate) fn deploy_python() -> PathBuf {
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
pub(crate) fn yaml_documents(path: &Path) -> Vec<Value> {
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

pub(crate) fn yaml_document(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(
        docs.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    docs.remove(0)
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing string at {pointer} in {v}"))
}

pub(crate) fn arr_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The identifiers `memwarden_...` that occur in `s`.
pub(crate) fn metric_names(s: &str) -> BTreeSet<String> {
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
pub(crate) fn known_metric(series: &str) -> Option<&'static str> {
    let bare = series.strip_prefix("memwarden_")?;
    METRICS.iter().copied().find(|m| {
        *m == bare
            || (HISTOGRAMS.contains(m)
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| bare.strip_suffix(suffix) == Some(*m)))
    })
}
