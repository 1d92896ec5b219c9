//! The pace of provider requests to a remote embedder, on its own so that its timing can be
//! checked alone, under tokio's paused clock.

use std::time::Duration;

/// Spaces provider requests evenly: one every `60 s / requests_per_minute`, in request order.
pub(super) struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub(super) fn new(requests_per_minute: u32) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(60.0 / f64::from(requests_per_minute.max(1))),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub(super) async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests_evenly() {
        let p = Pacer::new(600); // one per 100 ms
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            p.wait().await;
        }
        // The first goes at once, the next four 100 ms apart.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}
