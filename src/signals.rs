//! Unix signals, turned into lifecycle commands for the supervisor.

use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGTSTP};
use signal_hook_tokio::{Handle, Signals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGTERM or SIGINT: drain, then exit. A second one is a hard stop.
    Stop,
    /// SIGHUP: reread the configuration.
    Reload,
    /// SIGTSTP: drain and stay up (Sidekiq's TSTP).
    Quiet,
}

/// The signal handlers of one run, unregistered when it is dropped.
pub struct Forwarding(Handle);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Registers the handlers and hands each signal to `send` as a command, until `send` says
/// no one listens any more or the handlers are closed.
pub fn forward(send: impl Fn(Command) -> bool + Send + 'static) -> std::io::Result<Forwarding> {
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGTSTP])?;
    let handle = signals.handle();
    tokio::spawn(async move {
        let mut signals = signals;
        while let Some(sig) = signals.next().await {
            let cmd = match sig {
                SIGTERM | SIGINT => Command::Stop,
                SIGHUP => Command::Reload,
                SIGTSTP => Command::Quiet,
                _ => continue,
            };
            if !send(cmd) {
                return;
            }
        }
    });
    Ok(Forwarding(handle))
}
