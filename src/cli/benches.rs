//! `memwarden bench ...`: the benchmarks (`crate::bench`), logging only warnings so that their
//! figures stand out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::{BenchCommand, Cli};

pub async fn run(cli: &Cli, cmd: &BenchCommand) -> Result<ExitCode> {
    memwarden::telemetry::init_logging(cli.log_format, "warn");
    match cmd {
        BenchCommand::Queue {
            jobs,
            concurrency,
            samples,
            database_url,
        } => crate::bench::queue(database_url, *jobs, *concurrency, *samples as usize).await?,
        BenchCommand::Enrich {
            memories,
            owners,
            concurrency,
            database_url,
        } => crate::bench::enrich(database_url, *memories, *owners, *concurrency).await?,
        BenchCommand::Evict {
            conversations,
            batch_size,
            pause_ms,
            max_transaction_ms,
            window_ms,
            database_url,
        } => {
            let settings = memwarden_jobs::eviction::EvictionSettings {
                batch_size: *batch_size,
                pause: Duration::from_millis(*pause_ms),
                max_transaction: Duration::from_millis(*max_transaction_ms),
                blobs_dir: std::env::temp_dir(),
            };
            let window = Duration::from_millis(*window_ms);
            crate::bench::evict(database_url, *conversations, settings, window).await?
        }
        BenchCommand::Reembed {
            memories,
            batch_size,
            database_url,
        } => crate::bench::reembed(database_url, *memories, *batch_size).await?,
        BenchCommand::Sync {
            memories,
            drift,
            database_url,
        } => crate::bench::sync(database_url, *memories, *drift).await?,
    }
    Ok(ExitCode::SUCCESS)
}
