//! Unix signals, turned into lifecycle commands for the supervisor.

use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGTSTP};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGTERM or SIGINT: drain, then exit. A second one is a hard stop.
    Stop,
    /// SIGHUP: reread the configuration.
    Reload,
    /// SIGTSTP: drain and stay up (Sidekiq's TSTP).
    Quiet,
}

/// Registers the handlers and forwards each signal as a command until the receiver is gone.
pub fn forward(tx: mpsc::UnboundedSender<Command>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGTSTP])?;
    tokio::spawn(async move {
        while let Some(sig) = signals.next().await {
            let cmd = match sig {
                SIGTERM | SIGINT => Command::Stop,
                SIGHUP => Command::Reload,
                SIGTSTP => Command::Quiet,
                _ => continue,
            };
            if tx.send(cmd).is_err() {
                return;
            }
        }
    });
    Ok(())
}
