//! Liveness of the daemon's loops. Each loop beats at least once per its own period; a loop
//! that misses several periods is stalled, which fails `/healthz` and withholds the watchdog.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Health {
    loops: Arc<Mutex<HashMap<String, Beat>>>,
}

#[derive(Clone, Copy)]
struct Beat {
    last: Instant,
    allowed: Duration,
}

impl Health {
    /// Registers a loop that promises to beat at least every `period`.
    pub fn register(&self, name: impl Into<String>, period: Duration) -> LoopBeat {
        let name = name.into();
        // Three missed periods, and never less than 5 s, before a loop counts as stalled.
        let allowed = (period * 3).max(Duration::from_secs(5));
        self.loops.lock().expect("health lock").insert(
            name.clone(),
            Beat {
                last: Instant::now(),
                allowed,
            },
        );
        LoopBeat {
            health: self.clone(),
            name,
        }
    }

    /// The name of the first stalled loop, if any.
    pub fn stalled(&self) -> Option<String> {
        let now = Instant::now();
        let loops = self.loops.lock().expect("health lock");
        loops
            .iter()
            .find(|(_, b)| now.duration_since(b.last) > b.allowed)
            .map(|(n, _)| n.clone())
    }
}

/// A loop's handle for beating; dropping it unregisters the loop (it ended on purpose).
pub struct LoopBeat {
    health: Health,
    name: String,
}

impl LoopBeat {
    pub fn beat(&self) {
        if let Some(b) = self
            .health
            .loops
            .lock()
            .expect("health lock")
            .get_mut(&self.name)
        {
            b.last = Instant::now();
        }
    }
}

impl Drop for LoopBeat {
    fn drop(&mut self) {
        self.health
            .loops
            .lock()
            .expect("health lock")
            .remove(&self.name);
    }
}
