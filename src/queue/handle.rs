//! The queue handle: the pools, the kinds this process runs, who this worker is, and the
//! shared state its loops work on (held jobs, wake-ups, completions, progress, events). Cheap
//! to clone. It knows the lifecycle, the loops' health and the live settings, and nothing
//! else of the daemon.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Mutex};
use uuid::Uuid;

use super::completion::Completion;
use super::events::Events;
use super::held::HeldJobs;
use super::job_metrics::{JobMetrics, MetricsCache};
use super::progress::{ProgressSink, ProgressUpdate};
use super::wakeups::Wakeups;
use super::{Channels, Registry};
use crate::config::Settings;
use crate::health::Health;
use crate::lifecycle::Lifecycle;

/// What the queue needs of the daemon around it.
#[derive(Clone)]
pub struct QueueContext {
    pub lifecycle: Lifecycle,
    pub health: Health,
    pub settings: watch::Receiver<Arc<Settings>>,
}

#[derive(Clone)]
pub struct Queue {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) context: QueueContext,
    pub(super) pool: PgPool,
    /// Where handlers run: see `db::work_session_options`.
    pub(super) work_pool: PgPool,
    pub(super) registry: Registry,
    pub(super) channels: Channels,
    pub(super) worker_id: String,
    pub(super) held: HeldJobs,
    pub(super) wakeups: Wakeups,
    pub(super) completions: mpsc::UnboundedSender<Completion>,
    /// The completer's end of the channel. A completer that crashes hands it to the next one
    /// by dropping its guard, so a restart picks up where it left off.
    pub(super) completions_rx: Arc<Mutex<mpsc::UnboundedReceiver<Completion>>>,
    pub(super) progress: mpsc::UnboundedSender<ProgressUpdate>,
    pub(super) progress_rx: Arc<Mutex<mpsc::UnboundedReceiver<ProgressUpdate>>>,
    pub(super) events: Events,
    pub(super) metrics: MetricsCache,
}

/// `<hostname>:<pid>:<8 random hex digits>`, as `lease_owner` and `job_attempts.worker`.
fn worker_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

impl Queue {
    pub fn new(context: QueueContext, pool: PgPool, work_pool: PgPool, registry: Registry) -> Self {
        let (completions, completions_rx) = mpsc::unbounded_channel();
        let (progress, progress_rx) = mpsc::unbounded_channel();
        let channels = Channels::of(&context.settings.borrow().database.schema);
        Queue {
            inner: Arc::new(Inner {
                context,
                pool,
                work_pool,
                registry,
                channels,
                worker_id: worker_identity(),
                held: HeldJobs::default(),
                wakeups: Wakeups::default(),
                completions,
                completions_rx: Arc::new(Mutex::new(completions_rx)),
                progress,
                progress_rx: Arc::new(Mutex::new(progress_rx)),
                events: Events::default(),
                metrics: MetricsCache::default(),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn work_pool(&self) -> &PgPool {
        &self.inner.work_pool
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The NOTIFY channels of this queue's schema.
    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.context.lifecycle
    }

    pub fn health(&self) -> &Health {
        &self.inner.context.health
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.context.settings.borrow().clone()
    }

    /// A receiver that sees every later change of the settings.
    pub fn watch_settings(&self) -> watch::Receiver<Arc<Settings>> {
        self.inner.context.settings.clone()
    }

    /// The jobs this process holds a lease on.
    pub fn held(&self) -> &HeldJobs {
        &self.inner.held
    }

    pub fn wakeups(&self) -> &Wakeups {
        &self.inner.wakeups
    }

    /// A hard stop: hand every lease back at once (see `HeldJobs::release_all`).
    pub async fn release_all(&self) {
        self.inner
            .held
            .release_all(&self.inner.pool, &self.inner.worker_id)
            .await;
    }

    /// After the drain: fire whatever job tokens are left.
    pub async fn shutdown(&self) {
        self.inner.held.stop_all();
    }

    pub(super) fn complete(&self, c: Completion) {
        if let Err(mpsc::error::SendError(c)) = self.inner.completions.send(c) {
            // Only when the queue itself is gone; the lease will expire and the reaper will
            // record the attempt as lost.
            tracing::error!(job = %c.job.id, "completion dropped: the completer is gone");
        }
    }

    pub(super) fn job_metrics(&self, kind: &str, queue: &str) -> Arc<JobMetrics> {
        self.inner.metrics.get(kind, queue)
    }

    pub(super) fn progress_sink(&self, id: Uuid) -> ProgressSink {
        ProgressSink::new(id, self.inner.progress.clone())
    }
}
