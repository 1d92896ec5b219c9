//! The durable Postgres queue: enqueue, batched claims, leases and heartbeats, batched
//! completions, retries with persisted backoff, the reaper, LISTEN/NOTIFY wake-ups, cron and
//! purge. Each maintenance loop is one file implementing `supervisor::Service`.

pub mod admin;
pub mod backoff;
mod claimer;
mod completer;
pub mod cron;
pub mod depth;
pub mod enqueue;
pub mod events;
mod heartbeat;
pub mod job;
mod job_metrics;
mod listener;
pub mod probe;
pub mod progress;
pub mod purge;
mod reaper;
pub mod registry;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::App;
use crate::config::Settings;
use crate::supervisor::Service;
pub use backoff::Backoff;
pub use completer::Completion;
pub use enqueue::{EnqueueError, Enqueued, NewJob};
pub use events::{Event, Events};
pub use job::{Claimed, Status};
pub use registry::{Handler, JobCheckpoint, JobContext, Outcome, Registry};

/// NOTIFY channel that wakes claimers; the payload is the queue name.
pub const JOBS_CHANNEL: &str = "memwarden_jobs";
/// NOTIFY channel for cross-process control: `cancel:<job id>`, `pause:<queue>`, `resume:<queue>`.
pub const CONTROL_CHANNEL: &str = "memwarden_control";

/// Why this process stopped a job it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Canceled,
    Interrupted,
    LeaseLost,
    TimedOut,
}

/// A job this process holds a lease on.
struct Held {
    cancel: CancellationToken,
    started: bool,
    reason: Option<StopReason>,
}

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    app: App,
    pool: PgPool,
    /// Where handlers run: see `db::work_session_options`.
    work_pool: PgPool,
    registry: Registry,
    worker_id: String,
    held: Mutex<HashMap<Uuid, Held>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    paused: Mutex<BTreeSet<String>>,
    completions: mpsc::UnboundedSender<Completion>,
    completions_rx: Mutex<Option<mpsc::UnboundedReceiver<Completion>>>,
    progress: mpsc::UnboundedSender<(Uuid, i16)>,
    progress_rx: Mutex<Option<mpsc::UnboundedReceiver<(Uuid, i16)>>>,
    events: Events,
    metrics: job_metrics::MetricsCache,
    background: CancellationToken,
}

impl Queue {
    pub fn new(app: App, pool: PgPool, work_pool: PgPool, registry: Registry) -> Self {
        let (completions, completions_rx) = mpsc::unbounded_channel();
        let (progress, progress_rx) = mpsc::unbounded_channel();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let worker_id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        Queue {
            inner: Arc::new(Inner {
                app,
                pool,
                work_pool,
                registry,
                worker_id,
                held: Mutex::new(HashMap::new()),
                wakers: Mutex::new(HashMap::new()),
                paused: Mutex::new(BTreeSet::new()),
                completions,
                completions_rx: Mutex::new(Some(completions_rx)),
                progress,
                progress_rx: Mutex::new(Some(progress_rx)),
                events: Events::default(),
                metrics: job_metrics::MetricsCache::default(),
                background: CancellationToken::new(),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn work_pool(&self) -> &PgPool {
        &self.inner.work_pool
    }

    pub fn app(&self) -> &App {
        &self.inner.app
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.inner.app.settings()
    }

    /// The queues this process claims from: `default`, every `[queues.NAME]`, every queue a
    /// kind is configured to use, and every registered handler's own queue.
    pub fn served_queues(&self) -> BTreeSet<String> {
        let settings = self.settings();
        let mut queues: BTreeSet<String> = settings.queues.keys().cloned().collect();
        queues.insert("default".into());
        queues.extend(settings.kinds.values().filter_map(|k| k.queue.clone()));
        for kind in self.inner.registry.kinds() {
            if let Some(h) = self.inner.registry.get(&kind) {
                queues.insert(h.queue().to_string());
            }
        }
        queues
    }

    /// The queue a kind's jobs go to when the caller names none.
    pub fn default_queue_of(&self, kind: &str) -> String {
        let settings = self.settings();
        if let Some(q) = settings.kinds.get(kind).and_then(|k| k.queue.clone()) {
            return q;
        }
        self.inner
            .registry
            .get(kind)
            .map(|h| h.queue().to_string())
            .unwrap_or_else(|| "default".into())
    }

    pub fn max_attempts_of(&self, kind: &str) -> i32 {
        let settings = self.settings();
        settings
            .kinds
            .get(kind)
            .and_then(|k| k.max_attempts)
            .or_else(|| self.inner.registry.get(kind).and_then(|h| h.max_attempts()))
            .unwrap_or(settings.queue.max_attempts)
    }

    pub fn timeout_of(&self, kind: &str) -> Duration {
        let configured = self.settings().kinds.get(kind).and_then(|k| k.timeout);
        match (configured, self.inner.registry.get(kind)) {
            (Some(secs), _) => Duration::from_secs_f64(secs),
            (None, Some(h)) => h.timeout(),
            (None, None) => Duration::from_secs(30 * 60),
        }
    }

    pub fn backoff_of(&self, kind: &str) -> Backoff {
        let settings = self.settings();
        let k = settings.kinds.get(kind);
        let d = Backoff::default();
        Backoff {
            base: k
                .and_then(|k| k.backoff_base)
                .map(Duration::from_secs_f64)
                .unwrap_or(d.base),
            cap: k
                .and_then(|k| k.backoff_cap)
                .map(Duration::from_secs_f64)
                .unwrap_or(d.cap),
        }
    }

    /// Every loop of the queue, in start order. The completer comes first so that it stops
    /// last, after every claimer has handed in its work.
    pub async fn services(&self) -> anyhow::Result<Vec<Arc<dyn Service>>> {
        self.refresh_paused().await?;
        cron::sync_schedules(self).await?;
        let mut services: Vec<Arc<dyn Service>> = vec![
            Arc::new(completer::Completer::new(self.clone())),
            Arc::new(ProgressWriter(self.clone())),
            Arc::new(listener::Listener::new(self.clone())),
            Arc::new(heartbeat::Heartbeat::new(self.clone())),
            Arc::new(reaper::Reaper::new(self.clone())),
            Arc::new(depth::Depth::new(self.clone())),
            Arc::new(cron::Cron::new(self.clone())),
        ];
        for name in self.served_queues() {
            services.push(Arc::new(claimer::Claimer::new(self.clone(), name)));
        }
        Ok(services)
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.inner
            .wakers
            .lock()
            .expect("wakers lock")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    /// Wakes the claimer of `queue` (a NOTIFY arrived, or work was enqueued here).
    pub fn wake(&self, queue: &str) {
        if let Some(n) = self.inner.wakers.lock().expect("wakers lock").get(queue) {
            n.notify_one();
        }
    }

    pub fn wake_all(&self) {
        for n in self.inner.wakers.lock().expect("wakers lock").values() {
            n.notify_one();
        }
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.inner
            .paused
            .lock()
            .expect("paused lock")
            .contains(queue)
    }

    pub fn set_paused(&self, queue: &str, paused: bool) {
        let mut set = self.inner.paused.lock().expect("paused lock");
        if paused {
            set.insert(queue.to_string());
        } else {
            set.remove(queue);
        }
        drop(set);
        if !paused {
            self.wake(queue);
        }
    }

    pub async fn refresh_paused(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT name FROM memwarden.queues WHERE paused")
                .fetch_all(&self.inner.pool)
                .await?;
        let mut set = self.inner.paused.lock().expect("paused lock");
        let was: BTreeSet<String> = std::mem::replace(&mut *set, rows.into_iter().collect());
        let resumed: Vec<String> = was.difference(&set).cloned().collect();
        drop(set);
        for q in resumed {
            self.wake(&q);
        }
        Ok(())
    }

    fn hold(&self, jobs: &[Claimed]) -> Vec<CancellationToken> {
        let mut held = self.inner.held.lock().expect("held lock");
        jobs.iter()
            .map(|j| {
                let cancel = self.inner.background.child_token();
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

    fn mark_started(&self, id: Uuid) {
        if let Some(h) = self.inner.held.lock().expect("held lock").get_mut(&id) {
            h.started = true;
        }
    }

    fn unhold(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.inner.held.lock().expect("held lock");
        for id in ids {
            held.remove(&id);
        }
    }

    /// The reason a held job was stopped, if it was.
    fn stop_reason(&self, id: Uuid) -> Option<StopReason> {
        self.inner
            .held
            .lock()
            .expect("held lock")
            .get(&id)
            .and_then(|h| h.reason)
    }

    /// Fires the token of a held job, remembering why. The first reason wins.
    fn stop_job(&self, id: Uuid, reason: StopReason) -> bool {
        let mut held = self.inner.held.lock().expect("held lock");
        match held.get_mut(&id) {
            Some(h) => {
                if h.reason.is_none() {
                    h.reason = Some(reason);
                }
                h.cancel.cancel();
                true
            }
            None => false,
        }
    }

    fn held_ids(&self) -> Vec<Uuid> {
        self.inner
            .held
            .lock()
            .expect("held lock")
            .keys()
            .copied()
            .collect()
    }

    /// Jobs held by this process (running or prefetched).
    pub fn held_count(&self) -> usize {
        self.inner.held.lock().expect("held lock").len()
    }

    /// The end of a stop's grace period: every running job is cancelled and will be recorded
    /// as `interrupted` and released. Returns how many were running.
    pub fn interrupt_all(&self) -> usize {
        let running: Vec<Uuid> = self
            .inner
            .held
            .lock()
            .expect("held lock")
            .iter()
            .filter(|(_, h)| h.started)
            .map(|(id, _)| *id)
            .collect();
        for id in &running {
            self.stop_job(*id, StopReason::Interrupted);
        }
        running.len()
    }

    /// A hard stop: hand every lease back at once, recording started jobs as `interrupted`.
    pub async fn release_all(&self) {
        let held: Vec<(Uuid, bool)> = self
            .inner
            .held
            .lock()
            .expect("held lock")
            .iter()
            .map(|(id, h)| (*id, h.started))
            .collect();
        if held.is_empty() {
            return;
        }
        let (ids, started): (Vec<Uuid>, Vec<bool>) = held.into_iter().unzip();
        let result = sqlx::query(
            "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bool[]) AS u(id, started)), \
             rel AS ( \
               UPDATE memwarden.jobs j SET status = 'available', run_at = now(), lease_owner = NULL, lease_expires_at = NULL, \
                 attempt = CASE WHEN u.started THEN j.attempt ELSE j.attempt - 1 END, \
                 max_attempts = CASE WHEN u.started THEN GREATEST(j.max_attempts, j.attempt + 1) ELSE j.max_attempts END, \
                 last_error = CASE WHEN u.started THEN 'interrupted by a hard stop' ELSE j.last_error END \
               FROM u WHERE j.id = u.id AND j.lease_owner = $3 \
               RETURNING j.id, j.attempt, j.started_at, u.started) \
             INSERT INTO memwarden.job_attempts (job_id, attempt, worker, started_at, outcome, error) \
             SELECT id, attempt, $3, COALESCE(started_at, now()), 'interrupted', 'interrupted by a hard stop' FROM rel WHERE started \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&started)
        .bind(&self.inner.worker_id)
        .execute(&self.inner.pool)
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "hard stop: leases not released; the reaper will recover them");
        }
    }

    /// After the drain: stop the progress writer and anything else left.
    pub async fn shutdown(&self) {
        self.inner.background.cancel();
    }

    fn take_completions(&self) -> Option<mpsc::UnboundedReceiver<Completion>> {
        self.inner
            .completions_rx
            .lock()
            .expect("completions lock")
            .take()
    }

    fn give_back_completions(&self, rx: mpsc::UnboundedReceiver<Completion>) {
        *self.inner.completions_rx.lock().expect("completions lock") = Some(rx);
    }

    fn complete(&self, c: Completion) {
        if let Err(mpsc::error::SendError(c)) = self.inner.completions.send(c) {
            // Only when the completer is gone for good; the lease will expire and the reaper
            // will record the attempt as lost.
            tracing::error!(job = %c.job.id, "completion dropped: the completer is gone");
        }
    }

    fn job_metrics(&self, kind: &str, queue: &str) -> Arc<job_metrics::JobMetrics> {
        self.inner.metrics.get(kind, queue)
    }

    fn progress_sink(&self, id: Uuid) -> progress::ProgressSink {
        progress::ProgressSink::new(id, self.inner.progress.clone())
    }
}

/// Runs the progress writer under the supervisor.
struct ProgressWriter(Queue);

#[async_trait::async_trait]
impl Service for ProgressWriter {
    fn name(&self) -> String {
        "progress-writer".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let q = &self.0;
        let Some(rx) = q.inner.progress_rx.lock().expect("progress lock").take() else {
            anyhow::bail!("the progress receiver is already taken");
        };
        progress::write_progress(q.inner.pool.clone(), rx, q.inner.events.clone(), stop).await;
        Ok(())
    }
}
