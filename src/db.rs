//! The connection pool, reached with retry and backoff, and the migrations.

use std::time::Duration;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::{mask_url_password, Settings};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
        .acquire_timeout(Duration::from_secs(
            settings.database.acquire_timeout.max(1),
        ))
}

/// Every session of ours plans each statement for its actual parameters: the batch
/// statements' best plan depends on the batch size and on how many jobs are claimable, and a
/// cached generic plan chosen early in a burn-down can cost several times more later.
pub fn session_options(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("memwarden")
        .options([("plan_cache_mode", "force_custom_plan")])
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
pub fn work_session_options(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("memwarden-work")
        .options([("synchronous_commit", "off")])
}

/// The handlers' pool (see [`work_session_options`]), connected on first use: the queue's
/// pool has already shown that the database answers.
pub fn work_pool(settings: &Settings, url: &str) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(pool_options(settings).connect_lazy_with(work_session_options(options)))
}

/// Connects, retrying with exponential backoff and jitter until the database answers or
/// `stop` fires (then `None`). An unreachable database keeps the daemon in STARTING.
pub async fn connect_with_retry(
    settings: &Settings,
    url: &str,
    stop: &CancellationToken,
) -> Option<PgPool> {
    let options: PgConnectOptions = match url.parse() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(url = %mask_url_password(url), error = %e, "database.url cannot be parsed");
            return None;
        }
    };
    let options = session_options(options);
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // One plain connection first: the pool's own connect retries until its acquire
        // timeout, which would hide an outage from the log for seconds at a time.
        let probe =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
                .await;
        let result = match probe {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                pool_options(settings).connect_with(options.clone()).await
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        };
        match result {
            Ok(pool) => return Some(pool),
            Err(e) => {
                metrics::counter!("memwarden_db_errors_total", "op" => "connect").increment(1);
                tracing::warn!(attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "database unreachable; retrying");
            }
        }
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(delay.mul_f64(jitter)) => {}
            _ = stop.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Counts a database error under `memwarden_db_errors_total{op}` and passes it on.
pub fn count_error<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> E {
    move |e| {
        metrics::counter!("memwarden_db_errors_total", "op" => op).increment(1);
        e
    }
}
