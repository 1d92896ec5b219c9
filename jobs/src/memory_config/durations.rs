//! Durations as Compozy writes them: `30s`, `5m`, `24h`, `1h30m`, and also `7d`.

use std::time::Duration;

/// The longest duration a configuration may name: far past any sensible TTL, far inside what
/// PostgreSQL's `interval` holds.
const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A positive duration, or why not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration such as \"30s\", \"5m\", \"24h\" or \"7d\": {e}")
    })?;
    if d.is_zero() {
        return Err(format!("{text:?} is zero; a duration must be positive"));
    }
    if d > MAX {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compozy_durations_parse_and_nonsense_does_not() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "0s", "soon", "-5m", "5", "1000000000y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
