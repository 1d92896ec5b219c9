//! What each command does: build the runtime, load settings, call the daemon or the database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Client;
use super::{
    AuditCommand, BenchCommand, Cli, ClientArgs, Command, ConfigCommand, EnqueueArgs, JobsCommand,
};
use memwarden::config::{Overrides, Settings};

pub fn dispatch(cli: Cli) -> ExitCode {
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
    let result = runtime.block_on(run_command(cli));
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

fn load(cli: &Cli, overrides: &Overrides) -> Result<Settings> {
    cli.settings(overrides)
}

/// Settings for client commands: a broken or absent config still lets them reach the default.
fn client_for(cli: &Cli, args: &ClientArgs, timeout: Duration) -> Result<Client> {
    let addr = match &args.addr {
        Some(a) => a.clone(),
        None => load(cli, &Overrides::default())
            .map(|s| s.control.addr.to_string())
            .unwrap_or_else(|_| memwarden::config::DEFAULT_CONTROL_ADDR.into()),
    };
    Client::new(&addr, timeout)
}

async fn run_command(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => super::daemon::run(&cli, args).await,
        Command::Dev => super::daemon::dev(cli.config.clone(), cli.log_format).await,
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(&cli, args).await,
        Command::Reprocess {
            ids,
            no_wait,
            client,
        } => {
            let c = client_for(&cli, client, Duration::from_secs(30))?;
            let (_, v) = c
                .call(
                    Method::POST,
                    "/v1/work/reprocess",
                    Some(json!({"ids": ids})),
                )
                .await?;
            let jobs: Vec<String> = v["job_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|j| j.as_str().map(String::from))
                .collect();
            if *no_wait {
                jobs.iter().for_each(|j| println!("{j}"));
                return Ok(ExitCode::SUCCESS);
            }
            let mut code = ExitCode::SUCCESS;
            for (i, job) in jobs.iter().enumerate() {
                let what = format!("reprocess {}/{}", i + 1, jobs.len());
                if super::follow::follow(&c, job, &what).await? != ExitCode::SUCCESS {
                    code = ExitCode::from(1);
                }
            }
            Ok(code)
        }
        Command::Evict {
            retention,
            types,
            dry_run,
            no_wait,
            justification,
            client,
        } => {
            let body = json!({"retention_period": retention, "resource_types": types, "dry_run": dry_run, "justification": justification});
            start_work(&cli, client, "/v1/work/evict", body, *no_wait, "evict").await
        }
        Command::Reembed {
            batch_size,
            limit,
            force,
            no_wait,
            client,
        } => {
            let body = json!({"batch_size": batch_size, "limit": limit, "force": force});
            start_work(&cli, client, "/v1/work/reembed", body, *no_wait, "reembed").await
        }
        Command::Sync {
            dry_run,
            batch_size,
            no_wait,
            client,
        } => {
            let body = json!({"batch_size": batch_size, "dry_run": dry_run});
            start_work(&cli, client, "/v1/work/sync", body, *no_wait, "sync").await
        }
        Command::Migrate(args) => {
            let (settings, pool) = connect(&cli, args.database_url.clone()).await?;
            memwarden::telemetry::init_logging(cli.log_format, &settings.log.level);
            memwarden::db::migrate(&pool)
                .await
                .context("running migrations")?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => match load(&cli, &Overrides::default()) {
            Ok(settings) => {
                print!("{}", settings.masked_toml());
                eprintln!("config ok");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("config error: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Drain {
            reason,
            timeout,
            wait,
            client,
        } => {
            let wait_s = timeout.unwrap_or(900);
            let c = client_for(&cli, client, Duration::from_secs(wait_s + 10))?;
            let (_, v) = c
                .call(
                    Method::POST,
                    "/v1/admin/drain",
                    Some(
                        json!({"reason": reason, "timeout_sec": wait_s, "wait_for_quiesce": wait}),
                    ),
                )
                .await?;
            println!(
                "{} (quiesced: {}): {}",
                v["state"].as_str().unwrap_or("?"),
                v["quiesced"],
                v["message"].as_str().unwrap_or("")
            );
            if *wait && v["quiesced"] != json!(true) {
                eprintln!("the daemon did not quiesce within {wait_s} s");
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { client } => {
            let c = client_for(&cli, client, Duration::from_secs(10))?;
            let (_, v) = c.call(Method::POST, "/v1/admin/resume", None).await?;
            println!("{}", v["state"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            json: as_json,
            client,
        } => {
            let c = client_for(&cli, client, Duration::from_secs(10))?;
            let (_, v) = c.call(Method::GET, "/v1/status", None).await?;
            if *as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue(args) => enqueue(&cli, args).await,
        Command::Jobs(cmd) => jobs(&cli, cmd).await,
        Command::Bench(cmd) => bench(&cli, cmd).await,
    }
}

/// Enqueues a kind of work through the control port, then follows it to its end (or prints
/// its job id at once with `no_wait`).
async fn start_work(
    cli: &Cli,
    client: &ClientArgs,
    path: &str,
    body: serde_json::Value,
    no_wait: bool,
    what: &str,
) -> Result<ExitCode> {
    let c = client_for(cli, client, Duration::from_secs(30))?;
    let (_, v) = c.call(Method::POST, path, Some(body)).await?;
    let id = v["job_id"].as_str().unwrap_or_default().to_string();
    if no_wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    super::follow::follow(&c, &id, what).await
}

fn print_status(v: &Value) {
    println!(
        "state: {} (since {})  in flight: {}  version: {}",
        v["state"].as_str().unwrap_or("?"),
        v["since"].as_str().unwrap_or("?"),
        v["in_flight"],
        v["version"].as_str().unwrap_or("?")
    );
    if let Some(d) = v["drain"].as_object() {
        println!(
            "drain: {} ({})",
            d.get("reason").and_then(Value::as_str).unwrap_or("-"),
            d.get("origin").and_then(Value::as_str).unwrap_or("?")
        );
    }
    println!(
        "{:<20} {:>9} {:>9} {:>7} {:>9} {:>7} {:>10} {:>6} {:>4}",
        "queue",
        "available",
        "scheduled",
        "running",
        "retryable",
        "failed",
        "oldest_s",
        "paused",
        "conc"
    );
    for q in v["queues"].as_array().into_iter().flatten() {
        println!(
            "{:<20} {:>9} {:>9} {:>7} {:>9} {:>7} {:>10.1} {:>6} {:>4}",
            q["name"].as_str().unwrap_or("?"),
            q["available"],
            q["scheduled"],
            q["running"],
            q["retryable"],
            q["failed"],
            q["oldest_available_age_s"].as_f64().unwrap_or(0.0),
            q["paused"],
            q["concurrency"]
        );
    }
}

async fn enqueue(cli: &Cli, a: &EnqueueArgs) -> Result<ExitCode> {
    let args: Value = serde_json::from_str(&a.args).context("--args is not valid JSON")?;
    if !args.is_object() {
        bail!("--args must be a JSON object");
    }
    let run_at = match (&a.run_at, &a.delay) {
        (Some(t), _) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--run-at `{t}` is not an RFC 3339 time"))?
                .with_timezone(&chrono::Utc),
        ),
        (None, Some(d)) => {
            let d = humantime::parse_duration(d)
                .with_context(|| format!("--delay `{d}` is not a duration like 30s or 5m"))?;
            Some(
                chrono::Utc::now()
                    + chrono::Duration::from_std(d).context("--delay is too long")?,
            )
        }
        (None, None) => None,
    };
    let c = client_for(cli, &a.client, Duration::from_secs(30))?;
    let (status, v) = c
        .call(
            Method::POST,
            "/v1/jobs",
            Some(json!({
                "kind": a.kind, "args": args, "queue": a.queue, "priority": a.priority,
                "run_at": run_at, "unique_key": a.unique_key, "max_attempts": a.max_attempts,
            })),
        )
        .await?;
    let note = if status.as_u16() == 200 {
        " (existing job with that unique key)"
    } else {
        ""
    };
    println!("{}{note}", v["id"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

async fn jobs(cli: &Cli, cmd: &JobsCommand) -> Result<ExitCode> {
    match cmd {
        JobsCommand::List {
            queue,
            kind,
            status,
            limit,
            cursor,
            json: as_json,
            client,
        } => {
            let mut params: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("queue", queue),
                ("kind", kind),
                ("status", status),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    params.push((k, v.clone()));
                }
            }
            if let Some(l) = limit {
                params.push(("limit", l.to_string()));
            }
            let query = serde_urlencoded::to_string(&params)?;
            let c = client_for(cli, client, Duration::from_secs(30))?;
            let (_, v) = c
                .call(Method::GET, &format!("/v1/jobs?{query}"), None)
                .await?;
            if *as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36}  {:<14} {:<10} {:<10} {:>7}  last_error",
                "id", "kind", "queue", "status", "attempt"
            );
            for j in v["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<14} {:<10} {:<10} {:>3}/{:<3}  {}",
                    j["id"].as_str().unwrap_or("?"),
                    j["kind"].as_str().unwrap_or("?"),
                    j["queue"].as_str().unwrap_or("?"),
                    j["status"].as_str().unwrap_or("?"),
                    j["attempt"],
                    j["max_attempts"],
                    j["last_error"].as_str().unwrap_or("")
                );
            }
            if let Some(next) = v["next_cursor"].as_str() {
                println!("more: --cursor {next}");
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id, client } => {
            let c = client_for(cli, client, Duration::from_secs(30))?;
            let (_, v) = c.call(Method::GET, &format!("/v1/jobs/{id}"), None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { id, client } | JobsCommand::Retry { id, client } => {
            let verb = if matches!(cmd, JobsCommand::Cancel { .. }) {
                "cancel"
            } else {
                "retry"
            };
            let c = client_for(cli, client, Duration::from_secs(30))?;
            let (_, v) = c
                .call(Method::POST, &format!("/v1/jobs/{id}/{verb}"), None)
                .await?;
            println!(
                "{}: {}",
                v["status"].as_str().unwrap_or("?"),
                v["message"].as_str().unwrap_or("")
            );
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Purge {
            older_than,
            statuses,
            limit,
            dry_run,
            client,
        } => {
            let c = client_for(cli, client, Duration::from_secs(3600))?;
            let (_, v) = c
                .call(
                    Method::POST,
                    "/v1/jobs/purge",
                    Some(json!({"older_than": older_than, "statuses": statuses, "limit": limit, "dry_run": dry_run})),
                )
                .await?;
            println!(
                "{}jobs: {}  attempts: {}  references: {}",
                if *dry_run {
                    "would purge (dry run) "
                } else {
                    "purged "
                },
                v["jobs_purged"],
                v["attempts_purged"],
                v["references_purged"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn audit_verify(cli: &Cli, args: &super::DbArgs) -> Result<ExitCode> {
    let (_, pool) = connect(cli, args.database_url.clone()).await?;
    match memwarden::audit::verify(&pool)
        .await
        .context("reading memwarden.audit_log")?
    {
        Ok(n) => {
            println!("audit log ok: {n} rows, chain intact");
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            eprintln!("audit log broken at row {}: {}", b.id, b.reason);
            Ok(ExitCode::from(1))
        }
    }
}

/// Benchmarks log only warnings, so their figures stand out.
async fn bench(cli: &Cli, cmd: &BenchCommand) -> Result<ExitCode> {
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
            crate::bench::evict(
                database_url,
                *conversations,
                settings,
                Duration::from_millis(*window_ms),
            )
            .await?
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

/// The database of commands that need only it (migrate, audit verify).
async fn connect(cli: &Cli, database_url: Option<String>) -> Result<(Settings, sqlx::PgPool)> {
    let overrides = Overrides {
        database_url,
        ..Default::default()
    };
    let settings = load(cli, &overrides)?;
    let url = settings
        .database_url()
        .context("no database configured: set DATABASE_URL or --database-url")?;
    let pool = memwarden::db::pool_options(&settings)
        .connect(url)
        .await
        .context("connecting to the database")?;
    Ok((settings, pool))
}
