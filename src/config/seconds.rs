//! Durations written as a number of seconds (`grace_period = 25`, `lease = 2.5`), read into
//! `Duration` through serde_with, so nothing behind the settings converts or re-checks them.

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use serde_with::{DeserializeAs, SerializeAs};

/// Longer than any setting needs, and far inside what a `Duration` holds.
const TEN_YEARS_S: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// Zero or more seconds (a grace period of 0 means "do not wait").
pub struct Seconds;

/// More than zero seconds (a lease, an interval, a timeout).
pub struct PositiveSeconds;

fn to_duration(value: f64, zero_ok: bool) -> Result<Duration, String> {
    if value.is_finite() && value > TEN_YEARS_S {
        return Err(format!("{value} s is longer than ten years"));
    }
    if !value.is_finite() || value < 0.0 || (!zero_ok && value == 0.0) {
        let need = if zero_ok {
            "zero or more"
        } else {
            "greater than zero"
        };
        return Err(format!("must be a number of seconds {need}, got {value}"));
    }
    Ok(Duration::from_secs_f64(value))
}

impl<'de> DeserializeAs<'de, Duration> for Seconds {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        to_duration(f64::deserialize(d)?, true).map_err(D::Error::custom)
    }
}

impl<'de> DeserializeAs<'de, Duration> for PositiveSeconds {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        to_duration(f64::deserialize(d)?, false).map_err(D::Error::custom)
    }
}

impl SerializeAs<Duration> for Seconds {
    fn serialize_as<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl SerializeAs<Duration> for PositiveSeconds {
    fn serialize_as<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(to_duration(2.5, false), Ok(Duration::from_millis(2500)));
        assert_eq!(to_duration(0.0, true), Ok(Duration::ZERO));
        assert!(to_duration(0.0, false).is_err());
        assert!(to_duration(-1.0, true).is_err());
        assert!(to_duration(f64::NAN, true).is_err());
        assert!(to_duration(1e300, true).unwrap_err().contains("ten years"));
    }
}
