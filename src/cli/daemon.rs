//! The commands that run the daemon: `memwarden run`, and `memwarden dev`, the zero-setup
//! start. Without a configured database `dev` starts a private throwaway PostgreSQL, runs the
//! daemon in the foreground with fresh tokens, and prints what to try. Ctrl-C drains, stops,
//! and removes the throwaway database.

use std::process::ExitCode;

use anyhow::{Context, Result};
use rand::distributions::{Alphanumeric, DistString};

use memwarden::config::{Overrides, Settings};
use memwarden::daemon::Exit;
use memwarden::devdb::ThrowawayPostgres;
use memwarden::startup::{Application, Build, Kinds};
use memwarden::telemetry::LogFormat;

use super::{Cli, RunArgs};

fn token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

pub async fn dev(config: Option<std::path::PathBuf>, log_format: LogFormat) -> Result<ExitCode> {
    let overrides = Overrides::default();
    let mut settings = Settings::load(config.as_deref(), &overrides)?;
    let throwaway = match settings.database.url {
        Some(_) => None,
        None => {
            eprintln!("no database configured: starting a throwaway PostgreSQL ...");
            let pg = ThrowawayPostgres::start(false)
                .context("starting a throwaway PostgreSQL (initdb/pg_ctl)")?;
            memwarden::db::fresh_database(&pg.url("postgres"), "memwarden").await?;
            settings.database.url = Some(pg.url("memwarden"));
            Some(pg)
        }
    };
    let demo = load_demo_memories(settings.database_url().unwrap_or_default()).await?;
    let api = settings.auth.api_token.get_or_insert_with(token).clone();
    let admin = settings.auth.admin_token.get_or_insert_with(token).clone();

    let log = memwarden::telemetry::init_logging(log_format, &settings.log.level);
    let addr = settings.control.addr;
    let url = settings
        .database_url()
        .map(memwarden::config::mask_url_password)
        .unwrap_or_default();
    eprintln!(
        "\nmemwarden dev\n  control port   http://{addr}\n  database       {url}{}\n  API token      {api}\n  admin token    {admin}\n\n\
         {demo} demo memories are in the database; their enrichment jobs were enqueued by the insert trigger.\n\n\
         try:\n  curl -s http://{addr}/readyz\n  curl -s http://{addr}/enrichment/status\n  curl -s -H 'Authorization: Bearer {api}' -H 'X-Admin-Token: {admin}' http://{addr}/v1/status\n  \
         MEMWARDEN_API_TOKEN={api} MEMWARDEN_ADMIN_TOKEN={admin} memwarden status --addr {addr}\n\nCtrl-C drains and stops.\n",
        if throwaway.is_some() { " (throwaway, removed on exit)" } else { "" }
    );

    let build = Build {
        config_path: config,
        overrides,
        log,
        kinds: Kinds::Daemon,
    };
    let exit = match Application::build(settings, build).await {
        Ok(application) => application.run_until_stopped().await,
        Err(e) => Err(e.context("is another memwarden running? set control.addr")),
    };
    if let Some(pg) = throwaway {
        pg.stop();
        eprintln!("throwaway PostgreSQL stopped and removed");
    }
    Ok(exit_code(exit?))
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    let overrides = Overrides {
        database_url: args.database_url.clone(),
        control_addr: args.control_addr.clone(),
        require_justification: args.admin_require_justification,
    };
    let settings = cli.settings(&overrides)?;
    let log = memwarden::telemetry::init_logging(cli.log_format, &settings.log.level);
    let build = Build {
        config_path: cli.config.clone(),
        overrides,
        log,
        kinds: Kinds::Daemon,
    };
    let exit = Application::build(settings, build)
        .await?
        .run_until_stopped()
        .await?;
    Ok(exit_code(exit))
}

/// How a daemon's end becomes the process's exit status.
pub fn exit_code(exit: Exit) -> ExitCode {
    match exit {
        Exit::Clean => ExitCode::SUCCESS,
        Exit::Hard => ExitCode::from(1),
    }
}

/// A few memories of two owners, so a new user sees enrichment happen. Loaded only into an
/// empty store; the insert trigger enqueues their enrichment.
async fn load_demo_memories(url: &str) -> Result<i64> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connecting to the database")?;
    memwarden::db::migrate(&pool)
        .await
        .context("running migrations")?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
        .fetch_one(&pool)
        .await?;
    if existing > 0 {
        pool.close().await;
        return Ok(0);
    }
    let demo = [
        ("alice", "Decision", "We chose PostgreSQL for the memory store because SKIP LOCKED queues keep the stack small."),
        ("alice", "Preference", "Alice prefers Rust for services that must stay up for months. See https://www.rust-lang.org"),
        ("alice", "Decision", "The team decided to run memwarden as a Kubernetes sidecar next to the memory service."),
        ("alice", "Insight", "Enrichment links similar memories; #memory #postgres"),
        ("alice", "Decision", "We decided to keep soft-deleted conversations for 30 days before eviction."),
        ("bob", "Context", "Bob Smith from Acme Labs asked about the reembed schedule on 2026-11-20. Mail bob@example.com"),
        ("bob", "Preference", "Bob likes Python and Docker for quick prototypes."),
        ("bob", "Pattern", "Every Monday @bob reviews the failed jobs in the dashboard."),
    ];
    for (owner, kind, content) in demo {
        sqlx::query("INSERT INTO memories (owner_id, memory_type, content) VALUES ($1, $2, $3)")
            .bind(owner)
            .bind(kind)
            .bind(content)
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(demo.len() as i64)
}
