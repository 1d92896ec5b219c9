//! The Prometheus alert rules (`deploy/prometheus/alerts.yml`): `promtool check rules` with
//! every lint fatal, the alerts operations.md asks for, each on a metric the daemon exports;
//! and their unit tests (`alerts_test.yml`): `promtool test rules` passes, every alert is made
//! to fire and shown quiet, and disabling any alert fails the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::support::{
    arr_at, deploy, ensure_tool, known_metric, metric_names, run, str_at, text, yaml_document,
};

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
