//! The completer against a real database: each end written with its attempt, and a lease
//! that is not ours refused.

use std::time::Duration;

use super::*;
use crate::queue::Registry;
use crate::test_support::{self, eventually, running_job, TestDb};

#[tokio::test]
async fn writes_each_end_with_its_attempt_and_refuses_a_lease_that_is_not_ours() {
    let db = TestDb::migrated();
    let q = test_support::queue(&db, "", Registry::new());
    let pool = db.pool().await;
    let stop = CancellationToken::new();
    let completer = Completer::new(q.clone());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { completer.run(stop).await }
    });
    let done = running_job(&pool, q.worker_id(), 1, 5, 30.0).await;
    let failed = running_job(&pool, q.worker_id(), 1, 5, 30.0).await;
    let theirs = running_job(&pool, "other:2:b", 1, 5, 30.0).await;
    let mut in_flight = q.lifecycle().track(3);
    for (job, outcome) in [
        (done.clone(), Final::Succeeded(serde_json::json!({"ok": 1}))),
        (failed.clone(), Final::Failed("boom".into())),
        (theirs.clone(), Final::Succeeded(serde_json::json!({}))),
    ] {
        q.held().hold(std::slice::from_ref(&job));
        q.complete(Completion::new(
            job,
            outcome,
            None,
            in_flight.split_one().unwrap(),
        ));
    }
    eventually(
        Duration::from_secs(5),
        "every completion written",
        async || q.held().count() == 0,
    )
    .await;
    let row = |id| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<serde_json::Value>, Option<String>, bool)>(
                "SELECT status, result, last_error, run_at > now() FROM memwarden.jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        row(done.id).await,
        (
            "succeeded".into(),
            Some(serde_json::json!({"ok": 1})),
            None,
            false
        )
    );
    let (status, _, error, later) = row(failed.id).await;
    assert_eq!(
        (status.as_str(), error.as_deref(), later),
        ("retryable", Some("boom"), true)
    );
    assert_eq!(
        row(theirs.id).await.0,
        "running",
        "a lease that is not ours"
    );
    let attempts: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT job_id, outcome FROM memwarden.job_attempts ORDER BY job_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        attempts,
        vec![(done.id, "succeeded".into()), (failed.id, "failed".into())]
    );
    assert_eq!(
        q.lifecycle().snapshot().in_flight,
        0,
        "every lease handed in"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
