//! The write path of `memwarden bench memory`: the same entries written into conversations
//! whose configuration has a privacy policy and into conversations whose configuration has
//! none, each on a fresh database with the real daemon processing the jobs the entry trigger
//! enqueues, timed from the first write until every entry is in its final state (checked:
//! redacted under the policy, as written without it). The difference is what redaction adds
//! to a written entry.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use memwarden::startup::Kinds;
use sqlx::PgPool;

use super::memory_load::{insert_config, CONTENT, SSN, SSN_PATTERN};
use super::support::{
    bench_settings, default_queue, in_fresh_database, migrated_pool, start_daemon,
};

/// What the write-path run writes: `conversations` × `entries`, by `writers` connections at
/// once, one statement per entry or one per conversation.
#[derive(Debug, Clone, Copy)]
pub struct WriteLoad {
    pub conversations: i64,
    pub entries: i32,
    pub writers: usize,
    pub one_entry_per_write: bool,
}

/// Longest the jobs may take after the last write before the run is called failed.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

pub async fn write_path(server_url: &str, load: WriteLoad, concurrency: u32) -> Result<()> {
    let mut rates = Vec::new();
    for redact in [false, true] {
        let out = std::sync::Arc::new(std::sync::Mutex::new(0.0));
        let rate = out.clone();
        in_fresh_database(server_url, "memory_write", |url| async move {
            *out.lock().expect("rate") = run(url, load, concurrency, redact).await?;
            Ok(())
        })
        .await?;
        rates.push(*rate.lock().expect("rate"));
    }
    let n = load.conversations * i64::from(load.entries);
    let per_entry = |rate: f64| 1e6 / rate;
    println!(
        "write path, {n} entries ({} conversations × {}, {} per statement, {} writers, \
         daemon concurrency {concurrency}): without a privacy policy {:.0} entries/s, with \
         redaction {:.0} entries/s; redaction adds {:.1} µs per written entry",
        load.conversations,
        load.entries,
        if load.one_entry_per_write {
            "one entry"
        } else {
            "all of a conversation's"
        },
        load.writers,
        rates[0],
        rates[1],
        per_entry(rates[1]) - per_entry(rates[0]),
    );
    Ok(())
}

/// One mode on its own database; the rate, in entries/s from the first write to the last
/// entry final.
async fn run(url: String, load: WriteLoad, concurrency: u32, redact: bool) -> Result<f64> {
    let pool = migrated_pool(&url).await?;
    let mut config = serde_json::json!({"type": "buffer",
        "persistence": {"type": "postgres", "ttl": "720h"}});
    if redact {
        config["privacy_policy"] = serde_json::json!({"redact_patterns": [SSN_PATTERN]});
    }
    insert_config(&pool, &config).await?;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO conversations (owner_id, memory_config_id) \
         SELECT 'bench', 'bench' FROM generate_series(1, $1) RETURNING id",
    )
    .bind(load.conversations)
    .fetch_all(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    let mut settings = bench_settings("", &url)?;
    default_queue(&mut settings, concurrency, None)?;
    let daemon = start_daemon(settings, Kinds::Daemon).await?;

    let t0 = Instant::now();
    let written: Vec<Result<()>> = futures::stream::iter(ids)
        .map(|id| write_conversation(&pool, id, load))
        .buffer_unordered(load.writers.max(1))
        .collect()
        .await;
    written.into_iter().collect::<Result<()>>()?;
    let write_secs = t0.elapsed().as_secs_f64();
    let n = load.conversations * i64::from(load.entries);
    if redact {
        wait_redacted(&pool, n, &daemon).await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    check_final(&pool, n, redact).await?;
    println!(
        "{}: {n} entries written in {write_secs:.2} s, final in {secs:.2} s: {:.0} entries/s",
        if redact {
            "with redaction"
        } else {
            "without a privacy policy"
        },
        n as f64 / secs
    );
    daemon.stop(Duration::from_secs(10)).await?;
    Ok(n as f64 / secs)
}

async fn write_conversation(pool: &PgPool, id: uuid::Uuid, load: WriteLoad) -> Result<()> {
    let insert = format!(
        "INSERT INTO conversation_entries (conversation_id, role, content) \
         SELECT $1, 'user', {CONTENT} FROM generate_series($2, $3) g"
    );
    let step = if load.one_entry_per_write {
        1
    } else {
        load.entries
    };
    for first in (1..=load.entries).step_by(step.max(1) as usize) {
        sqlx::query(&insert)
            .bind(id)
            .bind(first)
            .bind((first + step - 1).min(load.entries))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Waits until no entry holds the SSN; fails when the privacy jobs have all ended and some
/// still do, or a job failed.
async fn wait_redacted(pool: &PgPool, n: i64, daemon: &memwarden::startup::Running) -> Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let (left, pending, failed): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT count(*) FROM conversation_entries WHERE content LIKE '%{SSN}%'), \
                    (SELECT count(*) FROM jobs WHERE kind = 'memory-privacy' \
                        AND status IN ('available', 'running', 'retryable')), \
                    (SELECT count(*) FROM jobs WHERE kind = 'memory-privacy' AND status = 'failed')"
        ))
        .fetch_one(pool)
        .await?;
        if failed > 0 {
            bail!("{failed} memory-privacy jobs failed");
        }
        if left == 0 {
            return Ok(());
        }
        if pending == 0 {
            bail!(
                "every memory-privacy job has ended and {left} of {n} entries still hold the SSN"
            );
        }
        if daemon.is_finished() || Instant::now() > deadline {
            bail!("{left} of {n} entries still hold the SSN, {pending} privacy jobs pending");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every entry written, each redacted under the policy or as written without it.
async fn check_final(pool: &PgPool, n: i64, redact: bool) -> Result<()> {
    let (total, with_ssn, redacted, jobs): (i64, i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(*) FILTER (WHERE content LIKE '%{SSN}%'), \
                count(*) FILTER (WHERE content LIKE '%My SSN is [REDACTED] and%'), \
                (SELECT count(*) FROM jobs WHERE kind LIKE 'memory-%') \
           FROM conversation_entries"
    ))
    .fetch_one(pool)
    .await?;
    let expected = if redact { (n, 0, n) } else { (n, n, 0) };
    if (total, with_ssn, redacted) != expected {
        bail!(
            "entries {total}, with the SSN {with_ssn}, redacted {redacted}; expected {expected:?}"
        );
    }
    if !redact && jobs > 0 {
        bail!("{jobs} policy jobs were enqueued for a configuration without policies");
    }
    Ok(())
}
