//! kill -9 storm: three daemons work 20,000 jobs while a random one is SIGKILLed every 1–3 s
//! and restarted. Nothing is lost, each job succeeds exactly once, every re-execution follows
//! a `lost` attempt, and a dead daemon's jobs run again within lease + reaper interval.
//!
//! The 20,000 jobs are fed in as the daemons take them, 200 claimable at a time, as a steady
//! producer would. Enqueued all at once, the rescue itself still lands within lease + reaper
//! interval, but a rescued job then waits behind the rest of the batch: the reaper sets its
//! `run_at` to now, and claims go by `run_at` (measured: rescued within 2.2 s, running again
//! only after 9.4 s).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{
    count, enqueue, report, scale, secs, statuses, succeeded, Daemon, Ledger, Row, TestDb, FAST,
    LEASE_S, REAPER_S,
};

/// Slack on top of lease + reaper interval for a loaded 2-core machine: the reaper's tick, its
/// statement, the NOTIFY and the next claim.
const MARGIN_S: f64 = 1.5;

struct Kill {
    at: DateTime<Utc>,
    prefix: String,
    /// The attempts the daemon held (running or prefetched) when it died.
    held: Vec<(Uuid, i32)>,
}

#[tokio::test]
async fn kill_9_storm() {
    let t0 = Instant::now();
    let total: i64 = scale(20_000, 100_000);
    let deadline = Duration::from_secs(scale(180, 900));
    // The feeder keeps this many jobs claimable: the daemons are always busy, and a rescued
    // job (which goes back with run_at = now) never waits behind the whole remaining batch.
    let backlog: i64 = 200;
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let config = format!("{FAST}poll_interval_ms = 200\n[queues.default]\nconcurrency = 10");
    let spawn = || Daemon::builder(&db.url).config(&config).spawn();
    let mut daemons: Vec<Daemon> = (0..3).map(|_| spawn()).collect();
    for d in &daemons {
        d.wait_ready(Duration::from_secs(30)).await;
    }

    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut kills: Vec<Kill> = Vec::new();
    let mut enqueued = 0i64;
    let mut worst_stale = 0.0f64;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.gen_range(1000..=3000));
    // 40 ms of work each: 30 workers get through ~600 jobs/s at best, so 20,000 jobs take
    // half a minute or more, and every kill lands on a daemon in the middle of its jobs.
    let args = json!({"effect": true, "sleep_ms": 40});
    loop {
        let done = succeeded(&pool).await;
        if done == total {
            break;
        }
        assert!(
            t0.elapsed() < deadline,
            "storm not done within {deadline:?}: {done}/{total} succeeded, {:?}",
            statuses(&pool).await
        );
        if enqueued < total {
            let claimable = count(
                &pool,
                "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status IN ('available', 'retryable')",
            )
            .await;
            if claimable < backlog {
                let n = (backlog - claimable).min(total - enqueued);
                enqueue(&pool, n, &args).await;
                enqueued += n;
            }
        }
        // No job stays running on an expired lease for longer than a reaper pass.
        let stale: f64 = sqlx::query_scalar(
            "SELECT COALESCE(EXTRACT(EPOCH FROM max(now() - lease_expires_at)), 0)::float8 \
             FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running' AND lease_expires_at < now()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        worst_stale = worst_stale.max(stale);
        if Instant::now() >= next_kill {
            let i = rng.gen_range(0..daemons.len());
            let prefix = daemons[i].worker_prefix();
            let at = Utc::now();
            daemons[i].signal(Signal::SIGKILL);
            daemons[i]
                .wait_exit(Duration::from_secs(5))
                .await
                .expect("a SIGKILLed daemon exits");
            daemons[i].assert_no_panic("storm victim");
            let held: Vec<(Uuid, i32)> = sqlx::query_as(
                "SELECT id, attempt FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running' AND lease_owner LIKE $1 || '%'",
            )
            .bind(&prefix)
            .fetch_all(&pool)
            .await
            .unwrap();
            kills.push(Kill { at, prefix, held });
            daemons[i] = spawn();
            next_kill = Instant::now() + Duration::from_millis(rng.gen_range(1000..=3000));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(enqueued, total);

    // Idle now: each survivor stops cleanly.
    for d in &mut daemons {
        d.wait_ready(Duration::from_secs(30)).await;
        d.signal(Signal::SIGTERM);
        let status = d.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "an idle daemon exits 0 on SIGTERM"
        );
        d.assert_no_panic("storm survivor");
    }

    let ledger = Ledger::assert_nothing_lost(&pool, "kill -9 storm").await;
    assert_eq!(ledger.jobs, total, "no job appeared or vanished");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND (status = 'running' OR (lease_expires_at IS NOT NULL AND lease_expires_at < now()))"
        )
        .await,
        0,
        "no job left running or holding an expired lease"
    );
    assert!(
        worst_stale <= REAPER_S + MARGIN_S,
        "a running job sat on an expired lease for {worst_stale:.2} s"
    );

    // Every attempt a dead daemon held ends as `lost` (or, if its completion was on the wire
    // at the kill, as that completion), and every job it held runs again within the bound.
    let bound = LEASE_S + REAPER_S + MARGIN_S;
    let mut worst_rescue = 0.0f64;
    let mut worst_rerun = 0.0f64;
    let mut held_total = 0usize;
    let mut lost_by_victims = 0i64;
    for k in &kills {
        for (id, attempt) in &k.held {
            let outcome: Option<String> = sqlx::query_scalar(
                "SELECT outcome FROM memwarden.job_attempts WHERE job_id = $1 AND attempt = $2",
            )
            .bind(id)
            .bind(attempt)
            .fetch_optional(&pool)
            .await
            .unwrap();
            assert!(
                matches!(outcome.as_deref(), Some("lost") | Some("succeeded")),
                "attempt {attempt} of {id}, held by {} at its death, ended as {outcome:?}",
                k.prefix
            );
        }
        held_total += k.held.len();
        let rows: Vec<(Uuid, f64, Option<f64>)> = sqlx::query_as(
            "SELECT a.job_id, EXTRACT(EPOCH FROM a.finished_at - $2)::float8, \
                    EXTRACT(EPOCH FROM n.started_at - $2)::float8 \
             FROM memwarden.job_attempts a \
             LEFT JOIN memwarden.job_attempts n ON n.job_id = a.job_id AND n.attempt = a.attempt + 1 \
             WHERE a.worker LIKE $1 || '%' AND a.outcome = 'lost'",
        )
        .bind(&k.prefix)
        .bind(k.at)
        .fetch_all(&pool)
        .await
        .unwrap();
        lost_by_victims += rows.len() as i64;
        for (id, rescued, rerun) in rows {
            let rerun =
                rerun.unwrap_or_else(|| panic!("job {id} has no attempt after its lost one"));
            worst_rescue = worst_rescue.max(rescued);
            worst_rerun = worst_rerun.max(rerun);
        }
    }
    let spurious = ledger.lost_attempts - lost_by_victims;
    eprintln!(
        "storm: {} kills, {held_total} attempts held at death, {} lost attempts ({spurious} of live daemons), \
         {} re-executions over {} jobs, worst rescue {worst_rescue:.2} s, worst re-run {worst_rerun:.2} s, \
         worst stale lease {worst_stale:.2} s",
        kills.len(),
        ledger.lost_attempts,
        ledger.extra_executions,
        ledger.jobs_rerun
    );
    assert!(
        kills.len() as u64 >= scale(8, 40),
        "the storm injected too few faults: {}",
        kills.len()
    );
    assert!(held_total > 0, "the kills landed mid-work");
    assert!(
        ledger.jobs_rerun <= ledger.lost_attempts
            && ledger.extra_executions <= ledger.lost_attempts,
        "re-executions ({} over {} jobs) come only from lost attempts ({})",
        ledger.extra_executions,
        ledger.jobs_rerun,
        ledger.lost_attempts
    );
    assert_eq!(
        ledger.beyond_lost, 0,
        "no job ran more often than its lost attempts explain"
    );
    assert!(
        worst_rerun <= bound,
        "a dead daemon's job ran again {worst_rerun:.2} s after the kill (bound: lease {LEASE_S} s + reaper {REAPER_S} s + {MARGIN_S} s)"
    );

    report(Row {
        scenario: "kill -9 storm",
        runs: "1 (3 daemons)".into(),
        faults: format!("{} SIGKILL", kills.len()),
        jobs: total.to_string(),
        lost: ledger.jobs - ledger.succeeded,
        duplicates: format!(
            "{} (+{} re-runs after {} lost attempts)",
            ledger.unexplained, ledger.extra_executions, ledger.lost_attempts
        ),
        worst_recovery: format!(
            "{} to run again (rescued {}; bound {})",
            secs(worst_rerun),
            secs(worst_rescue),
            secs(bound)
        ),
        wall: t0.elapsed(),
    });
}
