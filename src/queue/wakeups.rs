//! What wakes a claimer (a NOTIFY, a job enqueued here, a resumed queue) and which queues are
//! paused. The paused set is read from `queues` (`Queue::refresh_paused`) and kept
//! current by NOTIFY, with the depth loop as the fallback for a missed one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Wakeups {
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    paused: Mutex<BTreeSet<String>>,
}

impl Wakeups {
    fn wakers(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.wakers.lock().expect("wakers lock")
    }

    fn paused(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.paused.lock().expect("paused lock")
    }

    /// What the claimer of `queue` waits on.
    pub(super) fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers().entry(queue.to_string()).or_default().clone()
    }

    /// Wakes the claimer of `queue` (a NOTIFY arrived, or work was enqueued here).
    pub fn wake(&self, queue: &str) {
        if let Some(n) = self.wakers().get(queue) {
            n.notify_one();
        }
    }

    pub fn wake_all(&self) {
        for n in self.wakers().values() {
            n.notify_one();
        }
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.paused().contains(queue)
    }

    pub fn set_paused(&self, queue: &str, paused: bool) {
        if paused {
            self.paused().insert(queue.to_string());
        } else {
            self.paused().remove(queue);
            self.wake(queue);
        }
    }

    /// Replaces the paused set with what the table says, and wakes the queues that resumed.
    pub(super) fn replace_paused(&self, now: BTreeSet<String>) {
        let was = std::mem::replace(&mut *self.paused(), now.clone());
        for q in was.difference(&now) {
            self.wake(q);
        }
    }
}
