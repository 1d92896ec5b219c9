//! The supervisor's promise over the daemon's own loops: each panics once, and each is
//! shown working again.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::startup::{Application, Build};
use crate::test_support::{self, eventually, TestDb};

/// Runs the loop it wraps, and the first time panics under it a moment after it started
/// (dropping the loop's run with whatever it held), as a bug or a poisoned state would.
struct PanicOnce {
    inner: Arc<dyn Service>,
    panicked: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Service for PanicOnce {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            tokio::select! {
                result = self.inner.run(stop.clone()) => return result,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    panic!("a panic injected into {}", self.inner.name())
                }
            }
        }
        self.inner.run(stop).await
    }
}

async fn status_of(pool: &sqlx::PgPool, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM memwarden.jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The supervisor's promise: a loop that panics is restarted, and works again. Every
/// loop of the daemon panics once; then each shows that it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loop_runs_again_after_a_panic() {
    let db = TestDb::migrated();
    let settings = test_support::settings(
        &db,
        "[queue]\nlease = 1\nheartbeat = 0.25\nreaper_interval = 0.2\ndepth_interval = 0.2\n\
         poll_interval_ms = 50\n[testing]\nprobe_kinds = true\n\
         [[schedules]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"probe\"\n",
    );
    let application = Application::build(settings, Build::default())
        .await
        .unwrap();
    let app = application.app().clone();
    let pool = db.pool().await;
    assert!(crate::db::wait_for_database(app.pool(), &CancellationToken::new()).await);
    app.set_database_ready();
    app.set_database_reachable(true);

    let mut supervisor = Supervisor::new();
    let mut flags = Vec::new();
    for service in loops(&app).await.unwrap() {
        let panicked = Arc::new(AtomicBool::new(false));
        flags.push((service.name(), panicked.clone()));
        supervisor.start(Arc::new(PanicOnce {
            inner: service,
            panicked,
        }));
    }
    app.lifecycle().ready();
    eventually(
        Duration::from_secs(5),
        "every loop panicked once",
        async || flags.iter().all(|(_, f)| f.load(Ordering::SeqCst)),
    )
    .await;
    // The supervisor waits 100 ms before a restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queue = app.queue();
    let probe = |args: serde_json::Value| async move {
        queue
            .enqueue(crate::queue::NewJob::new("probe", args))
            .await
            .unwrap()
            .id
    };

    // Claimer, runner and completer: a job runs and its end is written.
    let quick = probe(serde_json::json!({})).await;
    eventually(Duration::from_secs(5), "a job succeeds", async || {
        status_of(&pool, quick).await == "succeeded"
    })
    .await;

    // Progress writer: a running job's progress reaches its row.
    let slow = probe(serde_json::json!({"sleep_ms": 2500, "progress_steps": 5})).await;
    eventually(Duration::from_secs(5), "progress is written", async || {
        let p: i16 = sqlx::query_scalar("SELECT progress FROM memwarden.jobs WHERE id = $1")
            .bind(slow)
            .fetch_one(&pool)
            .await
            .unwrap();
        (1..100).contains(&p)
    })
    .await;

    // Heartbeat: the 2.5 s job outlives its 1 s lease, and is never taken from us.
    eventually(
        Duration::from_secs(10),
        "the long job succeeds",
        async || status_of(&pool, slow).await == "succeeded",
    )
    .await;
    let lost: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memwarden.job_attempts WHERE job_id = $1 AND outcome <> 'succeeded'",
    )
    .bind(slow)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(lost, 0, "the heartbeat kept the long job's lease");

    // Reaper: a dead worker's job is rescued, recorded as lost, and runs.
    let orphan: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO memwarden.jobs (id, kind, queue, args, status, attempt, max_attempts, lease_owner, lease_expires_at, started_at) \
         VALUES (gen_random_uuid(), 'probe', 'default', '{}', 'running', 1, 5, 'ghost:1:dead', now() - interval '1 second', now()) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the orphan is rescued and runs",
        async || status_of(&pool, orphan).await == "succeeded",
    )
    .await;

    // Listener: a cancel sent by NOTIFY alone (no row flag for the heartbeat to see).
    let stuck = probe(serde_json::json!({"sleep_ms": 20000})).await;
    eventually(Duration::from_secs(5), "the job runs", async || {
        status_of(&pool, stuck).await == "running"
    })
    .await;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&queue.channels().control)
        .bind(format!("cancel:{stuck}"))
        .execute(&pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the NOTIFY cancels it",
        async || status_of(&pool, stuck).await == "canceled",
    )
    .await;

    // Depth: a pause written to the table alone is read by the depth loop's refresh.
    sqlx::query("INSERT INTO memwarden.queues (name, paused) VALUES ('quiet', true)")
        .execute(&pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the depth loop reads the pause",
        async || queue.wakeups().is_paused("quiet"),
    )
    .await;

    // Cron: the per-second schedule fires after the restart.
    let since = chrono::Utc::now();
    eventually(Duration::from_secs(5), "cron fires", async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memwarden.jobs WHERE unique_key LIKE 'cron:every-second:%' AND created_at > $1",
        )
        .bind(since)
        .fetch_one(&pool)
        .await
        .unwrap();
        n > 0
    })
    .await;

    // And every loop beats, the database probe among them, each counted as restarted.
    assert_eq!(app.health().stalled(), None);
    assert!(app.database_reachable());
    let page = crate::telemetry::metrics::recorder().render();
    for (name, _) in &flags {
        assert!(
            page.lines()
                .any(|l| l.starts_with(crate::telemetry::metrics::LOOP_RESTARTS)
                    && l.contains(&format!("loop=\"{name}\""))),
            "{name} is counted in {}",
            crate::telemetry::metrics::LOOP_RESTARTS
        );
    }
    supervisor.stop_all(Duration::from_secs(2)).await;
}
