//! Cron expressions with time zones, in process: parsing never panics, nor does asking an
//! accepted schedule for its ticks.

use chrono::Utc;
use memwarden::cron_spec::CronSpec;
use proptest::prelude::*;

use super::parser_cases;
use super::strategies::{odd_string, MEANINGFUL};

fn cron_field() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "*", "?", "*/5", "*/0", "0", "59", "60", "99999999999", "1-5", "5-1", "1-5/2", "1,2,3",
            "MON-FRI", "SUN", "JAN", "DEC-JAN", "L", "W", "#", "1#2", "-", ",", "/", "", "0-0",
            "2100", "1970-2099", "1969",
        ])
        .prop_map(String::from),
        1 => "[0-9*/,?LW#A-Z-]{1,6}",
    ]
    .boxed()
}

fn cron_expr() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::collection::vec(cron_field(), 0..9).prop_map(|f| f.join(" ")),
        1 => any::<String>(),
        1 => prop::sample::select(MEANINGFUL).prop_map(String::from),
    ]
    .boxed()
}

fn timezone() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        2 => Just(None),
        3 => prop::sample::select(vec![
            "", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Etc/GMT+12",
            "Pacific/Chatham", "Mars/Olympus", "utc", "Europe/berlin", "../UTC",
        ])
        .prop_map(|s| Some(s.to_string())),
        1 => odd_string().prop_map(Some),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: parser_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Cron expressions and time zones: parsing never panics, nor does asking an accepted
    /// schedule for its next and latest ticks, which the daemon does.
    #[test]
    fn cron_parser_never_panics(expr in cron_expr(), tz in timezone()) {
        match CronSpec::parse(&expr, tz.as_deref()) {
            Ok(spec) => {
                let now = Utc::now();
                let _ = spec.next_after(now);
                let _ = spec.latest_due(now - chrono::Duration::hours(2), now);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
