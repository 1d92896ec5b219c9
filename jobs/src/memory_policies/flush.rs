//! `memory-flush`: one conversation brought back under its configuration's limits, in one
//! transaction that holds the conversation's row lock (so two flushes of it serialise). The
//! trimming types delete the oldest entries; `hybrid_summary` replaces the oldest with one
//! summary entry written where the oldest was. A failure rolls everything back, and a rerun
//! finds the conversation under its limits and does nothing.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::privacy::PrivacyRules;
use super::summary::{summarise, SUMMARY_ROLE};
use super::tokens::{estimate_tokens, SQL_TOKENS};
use super::{config_of_conversation, load_configs, lock_conversation, PolicyError};
use crate::memory_config::{FlushType, MemoryConfig};

/// The most tokens a summary takes when `flushing.summary_tokens` is not given.
pub const DEFAULT_SUMMARY_TOKENS: u32 = 500;
/// The share of the oldest entries a summary replaces when not given, in percent.
pub const DEFAULT_SUMMARIZE_OLDEST_PERCENT: f64 = 30.0;

/// A conversation's limits: over either one, it is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_messages: Option<u64>,
    /// `max_tokens` (or `model_context_size × max_context_ratio`) × `summarize_threshold`.
    pub max_tokens: Option<u64>,
}

impl Limits {
    pub fn of(config: &MemoryConfig) -> Limits {
        let threshold = config
            .flushing
            .as_ref()
            .and_then(|f| f.summarize_threshold)
            .unwrap_or(1.0);
        let tokens = config
            .max_tokens
            .map(f64::from)
            .or_else(|| Some(f64::from(config.model_context_size?) * config.max_context_ratio?));
        Limits {
            max_messages: config.max_messages.map(u64::from),
            max_tokens: tokens.map(|t| ((t * threshold).floor() as u64).max(1)),
        }
    }

    pub fn any(&self) -> bool {
        self.max_messages.is_some() || self.max_tokens.is_some()
    }

    fn over(&self, messages: u64, tokens: u64) -> bool {
        self.max_messages.is_some_and(|m| messages > m)
            || self.max_tokens.is_some_and(|t| tokens > t)
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FlushReport {
    pub conversation_id: Uuid,
    /// Why nothing was looked at: no such conversation, no configuration, or no limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_type: Option<FlushType>,
    pub entries_before: u64,
    pub tokens_before: u64,
    /// Entries deleted (by a trim, or replaced by the summary).
    pub deleted: u64,
    /// Whether a summary entry was written, and its estimated tokens.
    pub summarised: bool,
    pub summary_tokens: u64,
    pub entries_after: u64,
    pub tokens_after: u64,
}

struct Entry {
    id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
    content: String,
    tokens: u64,
}

/// How many of the oldest entries go so that the rest is within `limits`: the trimming types.
fn trim_count(entries: &[Entry], limits: &Limits, total_tokens: u64) -> usize {
    let (mut n, mut tokens) = (0, total_tokens);
    while n < entries.len() && limits.over((entries.len() - n) as u64, tokens) {
        tokens -= entries[n].tokens;
        n += 1;
    }
    n
}

/// How many of the oldest entries one summary replaces: the configured share (at least one),
/// or more when that share would leave the conversation over its limits with the summary at
/// its full budget counted in.
fn summary_count(
    entries: &[Entry],
    limits: &Limits,
    total: u64,
    percent: f64,
    budget: u64,
) -> usize {
    let len = entries.len();
    let share = ((len as f64 * percent / 100.0).ceil() as usize).clamp(1, len);
    let (mut n, mut rest) = (0, total);
    while n < len && limits.over((len - n + 1) as u64, rest + budget) {
        rest -= entries[n].tokens;
        n += 1;
    }
    share.max(n.max(1))
}

/// Flushes one conversation if it is over its limits.
pub async fn flush_conversation(
    pool: &PgPool,
    conversation_id: Uuid,
) -> Result<FlushReport, PolicyError> {
    let mut report = FlushReport {
        conversation_id,
        ..Default::default()
    };
    let mut tx = pool.begin().await?;
    if !lock_conversation(&mut tx, conversation_id).await? {
        report.skipped = Some("no such conversation");
        return Ok(report);
    }
    let Some(stored) = config_of_conversation(&mut tx, conversation_id).await? else {
        report.skipped = Some("no memory configuration");
        return Ok(report);
    };
    let config = &stored.config;
    let limits = Limits::of(config);
    if !limits.any() {
        report.skipped = Some("no limits");
        return Ok(report);
    }
    let rows: Vec<(Uuid, chrono::DateTime<chrono::Utc>, String)> = sqlx::query_as(
        "SELECT id, created_at, content FROM conversation_entries \
          WHERE conversation_id = $1 ORDER BY created_at, id",
    )
    .bind(conversation_id)
    .fetch_all(&mut *tx)
    .await?;
    let entries: Vec<Entry> = rows
        .into_iter()
        .map(|(id, created_at, content)| Entry {
            id,
            created_at,
            tokens: estimate_tokens(&content),
            content,
        })
        .collect();
    let total: u64 = entries.iter().map(|e| e.tokens).sum();
    report.entries_before = entries.len() as u64;
    report.tokens_before = total;
    report.entries_after = report.entries_before;
    report.tokens_after = total;
    let flushing = config.flushing.as_ref();
    let kind = flushing.map_or(FlushType::SimpleFifo, |f| f.kind);
    report.flush_type = Some(kind);
    if !limits.over(entries.len() as u64, total) {
        return Ok(report);
    }
    let n = match kind {
        FlushType::SimpleFifo | FlushType::Lru | FlushType::TokenAwareLru => {
            trim_count(&entries, &limits, total)
        }
        FlushType::HybridSummary => {
            let budget = flushing
                .and_then(|f| f.summary_tokens)
                .unwrap_or(DEFAULT_SUMMARY_TOKENS);
            let percent = flushing
                .and_then(|f| f.summarize_oldest_percent)
                .unwrap_or(DEFAULT_SUMMARIZE_OLDEST_PERCENT);
            let n = summary_count(&entries, &limits, total, percent, budget.into());
            let text = summarise(entries[..n].iter().map(|e| e.content.as_str()), budget);
            // A summary repeats what it summarises, so it is redacted as the entries were.
            let text = match &config.privacy_policy {
                Some(p) => PrivacyRules::compile(p, &stored)?
                    .redact(&text)
                    .into_owned(),
                None => text,
            };
            // The entry trigger leaves this insert alone (migration 0013): the summary is
            // already what the policies would make of it.
            sqlx::query("SELECT set_config('memwarden.policy_write', 'on', true)")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO conversation_entries (conversation_id, role, content, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(conversation_id)
            .bind(SUMMARY_ROLE)
            .bind(&text)
            .bind(entries[0].created_at)
            .execute(&mut *tx)
            .await?;
            report.summarised = true;
            report.summary_tokens = estimate_tokens(&text);
            n
        }
    };
    let ids: Vec<Uuid> = entries[..n].iter().map(|e| e.id).collect();
    sqlx::query("DELETE FROM conversation_entries WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let gone: u64 = entries[..n].iter().map(|e| e.tokens).sum();
    report.deleted = n as u64;
    report.entries_after = report.entries_before - n as u64 + u64::from(report.summarised);
    report.tokens_after = total - gone + report.summary_tokens;
    Ok(report)
}

/// Up to `limit` conversations over their configuration's limits, for the catch-up schedule:
/// the ones whose flush was lost or failed, or whose configuration's limits were lowered.
pub async fn conversations_over_limits(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<Uuid>, PolicyError> {
    let mut out = Vec::new();
    for stored in load_configs(pool, None, None).await? {
        let limits = Limits::of(&stored.config);
        if !limits.any() || out.len() as i64 >= limit {
            continue;
        }
        let sql = format!(
            "SELECT c.id FROM conversations c \
               JOIN LATERAL (SELECT count(*) AS n, COALESCE(sum({SQL_TOKENS}), 0)::bigint AS t \
                               FROM conversation_entries e WHERE e.conversation_id = c.id) s ON true \
              WHERE c.memory_config_project = $1 AND c.memory_config_id = $2 \
                AND (s.n > $3 OR s.t > $4) ORDER BY c.id LIMIT $5"
        );
        let ids: Vec<Uuid> = sqlx::query_scalar(&sql)
            .bind(&stored.project)
            .bind(&stored.id)
            .bind(limits.max_messages.map_or(i64::MAX, |m| m as i64))
            .bind(limits.max_tokens.map_or(i64::MAX, |t| t as i64))
            .bind(limit - out.len() as i64)
            .fetch_all(pool)
            .await?;
        out.extend(ids);
    }
    Ok(out)
}
