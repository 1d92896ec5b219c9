//! Every manifest in `deploy/k8s` passes `kubernetes-validate` (the custom resources, which
//! have no schema, are checked by hand), and together they hold up: memwarden as a native
//! sidecar and as N workers with a PodDisruptionBudget, Services that reach their pods, a
//! ServiceMonitor scraping the control port as job `memwarden`, and a KEDA ScaledObject on
//! the queue depth that reads the workers' database Secret.

use serde_json::Value;

use super::pods::{
    all_containers, check_memwarden_container, env_var, is_memwarden, pod_template, resolve_port,
    selects,
};
use super::{is_custom, k8s_files, kubernetes_validate, CUSTOM_KINDS, K8S_VERSIONS};
use crate::support::{arr_at, str_at, yaml_documents};

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
