//! The background work a memory configuration drives (`memory_config`): `memory-flush` brings a
//! conversation back under its limits (trims or summarises), `memory-expiry` deletes entries
//! past the configuration's `persistence.ttl`, and `memory-privacy` redacts what the privacy
//! policy matches and deletes what it never keeps. A trigger on `conversation_entries`
//! (migration 0011) enqueues flush and privacy for every write; schedules run expiry and the
//! catch-up.
//!
//! One module per concept: the token estimate, the offline summariser, and each job.

mod expiry;
mod flush;
mod privacy;
mod summary;
mod tokens;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::memory_config::MemoryConfig;

pub use expiry::{expire_entries, ExpiryReport};
pub use flush::{conversations_over_limits, flush_conversation, FlushReport, Limits};
pub use privacy::{apply_privacy, PrivacyReport, PrivacyRules, PrivacyTarget};
pub use summary::{summarise, SUMMARY_MARKER_PREFIX, SUMMARY_ROLE};
pub use tokens::estimate_tokens;

/// The `memory-flush` job's args: one conversation, enqueued by the entry trigger with the
/// unique key `memory-flush:<conversation_id>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryFlushArgs {
    pub conversation_id: Uuid,
}

impl crate::JobArgs for MemoryFlushArgs {
    const KIND: &'static str = "memory-flush";
}

/// The `memory-expiry` job's args: every configuration (`{}`, the schedule's), one project's,
/// or one configuration (`project` and `memory_id`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryExpiryArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_id: Option<String>,
}

impl crate::JobArgs for MemoryExpiryArgs {
    const KIND: &'static str = "memory-expiry";
}

/// The `memory-privacy` job's args: one conversation (`{"conversation_id": ...}`, the entry
/// trigger's), or one configuration to re-apply to all its conversations after its policy
/// changed (`{"project": ..., "memory_id": ...}`, what the HTTP layer enqueues on a PUT).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryPrivacyArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_id: Option<String>,
}

impl crate::JobArgs for MemoryPrivacyArgs {
    const KIND: &'static str = "memory-privacy";
}

impl MemoryPrivacyArgs {
    /// The args that re-apply a changed policy to every conversation of a configuration.
    pub fn policy_changed(project: &str, memory_id: &str) -> Self {
        MemoryPrivacyArgs {
            conversation_id: None,
            project: Some(project.to_string()),
            memory_id: Some(memory_id.to_string()),
        }
    }

    /// The unique key that keeps one queued job per target.
    pub fn unique_key(&self) -> Result<String, PolicyError> {
        Ok(match self.target()? {
            PrivacyTarget::Conversation(id) => format!("memory-privacy:{id}"),
            PrivacyTarget::Config { project, memory_id } => {
                format!("memory-privacy:{project}/{memory_id}")
            }
        })
    }

    /// What the args name: a conversation, or a configuration (`project` defaults to
    /// `default`, as `conversations.memory_config_project` does).
    pub fn target(&self) -> Result<PrivacyTarget, PolicyError> {
        match (&self.conversation_id, &self.project, &self.memory_id) {
            (Some(id), None, None) => Ok(PrivacyTarget::Conversation(*id)),
            (None, project, Some(memory_id)) => Ok(PrivacyTarget::Config {
                project: project.clone().unwrap_or_else(|| DEFAULT_PROJECT.into()),
                memory_id: memory_id.clone(),
            }),
            _ => Err(PolicyError::Input(
                "give either conversation_id, or memory_id (with an optional project)".into(),
            )),
        }
    }
}

/// The `memory-policies-catchup` job's args (none): the schedule that enqueues a flush for
/// every conversation found over its limits, in case a trigger-enqueued one was lost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryPoliciesCatchUpArgs {}

impl crate::JobArgs for MemoryPoliciesCatchUpArgs {
    const KIND: &'static str = "memory-policies-catchup";
}

/// The project of a conversation that names none.
pub const DEFAULT_PROJECT: &str = "default";

/// Batch sizes and pauses of the whole-configuration work (expiry, privacy re-application).
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The most rows one batch transaction deletes or rewrites.
    pub batch_size: i64,
    /// The pause between batches, so the memory service's writes are never held up long.
    pub pause: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            batch_size: 1000,
            pause: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid args: {0}")]
    Input(String),
    /// A stored configuration that does not parse: retrying cannot help until it is fixed.
    #[error("memory configuration {project}/{id}: {message}")]
    Config {
        project: String,
        id: String,
        message: String,
    },
    #[error("memory policy: {0}")]
    Database(#[from] sqlx::Error),
}

impl PolicyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PolicyError::Database(e) => crate::db_error_is_retryable(e),
            PolicyError::Input(_) | PolicyError::Config { .. } => false,
        }
    }
}

/// A stored configuration as the jobs run it.
#[derive(Debug, Clone)]
pub(crate) struct StoredConfig {
    pub project: String,
    pub id: String,
    pub config: MemoryConfig,
}

fn parse_config(
    project: String,
    id: String,
    raw: serde_json::Value,
) -> Result<StoredConfig, PolicyError> {
    match serde_json::from_value::<MemoryConfig>(raw) {
        Ok(config) => Ok(StoredConfig {
            project,
            id,
            config,
        }),
        Err(e) => Err(PolicyError::Config {
            project,
            id,
            message: e.to_string(),
        }),
    }
}

/// The configurations named by `project` and `memory_id` (each `None` meaning all).
pub(crate) async fn load_configs(
    pool: &PgPool,
    project: Option<&str>,
    memory_id: Option<&str>,
) -> Result<Vec<StoredConfig>, PolicyError> {
    let rows: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT project, id, config FROM memory_configs \
          WHERE ($1::text IS NULL OR project = $1) AND ($2::text IS NULL OR id = $2) \
          ORDER BY project, id",
    )
    .bind(project)
    .bind(memory_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(p, i, c)| parse_config(p, i, c))
        .collect()
}

/// The configuration of one conversation, read in `tx` (so under its row lock when the caller
/// holds one); `None` when the conversation is gone or references none.
pub(crate) async fn config_of_conversation(
    conn: &mut sqlx::PgConnection,
    conversation_id: Uuid,
) -> Result<Option<StoredConfig>, PolicyError> {
    let row: Option<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT m.project, m.id, m.config FROM conversations c \
           JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id \
          WHERE c.id = $1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(p, i, c)| parse_config(p, i, c)).transpose()
}

/// Takes the row lock of the conversation `id` in `tx`, which serialises the policy jobs on
/// it; false when there is no such conversation.
pub(crate) async fn lock_conversation(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}
