//! The command line (clap): argument parsing and dispatch, no logic beyond wiring.

mod client;
mod commands;
mod daemon;
mod follow;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use memwarden::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "memwarden",
    version,
    about = "Background work of an AI memory store, on a durable Postgres queue"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "MEMWARDEN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format: text on a terminal and JSON otherwise, unless set.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run(RunArgs),
    /// Zero-setup start: a throwaway PostgreSQL when none is configured, fresh tokens, and
    /// the daemon in the foreground. Ctrl-C drains and cleans up.
    Dev,
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask a running daemon to drain (stop claiming, finish in-flight jobs).
    Drain {
        #[arg(long)]
        reason: Option<String>,
        /// Seconds to wait for QUIESCED with --wait (default 900).
        #[arg(long)]
        timeout: Option<u64>,
        /// Wait until the daemon is QUIESCED (or the timeout passes).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Bring a drained daemon back to READY.
    Resume {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the daemon's state and queue depths.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enqueue a job.
    Enqueue(EnqueueArgs),
    /// Inspect and act on jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The admin audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Re-enrich memories by id, following the jobs to their end.
    Reprocess {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Evict soft-deleted rows older than a retention period, following its progress.
    Evict {
        /// ISO 8601 duration, e.g. P90D, P1Y, PT24H.
        #[arg(long)]
        retention: String,
        /// conversations, attachments, memories (comma-separated; default conversations).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        /// Print the job id and return at once.
        #[arg(long)]
        no_wait: bool,
        #[arg(long)]
        justification: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-embed memories (only missing or stale ones unless --force), following its progress.
    Reembed {
        /// Texts per provider request, 1 to 2048.
        #[arg(long, default_value_t = 32)]
        batch_size: u32,
        /// At most this many memories.
        #[arg(long)]
        limit: Option<u64>,
        /// Also re-embed memories whose embedding is fresh.
        #[arg(long)]
        force: bool,
        /// Print the job id and return at once.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Find drift between memories and their embeddings and repair it, following its progress.
    Sync {
        /// Count drift (with sample ids) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Texts per provider request when repairing, 1 to 2048.
        #[arg(long, default_value_t = 32)]
        batch_size: u32,
        /// Print the job id and return at once.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub control_addr: Option<String>,
    /// Require a justification on every admin, auditor and indexer call.
    #[arg(long)]
    pub admin_require_justification: bool,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, with secrets masked.
    Check,
}

#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The control port (default: control.addr from the config).
    #[arg(long)]
    pub addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    pub kind: String,
    /// The job's args, a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i16>,
    /// RFC 3339 time to run at.
    #[arg(long, conflicts_with = "delay")]
    pub run_at: Option<String>,
    /// Run after this long, e.g. 30s, 5m.
    #[arg(long)]
    pub delay: Option<String>,
    #[arg(long)]
    pub unique_key: Option<String>,
    #[arg(long)]
    pub max_attempts: Option<i32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job with its attempts and references.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retry a failed or canceled job with a fresh attempt budget.
    Retry {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete terminal jobs older than a cutoff, with their attempts and references.
    Purge {
        /// RFC 3339 cutoff, at least the minimum retention in the past.
        #[arg(long)]
        older_than: String,
        /// Terminal statuses, comma-separated (default: all terminal).
        #[arg(long, value_delimiter = ',')]
        statuses: Vec<String>,
        /// 0 means no limit.
        #[arg(long, allow_hyphen_values = true)]
        limit: Option<i64>,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain of memwarden.audit_log; exit non-zero at the first broken row.
    Verify(DbArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enrichment of N memories over some owners, inserted with plain SQL.
    Enrich {
        #[arg(long, default_value_t = 10_000)]
        memories: i64,
        #[arg(long, default_value_t = 100)]
        owners: i64,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Reembed of N memories with the configured embedder (hash by default), end to end
    /// through the daemon's queue.
    Reembed {
        #[arg(long, default_value_t = 100_000)]
        memories: i64,
        #[arg(long, default_value_t = 32)]
        batch_size: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Sync of N memories: a dry-run scan of drift (DRIFT missing, stale and orphaned), then
    /// the repair.
    Sync {
        #[arg(long, default_value_t = 100_000)]
        memories: i64,
        #[arg(long, default_value_t = 100)]
        drift: i64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Eviction of N soft-deleted conversations (4 entries each) beside a live writer.
    Evict {
        #[arg(long, default_value_t = 500_000)]
        conversations: i64,
        /// Conversations per batch at most. Short batches keep the live writer's p99 lower at
        /// no cost in rate (docs/performance.md, "Eviction").
        #[arg(long, default_value_t = 100)]
        batch_size: i64,
        #[arg(long, default_value_t = 1)]
        pause_ms: u64,
        /// The transaction limit that batches are sized to stay inside (at least 10, as in
        /// `eviction.max_transaction_ms`).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..))]
        max_transaction_ms: u64,
        /// Eviction runs for this long, then stops for as long, and so on: the writer's p99
        /// with and without eviction comes from alternating windows of the same run.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(500..))]
        window_ms: u64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Queue throughput and enqueue-to-start latency, against DATABASE_URL.
    Queue {
        #[arg(long, default_value_t = 20000)]
        jobs: usize,
        #[arg(long, default_value_t = 24)]
        concurrency: u32,
        /// Latency samples (at least 1).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
        samples: u64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

impl Cli {
    /// The settings of `--config` (or `MEMWARDEN_CONFIG`), the environment and `overrides`.
    pub fn settings(
        &self,
        overrides: &memwarden::config::Overrides,
    ) -> anyhow::Result<memwarden::config::Settings> {
        Ok(memwarden::config::Settings::load(
            self.config.as_deref(),
            overrides,
        )?)
    }
}

/// Runs the parsed command; the exit code comes back.
pub fn main(cli: Cli) -> std::process::ExitCode {
    commands::dispatch(cli)
}
