//! Cron: schedules from the defaults, the config file and the control port, stored in
//! `memwarden.schedules`. Every replica runs this loop; a tick fires exactly once because the
//! conditional advance of `last_tick_at` and the enqueue are one statement, and only one
//! replica's update can win the row. After downtime a schedule catches up once, with its
//! latest missed tick.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};
use tokio_util::sync::CancellationToken;

use super::Queue;
use crate::config::ScheduleConfig;
use crate::lifecycle::State;
use crate::supervisor::Service;

/// A validated cron expression (with seconds, as the `cron` crate reads it) and time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    schedule: cron::Schedule,
    tz: Tz,
}

#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("`{expr}` is not a cron expression (6 or 7 fields, seconds first, e.g. \"0 */5 * * * *\"): {reason}")]
    Expression { expr: String, reason: String },
    #[error("`{0}` is not a known time zone (use an IANA name such as \"Europe/Berlin\")")]
    TimeZone(String),
}

impl CronSpec {
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        let schedule =
            cron::Schedule::from_str(expr.trim()).map_err(|e| CronError::Expression {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        let tz = match timezone {
            None | Some("") => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| CronError::TimeZone(name.to_string()))?,
        };
        Ok(CronSpec { schedule, tz })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick in `(after, now]`, if any. Looks back in growing windows, so a
    /// per-second schedule after a day of downtime costs a few steps, not 86,400.
    pub fn latest_due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let spans = [
            chrono::Duration::minutes(1),
            chrono::Duration::hours(1),
            chrono::Duration::days(1),
            chrono::Duration::days(32),
            chrono::Duration::days(367),
            chrono::Duration::days(3660),
        ];
        for span in spans {
            let from = (now - span).max(after);
            let mut latest = None;
            for t in self
                .schedule
                .after(&from.with_timezone(&self.tz))
                .take(100_000)
            {
                let t = t.with_timezone(&Utc);
                if t > now {
                    break;
                }
                latest = Some(t);
            }
            if latest.is_some() || from == after {
                return latest;
            }
        }
        None
    }
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub args: serde_json::Value,
    pub queue: String,
    pub enabled: bool,
    pub timezone: Option<String>,
    pub source: String,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    /// A strong ETag over everything a client can set.
    pub fn etag(&self) -> String {
        let canonical = serde_json::json!([
            self.name,
            self.cron,
            self.kind,
            self.args,
            self.queue,
            self.enabled,
            self.timezone
        ]);
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        format!("\"{}\"", &hex::encode(digest)[..32])
    }

    pub fn next_tick(&self) -> Option<DateTime<Utc>> {
        let spec = CronSpec::parse(&self.cron, self.timezone.as_deref()).ok()?;
        spec.next_after(self.last_tick_at.unwrap_or(self.created_at).max(Utc::now()))
    }
}

pub const SCHEDULE_COLUMNS: &str =
    "name, cron, kind, args, queue, enabled, timezone, source, last_tick_at, created_at, updated_at";

/// The four default schedules (spec/queue.md), for the kinds this process has.
pub fn default_schedules(queue: &Queue) -> Vec<ScheduleConfig> {
    let settings = queue.settings();
    let mut defaults = vec![ScheduleConfig {
        name: "job-purge".into(),
        cron: "0 0 * * * *".into(),
        kind: "job-purge".into(),
        args: serde_json::json!({"retention_s": settings.purge.retention}),
        queue: "default".into(),
        enabled: true,
        timezone: None,
    }];
    for (name, cron, kind, args) in [
        ("sync", "0 30 * * * *", "sync", serde_json::json!({})),
        (
            "eviction",
            "0 15 3 * * *",
            "eviction",
            serde_json::json!({
                "retention_period": settings.eviction.retention,
                "resource_types": settings.eviction.resource_types,
            }),
        ),
        (
            "enrichment-catchup",
            "0 */5 * * * *",
            "enrichment-catchup",
            serde_json::json!({}),
        ),
    ] {
        defaults.push(ScheduleConfig {
            name: name.into(),
            cron: cron.into(),
            kind: kind.into(),
            args,
            queue: "default".into(),
            enabled: true,
            timezone: None,
        });
    }
    defaults.retain(|s| queue.registry().contains(&s.kind));
    defaults
}

/// Writes the default and config schedules into the table: a config entry with a default's
/// name overrides it; schedules that left the config are removed; API schedules are untouched.
pub async fn sync_schedules(queue: &Queue) -> Result<(), sqlx::Error> {
    let settings = queue.settings();
    let mut wanted: Vec<(ScheduleConfig, &str)> = default_schedules(queue)
        .into_iter()
        .map(|s| (s, "default"))
        .collect();
    for s in &settings.schedules {
        wanted.retain(|(d, _)| d.name != s.name);
        wanted.push((s.clone(), "config"));
    }
    let mut tx = queue.pool().begin().await?;
    let names: Vec<String> = wanted.iter().map(|(s, _)| s.name.clone()).collect();
    sqlx::query("DELETE FROM memwarden.schedules WHERE source IN ('default', 'config') AND NOT (name = ANY($1))")
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    for (s, source) in wanted {
        sqlx::query(
            "INSERT INTO memwarden.schedules (name, cron, kind, args, queue, enabled, timezone, source, last_tick_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) \
             ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, kind = EXCLUDED.kind, args = EXCLUDED.args, \
               queue = EXCLUDED.queue, enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, source = EXCLUDED.source, \
               updated_at = CASE WHEN (schedules.cron, schedules.kind, schedules.args, schedules.queue, schedules.enabled, schedules.timezone) \
                 IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.kind, EXCLUDED.args, EXCLUDED.queue, EXCLUDED.enabled, EXCLUDED.timezone) \
                 THEN now() ELSE schedules.updated_at END \
             WHERE schedules.source <> 'api' OR EXCLUDED.source = 'config'",
        )
        .bind(&s.name)
        .bind(&s.cron)
        .bind(&s.kind)
        .bind(&s.args)
        .bind(&s.queue)
        .bind(s.enabled)
        .bind(&s.timezone)
        .bind(source)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn list_schedules(pool: &PgPool) -> Result<Vec<Schedule>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM memwarden.schedules ORDER BY name"
    ))
    .fetch_all(pool)
    .await
}

/// Enqueues `tick` of `name` if no replica has yet; true if this call did.
pub async fn fire(
    queue: &Queue,
    schedule: &Schedule,
    tick: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let key = format!(
        "cron:{}:{}",
        schedule.name,
        tick.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let fired: Option<uuid::Uuid> = sqlx::query_scalar(
        "WITH adv AS ( \
           UPDATE memwarden.schedules SET last_tick_at = $2 \
           WHERE name = $1 AND enabled AND (last_tick_at IS NULL OR last_tick_at < $2) \
           RETURNING kind, args, queue) \
         SELECT memwarden.enqueue(adv.kind, adv.args, adv.queue, 0::int2, NULL, $3, $4) FROM adv",
    )
    .bind(&schedule.name)
    .bind(tick)
    .bind(queue.max_attempts_of(&schedule.kind))
    .bind(&key)
    .fetch_optional(queue.pool())
    .await?;
    if fired.is_some() {
        metrics::counter!("memwarden_jobs_enqueued_total", "kind" => schedule.kind.clone(), "queue" => schedule.queue.clone())
            .increment(1);
        queue.wake(&schedule.queue);
        tracing::info!(schedule = %schedule.name, tick = %tick, "cron tick enqueued");
    }
    Ok(fired.is_some())
}

pub struct Cron {
    queue: Queue,
}

impl Cron {
    pub fn new(queue: Queue) -> Self {
        Cron { queue }
    }

    /// Fires every due schedule once; returns how long until the next tick (at most 1 s, so
    /// schedule changes are picked up promptly).
    async fn pass(&self) -> Result<Duration, sqlx::Error> {
        let now = Utc::now();
        let mut next = now + chrono::Duration::seconds(1);
        for s in list_schedules(self.queue.pool()).await? {
            if !s.enabled || !self.queue.registry().contains(&s.kind) {
                continue;
            }
            let Ok(spec) = CronSpec::parse(&s.cron, s.timezone.as_deref()) else {
                continue;
            };
            let after = s.last_tick_at.unwrap_or(s.created_at);
            if let Some(tick) = spec.latest_due(after, now) {
                fire(&self.queue, &s, tick).await?;
            }
            if let Some(t) = spec.next_after(now) {
                next = next.min(t);
            }
        }
        Ok((next - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}

#[async_trait::async_trait]
impl Service for Cron {
    fn name(&self) -> String {
        "cron".into()
    }

    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let lifecycle = self.queue.app().lifecycle().clone();
        let beat = self
            .queue
            .app()
            .health()
            .register(self.name(), Duration::from_secs(1));
        loop {
            beat.beat();
            // DRAINING and QUIESCED stop cron; READY resumes it.
            let wait = if lifecycle.state() == State::Ready {
                match self.pass().await {
                    Ok(wait) => wait,
                    Err(e) => {
                        metrics::counter!("memwarden_db_errors_total", "op" => "cron").increment(1);
                        tracing::warn!(error = %e, "cron pass failed");
                        Duration::from_secs(1)
                    }
                }
            } else {
                Duration::from_secs(1)
            };
            // Wake a hair after the tick, so `now` is past it on this clock.
            tokio::select! {
                _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_with_seconds_and_rejects_garbage() {
        assert!(CronSpec::parse("* * * * * *", None).is_ok());
        assert!(CronSpec::parse("0 */5 * * * *", Some("Europe/Berlin")).is_ok());
        assert!(CronSpec::parse("every minute", None).is_err());
        assert!(CronSpec::parse("* * * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn latest_due_catches_up_once() {
        let spec = CronSpec::parse("0 0 * * * *", None).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 3, 5, 30, 0).unwrap();
        assert_eq!(
            spec.latest_due(after, now),
            Some(Utc.with_ymd_and_hms(2026, 1, 3, 5, 0, 0).unwrap())
        );
        assert_eq!(spec.latest_due(now, now), None);
        let every_second = CronSpec::parse("* * * * * *", None).unwrap();
        let long_ago = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(every_second.latest_due(long_ago, now), Some(now));
    }
}
