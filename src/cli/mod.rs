//! The command line (clap): what each command takes, and which module runs it. Commands that
//! run the daemon are in `daemon`, the ones that talk to a running daemon in `remote` (with
//! their tables in `output`), the ones that need only the database in `local`, and the
//! benchmarks in `benches`.

mod benches;
mod client;
mod daemon;
mod follow;
mod local;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use memwarden::config::{Overrides, Settings};
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
    Drain(DrainArgs),
    /// Bring a drained daemon back to READY.
    Resume(ClientArgs),
    /// Show the daemon's state and queue depths.
    Status(StatusArgs),
    /// Enqueue a job.
    Enqueue(EnqueueArgs),
    /// Inspect and act on jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The memories of the store, and where their enrichment stands.
    #[command(subcommand)]
    Memories(MemoriesCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(benches::BenchCommand),
    /// The admin audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Re-enrich memories by id (see `memories list`), following the jobs to their end.
    Reprocess(ReprocessArgs),
    /// Evict soft-deleted rows older than a retention period, following its progress.
    Evict(EvictArgs),
    /// Re-embed memories (only missing or stale ones unless --force), following its progress.
    Reembed(ReembedArgs),
    /// Find drift between memories and their embeddings and repair it, following its progress.
    Sync(SyncArgs),
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
    /// Validate the configuration and print it, with secrets masked and every schedule that
    /// will run, defaults included.
    Check,
}

#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The control port (default: control.addr from the config).
    #[arg(long)]
    pub addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[arg(long)]
    pub reason: Option<String>,
    /// Seconds to wait for QUIESCED with --wait (default 900).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Wait until the daemon is QUIESCED (or the timeout passes).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    pub kind: String,
    /// The job's args, a JSON object; checked against the kind before anything is enqueued.
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

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// Memory ids, as `memories list` shows them.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Print the job ids and return at once.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct EvictArgs {
    /// ISO 8601 duration, e.g. P90D, P1Y, PT24H.
    #[arg(long)]
    pub retention: String,
    /// conversations, attachments, memories (comma-separated; default conversations).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    #[arg(long)]
    pub dry_run: bool,
    /// Print the job id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    #[arg(long)]
    pub justification: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ReembedArgs {
    /// Texts per provider request, 1 to 2048.
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    /// At most this many memories.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Also re-embed memories whose embedding is fresh.
    #[arg(long)]
    pub force: bool,
    /// Print the job id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Count drift (with sample ids) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Texts per provider request when repairing, 1 to 2048.
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    /// Print the job id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct JobsListArgs {
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// RFC 3339 cutoff, at least the minimum retention in the past.
    #[arg(long)]
    pub older_than: String,
    /// Terminal statuses, comma-separated (default: all terminal).
    #[arg(long, value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// 0 means no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub limit: Option<i64>,
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(JobsListArgs),
    /// Show a job with its attempts and references.
    Show(JobArgs),
    /// Cancel a job.
    Cancel(JobArgs),
    /// Retry a failed or canceled job with a fresh attempt budget.
    Retry(JobArgs),
    /// Delete terminal jobs older than a cutoff, with their attempts and references.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct MemoriesListArgs {
    /// Only this owner's memories.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only memories of this type (Decision, Preference, ...).
    #[arg(long = "type")]
    pub memory_type: Option<String>,
    /// enriched, pending, stale or deleted (soft-deleted ones are listed only with this).
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum MemoriesCommand {
    /// List memories, newest first, with their enrichment state.
    List(MemoriesListArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain of audit_log; exit non-zero at the first broken row.
    Verify(DbArgs),
}

impl Cli {
    /// The settings of `--config` (or `MEMWARDEN_CONFIG`), the environment and `overrides`.
    pub fn settings(&self, overrides: &Overrides) -> anyhow::Result<Settings> {
        Ok(Settings::load(self.config.as_deref(), overrides)?)
    }
}

/// Runs the parsed command; the exit code comes back.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&cli));
    // Don't wait for stray blocking tasks on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => daemon::run(cli, args).await,
        Command::Dev => daemon::dev(cli).await,
        Command::Migrate(args) => local::migrate(cli, args).await,
        Command::Config(ConfigCommand::Check) => Ok(local::config_check(cli)),
        Command::Audit(AuditCommand::Verify(args)) => local::audit_verify(cli, args).await,
        Command::Drain(args) => remote::drain(cli, args).await,
        Command::Resume(client) => remote::resume(cli, client).await,
        Command::Status(args) => remote::status(cli, args).await,
        Command::Enqueue(args) => remote::enqueue(cli, args).await,
        Command::Jobs(cmd) => remote::jobs(cli, cmd).await,
        Command::Memories(MemoriesCommand::List(args)) => remote::memories(cli, args).await,
        Command::Reprocess(args) => remote::reprocess(cli, args).await,
        Command::Evict(args) => remote::evict(cli, args).await,
        Command::Reembed(args) => remote::reembed(cli, args).await,
        Command::Sync(args) => remote::sync(cli, args).await,
        Command::Bench(cmd) => benches::run(cli, cmd).await,
    }
}
