//! The Kubernetes manifests (`deploy/k8s`), validated by `kubernetes-validate --strict`
//! against the Kubernetes versions they target. Here: running the validator, finding the
//! manifests, and the check that the strict schemas really apply (a misspelled field, and a
//! native sidecar on a Kubernetes without them, are rejected). `manifests` checks the
//! manifests themselves; `pods` reads pod specs for it.

mod manifests;
mod pods;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{deploy, deploy_python, read, run};

/// Kubernetes versions the manifests must validate against: native sidecars (init containers
/// with `restartPolicy: Always`) are on by default from 1.29.
const K8S_VERSIONS: &[&str] = &["1.30.0", "1.33.0"];
/// Custom resources the Kubernetes schemas do not know; `manifests` checks them by hand.
const CUSTOM_KINDS: &[(&str, &str)] = &[
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
];

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
