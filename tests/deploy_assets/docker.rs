//! The Dockerfile (`deploy/docker/Dockerfile`), parsed: known instructions only, a
//! `cargo build --release --locked` stage whose sources exist, and a slim runtime stage that
//! runs as a non-root user, exposes and health-checks the control port, and runs `memwarden run`.

use serde_json::Value;

use crate::support::{deploy, read, root};

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
