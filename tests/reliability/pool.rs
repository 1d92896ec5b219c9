//! Pool exhaustion and slow queries: one daemon with 16 workers on a pool of 2 connections
//! (one of them is the LISTEN session), a 1 s acquire timeout, and `statement_timeout` forced
//! to 250 ms on its database. Then the tables its statements need are locked for seconds at a
//! time, so its statements queue, time out and fail. It degrades (errors counted in
//! `memwarden_db_errors_total`, attempts failed and retried, leases lost and rescued) and
//! recovers by itself: every job succeeds, nothing is lost, it stays healthy and stops cleanly.
//! No deadlock: every phase is bounded in time.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::harness::{
    count, enqueue, report, scale, secs, statuses, succeeded, Daemon, Ledger, Row, TestDb, FAST,
};

/// Holds `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` for `hold`, on a session of its own
/// without a statement timeout; returns when the lock is released.
async fn lock_for(url: &str, table: &str, hold: Duration) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tokio::time::sleep(hold).await;
    tx.rollback().await.unwrap();
    conn.close().await.ok();
}

/// Waits until `target` jobs succeeded; panics after `limit`.
async fn until_done(pool: &sqlx::PgPool, target: i64, limit: Duration, what: &str) {
    let t = Instant::now();
    while succeeded(pool).await < target {
        assert!(
            t.elapsed() < limit,
            "{what}: not done within {limit:?}: {:?}",
            statuses(pool).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Time from now until one more job succeeds than `before`.
async fn progress_after(pool: &sqlx::PgPool, before: i64, what: &str) -> Duration {
    let t = Instant::now();
    while succeeded(pool).await <= before {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what}: no progress after the fault ended: {:?}",
            statuses(pool).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

#[tokio::test]
async fn pool_exhaustion_and_slow_queries() {
    let t0 = Instant::now();
    let per_phase: i64 = scale(1000, 5000);
    let hold = Duration::from_secs(scale(3, 10));
    let db = TestDb::migrated();
    db.alter("statement_timeout = '250ms'");
    let pool = db.pool().await;
    let config = format!(
        "{FAST}[database]\nmax_connections = 2\nacquire_timeout = 1\n\
         [queues.default]\nconcurrency = 16\n[kinds.probe]\nbackoff_base = 0.2\nbackoff_cap = 1"
    );
    let mut d = Daemon::builder(&db.url).config(&config).ready().await;
    let args = json!({"effect": true, "sleep_ms": 0});
    let mut faults = 0;
    let mut worst_recovery = Duration::ZERO;

    // 1. Pool exhaustion alone: 16 workers share the one connection LISTEN leaves.
    enqueue(&pool, per_phase, &args).await;
    until_done(&pool, per_phase, Duration::from_secs(90), "pool of 2").await;

    // 2. Slow effect writes: the effects table is locked, every effect insert waits, times out
    //    at 250 ms holding the pool's only free connection, and its attempt fails and retries.
    enqueue(&pool, per_phase, &args).await;
    let target = 2 * per_phase;
    while succeeded(&pool).await < per_phase + 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock_for(&db.url, "memwarden.memwarden_probe_effects", hold).await;
    faults += 1;
    let before = succeeded(&pool).await;
    worst_recovery = worst_recovery.max(progress_after(&pool, before, "effects lock").await);
    until_done(
        &pool,
        target,
        Duration::from_secs(90),
        "after the effects lock",
    )
    .await;

    // 3. The queue itself is locked: claims, heartbeats, completions and the reaper all queue
    //    and time out. Leases run out; the completer gives up on batches it cannot write and
    //    the reaper rescues them once the lock is gone.
    enqueue(&pool, per_phase, &args).await;
    let target = 3 * per_phase;
    while succeeded(&pool).await < 2 * per_phase + 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock_for(&db.url, "memwarden.jobs", hold).await;
    faults += 1;
    let before = succeeded(&pool).await;
    worst_recovery = worst_recovery.max(progress_after(&pool, before, "jobs lock").await);
    until_done(
        &pool,
        target,
        Duration::from_secs(90),
        "after the jobs lock",
    )
    .await;

    // Degraded, and counted.
    let (errors, series) = d.metric("memwarden_db_errors_total").await;
    assert!(
        errors > 0.0,
        "database errors are counted in memwarden_db_errors_total"
    );
    let retried = count(
        &pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND attempt > 1",
    )
    .await;
    assert!(retried > 0, "some jobs needed a second attempt");
    // Recovered: healthy, ready, idle, and it stops cleanly.
    d.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(d.status_of("/healthz").await, Some(200));
    d.assert_no_panic("pool exhaustion");
    d.signal(Signal::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10))
            .await
            .and_then(|s| s.code()),
        Some(0),
        "exits 0 after the faults"
    );
    let ledger = Ledger::assert_nothing_lost(&pool, "pool exhaustion and slow queries").await;
    assert_eq!(ledger.jobs, target);
    eprintln!(
        "pool: {errors} database errors ({}), {retried} jobs retried, {} failed and {} lost attempts, \
         {} re-executions, worst recovery {worst_recovery:?}",
        series.join("; "),
        ledger.failed_attempts,
        ledger.lost_attempts,
        ledger.extra_executions
    );
    report(Row {
        scenario: "pool exhaustion + slow queries",
        runs: "1 (pool 2, 16 workers)".into(),
        faults: format!(
            "{faults} table locks of {} s under statement_timeout 250 ms; {errors} db errors",
            hold.as_secs()
        ),
        jobs: target.to_string(),
        lost: ledger.jobs - ledger.succeeded,
        duplicates: ledger.duplicates(),
        worst_recovery: format!(
            "{} to progress after a lock",
            secs(worst_recovery.as_secs_f64())
        ),
        wall: t0.elapsed(),
    });
}
