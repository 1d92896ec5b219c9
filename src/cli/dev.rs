//! `memwarden dev`: the zero-setup start. Without a configured database it starts a private
//! throwaway PostgreSQL, runs the daemon in the foreground with fresh tokens, and prints what
//! to try. Ctrl-C drains, stops, and removes the throwaway database.

use std::process::ExitCode;

use anyhow::{Context, Result};
use rand::distributions::{Alphanumeric, DistString};

use crate::app::App;
use crate::config::{Overrides, Settings};
use crate::daemon::{self, Exit};
use crate::devdb::ThrowawayPostgres;
use crate::telemetry::LogFormat;

fn token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

pub async fn dev(config: Option<std::path::PathBuf>, log_format: LogFormat) -> Result<ExitCode> {
    let overrides = Overrides::default();
    let mut settings = Settings::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let throwaway = match settings.database.url {
        Some(_) => None,
        None => {
            eprintln!("no database configured: starting a throwaway PostgreSQL ...");
            let pg = ThrowawayPostgres::start(false)
                .context("starting a throwaway PostgreSQL (initdb/pg_ctl)")?;
            crate::bench::fresh_database(&pg.url("postgres"), "memwarden").await?;
            settings.database.url = Some(pg.url("memwarden"));
            Some(pg)
        }
    };
    let api = settings.auth.api_token.get_or_insert_with(token).clone();
    let admin = settings.auth.admin_token.get_or_insert_with(token).clone();

    let log = crate::telemetry::init_logging(log_format, &settings.log.level);
    crate::telemetry::metrics();
    let addr = settings.control_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding the control port {addr} (is another memwarden running? set control.addr)")
    })?;
    let url = settings
        .database_url()
        .map(crate::config::mask_url_password)
        .unwrap_or_default();
    eprintln!(
        "\nmemwarden dev\n  control port   http://{addr}\n  database       {url}{}\n  API token      {api}\n  admin token    {admin}\n\n\
         try:\n  curl -s http://{addr}/readyz\n  curl -s -H 'Authorization: Bearer {api}' -H 'X-Admin-Token: {admin}' http://{addr}/v1/status\n  \
         MEMWARDEN_API_TOKEN={api} MEMWARDEN_ADMIN_TOKEN={admin} memwarden status --addr {addr}\n\nCtrl-C drains and stops.\n",
        if throwaway.is_some() { " (throwaway, removed on exit)" } else { "" }
    );

    let registry = crate::kinds::registry(&settings);
    let app = App::new(settings, config, overrides, log);
    let exit = daemon::run(app, listener, registry).await;
    if let Some(pg) = throwaway {
        pg.stop();
        eprintln!("throwaway PostgreSQL stopped and removed");
    }
    match exit? {
        Exit::Clean => Ok(ExitCode::SUCCESS),
        Exit::Hard => Ok(ExitCode::from(1)),
    }
}
