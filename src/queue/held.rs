//! The jobs this process holds a lease on, running or prefetched: each with the token that
//! stops it and, once stopped, why. The heartbeat renews them, a cancel or a lost lease fires
//! their token, and a hard stop hands them all back.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Claimed;

/// Why this process stopped a job it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Canceled,
    Interrupted,
    LeaseLost,
    TimedOut,
}

struct Held {
    cancel: CancellationToken,
    started: bool,
    reason: Option<StopReason>,
}

#[derive(Default)]
pub struct HeldJobs {
    jobs: Mutex<HashMap<Uuid, Held>>,
    /// Parent of every held job's token: fired when the queue shuts down.
    parent: CancellationToken,
}

impl HeldJobs {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Held>> {
        self.jobs.lock().expect("held jobs lock")
    }

    /// Takes the claimed jobs into our keeping; returns each one's stop token.
    pub(super) fn hold(&self, jobs: &[Claimed]) -> Vec<CancellationToken> {
        let mut held = self.lock();
        jobs.iter()
            .map(|j| {
                let cancel = self.parent.child_token();
                held.insert(
                    j.id,
                    Held {
                        cancel: cancel.clone(),
                        started: false,
                        reason: None,
                    },
                );
                cancel
            })
            .collect()
    }

    pub(super) fn mark_started(&self, id: Uuid) {
        if let Some(h) = self.lock().get_mut(&id) {
            h.started = true;
        }
    }

    pub(super) fn release(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.lock();
        for id in ids {
            held.remove(&id);
        }
    }

    /// The reason a held job was stopped, if it was.
    pub(super) fn stop_reason(&self, id: Uuid) -> Option<StopReason> {
        self.lock().get(&id).and_then(|h| h.reason)
    }

    /// Fires the token of a held job, remembering why. The first reason wins.
    pub(super) fn stop(&self, id: Uuid, reason: StopReason) -> bool {
        match self.lock().get_mut(&id) {
            Some(h) => {
                h.reason.get_or_insert(reason);
                h.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub(super) fn ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    /// Jobs held by this process (running or prefetched).
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The end of a stop's grace period: every running job is cancelled and will be recorded
    /// as `interrupted` and released. Returns how many were running.
    pub fn interrupt_all(&self) -> usize {
        let running: Vec<Uuid> = self
            .lock()
            .iter()
            .filter(|(_, h)| h.started)
            .map(|(id, _)| *id)
            .collect();
        for id in &running {
            self.stop(*id, StopReason::Interrupted);
        }
        running.len()
    }

    /// Fires every held job's token: the queue is shutting down.
    pub(super) fn stop_all(&self) {
        self.parent.cancel();
    }

    /// A hard stop: hand every lease back at once, recording started jobs as `interrupted`.
    pub(super) async fn release_all(&self, pool: &PgPool, worker: &str) {
        let held: Vec<(Uuid, bool)> = self.lock().iter().map(|(id, h)| (*id, h.started)).collect();
        if held.is_empty() {
            return;
        }
        let (ids, started): (Vec<Uuid>, Vec<bool>) = held.into_iter().unzip();
        let result = sqlx::query(
            "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bool[]) AS u(id, started)), \
             rel AS ( \
               UPDATE jobs j SET status = 'available', run_at = now(), lease_owner = NULL, lease_expires_at = NULL, \
                 attempt = CASE WHEN u.started THEN j.attempt ELSE j.attempt - 1 END, \
                 max_attempts = CASE WHEN u.started THEN GREATEST(j.max_attempts, j.attempt + 1) ELSE j.max_attempts END, \
                 last_error = CASE WHEN u.started THEN 'interrupted by a hard stop' ELSE j.last_error END \
               FROM u WHERE j.id = u.id AND j.lease_owner = $3 \
               RETURNING j.id, j.attempt, j.started_at, u.started) \
             INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome, error) \
             SELECT id, attempt, $3, COALESCE(started_at, now()), 'interrupted', 'interrupted by a hard stop' FROM rel WHERE started \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&started)
        .bind(worker)
        .execute(pool)
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "hard stop: leases not released; the reaper will recover them");
        }
    }
}
