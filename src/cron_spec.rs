//! Cron expressions (with seconds, as the `cron` crate reads them) and time zones, parsed once
//! and trusted after: by the configuration, the schedules API and the cron loop alike.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CronError {
    #[error("`{expr}` is not a cron expression (6 or 7 fields, seconds first, e.g. \"0 */5 * * * *\"): {reason}")]
    Expression { expr: String, reason: String },
    #[error("`{0}` is not a known time zone (use an IANA name such as \"Europe/Berlin\")")]
    TimeZone(String),
}

/// A validated cron expression, kept with the text it was written as.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronExpr {
    text: String,
    schedule: cron::Schedule,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for CronExpr {
    type Err = CronError;
    fn from_str(expr: &str) -> Result<Self, CronError> {
        let text = expr.trim().to_string();
        let schedule = cron::Schedule::from_str(&text).map_err(|e| CronError::Expression {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CronExpr { text, schedule })
    }
}

impl TryFrom<String> for CronExpr {
    type Error = CronError;
    fn try_from(s: String) -> Result<Self, CronError> {
        s.parse()
    }
}

impl From<CronExpr> for String {
    fn from(c: CronExpr) -> String {
        c.text
    }
}

impl CronExpr {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An IANA time zone name, such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone(Tz);

impl FromStr for Zone {
    type Err = CronError;
    fn from_str(name: &str) -> Result<Self, CronError> {
        Tz::from_str(name.trim())
            .map(Zone)
            .map_err(|_| CronError::TimeZone(name.to_string()))
    }
}

impl TryFrom<String> for Zone {
    type Error = CronError;
    fn try_from(s: String) -> Result<Self, CronError> {
        s.parse()
    }
}

impl From<Zone> for String {
    fn from(z: Zone) -> String {
        z.0.name().to_string()
    }
}

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// When a schedule fires: an expression read in a time zone (UTC when none is named).
#[derive(Debug, Clone)]
pub struct CronSpec {
    expr: CronExpr,
    tz: Tz,
}

impl CronSpec {
    pub fn new(expr: CronExpr, zone: Option<Zone>) -> Self {
        CronSpec {
            expr,
            tz: zone.unwrap_or(Zone::UTC).0,
        }
    }

    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        let zone = match timezone.map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(name.parse()?),
        };
        Ok(CronSpec::new(expr.parse()?, zone))
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.expr
            .schedule
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
                .expr
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_with_seconds_and_rejects_garbage() {
        assert!(CronSpec::parse("* * * * * *", None).is_ok());
        assert!(CronSpec::parse("0 */5 * * * *", Some("Europe/Berlin")).is_ok());
        assert!(CronSpec::parse("every minute", None).is_err());
        assert_eq!(
            CronSpec::parse("* * * * * *", Some("Mars/Olympus")).unwrap_err(),
            CronError::TimeZone("Mars/Olympus".into())
        );
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

    #[test]
    fn a_time_zone_moves_the_tick() {
        let berlin = CronSpec::parse("0 0 12 * * *", Some("Europe/Berlin")).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            berlin.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap())
        );
    }
}
