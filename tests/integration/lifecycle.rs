//! The daemon process: start-up, readiness, signals and drains, as an operator sees them.
//!
//! Size: one scenario per lifecycle path, each a whole process run; splitting them would
//! only spread the one story of the state machine over several files.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::harness::{eventually, http_status, job_status, wait_job, Daemon, TestDb};

#[tokio::test]
async fn ready_quickly_and_idle_sigterm_exits_zero_at_once() {
    let db = TestDb::migrated();
    let mut d = Daemon::builder(&db.url).spawn();
    let ready_in = d.wait_ready(Duration::from_secs(10)).await;
    eprintln!(
        "READY (/readyz 200) {} ms after spawn",
        ready_in.as_millis()
    );
    assert!(
        ready_in < Duration::from_secs(3),
        "took {ready_in:?} to become ready"
    );

    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits after SIGTERM");
    let took = t0.elapsed();
    eprintln!("idle SIGTERM -> exit in {} ms", took.as_millis());
    assert_eq!(status.code(), Some(0), "log:\n{}", d.logs());
    assert!(took < Duration::from_secs(2), "idle exit took {took:?}");
    assert!(d.logs().contains("QUIESCED"));
}

#[tokio::test]
async fn sigterm_waits_for_in_flight_work_then_exits_zero() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut d = Daemon::start(&db.url).await;
    let id = d.probe(json!({"sleep_ms": 1500})).await;
    wait_job(&pool, &id, "running").await;

    d.signal(Signal::SIGTERM);
    // Draining: not ready, still serving.
    eventually(Duration::from_secs(2), "readyz turns 503", || async {
        http_status(&d.url("/readyz")) == Some(503)
    })
    .await;
    let status = d
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits once the job is done");
    assert_eq!(status.code(), Some(0));
    assert_eq!(job_status(&pool, &id).await, "succeeded");
}

#[tokio::test]
async fn second_sigterm_during_a_slow_drain_is_a_hard_stop() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut d = Daemon::start(&db.url).await;
    let id = d.probe(json!({"sleep_ms": 30000, "stubborn": true})).await;
    wait_job(&pool, &id, "running").await;

    d.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "still draining after the first SIGTERM"
    );
    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits at once on the second SIGTERM");
    eprintln!("second SIGTERM -> exit in {} ms", t0.elapsed().as_millis());
    assert_eq!(status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(3));

    // The hard stop handed the lease back: the job is claimable again, the attempt recorded.
    assert_eq!(job_status(&pool, &id).await, "available");
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM memwarden.job_attempts WHERE job_id = $1::uuid ORDER BY attempt DESC",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outcome, "interrupted");
}

#[tokio::test]
async fn grace_period_end_interrupts_and_releases_the_job() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut d = Daemon::builder(&db.url)
        .config("[shutdown]\ngrace_period = 0.5")
        .ready()
        .await;
    let id = d.probe(json!({"sleep_ms": 30000})).await;
    wait_job(&pool, &id, "running").await;

    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits after the grace period");
    assert_eq!(status.code(), Some(0), "log:\n{}", d.logs());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let (status, attempt): (String, i32) =
        sqlx::query_as("SELECT status, attempt FROM memwarden.jobs WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        status, "available",
        "an interrupted job goes back to available"
    );
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM memwarden.job_attempts WHERE job_id = $1::uuid")
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(outcomes, vec!["interrupted".to_string()]);
    assert_eq!(attempt, 1);
}

#[tokio::test]
async fn sigtstp_quiets_and_resume_brings_ready_back() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    d.signal(Signal::SIGTSTP);
    eventually(Duration::from_secs(3), "QUIESCED after SIGTSTP", || async {
        d.state().await == "QUIESCED"
    })
    .await;
    assert_eq!(http_status(&d.url("/readyz")), Some(503));
    let r = d.post("/v1/admin/resume", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(d.state().await, "READY");
    assert_eq!(http_status(&d.url("/readyz")), Some(200));
}

#[tokio::test]
async fn unreachable_database_keeps_starting_and_sigterm_still_exits_zero() {
    let port = crate::harness::free_port();
    let mut d = Daemon::builder(&format!("postgres://postgres@127.0.0.1:{port}/nowhere")).spawn();
    eventually(
        Duration::from_secs(5),
        "healthz answers while starting",
        || async { http_status(&d.url("/healthz")) == Some(200) },
    )
    .await;
    assert_eq!(http_status(&d.url("/readyz")), Some(503));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "it retries instead of exiting"
    );
    let health: Value = reqwest::get(d.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["state"], "STARTING");
    assert!(d.logs().contains("database unreachable; retrying"));
    d.signal(Signal::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(3))
            .await
            .expect("exits")
            .code(),
        Some(0)
    );
}

#[tokio::test]
async fn api_drain_is_idempotent_and_waits_when_asked() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    let id = d.probe(json!({"sleep_ms": 800})).await;
    wait_job(&pool, &id, "running").await;

    let v: Value = d
        .post("/v1/admin/drain", json!({"reason": "deploy"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "DRAINING");
    assert_eq!(v["quiesced"], false);
    let v: Value = d
        .post(
            "/v1/admin/drain",
            json!({"wait_for_quiesce": true, "timeout_sec": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "QUIESCED", "{v}");
    assert_eq!(v["quiesced"], true);
    assert_eq!(job_status(&pool, &id).await, "succeeded");
    let status: Value = d.get("/v1/status").await.json().await.unwrap();
    assert_eq!(
        status["drain"]["reason"], "deploy",
        "the first drain's reason is kept"
    );

    // Drained by the API: the process stays up until resume.
    let id2 = d.probe(json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        job_status(&pool, &id2).await,
        "available",
        "no claims while quiesced"
    );
    assert_eq!(d.post("/v1/admin/resume", json!({})).await.status(), 200);
    wait_job(&pool, &id2, "succeeded").await;
}

#[tokio::test]
async fn drain_wait_with_a_short_timeout_reports_still_draining() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::start(&db.url).await;
    let id = d.probe(json!({"sleep_ms": 3000})).await;
    wait_job(&pool, &id, "running").await;
    let v: Value = d
        .post(
            "/v1/admin:drain",
            json!({"waitForQuiesce": true, "timeoutSec": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "DRAINING");
    assert_eq!(v["quiesced"], false);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no job was cancelled"),
        "{v}"
    );
}

#[tokio::test]
async fn cli_drain_resume_and_status_talk_to_the_daemon() {
    let db = TestDb::migrated();
    let d = Daemon::start(&db.url).await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
            .args(args)
            .arg("--addr")
            .arg(&d.addr)
            .env("MEMWARDEN_API_TOKEN", crate::harness::API)
            .env("MEMWARDEN_ADMIN_TOKEN", crate::harness::ADMIN)
            .env_remove("MEMWARDEN_CONFIG")
            .output()
            .unwrap()
    };
    let out = cli(&["drain", "--reason", "cli test", "--wait", "--timeout", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("QUIESCED"));
    let out = cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "QUIESCED");
    assert_eq!(v["drain"]["reason"], "cli test");
    let out = cli(&["resume"]);
    assert!(out.status.success());
    let out = cli(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("state: READY"));

    // Without the admin token, the CLI says why and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memwarden"))
        .args(["resume", "--addr", &d.addr])
        .env("MEMWARDEN_API_TOKEN", crate::harness::API)
        .env_remove("MEMWARDEN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 Admin authorization required"));
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url)
        .config("[queues.default]\nconcurrency = 3")
        .ready()
        .await;
    let config = d.log.parent().unwrap().join("memwarden.toml");
    let concurrency = || async {
        let v: Value = d.get("/v1/status").await.json().await.unwrap();
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "default")
            .unwrap()["concurrency"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(concurrency().await, 3);
    std::fs::write(&config, "[queues.default]\nconcurrency = 7\n").unwrap();
    d.signal(Signal::SIGHUP);
    eventually(
        Duration::from_secs(3),
        "the new concurrency is live",
        || async { concurrency().await == 7 },
    )
    .await;

    std::fs::write(&config, "[queues.default]\nconcurrency = \"lots\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    eventually(
        Duration::from_secs(3),
        "the failed reload is logged",
        || async { d.logs().contains("config reload failed") },
    )
    .await;
    assert_eq!(
        concurrency().await,
        7,
        "a failed reload keeps the old config"
    );
    assert!(
        d.logs().contains("queues.default.concurrency"),
        "the error names the key"
    );
}

/// systemd's notify protocol, against a datagram socket this test owns.
#[tokio::test]
async fn systemd_notify_ready_status_watchdog_and_stopping() {
    let db = TestDb::migrated();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = Daemon::builder(&db.url)
        .env("NOTIFY_SOCKET", sock_path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000")
        .ready()
        .await;
    let mut got = Vec::new();
    let read = |got: &mut Vec<String>, until: Instant| {
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read(&mut got, Instant::now() + Duration::from_millis(1200));
    let all = got.join("\n");
    assert!(all.contains("READY=1"), "{all}");
    assert!(all.contains("STATUS=READY"), "{all}");
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 2, "watchdog pings at half of WATCHDOG_USEC: {all}");

    d.probe(json!({"sleep_ms": 500})).await;
    d.signal(Signal::SIGTERM);
    read(&mut got, Instant::now() + Duration::from_millis(600));
    let all = got.join("\n");
    assert!(all.contains("STOPPING=1"), "{all}");
    assert!(all.contains("EXTEND_TIMEOUT_USEC="), "{all}");
    assert_eq!(
        d.wait_exit(Duration::from_secs(5)).await.unwrap().code(),
        Some(0)
    );
}

/// A loop stuck on a lock stops the watchdog pings (and fails /healthz, naming it); once it
/// moves again, the pings come back.
#[tokio::test]
async fn a_stalled_loop_stops_the_watchdog_pings() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let d = Daemon::builder(&db.url)
        .config("[queue]\ndepth_interval = 0.5")
        .env("NOTIFY_SOCKET", sock_path.to_str().unwrap())
        .env("WATCHDOG_USEC", "600000")
        .ready()
        .await;
    let pings_during = |window: Duration| {
        let until = Instant::now() + window;
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while Instant::now() < until {
            if let Ok(len) = sock.recv(&mut buf) {
                n += String::from_utf8_lossy(&buf[..len])
                    .matches("WATCHDOG=1")
                    .count();
            }
        }
        n
    };
    assert!(
        pings_during(Duration::from_millis(1500)) >= 3,
        "healthy: pings every 300 ms"
    );

    // Hold the jobs table: the depth loop's next read blocks, and it stops beating.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE memwarden.jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = pings_during(Duration::from_millis(300)); // drain what was sent before the stall
    assert_eq!(
        pings_during(Duration::from_millis(1500)),
        0,
        "no ping while a loop is stalled"
    );
    let health = reqwest::get(d.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let v: Value = health.json().await.unwrap();
    assert_eq!(v["status"], "stalled");
    assert!(d
        .logs()
        .contains("loop stalled; withholding the systemd watchdog ping"));

    tx.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pings_during(Duration::from_millis(1500)) >= 2,
        "pings resume once the loop moves"
    );
    assert_eq!(http_status(&d.url("/healthz")), Some(200));
}
