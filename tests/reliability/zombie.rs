//! Zombie worker: daemon A is paused with SIGSTOP in the middle of its jobs, past its lease.
//! Daemon B's reaper records A's attempts as lost and B runs the jobs again. Then A gets
//! SIGCONT: its late completions (the "stubborn" jobs finish their work; the others notice the
//! lost lease and stop) are refused by the lease guard, each job ends with exactly one
//! succeeded attempt, and A goes on working correctly.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{
    count, eventually, report, scale, secs, statuses, Daemon, Ledger, Row, TestDb, FAST, LEASE_S,
    REAPER_S,
};

const REJECTED: &str = "completion rejected: the lease is no longer ours";

async fn enqueue_one(pool: &sqlx::PgPool, args: serde_json::Value) -> Uuid {
    sqlx::query_scalar("SELECT memwarden.enqueue('probe', $1::jsonb)")
        .bind(args)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn held_by(pool: &sqlx::PgPool, ids: &[Uuid], prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM memwarden.jobs WHERE id = ANY($1) AND status = 'running' AND lease_owner LIKE $2 || '%'",
    )
    .bind(ids)
    .bind(prefix)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn zombie_worker_is_fenced_by_the_lease_guard() {
    let t0 = Instant::now();
    let rounds = scale(1, 3);
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let config = format!("{FAST}[queues.default]\nconcurrency = 4");
    let mut a = Daemon::builder(&db.url).config(&config).ready().await;
    let a_prefix = a.worker_prefix();

    let mut worst_takeover = 0.0f64;
    let mut stubborn_total = 0i64;
    let mut after_jobs = 0i64;
    for round in 0..rounds {
        // Two jobs that ignore cancellation (they finish and try to report success) and two
        // that stop when the heartbeat finds their lease gone.
        let mut ids = Vec::new();
        for stubborn in [true, true, false, false] {
            ids.push(
                enqueue_one(
                    &pool,
                    json!({"sleep_ms": 5000, "effect": true, "stubborn": stubborn}),
                )
                .await,
            );
        }
        stubborn_total += 2;
        let t = Instant::now();
        while held_by(&pool, &ids, &a_prefix).await < 4 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "round {round}: A did not take the jobs: {:?}",
                statuses(&pool).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // B is up before A freezes, with nothing to claim: every job is A's.
        let mut b = Daemon::builder(&db.url).config(&config).ready().await;
        let b_prefix = b.worker_prefix();
        assert_eq!(held_by(&pool, &ids, &a_prefix).await, 4);
        let stopped_at: DateTime<Utc> = Utc::now();
        a.signal(Signal::SIGSTOP);
        let t = Instant::now();
        while held_by(&pool, &ids, &b_prefix).await < 4 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "round {round}: B did not take over A's jobs: {:?}",
                statuses(&pool).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let takeover: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM max(started_at) - $2)::float8 FROM memwarden.jobs WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(stopped_at)
        .fetch_one(&pool)
        .await
        .unwrap();
        worst_takeover = worst_takeover.max(takeover);
        let lost_by_a: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memwarden.job_attempts WHERE job_id = ANY($1) AND outcome = 'lost' AND worker LIKE $2 || '%'",
        )
        .bind(&ids)
        .bind(&a_prefix)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            lost_by_a, 4,
            "round {round}: the reaper recorded A's four attempts as lost"
        );

        // Wake the zombie while B still holds the jobs.
        a.signal(Signal::SIGCONT);
        let rejections_before = a.logs().matches(REJECTED).count();
        eventually(
            Duration::from_secs(20),
            "A's late completions rejected by the lease guard",
            || async { a.logs().matches(REJECTED).count() >= 4 * (round + 1) },
        )
        .await;
        assert!(rejections_before < 4 * (round + 1));
        eventually(Duration::from_secs(20), "B finished the jobs", || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM memwarden.jobs WHERE id = ANY($1) AND status = 'succeeded'",
            )
            .bind(&ids)
            .fetch_one(&pool)
            .await
            .unwrap()
                == 4
        })
        .await;

        // Exactly one succeeded attempt per job, B's; A's only record is its lost attempt.
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT job_id, outcome, worker FROM memwarden.job_attempts WHERE job_id = ANY($1) ORDER BY job_id, attempt",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .unwrap();
        for id in &ids {
            let mine: Vec<(&str, &str)> = rows
                .iter()
                .filter(|r| r.0 == *id)
                .map(|r| (r.1.as_str(), r.2.as_str()))
                .collect();
            assert_eq!(mine.len(), 2, "round {round}: job {id}: {mine:?}");
            assert!(
                mine[0].0 == "lost" && mine[0].1.starts_with(&a_prefix),
                "round {round}: job {id}: {mine:?}"
            );
            assert!(
                mine[1].0 == "succeeded" && mine[1].1.starts_with(&b_prefix),
                "round {round}: job {id}: {mine:?}"
            );
        }
        let (lease_lost, _) = a.metric("memwarden_lease_lost_total").await;
        assert!(
            lease_lost >= 4.0 * (round + 1) as f64,
            "round {round}: A counted its lost leases: {lease_lost}"
        );

        // B leaves; A alone goes on, and works correctly.
        b.signal(Signal::SIGTERM);
        assert_eq!(
            b.wait_exit(Duration::from_secs(10))
                .await
                .and_then(|s| s.code()),
            Some(0)
        );
        b.assert_no_panic("zombie round, daemon B");
        let n = 40;
        let mut more = Vec::new();
        for _ in 0..n {
            more.push(enqueue_one(&pool, json!({"sleep_ms": 10, "effect": true})).await);
        }
        after_jobs += n;
        eventually(Duration::from_secs(20), "A ran the new jobs", || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM memwarden.job_attempts WHERE job_id = ANY($1) AND outcome = 'succeeded' AND worker LIKE $2 || '%'",
            )
            .bind(&more)
            .bind(&a_prefix)
            .fetch_one(&pool)
            .await
            .unwrap()
                == n
        })
        .await;
        assert_eq!(a.status_of("/readyz").await, Some(200));
        assert_eq!(a.status_of("/healthz").await, Some(200));
        eventually(
            Duration::from_secs(5),
            "A holds nothing once done",
            || async { a.get_json("/v1/status").await["in_flight"] == 0 },
        )
        .await;
    }

    a.assert_no_panic("zombie, daemon A");
    let refused = a.logs().matches(REJECTED).count();
    a.signal(Signal::SIGTERM);
    assert_eq!(
        a.wait_exit(Duration::from_secs(10))
            .await
            .and_then(|s| s.code()),
        Some(0)
    );
    let ledger = Ledger::assert_nothing_lost(&pool, "zombie worker").await;
    let zombie_runs = count(
        &pool,
        "SELECT count(*) FROM memwarden_probe_effects e JOIN memwarden.jobs j ON j.id = e.job_id \
         WHERE (j.args->>'stubborn')::boolean AND e.executions = 2",
    )
    .await;
    assert_eq!(
        zombie_runs, stubborn_total,
        "the stubborn jobs ran on in the zombie too (at-least-once), and only there"
    );
    assert_eq!(ledger.extra_executions, stubborn_total);
    assert_eq!(ledger.beyond_lost, 0);
    let bound = LEASE_S + REAPER_S + 1.5;
    assert!(
        worst_takeover <= bound,
        "B took over {worst_takeover:.2} s after SIGSTOP (bound {bound} s)"
    );
    report(Row {
        scenario: "zombie worker",
        runs: rounds.to_string(),
        faults: format!(
            "{rounds} SIGSTOP past the lease + SIGCONT ({refused} late completions refused)"
        ),
        jobs: format!("{}", 4 * rounds as i64 + after_jobs),
        lost: ledger.jobs - ledger.succeeded,
        duplicates: format!(
            "{} (+{} zombie re-runs after {} lost attempts)",
            ledger.unexplained, ledger.extra_executions, ledger.lost_attempts
        ),
        worst_recovery: format!("{} SIGSTOP to takeover", secs(worst_takeover)),
        wall: t0.elapsed(),
    });
}
