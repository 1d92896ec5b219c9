//! The commands that need only the database (`DATABASE_URL` or `--database-url`) or only the
//! configuration: migrate, audit verify, config check.

use std::process::ExitCode;

use anyhow::{Context, Result};
use memwarden::config::{Overrides, Settings};

use super::{Cli, DbArgs};

/// The database of commands that need only it.
async fn connect(cli: &Cli, database_url: Option<String>) -> Result<(Settings, sqlx::PgPool)> {
    let overrides = Overrides {
        database_url,
        ..Default::default()
    };
    let settings = cli.settings(&overrides)?;
    let url = settings.database_url().context(
        "no database configured: set DATABASE_URL (memwarden dev prints it) or --database-url",
    )?;
    let pool = memwarden::db::connect(&settings, url)
        .await
        .context("connecting to the database")?;
    Ok((settings, pool))
}

pub async fn migrate(cli: &Cli, args: &DbArgs) -> Result<ExitCode> {
    let (settings, pool) = connect(cli, args.database_url.clone()).await?;
    memwarden::telemetry::init_logging(cli.log_format, &settings.log.level);
    memwarden::db::migrate(&pool, &settings.database.schema)
        .await
        .context("running migrations")?;
    let vector = memwarden::vector_backend::settle(&pool, &settings).await?;
    println!("migrations applied");
    println!("vectors: {} ({})", vector.backend, vector.reason);
    Ok(ExitCode::SUCCESS)
}

pub fn config_check(cli: &Cli) -> ExitCode {
    match cli.settings(&Overrides::default()) {
        Ok(settings) => {
            print!("{}", settings.masked_toml());
            eprintln!("config ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config error: {e}");
            ExitCode::from(2)
        }
    }
}

pub async fn audit_verify(cli: &Cli, args: &DbArgs) -> Result<ExitCode> {
    let (_, pool) = connect(cli, args.database_url.clone()).await?;
    match memwarden::audit::verify(&pool)
        .await
        .context("reading audit_log")?
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
