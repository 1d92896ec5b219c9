//! Cron schedules as configured: the four defaults of spec/queue.md, the daily
//! `retrieve-log-retention`, the memory configurations' hourly `memory-expiry` and
//! five-minutely `memory-policies-catchup`, and `[[schedules]]`
//! entries that add a schedule or override a default by name. An override names only what it
//! changes (`name = "sync"` with `enabled = false` switches the default off).

use memwarden_jobs::eviction::EvictionArgs;
use memwarden_jobs::memory_policies::{MemoryExpiryArgs, MemoryPoliciesCatchUpArgs};
use memwarden_jobs::retrieve_logs::RetrieveLogRetentionArgs;
use memwarden_jobs::sync::SyncArgs;
use memwarden_jobs::{CatchUpArgs, JobArgs};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Settings;
use crate::cron_spec::{CronExpr, CronSpec, Zone};

/// A `[[schedules]]` entry. For a default's name every field but `name` is optional.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronExpr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Zone>,
}

/// Where an effective schedule comes from; `api` schedules live only in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleSource {
    Default,
    Config,
}

impl ScheduleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Default => "default",
            ScheduleSource::Config => "config",
        }
    }
}

/// A schedule with every field decided: a default, a default with its overrides applied, or
/// a schedule of the config's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: CronExpr,
    pub kind: String,
    pub args: Value,
    pub queue: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Zone>,
    pub source: ScheduleSource,
}

impl ScheduleSpec {
    pub fn spec(&self) -> CronSpec {
        CronSpec::new(self.cron.clone(), self.timezone)
    }
}

/// The names of the default schedules, which an entry may override without `cron` and `kind`.
pub const DEFAULT_NAMES: [&str; 7] = [
    "job-purge",
    "sync",
    "eviction",
    "enrichment-catchup",
    "retrieve-log-retention",
    "memory-expiry",
    "memory-policies-catchup",
];

fn default_schedule(name: &str, cron: &str, kind: &str, args: Value) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: cron.parse().expect("a default cron expression is valid"),
        kind: kind.into(),
        args,
        queue: "default".into(),
        enabled: true,
        timezone: None,
        source: ScheduleSource::Default,
    }
}

impl Settings {
    /// The four defaults of spec/queue.md, the daily RetrieveMemory log retention and the two
    /// memory-configuration schedules, their args taken from the settings they follow.
    pub fn default_schedules(&self) -> Vec<ScheduleSpec> {
        vec![
            // The queue's own kind (`queue::purge::PurgeArgs`, whose test checks the name).
            default_schedule(
                "job-purge",
                "0 0 * * * *",
                "job-purge",
                json!({"retention_s": self.purge.retention.as_secs_f64()}),
            ),
            default_schedule("sync", "0 30 * * * *", SyncArgs::KIND, json!({})),
            default_schedule(
                "eviction",
                "0 15 3 * * *",
                EvictionArgs::KIND,
                json!({
                    "retention_period": self.eviction.retention.as_str(),
                    "resource_types": self.eviction.resource_types,
                }),
            ),
            default_schedule(
                "enrichment-catchup",
                "0 */5 * * * *",
                CatchUpArgs::KIND,
                json!({}),
            ),
            default_schedule(
                "retrieve-log-retention",
                "0 45 3 * * *",
                RetrieveLogRetentionArgs::KIND,
                json!({"retention_s": self.retrieve_logs.retention.as_secs_f64()}),
            ),
            default_schedule(
                "memory-expiry",
                "0 20 * * * *",
                MemoryExpiryArgs::KIND,
                json!({}),
            ),
            default_schedule(
                "memory-policies-catchup",
                "30 */5 * * * *",
                MemoryPoliciesCatchUpArgs::KIND,
                json!({}),
            ),
        ]
    }

    /// Every schedule the config asks for, defaults included, in the order: defaults first
    /// (overridden in place), then the config's own. Validation has made sure that an entry
    /// of a new name carries `cron` and `kind`; one that does not is left out.
    pub fn effective_schedules(&self) -> Vec<ScheduleSpec> {
        let mut out = self.default_schedules();
        for entry in &self.schedules {
            match out.iter_mut().find(|s| s.name == entry.name) {
                Some(base) => {
                    apply(base, entry);
                    base.source = ScheduleSource::Config;
                }
                None => {
                    let (Some(cron), Some(kind)) = (&entry.cron, &entry.kind) else {
                        continue;
                    };
                    let mut spec = default_schedule(&entry.name, "0 0 * * * *", kind, json!({}));
                    spec.cron = cron.clone();
                    apply(&mut spec, entry);
                    spec.source = ScheduleSource::Config;
                    out.push(spec);
                }
            }
        }
        out
    }
}

fn apply(base: &mut ScheduleSpec, entry: &ScheduleConfig) {
    if let Some(cron) = &entry.cron {
        base.cron = cron.clone();
    }
    if let Some(kind) = &entry.kind {
        base.kind = kind.clone();
    }
    if let Some(args) = &entry.args {
        base.args = args.clone();
    }
    if let Some(queue) = &entry.queue {
        base.queue = queue.clone();
    }
    if let Some(enabled) = entry.enabled {
        base.enabled = enabled;
    }
    if entry.timezone.is_some() {
        base.timezone = entry.timezone;
    }
}
