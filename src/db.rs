//! The connection pool, reached with retry and backoff, and the migrations.

use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::{mask_url_password, Schema, Settings};

/// A pooled connection used this recently is handed out without a liveness check.
///
/// sqlx checks every connection it hands out with a round trip of its own by default (and
/// another when it takes one back, which cannot be turned off). Handlers and the queue acquire
/// a connection per statement, so under load the first check was a third of the round trips
/// and of the server's wake-ups: enrichment ran about 6 % faster without it (median of 10
/// alternated runs, 519 against 488 memories/s). A connection idle for longer is still
/// checked, so one that died while the daemon was quiet (a database restart,
/// `idle_session_timeout`, a dropped TCP session) is replaced rather than failing a statement.
/// One that dies within this window fails the statement it is given, as it would have if it
/// had died mid-statement: the queue retries its own statements, and a handler's job is
/// retried.
const RECENTLY_USED: Duration = Duration::from_secs(1);

pub fn pool_options(settings: &Settings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .min_connections(1)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= RECENTLY_USED {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .acquire_timeout(settings.database.acquire_timeout)
}

/// Every session of ours has memwarden's schema first on its search path (so its statements
/// name no schema, and `public` comes second, for extension types such as pgvector's).
pub fn in_schema(options: PgConnectOptions, schema: &Schema) -> PgConnectOptions {
    options.options([("search_path", format!("{schema},public"))])
}

/// Our sessions never JIT-compile. The planner's estimate for a claim grows with the rows a
/// table holds, not with the rows a claim reads: with 2,000,000 finished jobs retained, the
/// claim's estimated cost (2.9 million) passed `jit_optimize_above_cost`, and compiling it took
/// 127 ms of a statement that ran in 0.4 ms (auto_explain, 2026-12-06), so the queue ran at 4 %
/// of its empty-table rate. Nothing of ours runs long enough for compiled expressions to pay.
const NO_JIT: [(&str, &str); 1] = [("jit", "off")];

/// The queue's sessions plan each statement for its actual parameters: the batch
/// statements' best plan depends on the batch size and on how many jobs are claimable, and a
/// cached generic plan chosen early in a burn-down can cost several times more later.
pub fn session_options(options: PgConnectOptions, schema: &Schema) -> PgConnectOptions {
    in_schema(options, schema)
        .application_name("memwarden")
        .options([("plan_cache_mode", "force_custom_plan")])
        .options(NO_JIT)
}

/// The sessions job handlers run in: asynchronous commit, and PostgreSQL's default plan cache.
///
/// A handler's writes commit without waiting for the WAL flush. The job's completion is
/// written afterwards by the queue, synchronously, and the WAL is sequential, so the flush
/// that makes the completion durable makes every earlier write of the handler durable too. A
/// database crash before that flush loses both the writes and the completion, and the job runs
/// again. A handler that acts outside the database on the strength of a commit (eviction
/// removing blob files) commits that transaction synchronously itself.
///
/// Handlers repeat a few fixed-shape statements thousands of times, and planning them anew
/// each time was a third of the database's time in enrichment and half of eviction's rate, so
/// they keep cached plans. The exceptions are chosen per statement in the jobs crate: a
/// statement whose best plan depends on a table that grows under a run, or on how selective
/// its parameters are, is sent unnamed (`persistent(false)`) and planned for each call.
///
/// The vector index's searches need pgvector's iterative scans
/// (`memwarden_jobs::vector::SESSION_SETTINGS`) and `vector.ef_search`.
pub fn work_session_options(options: PgConnectOptions, settings: &Settings) -> PgConnectOptions {
    let ef_search = settings.vector.ef_search.to_string();
    in_schema(options, &settings.database.schema)
        .application_name("memwarden-work")
        .options([("synchronous_commit", "off")])
        .options(NO_JIT)
        .options(memwarden_jobs::vector::SESSION_SETTINGS)
        .options([("hnsw.ef_search", ef_search.as_str())])
}

/// The queue's pool (see [`session_options`]), connected on first use: STARTING waits for
/// the database with [`wait_for_database`] before anything uses it.
pub fn pool(settings: &Settings, url: &str) -> Result<PgPool, sqlx::Error> {
    let options = session_options(url.parse()?, &settings.database.schema);
    Ok(pool_options(settings).connect_lazy_with(options))
}

/// A pool of the queue's sessions, connected now: for the commands and benchmarks that work
/// on the database without a daemon.
pub async fn connect(settings: &Settings, url: &str) -> Result<PgPool, sqlx::Error> {
    let options = session_options(url.parse()?, &settings.database.schema);
    pool_options(settings).connect_with(options).await
}

/// The handlers' pool (see [`work_session_options`]), connected on first use.
pub fn work_pool(settings: &Settings, url: &str) -> Result<PgPool, sqlx::Error> {
    let options = work_session_options(url.parse()?, settings);
    Ok(pool_options(settings).connect_lazy_with(options))
}

/// Waits until the database answers, retrying with exponential backoff and jitter; false if
/// `stop` fired first. An unreachable database keeps the daemon in STARTING.
pub async fn wait_for_database(pool: &PgPool, stop: &CancellationToken) -> bool {
    let options = pool.connect_options();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // One plain connection rather than the pool's, whose acquire retries until its
        // timeout and would hide an outage from the log for seconds at a time.
        let probe = tokio::select! {
            probe = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options)) => probe,
            _ = stop.cancelled() => return false,
        };
        match probe {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return true;
            }
            Ok(Err(e)) => {
                crate::telemetry::metrics::db_error("connect");
                tracing::warn!(attempt, url = %mask_url_password(&url_of(&options)), error = %e, retry_in_ms = delay.as_millis() as u64, "database unreachable; retrying");
            }
            Err(_) => {
                crate::telemetry::metrics::db_error("connect");
                tracing::warn!(
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    "database unreachable (no answer within 5 s); retrying"
                );
            }
        }
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(delay.mul_f64(jitter)) => {}
            _ = stop.cancelled() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// host:port/database of a connection, for the log (no credentials).
fn url_of(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Creates database `name` on the server of `url` (dropping any old one) and returns its URL.
/// For `memwarden dev` and the benchmarks, which work in a database of their own.
pub async fn fresh_database(url: &str, name: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let opts: PgConnectOptions = url.parse().context("not a postgres URL")?;
    let mut admin = PgConnection::connect_with(&opts)
        .await
        .with_context(|| format!("connecting to {}", mask_url_password(url)))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let base = url.split('?').next().unwrap_or(url);
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{base}/{name}{query}"))
}

pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let opts: PgConnectOptions = url.parse()?;
    let mut admin = PgConnection::connect_with(&opts).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// See [`crate::migrate`].
pub async fn migrate(pool: &PgPool, schema: &Schema) -> Result<(), crate::migrate::MigrateError> {
    crate::migrate::migrate(pool, schema).await
}

#[cfg(test)]
mod tests {
    use crate::test_support::{self, TestDb};

    #[tokio::test]
    async fn the_queue_and_work_sessions_never_jit_compile() {
        let db = TestDb::empty();
        let settings = test_support::settings(&db, "");
        for (name, pool) in [
            (
                "queue",
                super::pool(&settings, &db.url).expect("queue pool"),
            ),
            (
                "work",
                super::work_pool(&settings, &db.url).expect("work pool"),
            ),
        ] {
            let jit: String = sqlx::query_scalar("SHOW jit")
                .fetch_one(&pool)
                .await
                .expect("SHOW jit");
            assert_eq!(jit, "off", "the {name} pool's sessions");
        }
    }
}
