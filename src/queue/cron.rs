//! Cron: schedules from the defaults, the config file and the control port, stored in
//! `schedules`. Every replica runs this loop; a tick fires exactly once because the
//! conditional advance of `last_tick_at` and the enqueue are one statement, and only one
//! replica's update can win the row. After downtime a schedule catches up once, with its
//! latest missed tick.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};
use tokio_util::sync::CancellationToken;

use super::Queue;
use crate::config::ScheduleSpec;
use crate::cron_spec::CronSpec;
use crate::lifecycle::State;
use crate::supervisor::Service;
use crate::telemetry::metrics::JOBS_ENQUEUED;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq, utoipa::ToSchema)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub queue: String,
    pub enabled: bool,
    pub timezone: Option<String>,
    /// `default`, `config` or `api`.
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

    /// When it fires; none for a row whose expression no longer parses.
    pub fn spec(&self) -> Option<CronSpec> {
        CronSpec::parse(&self.cron, self.timezone.as_deref()).ok()
    }

    pub fn next_tick(&self) -> Option<DateTime<Utc>> {
        self.spec()?
            .next_after(self.last_tick_at.unwrap_or(self.created_at).max(Utc::now()))
    }
}

pub const SCHEDULE_COLUMNS: &str =
    "name, cron, kind, args, queue, enabled, timezone, source, last_tick_at, created_at, updated_at";

/// Writes the schedules of the settings in force into the table (defaults and config, for
/// the kinds this process has): schedules that left the config are removed, API schedules
/// are untouched unless the config names them.
pub async fn sync_schedules(queue: &Queue) -> Result<(), sqlx::Error> {
    let wanted: Vec<ScheduleSpec> = queue
        .settings()
        .effective_schedules()
        .into_iter()
        .filter(|s| queue.registry().contains(&s.kind))
        .collect();
    let mut tx = queue.pool().begin().await?;
    let names: Vec<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
    sqlx::query(
        "DELETE FROM schedules WHERE source IN ('default', 'config') AND NOT (name = ANY($1))",
    )
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    for s in &wanted {
        sqlx::query(
            "INSERT INTO schedules (name, cron, kind, args, queue, enabled, timezone, source, last_tick_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) \
             ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, kind = EXCLUDED.kind, args = EXCLUDED.args, \
               queue = EXCLUDED.queue, enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, source = EXCLUDED.source, \
               updated_at = CASE WHEN (schedules.cron, schedules.kind, schedules.args, schedules.queue, schedules.enabled, schedules.timezone) \
                 IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.kind, EXCLUDED.args, EXCLUDED.queue, EXCLUDED.enabled, EXCLUDED.timezone) \
                 THEN now() ELSE schedules.updated_at END \
             WHERE schedules.source <> 'api' OR EXCLUDED.source = 'config'",
        )
        .bind(&s.name)
        .bind(s.cron.as_str())
        .bind(&s.kind)
        .bind(&s.args)
        .bind(&s.queue)
        .bind(s.enabled)
        .bind(s.timezone.map(|z| z.name()))
        .bind(s.source.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub async fn list_schedules(pool: &PgPool) -> Result<Vec<Schedule>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
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
           UPDATE schedules SET last_tick_at = $2 \
           WHERE name = $1 AND enabled AND (last_tick_at IS NULL OR last_tick_at < $2) \
           RETURNING kind, args, queue) \
         SELECT enqueue(adv.kind, adv.args, adv.queue, 0::int2, NULL, $3, $4) FROM adv",
    )
    .bind(&schedule.name)
    .bind(tick)
    .bind(queue.max_attempts_of(&schedule.kind))
    .bind(&key)
    .fetch_optional(queue.pool())
    .await?;
    if fired.is_some() {
        metrics::counter!(JOBS_ENQUEUED, "kind" => schedule.kind.clone(), "queue" => schedule.queue.clone())
            .increment(1);
        queue.wakeups().wake(&schedule.queue);
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
            let Some(spec) = s.spec() else { continue };
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

    /// Ticks while READY (DRAINING and QUIESCED stop cron). The schedules were written into
    /// the table before the loops started; a config reload that changes the settings writes
    /// them again.
    async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut settings = self.queue.watch_settings();
        settings.borrow_and_update();
        let mut watching = true;
        let beat = self
            .queue
            .health()
            .register(self.name(), Duration::from_secs(1));
        let mut lifecycle = self.queue.lifecycle().subscribe();
        loop {
            beat.beat();
            let state = lifecycle.borrow_and_update().state;
            let wait = if state == State::Ready {
                match self.pass().await {
                    Ok(wait) => wait,
                    Err(e) => {
                        crate::telemetry::metrics::db_error("cron");
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
                changed = settings.changed(), if watching => match changed {
                    Ok(()) => {
                        settings.borrow_and_update();
                        if let Err(e) = sync_schedules(&self.queue).await {
                            crate::telemetry::metrics::db_error("cron");
                            tracing::error!(error = %e, "schedules not updated after the config reload");
                        }
                    }
                    // No one can change the settings any more.
                    Err(_) => watching = false,
                },
                // A resume fires what came due while drained at once, not a second later.
                _ = state_changes(&mut lifecycle, state) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// Returns when the lifecycle leaves `from` (the snapshot also changes with every lease taken
/// or handed in, which cron has no use for), or never once the lifecycle is gone.
async fn state_changes(
    rx: &mut tokio::sync::watch::Receiver<crate::lifecycle::Snapshot>,
    from: State,
) {
    while rx.changed().await.is_ok() {
        if rx.borrow_and_update().state != from {
            return;
        }
    }
    std::future::pending().await
}
