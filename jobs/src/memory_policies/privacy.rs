//! `memory-privacy`: a configuration's privacy policy applied to stored entries. Matches of
//! `redact_patterns` are replaced with the policy's redaction string, and entries whose role is
//! non-persistable are deleted (summaries this crate wrote are kept: see `summary::is_summary`).
//! Only rows whose content changes are rewritten. Each conversation is one transaction under
//! its row lock, so the job serialises with a flush of the same conversation; a whole
//! configuration goes conversation by conversation, stopping between them when asked.

use std::borrow::Cow;
use std::time::Instant;

use regex::{NoExpand, Regex};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::summary::is_summary;
use super::{
    config_of_conversation, load_configs, lock_conversation, PolicyError, PolicySettings,
    StoredConfig,
};
use crate::memory_config::{compile_pattern, PrivacyPolicy};

/// What a `memory-privacy` job applies the policy to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyTarget {
    Conversation(Uuid),
    Config { project: String, memory_id: String },
}

/// A privacy policy, compiled once per job.
pub struct PrivacyRules {
    patterns: Vec<Regex>,
    redaction: String,
    drop_roles: Vec<String>,
}

impl PrivacyRules {
    /// The policy's patterns compiled as validation compiles them; a stored configuration has
    /// passed validation, so a failure here means the row was written around it.
    pub(crate) fn compile(
        policy: &PrivacyPolicy,
        stored: &StoredConfig,
    ) -> Result<Self, PolicyError> {
        let patterns = policy
            .redact_patterns
            .iter()
            .map(|p| compile_pattern(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PolicyError::Config {
                project: stored.project.clone(),
                id: stored.id.clone(),
                message: format!("a redact pattern does not compile: {e}"),
            })?;
        Ok(PrivacyRules {
            patterns,
            redaction: policy.redaction().to_string(),
            drop_roles: policy.non_persistable_message_types.clone(),
        })
    }

    /// `text` with every match of every pattern replaced, in the patterns' order; borrowed when
    /// nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for p in &self.patterns {
            if let Cow::Owned(s) = p.replace_all(&out, NoExpand(&self.redaction)) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    fn drops(&self, role: &str, content: &str) -> bool {
        self.drop_roles.iter().any(|r| r == role) && !is_summary(role, content)
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PrivacyReport {
    /// Why nothing was looked at: no such conversation or configuration, or no policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    pub conversations: u64,
    pub scanned: u64,
    pub redacted: u64,
    pub deleted: u64,
    /// Transactions (one per conversation).
    pub batches: u64,
    pub longest_batch_ms: f64,
    /// True when the run stopped between conversations before the end.
    pub interrupted: bool,
}

/// Applies the policy of the target's configuration.
pub async fn apply_privacy(
    pool: &PgPool,
    target: &PrivacyTarget,
    settings: &PolicySettings,
    stop: &CancellationToken,
) -> Result<PrivacyReport, PolicyError> {
    let mut report = PrivacyReport::default();
    match target {
        PrivacyTarget::Conversation(id) => {
            let mut conn = pool.acquire().await?;
            let Some(stored) = config_of_conversation(&mut conn, *id).await? else {
                report.skipped = Some("no memory configuration");
                return Ok(report);
            };
            drop(conn);
            let Some(policy) = &stored.config.privacy_policy else {
                report.skipped = Some("no privacy policy");
                return Ok(report);
            };
            let rules = PrivacyRules::compile(policy, &stored)?;
            apply_to_conversation(pool, *id, &rules, &mut report).await?;
        }
        PrivacyTarget::Config { project, memory_id } => {
            let Some(stored) = load_configs(pool, Some(project), Some(memory_id))
                .await?
                .pop()
            else {
                report.skipped = Some("no such memory configuration");
                return Ok(report);
            };
            let Some(policy) = &stored.config.privacy_policy else {
                report.skipped = Some("no privacy policy");
                return Ok(report);
            };
            let rules = PrivacyRules::compile(policy, &stored)?;
            let mut after = Uuid::nil();
            loop {
                let ids: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM conversations WHERE memory_config_project = $1 \
                       AND memory_config_id = $2 AND id > $3 ORDER BY id LIMIT $4",
                )
                .bind(project)
                .bind(memory_id)
                .bind(after)
                .bind(settings.batch_size.max(1))
                .fetch_all(pool)
                .await?;
                let Some(last) = ids.last() else {
                    return Ok(report);
                };
                after = *last;
                for id in ids {
                    if stop.is_cancelled() {
                        report.interrupted = true;
                        return Ok(report);
                    }
                    apply_to_conversation(pool, id, &rules, &mut report).await?;
                }
                tokio::select! {
                    _ = tokio::time::sleep(settings.pause) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
    Ok(report)
}

/// One conversation in one transaction: its row locked, its entries read, the changed ones
/// rewritten and the non-persistable ones deleted.
async fn apply_to_conversation(
    pool: &PgPool,
    conversation_id: Uuid,
    rules: &PrivacyRules,
    report: &mut PrivacyReport,
) -> Result<(), PolicyError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    if !lock_conversation(&mut tx, conversation_id).await? {
        return Ok(());
    }
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, role, content FROM conversation_entries WHERE conversation_id = $1",
    )
    .bind(conversation_id)
    .fetch_all(&mut *tx)
    .await?;
    let (mut gone, mut changed_ids, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, role, content) in &rows {
        if rules.drops(role, content) {
            gone.push(*id);
        } else if let Cow::Owned(new) = rules.redact(content) {
            if new != *content {
                changed_ids.push(*id);
                changed.push(new);
            }
        }
    }
    if !gone.is_empty() {
        sqlx::query("DELETE FROM conversation_entries WHERE id = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await?;
    }
    if !changed.is_empty() {
        sqlx::query(
            "UPDATE conversation_entries e SET content = u.content \
               FROM unnest($1::uuid[], $2::text[]) AS u(id, content) WHERE e.id = u.id",
        )
        .bind(&changed_ids)
        .bind(&changed)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    report.conversations += 1;
    report.scanned += rows.len() as u64;
    report.deleted += gone.len() as u64;
    report.redacted += changed.len() as u64;
    report.batches += 1;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    report.longest_batch_ms = report.longest_batch_ms.max(ms);
    Ok(())
}
