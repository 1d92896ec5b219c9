//! The systemd unit (`deploy/systemd/memwarden.service`): the settings operations.md fixes,
//! `systemd-analyze verify` with every warning an error (and shown to catch broken units), its
//! exposure score from `systemd-analyze security`; and the example config beside it, which
//! `memwarden config check` accepts and which shows the keys operators look for.

use std::path::Path;
use std::process::Command;

use crate::support::{deploy, ensure_tool, read, run, text};

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
