//! Bad input, property-based (proptest):
//!
//! - every request body of the control port, sent to a running daemon: arbitrary JSON,
//!   arbitrary bytes, and near-valid variants of a valid body (a field of the wrong type, an
//!   unknown enum value, huge and negative numbers, empty strings, odd unicode, a field
//!   missing or unknown, a truncated body). Never a 5xx; every 4xx is
//!   `application/problem+json` with a non-empty `detail`; the daemon never panics and
//!   stays up;
//! - in-process: the config parser (TOML text plus environment overrides), cron expressions
//!   with time zones, RFC 3339 purge cutoffs and ISO 8601 retention periods (eviction's
//!   `P30D`). None panics, and their errors say what is wrong.
//!
//! By what is fuzzed:
//!
//! - `control_port`: the request bodies, sent to a running daemon (`routes` lists every route
//!   with its fields and a valid body);
//! - `nul`: NUL characters in text fields and in an admin call's justification, the cases
//!   that once were 500s or skipped the audit row, kept by name;
//! - `config`: the config parser, with environment overrides, and its regressions (seconds
//!   no `Duration` holds, an override name with an empty segment);
//! - `cron`: cron expressions with time zones;
//! - `dates`: RFC 3339 purge cutoffs and ISO 8601 retention periods;
//! - `strategies`: the generators they share (a JSON value of our own, odd strings, numbers,
//!   RFC 3339 near misses).

mod config;
mod control_port;
mod cron;
mod dates;
mod nul;
mod routes;
mod strategies;

use crate::harness::scale;

/// Cases per parser property (`config`, `cron`, `dates`).
fn parser_cases() -> u32 {
    scale(1500, 20_000)
}
