//! What wakes a claimer (a NOTIFY, a job enqueued here, a resumed queue) and which queues are
//! paused. The paused set is read from `memwarden.queues` and kept current by NOTIFY, with
//! the depth loop as the fallback for a missed one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Queue;

#[derive(Default)]
pub(super) struct Wakeups {
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    paused: Mutex<BTreeSet<String>>,
}

impl Queue {
    pub(super) fn waker(&self, queue: &str) -> Arc<Notify> {
        self.inner
            .wakeups
            .wakers
            .lock()
            .expect("wakers lock")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    /// Wakes the claimer of `queue` (a NOTIFY arrived, or work was enqueued here).
    pub fn wake(&self, queue: &str) {
        let wakers = self.inner.wakeups.wakers.lock().expect("wakers lock");
        if let Some(n) = wakers.get(queue) {
            n.notify_one();
        }
    }

    pub fn wake_all(&self) {
        for n in self
            .inner
            .wakeups
            .wakers
            .lock()
            .expect("wakers lock")
            .values()
        {
            n.notify_one();
        }
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.paused().contains(queue)
    }

    fn paused(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.inner.wakeups.paused.lock().expect("paused lock")
    }

    pub fn set_paused(&self, queue: &str, paused: bool) {
        let mut set = self.paused();
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
                .fetch_all(self.pool())
                .await?;
        let was = std::mem::replace(&mut *self.paused(), rows.into_iter().collect());
        let resumed: Vec<String> = was.difference(&self.paused()).cloned().collect();
        for q in resumed {
            self.wake(&q);
        }
        Ok(())
    }
}
