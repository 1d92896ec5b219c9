//! Retry backoff: `min(base * 2^(attempt-1), cap) ± 10 %`, persisted in `run_at`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay before the retry that follows `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 63) - 1;
        let raw = self.base.as_secs_f64() * 2f64.powi(exp);
        jittered(Duration::from_secs_f64(raw.min(self.cap.as_secs_f64())))
    }
}

/// `d` ± 10 %, so jobs that stopped together do not come back together.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let b = Backoff::default();
        for (attempt, expect) in [(1, 1.0), (2, 2.0), (5, 16.0), (13, 3600.0), (40, 3600.0)] {
            let d = b.delay(attempt).as_secs_f64();
            assert!(
                d >= expect * 0.9 - 1e-9 && d <= expect * 1.1 + 1e-9,
                "attempt {attempt}: {d}"
            );
        }
    }
}
