//! The config parser, in process: TOML text of known and unknown sections, keys and values,
//! plus environment overrides. It never panics and every error names a key or says the text
//! is not TOML; and the regressions it once had: seconds no `Duration` holds were accepted,
//! and an override name with an empty segment was rejected without naming it.

use memwarden::config::{ConfigError, Overrides, Settings};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::parser_cases;
use super::strategies::{number, odd_string};

fn config_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => number(),
        1 => prop::sample::select(vec!["inf", "-inf", "nan", "+nan", "1e300", "-1e300", "0.0", "1_000"])
            .prop_map(String::from),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        3 => odd_string().prop_map(|s| toml::Value::String(s).to_string()),
        1 => Just("[1, \"a\", {x = 1}]".to_string()),
        1 => Just("{ a = 1, b = \"c\" }".to_string()),
        1 => Just("1979-05-27T07:32:00Z".to_string()),
        1 => "[ -~]{0,20}",
    ]
    .boxed()
}

const SECTIONS: &[&str] = &[
    "database",
    "control",
    "auth",
    "admin",
    "shutdown",
    "log",
    "queue",
    "queues.default",
    "queues.\"odd name\"",
    "kinds.probe",
    "kinds.job-purge",
    "purge",
    "testing",
    "bogus",
];
const ARRAY_SECTIONS: &[&str] = &["schedules", "auth.keys"];
const KEYS: &[&str] = &[
    "url",
    "listen_url",
    "migrate",
    "max_connections",
    "acquire_timeout",
    "addr",
    "require_auth_metrics",
    "api_token",
    "admin_token",
    "require_justification",
    "grace_period",
    "level",
    "poll_interval_ms",
    "lease",
    "heartbeat",
    "reaper_interval",
    "depth_interval",
    "claim_batch",
    "complete_batch",
    "complete_delay_ms",
    "complete_concurrency",
    "default_concurrency",
    "prefetch",
    "max_attempts",
    "concurrency",
    "timeout",
    "queue",
    "backoff_base",
    "backoff_cap",
    "name",
    "cron",
    "kind",
    "args",
    "enabled",
    "timezone",
    "client_id",
    "role",
    "token",
    "token_sha256",
    "min_retention",
    "retention",
    "batch_size",
    "probe_kinds",
];

fn toml_line() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(SECTIONS).prop_map(|s| format!("[{s}]")),
        1 => prop::sample::select(ARRAY_SECTIONS).prop_map(|s| format!("[[{s}]]")),
        8 => (prop::sample::select(KEYS), config_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => ("[a-z_.]{1,12}", config_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
        1 => any::<String>().prop_map(|s| s.chars().take(30).collect()),
    ]
    .boxed()
}

fn env_override() -> BoxedStrategy<(String, String)> {
    let name = prop_oneof![
        4 => (prop::sample::select(SECTIONS), prop::sample::select(KEYS)).prop_map(|(s, k)| {
            format!(
                "MEMWARDEN_{}__{}",
                s.replace('.', "__").replace('"', "").to_ascii_uppercase(),
                k.to_ascii_uppercase()
            )
        }),
        1 => prop::sample::select(vec![
            "MEMWARDEN_API_TOKEN",
            "MEMWARDEN_ADMIN_TOKEN",
            "MEMWARDEN_ADMIN_REQUIRE_JUSTIFICATION",
            "DATABASE_URL",
            "MEMWARDEN_CONFIG",
            "MEMWARDEN___",
            "MEMWARDEN_____",
            "MEMWARDEN_QUEUE__",
            "MEMWARDEN___LEASE",
            "MEMWARDEN_A__B__C__D",
            "MEMWARDEN_QUEUE__LEASE__DEEPER",
            "MEMWARDEN_SCHEDULES__NAME",
        ])
        .prop_map(String::from),
        1 => "MEMWARDEN_[A-Z_]{0,20}",
    ];
    let value = prop_oneof![
        3 => number(),
        1 => prop::sample::select(vec!["", "true", "false", "nan", "inf", "postgres://u@h/db", "mysql://x"])
            .prop_map(String::from),
        2 => odd_string(),
    ];
    (name, value).boxed()
}

fn toml_ish() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::collection::vec(toml_line(), 0..14).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: parser_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The config parser never panics; every error names a key or says the text is not TOML.
    #[test]
    fn config_parser_never_panics_and_names_the_key(
        text in toml_ish(),
        env in prop::collection::vec(env_override(), 0..4),
    ) {
        match Settings::from_parts(&text, None, &env, &Overrides::default()) {
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                match &e {
                    ConfigError::Syntax { .. } => prop_assert!(message.contains("TOML"), "{message}"),
                    ConfigError::Invalid { key, reason } => {
                        prop_assert!(!key.trim().is_empty(), "no key named: {message}");
                        prop_assert!(!reason.trim().is_empty(), "no reason given: {message}");
                        prop_assert!(message.contains(key.as_str()), "{message}");
                    }
                    ConfigError::Read { .. } => prop_assert!(false, "nothing is read: {message}"),
                }
            }
        }
    }
}

/// A quoted environment value with a backslash after a multi-byte character is refused or
/// taken, never a panic. Regression: figment 0.10.19's value parser sliced such a string at a
/// char count instead of a byte offset and panicked (found by the property above, 2026-12-02).
#[test]
fn a_quoted_env_value_with_a_backslash_after_a_multibyte_char_is_not_a_panic() {
    for value in [
        "\"\u{468}\u{1f574}\u{b8}.\\ x\"",
        "\"\u{e9}\\n\"",
        "\"\u{e9}\\\"",
    ] {
        let env = vec![("MEMWARDEN_LOG__LEVEL".to_string(), value.to_string())];
        match Settings::from_parts("", None, &env, &Overrides::default()) {
            Ok(settings) => assert!(!settings.log.level.is_empty()),
            Err(e) => assert!(e.to_string().contains("log.level"), "{e}"),
        }
    }
    // Scalars are still read as the TOML they spell.
    let env = vec![("MEMWARDEN_QUEUE__CLAIM_BATCH".to_string(), "7".to_string())];
    let settings = Settings::from_parts("", None, &env, &Overrides::default()).unwrap();
    assert_eq!(settings.queue.claim_batch.get(), 7);
}

/// An override whose name has an empty part (`MEMWARDEN___=0`, `MEMWARDEN_QUEUE__=1`) is
/// rejected, and the error names the variable (or a non-empty key), so the operator can find
/// it. Regression: it once said "invalid value for ``: unknown field ``".
#[test]
fn env_name_with_an_empty_segment_is_named() {
    for name in [
        "MEMWARDEN___",
        "MEMWARDEN_____",
        "MEMWARDEN_QUEUE__",
        "MEMWARDEN___LEASE",
    ] {
        let env = vec![(name.to_string(), "0".to_string())];
        let e = Settings::from_parts("", None, &env, &Overrides::default())
            .expect_err("an override of no setting is an error");
        let message = e.to_string();
        let named = match &e {
            ConfigError::Invalid { key, .. } => {
                !key.trim().is_empty() && !key.ends_with('.') && !key.starts_with('.')
            }
            _ => false,
        };
        assert!(
            named || message.contains(name),
            "{name}=0: the error names neither a key nor the variable: {message}"
        );
    }
}

/// Seconds-valued settings the parser accepts must be usable by the runtime, which turns
/// each into a `std::time::Duration`. Regression: a finite but huge value
/// (`shutdown.grace_period = 1e300`) used to pass validation and then panic the daemon (at
/// startup for `purge.min_retention`, at SIGTERM for `shutdown.grace_period`, in the completer
/// for `kinds.*.backoff_*`); it is now an error naming the key at load time.
#[test]
fn accepted_seconds_fit_a_duration() {
    let keys: &[(&str, &str)] = &[
        ("shutdown", "grace_period"),
        ("queue", "lease"),
        ("queue", "reaper_interval"),
        ("queue", "depth_interval"),
        ("purge", "min_retention"),
        ("kinds.probe", "timeout"),
        ("kinds.probe", "backoff_base"),
        ("kinds.probe", "backoff_cap"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(keys),
        prop_oneof![Just(1e300f64), 1e19f64..1e308f64],
    );
    let result = runner.run(&strategy, |((section, key), value)| {
        let mut text = format!("[{section}]\n{key} = {value:e}\n");
        if section == "purge" {
            text.push_str(&format!("retention = {value:e}\n"));
        }
        // Settings hold durations as `Duration`: a value no `Duration` can hold (these are
        // all beyond ten years) must be refused by name, never accepted and then panic.
        match Settings::from_parts(&text, None, &[], &Overrides::default()) {
            Ok(_) => prop_assert!(false, "`{section}.{key} = {value:e}` was accepted"),
            Err(e) => prop_assert!(
                e.to_string().contains(key),
                "`{section}.{key} = {value:e}`: the error does not name the key: {e}"
            ),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
