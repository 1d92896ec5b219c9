//! The pace of provider requests to a remote embedder (requests, or tokens, per minute), on
//! its own so that its timing can be checked alone, under tokio's paused clock.

use std::time::Duration;

/// Spaces provider requests evenly: one unit every `60 s / per_minute`, in request order. A
/// request of `n` units (tokens) holds back the next one by `n` intervals.
pub(crate) struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub(crate) fn new(per_minute: u32) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(60.0 / f64::from(per_minute.max(1))),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub(crate) async fn wait(&self) {
        self.wait_n(1).await;
    }

    /// Waits for a request of `units` (at least 1).
    pub(crate) async fn wait_n(&self, units: u32) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval * units.max(1);
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

    #[tokio::test(start_paused = true)]
    async fn a_large_request_holds_back_the_next() {
        let p = Pacer::new(60_000); // one token a millisecond
        let start = tokio::time::Instant::now();
        p.wait_n(500).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        p.wait_n(1).await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
