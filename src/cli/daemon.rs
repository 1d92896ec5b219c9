//! The commands that run the daemon: `memwarden run`, and `memwarden dev`, the zero-setup
//! start. Without a configured database `dev` starts a private throwaway PostgreSQL, runs the
//! daemon in the foreground with fresh tokens, and prints what to try, as commands that work
//! when pasted into another shell. Ctrl-C drains, stops, and removes the throwaway database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use memwarden::config::{Overrides, Settings};
use memwarden::daemon::Exit;
use memwarden::devdb::ThrowawayPostgres;
use memwarden::startup::{Application, Build, Kinds};
use rand::distributions::{Alphanumeric, DistString};

use super::{Cli, RunArgs};

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
fn exit_code(exit: Exit) -> ExitCode {
    match exit {
        Exit::Clean => ExitCode::SUCCESS,
        Exit::Hard => ExitCode::from(1),
    }
}

fn token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

pub async fn dev(cli: &Cli) -> Result<ExitCode> {
    let overrides = Overrides::default();
    let mut settings = cli.settings(&overrides)?;
    let throwaway = match settings.database.url {
        Some(_) => None,
        None => {
            eprintln!("no database configured: starting a throwaway PostgreSQL (initdb, then pg_ctl start; a few seconds) ...");
            let pg = ThrowawayPostgres::start(false)
                .context("starting a throwaway PostgreSQL (initdb/pg_ctl)")?;
            memwarden::db::fresh_database(&pg.url("postgres"), "memwarden").await?;
            settings.database.url = Some(pg.url("memwarden"));
            Some(pg)
        }
    };
    let demo = load_demo_memories(&settings).await?;
    settings.auth.api_token.get_or_insert_with(token);
    settings.auth.admin_token.get_or_insert_with(token);
    let log = memwarden::telemetry::init_logging(cli.log_format, &settings.log.level);
    eprint!("{}", banner(&settings, throwaway.is_some(), &demo));

    let build = Build {
        config_path: cli.config.clone(),
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

/// How to call this binary from another shell: `memwarden` when that is what PATH finds,
/// otherwise its full path (after `cargo run`, `target/debug/memwarden`).
fn this_binary() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("memwarden"))
            .find(|p| p.is_file())
    });
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
    };
    match (me, on_path) {
        (Some(me), Some(found)) if same(&me, &found) => "memwarden".into(),
        (Some(me), _) => me.display().to_string(),
        (None, _) => "memwarden".into(),
    }
}

/// Single-quotes a value for a POSIX shell.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// What `memwarden dev` prints before it runs: where everything is, the `export` lines that
/// every command below needs, and the commands themselves, each runnable as printed.
fn banner(settings: &Settings, throwaway: bool, demo: &DemoMemories) -> String {
    let addr = settings.control.addr;
    let api = settings.auth.api_token.clone().unwrap_or_default();
    let admin = settings.auth.admin_token.clone().unwrap_or_default();
    let url = settings.database_url().unwrap_or_default();
    let bin = this_binary();
    let database_line = if memwarden::config::mask_url_password(url) != url {
        "# DATABASE_URL: the one you configured (it holds a password, so it is not printed)"
            .to_string()
    } else {
        format!("export DATABASE_URL={}", quoted(url))
    };
    let reprocess = match &demo.first {
        Some(id) => format!("{bin} reprocess {id}"),
        None => format!("{bin} reprocess <an id from `memories list`>"),
    };
    format!(
        "\nmemwarden dev\n\
         \x20 control port   http://{addr}\n\
         \x20 database       {}{}\n\
         \x20 API token      {api}\n\
         \x20 admin token    {admin}\n\n\
         {} demo memories are in the database; their enrichment jobs were enqueued by the insert trigger.\n\n\
         In another shell, first:\n\
         \x20 export MEMWARDEN_API_TOKEN={api} MEMWARDEN_ADMIN_TOKEN={admin}\n\
         \x20 export MEMWARDEN_CONTROL__ADDR={addr}\n\
         \x20 {database_line}\n\n\
         then try:\n\
         \x20 curl -s http://{addr}/readyz\n\
         \x20 curl -s -H \"Authorization: Bearer $MEMWARDEN_API_TOKEN\" -H \"X-Admin-Token: $MEMWARDEN_ADMIN_TOKEN\" http://{addr}/v1/status\n\
         \x20 {bin} status\n\
         \x20 {bin} memories list\n\
         \x20 {reprocess}\n\
         \x20 {bin} jobs list\n\
         \x20 {bin} sync --dry-run\n\
         \x20 {bin} audit verify\n\
         \x20 {bin} drain --wait --timeout 20 && {bin} resume\n\n\
         Ctrl-C drains and stops.\n",
        memwarden::config::mask_url_password(url),
        if throwaway {
            " (throwaway, removed on exit)"
        } else {
            ""
        },
        demo.loaded,
    )
}

/// The demo memories `dev` loaded, and the id of the first, for a `reprocess` that works.
struct DemoMemories {
    loaded: usize,
    first: Option<uuid::Uuid>,
}

/// A few memories of two owners, so a new user sees enrichment happen. Loaded only into an
/// empty store; the insert trigger enqueues their enrichment.
async fn load_demo_memories(settings: &Settings) -> Result<DemoMemories> {
    let url = settings.database_url().unwrap_or_default();
    let pool = memwarden::db::connect(settings, url)
        .await
        .context("connecting to the database")?;
    memwarden::db::migrate(&pool, &settings.database.schema)
        .await
        .context("running migrations")?;
    let existing: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM memories WHERE deleted_at IS NULL ORDER BY created_at LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?;
    if existing.is_some() {
        pool.close().await;
        return Ok(DemoMemories {
            loaded: 0,
            first: existing,
        });
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
    let mut first = None;
    for (owner, kind, content) in demo {
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO memories (owner_id, memory_type, content) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(owner)
        .bind(kind)
        .bind(content)
        .fetch_one(&pool)
        .await?;
        first.get_or_insert(id);
    }
    pool.close().await;
    Ok(DemoMemories {
        loaded: demo.len(),
        first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_exports_what_its_commands_need() {
        let settings = Settings::from_parts(
            "[auth]\napi_token = \"a1\"\nadmin_token = \"b2\"\n[database]\nurl = \"postgres://postgres@127.0.0.1:5/memwarden\"\n",
            None,
            &[],
            &Overrides::default(),
        )
        .unwrap();
        let demo = DemoMemories {
            loaded: 8,
            first: Some(uuid::Uuid::nil()),
        };
        let text = banner(&settings, true, &demo);
        assert!(
            text.contains("export MEMWARDEN_API_TOKEN=a1 MEMWARDEN_ADMIN_TOKEN=b2"),
            "{text}"
        );
        assert!(
            text.contains("export MEMWARDEN_CONTROL__ADDR=127.0.0.1:9420"),
            "{text}"
        );
        assert!(
            text.contains("export DATABASE_URL='postgres://postgres@127.0.0.1:5/memwarden'"),
            "{text}"
        );
        assert!(
            text.contains(&format!("reprocess {}", uuid::Uuid::nil())),
            "{text}"
        );
        let with_password = Settings::from_parts(
            "[database]\nurl = \"postgres://u:secret@h/db\"\n",
            None,
            &[],
            &Overrides::default(),
        )
        .unwrap();
        let text = banner(&with_password, false, &demo);
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_value_is_quoted_for_the_shell() {
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }
}
