//! Reading the workloads' pod specs: their containers, ports and environment, whether a
//! selector selects a pod, and the checks every memwarden container must pass (probes, the
//! preStop drain, secrets from Secrets, the control port, the grace period).

use serde_json::Value;

use crate::support::arr_at;

/// A workload's pod template.
pub(super) fn pod_template(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => doc.pointer("/spec/template"),
        _ => None,
    }
}

/// Whether every `key: value` of `selector` is among `labels`.
pub(super) fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// All containers of a pod spec, init containers (sidecars) included.
pub(super) fn all_containers(pod_spec: &Value) -> Vec<&Value> {
    arr_at(pod_spec, "/initContainers")
        .iter()
        .chain(arr_at(pod_spec, "/containers"))
        .collect()
}

pub(super) fn is_memwarden(container: &Value) -> bool {
    container["name"] == "memwarden"
        || container["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("memwarden"))
}

/// The container port a probe or a Service targets: a number, or the name of a port.
pub(super) fn resolve_port(container: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    let name = port.as_str()?;
    arr_at(container, "/ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
}

pub(super) fn env_var<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    arr_at(container, "/env").iter().find(|e| e["name"] == name)
}

/// Checks one memwarden container against operations.md; `grace` is its pod's
/// terminationGracePeriodSeconds.
pub(super) fn check_memwarden_container(file: &str, c: &Value, grace: i64) {
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
