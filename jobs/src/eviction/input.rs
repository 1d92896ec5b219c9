//! What an eviction is asked for, parsed once: a retention period (ISO 8601, never
//! negative) and the resource types it covers.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 8601 duration such as `P90D`, `P1Y`, `PT24H` or `P0D`, never negative.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RetentionPeriod {
    text: String,
    span: jiff::Span,
}

impl PartialEq for RetentionPeriod {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TryFrom<String> for RetentionPeriod {
    type Error = EvictionInputError;
    fn try_from(s: String) -> Result<Self, EvictionInputError> {
        RetentionPeriod::parse(Some(&s))
    }
}

impl From<RetentionPeriod> for String {
    fn from(r: RetentionPeriod) -> String {
        r.text
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvictionInputError {
    #[error("`retention_period` is required (an ISO 8601 duration such as P90D, P1Y or PT24H)")]
    MissingRetention,
    #[error(
        "`retention_period`: `{0}` is not an ISO 8601 duration (such as P90D, P1Y, PT24H or P0D)"
    )]
    BadRetention(String),
    #[error("`retention_period`: `{0}` is negative; a retention period is zero or more")]
    NegativeRetention(String),
    #[error("`resource_types`: `{0}` is not one of conversations, attachments, memories")]
    BadResourceType(String),
    #[error("`resource_types`: a Memory Service store keeps no `{0}` for memwarden to evict")]
    NotInStore(&'static str),
}

impl RetentionPeriod {
    pub fn parse(raw: Option<&str>) -> Result<Self, EvictionInputError> {
        let text = raw
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(EvictionInputError::MissingRetention)?;
        // ISO 8601 only: jiff's `FromStr` also takes its friendly format ("5 minutes"), and
        // on an irreversible operation a lenient parse of a typo is a data-loss bug.
        static ISO_8601: jiff::fmt::temporal::SpanParser = jiff::fmt::temporal::SpanParser::new();
        let span = ISO_8601
            .parse_span(text)
            .map_err(|_| EvictionInputError::BadRetention(text.to_string()))?;
        if span.is_negative() {
            return Err(EvictionInputError::NegativeRetention(text.to_string()));
        }
        Ok(RetentionPeriod {
            text: text.to_string(),
            span,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `now` minus the period, in UTC (so P1Y and P1M follow the calendar).
    pub fn cutoff(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, EvictionInputError> {
        let ts = jiff::Timestamp::from_microsecond(now.timestamp_micros())
            .map_err(|_| EvictionInputError::BadRetention(self.text.clone()))?;
        let back = ts
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(self.span)
            .map_err(|_| EvictionInputError::BadRetention(self.text.clone()))?;
        chrono::DateTime::from_timestamp_micros(back.timestamp().as_microsecond())
            .ok_or_else(|| EvictionInputError::BadRetention(self.text.clone()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    #[serde(alias = "conversation")]
    Conversations,
    #[serde(alias = "attachment")]
    Attachments,
    #[serde(alias = "memory")]
    Memories,
}

impl FromStr for ResourceType {
    type Err = EvictionInputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "conversations" | "conversation" => Ok(ResourceType::Conversations),
            "attachments" | "attachment" => Ok(ResourceType::Attachments),
            "memories" | "memory" => Ok(ResourceType::Memories),
            _ => Err(EvictionInputError::BadResourceType(s.to_string())),
        }
    }
}

/// Parses resource types; none means conversations (Memory Service's default).
pub fn parse_resource_types(raw: &[String]) -> Result<Vec<ResourceType>, EvictionInputError> {
    let mut types = raw
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<ResourceType>, _>>()?;
    if types.is_empty() {
        types.push(ResourceType::Conversations);
    }
    types.sort();
    types.dedup();
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_parse_and_refuse_garbage() {
        for ok in ["P90D", "P1Y", "PT24H", "P0D", "P1Y2M3DT4H5M6S", "p30d"] {
            assert!(RetentionPeriod::parse(Some(ok)).is_ok(), "{ok}");
        }
        assert!(matches!(
            RetentionPeriod::parse(None),
            Err(EvictionInputError::MissingRetention)
        ));
        assert!(matches!(
            RetentionPeriod::parse(Some("  ")),
            Err(EvictionInputError::MissingRetention)
        ));
        for friendly in [
            "ninety days",
            "90 days",
            "3 weeks",
            "5 minutes",
            "1h",
            "90d",
        ] {
            assert!(
                matches!(
                    RetentionPeriod::parse(Some(friendly)),
                    Err(EvictionInputError::BadRetention(_))
                ),
                "{friendly} is not ISO 8601"
            );
        }
        assert!(matches!(
            RetentionPeriod::parse(Some("-P1D")),
            Err(EvictionInputError::NegativeRetention(_))
        ));
    }

    #[test]
    fn cutoff_follows_the_calendar() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z")
            .unwrap()
            .to_utc();
        let p = RetentionPeriod::parse(Some("P1Y")).unwrap();
        assert_eq!(
            p.cutoff(now).unwrap().to_rfc3339(),
            "2025-03-31T12:00:00+00:00"
        );
        let p = RetentionPeriod::parse(Some("PT24H")).unwrap();
        assert_eq!(
            p.cutoff(now).unwrap().to_rfc3339(),
            "2026-03-30T12:00:00+00:00"
        );
        let p = RetentionPeriod::parse(Some("P0D")).unwrap();
        assert_eq!(p.cutoff(now).unwrap(), now);
    }

    #[test]
    fn resource_types_default_to_conversations_and_refuse_unknown() {
        assert_eq!(
            parse_resource_types(&[]).unwrap(),
            vec![ResourceType::Conversations]
        );
        let t = parse_resource_types(&[
            "attachments".into(),
            "conversations".into(),
            "attachments".into(),
        ])
        .unwrap();
        assert_eq!(
            t,
            vec![ResourceType::Conversations, ResourceType::Attachments]
        );
        assert!(parse_resource_types(&["tables".into()]).is_err());
    }
}
