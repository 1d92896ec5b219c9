//! sd_notify: READY, STOPPING, STATUS, EXTEND_TIMEOUT_USEC and WATCHDOG, sent only when
//! systemd asked for them (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::lifecycle::{Lifecycle, Snapshot, State};

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn status_line(s: &Snapshot) -> String {
    format!("{} in_flight={}", s.state.as_str(), s.in_flight)
}

/// Follows the lifecycle and tells systemd about each change. Returns when `stop` fires.
pub async fn notify_lifecycle(lifecycle: Lifecycle, stop: CancellationToken) {
    let mut rx = lifecycle.subscribe();
    let mut last: Option<(State, usize)> = None;
    loop {
        let snap = rx.borrow_and_update().clone();
        if last.map(|(s, _)| s) != Some(snap.state) {
            match snap.state {
                State::Ready => {
                    send(&[NotifyState::Ready, NotifyState::Status(&status_line(&snap))])
                }
                _ => send(&[NotifyState::Status(&status_line(&snap))]),
            }
        } else if last.map(|(_, n)| n) != Some(snap.in_flight) {
            send(&[NotifyState::Status(&status_line(&snap))]);
        }
        last = Some((snap.state, snap.in_flight));
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Tells systemd that a stop has begun, and asks for the grace period plus a margin, so a
/// `TimeoutStopSec` shorter than a long drain does not kill it while it is within its bound.
pub fn stopping(grace: Duration) {
    let usec = (grace + Duration::from_secs(5))
        .as_micros()
        .min(u32::MAX as u128) as u32;
    send(&[NotifyState::Stopping, NotifyState::ExtendTimeoutUsec(usec)]);
}

/// `WATCHDOG_USEC`, when it is meant for this process: systemd also sets `WATCHDOG_PID`, and a
/// PID that is not ours means the variable was inherited from a parent.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings `WATCHDOG=1` at half of `WATCHDOG_USEC`, and only while every loop is healthy, so a
/// stalled loop lets systemd restart us.
pub async fn watchdog(health: Health, stop: CancellationToken) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = interval / 2;
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = stop.cancelled() => return,
        }
        match health.stalled() {
            None => send(&[NotifyState::Watchdog]),
            Some(name) => {
                tracing::error!(loop_name = %name, "loop stalled; withholding the systemd watchdog ping")
            }
        }
    }
}
