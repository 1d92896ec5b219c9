//! PostgreSQL restart: the scenario's private cluster is stopped for 10 s in the middle of a
//! run, then started. Both daemons stay up, report not-ready (`/readyz` 503) while it is down
//! and ready again after, reconnect on their own, and finish every job: nothing lost, no
//! effect applied twice without a failed or lost attempt to explain it, no panic.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::harness::{
    count, enqueue, pool_of, report, scale, secs, statuses, succeeded, Daemon, Ledger,
    PrivateCluster, Row, FAST,
};

const OUTAGE: Duration = Duration::from_secs(10);
/// The database probe runs every second with a 2 s timeout: not-ready within ~3 s.
const NOT_READY_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn postgres_restart_mid_run() {
    let t0 = Instant::now();
    let outages = scale(1, 3);
    let per_round: i64 = scale(1500, 3000);
    let cluster = PrivateCluster::start("reliab_pg_restart");
    let pool = pool_of(&cluster.url).await;
    let config = format!(
        "{FAST}[queues.default]\nconcurrency = 8\n[kinds.probe]\nbackoff_base = 0.2\nbackoff_cap = 1"
    );
    let mut daemons: Vec<Daemon> = (0..2)
        .map(|_| Daemon::builder(&cluster.url).config(&config).spawn())
        .collect();
    for d in &daemons {
        d.wait_ready(Duration::from_secs(30)).await;
    }

    let mut worst_not_ready = Duration::ZERO;
    let mut worst_ready_again = Duration::ZERO;
    let mut worst_progress_again = Duration::ZERO;
    for round in 0..outages {
        let before = succeeded(&pool).await;
        enqueue(&pool, per_round, &json!({"effect": true, "sleep_ms": 30})).await;
        // Mid-run: some done, some running, most still queued.
        let t = Instant::now();
        loop {
            let done = succeeded(&pool).await - before;
            let running = count(
                &pool,
                "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe' AND status = 'running'",
            )
            .await;
            if done >= 100 && running > 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no progress before the outage: {:?}",
                statuses(&pool).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // From the moment the stop begins: `pg_ctl stop` itself waits for the server to go.
        let stopped = Instant::now();
        cluster.stop_server();
        let mut first_503: Vec<Option<Duration>> = vec![None; daemons.len()];
        while stopped.elapsed() < OUTAGE {
            for (i, d) in daemons.iter_mut().enumerate() {
                assert!(
                    d.alive(),
                    "round {round}: daemon {i} exited during the outage:\n{}",
                    crate::harness::tail(&d.logs(), 30)
                );
                let status = d.status_of("/readyz").await;
                match (status, first_503[i]) {
                    (Some(503), None) => first_503[i] = Some(stopped.elapsed()),
                    (Some(200), Some(at)) => panic!(
                        "round {round}: daemon {i} ready again at {:?} with the database still down (503 since {at:?})",
                        stopped.elapsed()
                    ),
                    (Some(200), None) => {}
                    (Some(503), Some(_)) => {}
                    (other, _) => panic!(
                        "round {round}: daemon {i}'s /readyz answered {other:?} during the outage"
                    ),
                }
                if first_503[i].is_none() {
                    assert!(
                        stopped.elapsed() < NOT_READY_WITHIN,
                        "round {round}: daemon {i} still ready {:?} into the outage",
                        stopped.elapsed()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (i, at) in first_503.iter().enumerate() {
            let at = at.unwrap_or_else(|| panic!("daemon {i} never reported not-ready"));
            worst_not_ready = worst_not_ready.max(at);
        }

        cluster.start_server();
        let started = Instant::now();
        for d in &daemons {
            d.wait_ready(Duration::from_secs(30)).await;
            worst_ready_again = worst_ready_again.max(started.elapsed());
        }
        let done_at_restart = succeeded(&pool).await;
        let t = Instant::now();
        while succeeded(&pool).await == done_at_restart {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {round}: no job finished after the restart: {:?}",
                statuses(&pool).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst_progress_again = worst_progress_again.max(started.elapsed());
    }

    let total = per_round * outages as i64;
    let t = Instant::now();
    while succeeded(&pool).await < total {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "jobs did not all finish after the restart: {:?}",
            statuses(&pool).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (i, d) in daemons.iter_mut().enumerate() {
        assert!(d.alive(), "daemon {i} is still up");
        d.assert_no_panic("PostgreSQL restart");
        d.signal(Signal::SIGTERM);
        let status = d.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "daemon {i} exits 0 after the outage"
        );
    }
    let ledger = Ledger::assert_nothing_lost(&pool, "PostgreSQL restart").await;
    assert_eq!(ledger.jobs, total);
    eprintln!(
        "postgres restart: not ready within {worst_not_ready:?}, ready again {worst_ready_again:?} \
         and progressing {worst_progress_again:?} after the start; {} lost and {} failed attempts, \
         {} re-executions",
        ledger.lost_attempts, ledger.failed_attempts, ledger.extra_executions
    );
    report(Row {
        scenario: "PostgreSQL restart",
        runs: format!("{outages} (2 daemons)"),
        faults: format!("{outages} × {} s outage", OUTAGE.as_secs()),
        jobs: total.to_string(),
        lost: ledger.jobs - ledger.succeeded,
        duplicates: ledger.duplicates(),
        worst_recovery: format!(
            "{} to ready, {} to progress (503 within {})",
            secs(worst_ready_again.as_secs_f64()),
            secs(worst_progress_again.as_secs_f64()),
            secs(worst_not_ready.as_secs_f64())
        ),
        wall: t0.elapsed(),
    });
}
