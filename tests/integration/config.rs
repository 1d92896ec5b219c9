//! `memwarden config check` and `memwarden migrate`, as an operator runs them.

use std::process::Command;

use crate::harness::TestDb;

fn memwarden(args: &[&str], config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memwarden.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env_remove("DATABASE_URL")
        .env_remove("MEMWARDEN_API_TOKEN")
        .env_remove("MEMWARDEN_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn config_check_names_the_bad_key_and_exits_non_zero() {
    for (config, key) in [
        (
            "[shutdown]\ngrace_period = \"soon\"\n",
            "shutdown.grace_period",
        ),
        ("[control]\naddr = \"localhost\"\n", "control.addr"),
        (
            "[queues.default]\nconcurrency = 0\n",
            "queues.default.concurrency",
        ),
        (
            "[[schedules]]\nname = \"x\"\ncron = \"daily\"\nkind = \"job-purge\"\n",
            "schedules[0].cron",
        ),
        ("[database]\nurl = \"mysql://nope\"\n", "database.url"),
        (
            "[eviction]\nmax_transaction_ms = 5\n",
            "eviction.max_transaction_ms",
        ),
        ("[control\n", "not valid TOML"),
    ] {
        let out = memwarden(&["config", "check"], config);
        assert!(!out.status.success(), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "`{config}` -> {err}");
    }
}

#[test]
fn bench_evict_refuses_a_transaction_limit_under_the_config_minimum() {
    bench_refuses("evict", "--max-transaction-ms", "5");
}

#[test]
fn bench_evict_refuses_a_window_too_short_to_settle_in() {
    bench_refuses("evict", "--window-ms", "100");
}

#[test]
fn bench_queue_refuses_zero_latency_samples() {
    bench_refuses("queue", "--samples", "0");
}

/// `bench BENCH` exits non-zero before touching the database, naming the flag.
fn bench_refuses(bench: &str, flag: &str, value: &str) {
    let out = memwarden(
        &[
            "bench",
            bench,
            flag,
            value,
            "--database-url",
            "postgres://127.0.0.1:1/none",
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(flag), "{err}");
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let out = memwarden(
        &["config", "check"],
        "[database]\nurl = \"postgres://app:hunter2@db/mem\"\n[auth]\napi_token = \"s3cret-api\"\nadmin_token = \"s3cret-admin\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("postgres://app:********@db/mem"), "{shown}");
    for secret in ["hunter2", "s3cret-api", "s3cret-admin"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(
        shown.contains("grace_period = 25.0"),
        "defaults are shown: {shown}"
    );
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let db = TestDb::empty();
    for _ in 0..2 {
        let out = memwarden(&["migrate", "--database-url", &db.url], "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = db.pool().await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'memwarden' ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    for t in ["job_attempts", "job_references", "jobs", "schedules"] {
        assert!(tables.contains(&t.to_string()), "{tables:?}");
    }
}

#[test]
fn config_check_prints_every_schedule_that_will_run_defaults_included() {
    let out = memwarden(
        &["config", "check"],
        "[[schedules]]\nname = \"sync\"\nenabled = false\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: toml::Table = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    let schedules = shown["schedules"].as_array().unwrap();
    let by_name = |name: &str| {
        schedules
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} is printed: {schedules:?}"))
    };
    for name in ["job-purge", "eviction", "enrichment-catchup"] {
        assert_eq!(by_name(name)["enabled"].as_bool(), Some(true), "{name}");
    }
    let sync = by_name("sync");
    assert_eq!(
        sync["enabled"].as_bool(),
        Some(false),
        "switched off by name alone"
    );
    assert_eq!(
        sync["cron"].as_str(),
        Some("0 30 * * * *"),
        "its cron is the default's"
    );
    assert_eq!(sync["kind"].as_str(), Some("sync"));
}
