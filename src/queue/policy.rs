//! What each kind gets unless the caller says otherwise: its queue, attempt budget, timeout
//! and backoff, from `[kinds.KIND]` first, then the handler's own defaults, then the queue's.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Backoff, Queue};
use crate::config::attempts;

impl Queue {
    /// The queues this process claims from: `default`, every `[queues.NAME]`, every queue a
    /// kind is configured to use, and every registered handler's own queue.
    pub fn served_queues(&self) -> BTreeSet<String> {
        let settings = self.settings();
        let mut queues: BTreeSet<String> = settings.queues.keys().cloned().collect();
        queues.insert("default".into());
        queues.extend(settings.kinds.values().filter_map(|k| k.queue.clone()));
        for kind in self.registry().kinds() {
            if let Some(h) = self.registry().get(&kind) {
                queues.insert(h.queue().to_string());
            }
        }
        queues
    }

    /// The queue a kind's jobs go to when the caller names none.
    pub fn default_queue_of(&self, kind: &str) -> String {
        if let Some(q) = self
            .settings()
            .kinds
            .get(kind)
            .and_then(|k| k.queue.clone())
        {
            return q;
        }
        self.registry()
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
            .map(attempts)
            .or_else(|| self.registry().get(kind).and_then(|h| h.max_attempts()))
            .unwrap_or(attempts(settings.queue.max_attempts))
    }

    pub fn timeout_of(&self, kind: &str) -> Duration {
        let configured = self.settings().kinds.get(kind).and_then(|k| k.timeout);
        match (configured, self.registry().get(kind)) {
            (Some(timeout), _) => timeout,
            (None, Some(h)) => h.timeout(),
            (None, None) => Duration::from_secs(30 * 60),
        }
    }

    pub fn backoff_of(&self, kind: &str) -> Backoff {
        let settings = self.settings();
        let k = settings.kinds.get(kind);
        let d = Backoff::default();
        Backoff {
            base: k.and_then(|k| k.backoff_base).unwrap_or(d.base),
            cap: k.and_then(|k| k.backoff_cap).unwrap_or(d.cap),
        }
    }
}
