//! The state machine STARTING → READY → DRAINING → QUIESCED, published on a watch channel.
//!
//! Every loop holds a `watch::Receiver<Snapshot>` and decides for itself what the state means
//! to it (the claimers stop claiming in DRAINING, cron stops ticking). The move from DRAINING
//! to QUIESCED is made here, by `settle`, when the in-flight count reaches zero.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Starting,
    Ready,
    Draining,
    Quiesced,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Starting,
        State::Ready,
        State::Draining,
        State::Quiesced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "STARTING",
            State::Ready => "READY",
            State::Draining => "DRAINING",
            State::Quiesced => "QUIESCED",
        }
    }
}

/// Why the daemon is draining: a stop never resumes, the others may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrainOrigin {
    /// SIGTERM or SIGINT: drain, then exit.
    Stop,
    /// SIGTSTP: drain and stay up.
    Quiet,
    /// The control port or the CLI: drain and stay up until `resume` or a stop.
    Api,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainInfo {
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub origin: DrainOrigin,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub state: State,
    pub since: DateTime<Utc>,
    pub drain: Option<DrainInfo>,
    /// Jobs this process holds a lease on, running or prefetched.
    pub in_flight: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResumeError {
    #[error("the daemon is stopping; a stop cannot be resumed")]
    Stopping,
    #[error("the daemon is still starting")]
    Starting,
}

/// The one owner of the lifecycle state. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    tx: Arc<watch::Sender<Snapshot>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Snapshot {
            state: State::Starting,
            since: Utc::now(),
            drain: None,
            in_flight: 0,
        });
        Self { tx: Arc::new(tx) }
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.tx.borrow().state
    }

    /// STARTING → READY. Ignored in any other state (a stop during start-up wins).
    pub fn ready(&self) -> bool {
        self.transition(|s| {
            if s.state != State::Starting {
                return None;
            }
            Some((State::Ready, None))
        })
    }

    /// Begins a drain. Idempotent: a second drain keeps the first one's reason, except that a
    /// stop always takes over (so a later `resume` cannot undo it).
    pub fn drain(&self, reason: Option<String>, origin: DrainOrigin) {
        let info = DrainInfo {
            reason,
            requested_at: Utc::now(),
            origin,
        };
        self.tx.send_if_modified(|s| match s.state {
            State::Draining | State::Quiesced => {
                let upgrade = origin == DrainOrigin::Stop
                    && s.drain.as_ref().map(|d| d.origin) != Some(DrainOrigin::Stop);
                if upgrade {
                    s.drain = Some(info.clone());
                }
                upgrade
            }
            State::Starting | State::Ready => {
                // A drain always passes through DRAINING, so that every loop sees it;
                // settle() below moves on to QUIESCED when nothing is in flight.
                s.state = State::Draining;
                s.since = Utc::now();
                s.drain = Some(info.clone());
                log_transition(State::Draining, s);
                true
            }
        });
        self.settle();
    }

    /// DRAINING or QUIESCED → READY, unless the drain is a stop.
    pub fn resume(&self) -> Result<State, ResumeError> {
        let mut outcome = Ok(State::Ready);
        self.tx.send_if_modified(|s| match s.state {
            State::Starting => {
                outcome = Err(ResumeError::Starting);
                false
            }
            State::Ready => false,
            State::Draining | State::Quiesced => {
                if s.drain.as_ref().map(|d| d.origin) == Some(DrainOrigin::Stop) {
                    outcome = Err(ResumeError::Stopping);
                    return false;
                }
                s.state = State::Ready;
                s.since = Utc::now();
                s.drain = None;
                log_transition(State::Ready, s);
                true
            }
        });
        outcome
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self.tx.borrow().drain.as_ref(), Some(d) if d.origin == DrainOrigin::Stop)
    }

    /// Takes `n` units of in-flight work; they count until the returned guard is dropped.
    pub fn track(&self, n: usize) -> InFlight {
        self.tx.send_modify(|s| s.in_flight += n);
        InFlight {
            lifecycle: self.clone(),
            n,
        }
    }

    /// Waits until the state is QUIESCED (or READY again, after a resume). Returns the state.
    pub async fn quiesced(&self) -> State {
        let mut rx = self.subscribe();
        let snap = rx
            .wait_for(|s| matches!(s.state, State::Quiesced | State::Ready))
            .await
            .map(|s| s.state);
        snap.unwrap_or(State::Quiesced)
    }

    fn release(&self, n: usize) {
        self.tx
            .send_modify(|s| s.in_flight = s.in_flight.saturating_sub(n));
        self.settle();
    }

    /// DRAINING with nothing in flight becomes QUIESCED.
    fn settle(&self) {
        self.tx.send_if_modified(|s| {
            if s.state == State::Draining && s.in_flight == 0 {
                s.state = State::Quiesced;
                s.since = Utc::now();
                log_transition(State::Quiesced, s);
                return true;
            }
            false
        });
    }

    fn transition(
        &self,
        decide: impl FnOnce(&Snapshot) -> Option<(State, Option<DrainInfo>)>,
    ) -> bool {
        let mut decide = Some(decide);
        self.tx.send_if_modified(|s| {
            let Some((next, drain)) = (decide.take().expect("called once"))(s) else {
                return false;
            };
            s.state = next;
            s.since = Utc::now();
            s.drain = drain;
            log_transition(next, s);
            true
        })
    }
}

fn log_transition(to: State, s: &Snapshot) {
    let reason = s
        .drain
        .as_ref()
        .and_then(|d| d.reason.as_deref())
        .unwrap_or("");
    tracing::info!(
        state = to.as_str(),
        in_flight = s.in_flight,
        reason,
        "lifecycle transition"
    );
}

/// Units of work this process holds. Dropping it gives them back.
pub struct InFlight {
    lifecycle: Lifecycle,
    n: usize,
}

impl InFlight {
    /// Splits one unit off into its own guard, so a batch can be released job by job.
    pub fn split_one(&mut self) -> Option<InFlight> {
        if self.n == 0 {
            return None;
        }
        self.n -= 1;
        Some(InFlight {
            lifecycle: self.lifecycle.clone(),
            n: 1,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.n > 0 {
            self.lifecycle.release(self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_drain_quiesces_at_once_and_api_drain_resumes() {
        let lc = Lifecycle::new();
        assert!(lc.ready());
        lc.drain(Some("deploy".into()), DrainOrigin::Api);
        assert_eq!(lc.state(), State::Quiesced);
        assert_eq!(lc.resume(), Ok(State::Ready));
        assert_eq!(lc.state(), State::Ready);
    }

    #[test]
    fn drain_waits_for_in_flight_work() {
        let lc = Lifecycle::new();
        lc.ready();
        let mut batch = lc.track(2);
        lc.drain(None, DrainOrigin::Api);
        assert_eq!(lc.state(), State::Draining);
        let one = batch.split_one().unwrap();
        drop(one);
        assert_eq!(lc.state(), State::Draining);
        drop(batch);
        assert_eq!(lc.state(), State::Quiesced);
    }

    #[test]
    fn a_stop_cannot_be_resumed_and_overrides_an_api_drain() {
        let lc = Lifecycle::new();
        lc.ready();
        lc.drain(Some("first".into()), DrainOrigin::Api);
        lc.drain(None, DrainOrigin::Stop);
        assert!(lc.is_stopping());
        assert_eq!(lc.resume(), Err(ResumeError::Stopping));
    }

    #[test]
    fn resume_while_starting_is_refused() {
        let lc = Lifecycle::new();
        assert_eq!(lc.resume(), Err(ResumeError::Starting));
    }
}
