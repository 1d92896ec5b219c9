//! The Grafana dashboard (`deploy/grafana/memwarden-dashboard.json`): well-formed panels on a
//! Prometheus data source variable, every exported metric on some panel (histograms as p99s),
//! no query of a metric the daemon does not export, and every query valid PromQL (`promtool`).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::{
    arr_at, deploy, ensure_tool, known_metric, metric_names, read, run, str_at, text, HISTOGRAMS,
    METRICS,
};

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
