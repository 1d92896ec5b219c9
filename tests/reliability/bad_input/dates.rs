//! RFC 3339 purge cutoffs and ISO 8601 retention periods (eviction's `P30D`), in process:
//! neither parser panics, accepted values are in the past, and rejections name their field.

use std::time::Duration;

use chrono::Utc;
use memwarden::queue::purge::PurgeCutoff;
use memwarden_jobs::eviction::RetentionPeriod;
use proptest::prelude::*;

use super::parser_cases;
use super::strategies::{rfc3339ish, MEANINGFUL};

/// ISO 8601 durations and near misses: huge and fractional numbers, units out of place, signs,
/// a `T` with nothing after it, weeks mixed with days.
fn iso8601ish() -> BoxedStrategy<String> {
    let number = prop_oneof![
        4 => (0u64..1000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "99999999999999999999", "1.5", "0,5", ".5", "1.", "-1", "+1", "1e3", "",
        ])
        .prop_map(String::from),
    ];
    let part = |units: Vec<&'static str>| {
        prop::collection::vec((number.clone(), prop::sample::select(units)), 0..4).prop_map(
            |parts| {
                parts
                    .into_iter()
                    .map(|(n, u)| format!("{n}{u}"))
                    .collect::<String>()
            },
        )
    };
    let structured = (
        prop::sample::select(vec!["", "", "", "-", "+"]),
        prop::sample::select(vec!["P", "P", "P", "p", ""]),
        part(vec!["Y", "M", "W", "D", "H", "S"]),
        prop::option::of(part(vec!["H", "M", "S", "D"])),
    )
        .prop_map(|(sign, p, date, time)| match time {
            Some(t) => format!("{sign}{p}{date}T{t}"),
            None => format!("{sign}{p}{date}"),
        });
    prop_oneof![
        6 => structured,
        1 => "[PTYMWDHS0-9.,+ -]{0,16}",
        1 => prop::sample::select(MEANINGFUL).prop_map(String::from),
        1 => any::<String>().prop_map(|s| s.chars().take(30).collect()),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: parser_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// ISO 8601 retention periods (eviction): parsing never panics, nor does turning an
    /// accepted one into a cutoff; accepted ones are never negative (their cutoff is not
    /// after now); rejections name `retention_period`.
    #[test]
    fn retention_period_parser_never_panics(raw in iso8601ish()) {
        match RetentionPeriod::parse(Some(&raw)) {
            Ok(period) => {
                let now = Utc::now();
                match period.cutoff(now) {
                    Ok(cutoff) => prop_assert!(cutoff <= now, "{raw}: cutoff {cutoff} is after {now}"),
                    Err(e) => prop_assert!(e.to_string().contains("retention_period"), "{e}"),
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("retention_period"), "{e}"),
        }
    }

    /// RFC 3339 purge cutoffs: never a panic; accepted ones are at least the minimum
    /// retention in the past; rejections name `older_than`.
    #[test]
    fn purge_cutoff_parser_never_panics(raw in rfc3339ish()) {
        let now = Utc::now();
        match PurgeCutoff::parse(Some(&raw), Duration::from_secs(3600), now) {
            Ok(cutoff) => prop_assert!(cutoff.at() <= now - chrono::Duration::hours(1)),
            Err(e) => prop_assert!(e.to_string().contains("older_than"), "{e}"),
        }
    }
}
