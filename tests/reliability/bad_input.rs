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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use memwarden::config::{ConfigError, Overrides, Settings};
use memwarden::cron_spec::CronSpec;
use memwarden::queue::purge::PurgeCutoff;
use memwarden_jobs::eviction::RetentionPeriod;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::harness::{report, scale, Daemon, Row, TestDb, ADMIN, API};

// ---------------------------------------------------------------------------------------------
// A JSON value of our own, so that numbers can be any token (1e400, 2^64) and objects can
// repeat a key, which serde_json::Value cannot express.

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn s(v: &str) -> J {
    J::Str(v.into())
}

fn n(v: &str) -> J {
    J::Num(v.into())
}

/// Strings that mean something to some field somewhere.
const MEANINGFUL: &[&str] = &[
    "probe",
    "job-purge",
    "enrichment",
    "default",
    "PROBE",
    "2000-01-01T00:00:00Z",
    "2999-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00+14:00",
    "2020-02-30T00:00:00Z",
    "2020-01-01T24:00:00Z",
    "2020-01-01T00:00:60Z",
    "2020-01-01",
    "+262143-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "now",
    "0 0 * * * *",
    "* * * * * *",
    "0 0 0 31 2 *",
    "0 0 0 1 1 * 2100",
    "60 * * * * *",
    "@hourly",
    "every day",
    "UTC",
    "Europe/Berlin",
    "Mars/Olympus",
    "BACKGROUND_JOB_SUCCEEDED",
    "BACKGROUND_JOB_RUNNING",
    "SUCCEEDED",
    "succeeded",
    "failed",
    "canceled",
    "cancelled",
    "running",
    "available",
    "P30D",
    "P1Y",
    "PT24H",
    "P0D",
    "-P1D",
    "P99999999999Y",
    "P1Y2M3DT4H5M6.789S",
    "PT",
    "conversations",
    "attachments",
    "memories",
    "0190f5a0-0000-7000-8000-000000000001",
    "1h",
    "'; DROP TABLE memwarden.jobs; --",
    "%00",
    "\\u0000",
    "..",
    "../../etc/passwd",
];

/// Characters that trip up text handling: NUL (which PostgreSQL cannot store), controls, bidi overrides, combining marks, BOMs,
/// surrogates' neighbours, the last code point, emoji with joiners.
const ODD_CHARS: &[char] = &[
    '\u{0}',
    '\u{1}',
    '\u{7}',
    '\t',
    '\n',
    '\r',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{300}',
    '\u{200b}',
    '\u{200d}',
    '\u{202e}',
    '\u{2028}',
    '\u{fdd0}',
    '\u{feff}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10ffff}',
    '\u{1f4a5}',
    '\u{1f468}',
    'é',
    'ß',
    'İ',
    '中',
    '"',
    '\\',
    '/',
    '%',
    ' ',
    ':',
    '{',
    '}',
];

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_.-]{0,16}",
        2 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        3 => prop::sample::select(MEANINGFUL).prop_map(String::from),
        2 => prop::collection::vec(prop::sample::select(ODD_CHARS), 0..12)
            .prop_map(|v| v.into_iter().collect()),
        1 => Just(String::new()),
        1 => Just("   ".to_string()),
        1 => "[a-z]{200,600}",
        2 => rfc3339ish(),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<String> {
    const SPECIAL: &[&str] = &[
        "0",
        "-0",
        "-1",
        "1",
        "0.5",
        "-0.0",
        "1e400",
        "-1e400",
        "1e-400",
        "1E2",
        "32767",
        "32768",
        "-32769",
        "2147483647",
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
    ];
    prop_oneof![
        2 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => any::<i16>().prop_map(|v| v.to_string()),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        3 => prop::sample::select(SPECIAL).prop_map(String::from),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number().prop_map(J::Num),
        4 => odd_string().prop_map(J::Str),
    ]
    .boxed()
}

fn key(fields: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(fields).prop_map(String::from),
        1 => odd_string(),
    ]
    .boxed()
}

fn json_value(fields: &'static [&'static str]) -> BoxedStrategy<J> {
    leaf()
        .prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
                prop::collection::vec((key(fields), inner), 0..6).prop_map(J::Obj),
            ]
        })
        .boxed()
}

/// A value meant to break one field: the wrong type, an empty or odd string, a huge or
/// negative number, an unknown enum value, a nested structure.
fn bad_value() -> BoxedStrategy<J> {
    prop_oneof![
        6 => leaf(),
        1 => Just(J::Arr(vec![])),
        1 => Just(J::Obj(vec![])),
        1 => Just(J::Arr(vec![s("BACKGROUND_JOB_RUNNING"), J::Null, n("1")])),
        1 => Just(J::Obj(vec![("sleep_ms".into(), n("-1"))])),
        1 => json_value(&["a", "b"]),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// The routes, their fields and a valid body for each.

#[derive(Debug, Clone, Copy)]
enum Param {
    None,
    Name,
    JobId,
}

struct Route {
    method: &'static str,
    path: &'static str,
    param: Param,
    fields: &'static [&'static str],
    valid: fn() -> Vec<(String, J)>,
    /// The reply waits for the job it enqueues (Memory Service's evict): fuzzed against a
    /// daemon that runs jobs, in a test of its own.
    waits: bool,
}

const JOB_FIELDS: &[&str] = &[
    "kind",
    "args",
    "queue",
    "priority",
    "run_at",
    "runAt",
    "max_attempts",
    "maxAttempts",
    "unique_key",
    "uniqueKey",
    "justification",
];
const DRAIN_FIELDS: &[&str] = &[
    "reason",
    "timeout_sec",
    "timeoutSec",
    "wait_for_quiesce",
    "waitForQuiesce",
    "justification",
];
const PURGE_FIELDS: &[&str] = &[
    "older_than",
    "olderThan",
    "statuses",
    "limit",
    "dry_run",
    "dryRun",
    "justification",
];
const SCHEDULE_FIELDS: &[&str] = &[
    "cron",
    "kind",
    "args",
    "queue",
    "enabled",
    "timezone",
    "justification",
];
const NO_FIELDS: &[&str] = &["justification", "reason", "force"];
const EVICT_FIELDS: &[&str] = &[
    "retention_period",
    "retentionPeriod",
    "resource_types",
    "resourceTypes",
    "dry_run",
    "dryRun",
    "justification",
];
const REPROCESS_FIELDS: &[&str] = &["ids", "justification"];
const REEMBED_FIELDS: &[&str] = &["batch_size", "limit", "force", "justification"];
const SYNC_FIELDS: &[&str] = &["batch_size", "dry_run", "justification"];

fn obj(fields: &[(&str, J)]) -> Vec<(String, J)> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn valid_job() -> Vec<(String, J)> {
    obj(&[
        ("kind", s("probe")),
        ("args", J::Obj(vec![("sleep_ms".into(), n("10"))])),
        ("queue", s("fuzz")),
        ("priority", n("3")),
        ("run_at", s("2999-01-01T00:00:00Z")),
        ("max_attempts", n("3")),
        ("unique_key", s("fuzz-key")),
    ])
}

fn valid_drain() -> Vec<(String, J)> {
    obj(&[
        ("reason", s("fuzz")),
        ("timeout_sec", n("1")),
        ("wait_for_quiesce", J::Bool(false)),
    ])
}

fn valid_purge() -> Vec<(String, J)> {
    obj(&[
        ("older_than", s("2000-01-01T00:00:00Z")),
        (
            "statuses",
            J::Arr(vec![s("BACKGROUND_JOB_SUCCEEDED"), s("failed")]),
        ),
        ("limit", n("10")),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_schedule() -> Vec<(String, J)> {
    obj(&[
        ("cron", s("0 0 * * * *")),
        ("kind", s("probe")),
        ("args", J::Obj(vec![])),
        ("queue", s("fuzz")),
        ("enabled", J::Bool(false)),
        ("timezone", s("Europe/Berlin")),
    ])
}

fn valid_evict() -> Vec<(String, J)> {
    obj(&[
        ("retention_period", s("P30D")),
        (
            "resource_types",
            J::Arr(vec![s("conversations"), s("memories")]),
        ),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_reembed() -> Vec<(String, J)> {
    obj(&[
        ("batch_size", J::Num("16".into())),
        ("limit", J::Num("10".into())),
        ("force", J::Bool(false)),
    ])
}

fn valid_sync() -> Vec<(String, J)> {
    obj(&[
        ("batch_size", J::Num("8".into())),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_reprocess() -> Vec<(String, J)> {
    obj(&[(
        "ids",
        J::Arr(vec![s("0190f5a0-0000-7000-8000-000000000001")]),
    )])
}

fn valid_empty() -> Vec<(String, J)> {
    Vec::new()
}

static ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/jobs",
        param: Param::None,
        fields: JOB_FIELDS,
        valid: valid_job,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/drain",
        param: Param::None,
        fields: DRAIN_FIELDS,
        valid: valid_drain,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin:drain",
        param: Param::None,
        fields: DRAIN_FIELDS,
        valid: valid_drain,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/background-jobs:purge",
        param: Param::None,
        fields: PURGE_FIELDS,
        valid: valid_purge,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/jobs/purge",
        param: Param::None,
        fields: PURGE_FIELDS,
        valid: valid_purge,
        waits: false,
    },
    Route {
        method: "PUT",
        path: "/v1/schedules/{}",
        param: Param::Name,
        fields: SCHEDULE_FIELDS,
        valid: valid_schedule,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/queues/{}/pause",
        param: Param::Name,
        fields: NO_FIELDS,
        valid: valid_empty,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/jobs/{}/cancel",
        param: Param::JobId,
        fields: NO_FIELDS,
        valid: valid_empty,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/evict",
        param: Param::None,
        fields: EVICT_FIELDS,
        valid: valid_evict,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/enrichment/reprocess",
        param: Param::None,
        fields: REPROCESS_FIELDS,
        valid: valid_reprocess,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/reprocess",
        param: Param::None,
        fields: REPROCESS_FIELDS,
        valid: valid_reprocess,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/evict",
        param: Param::None,
        fields: EVICT_FIELDS,
        valid: valid_evict,
        waits: true,
    },
    Route {
        method: "POST",
        path: "/v1/work/reembed",
        param: Param::None,
        fields: REEMBED_FIELDS,
        valid: valid_reembed,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/sync",
        param: Param::None,
        fields: SYNC_FIELDS,
        valid: valid_sync,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/admin/reembed",
        param: Param::None,
        fields: REEMBED_FIELDS,
        valid: valid_reembed,
        waits: true,
    },
    Route {
        method: "POST",
        path: "/admin/sync",
        param: Param::None,
        fields: SYNC_FIELDS,
        valid: valid_sync,
        waits: true,
    },
];

/// A near-valid body: the route's valid body with one or two edits.
fn near_valid(route: &'static Route) -> BoxedStrategy<String> {
    let edit = (
        0usize..3,
        any::<prop::sample::Index>(),
        key(route.fields),
        bad_value(),
    );
    prop::collection::vec(edit, 1..3)
        .prop_map(move |edits| {
            let mut fields = (route.valid)();
            for (op, at, k, v) in edits {
                match op {
                    // Replace a field's value (or add one, for an empty body).
                    0 if !fields.is_empty() => {
                        let i = at.index(fields.len());
                        fields[i].1 = v;
                    }
                    // Drop a field.
                    1 if !fields.is_empty() => {
                        fields.remove(at.index(fields.len()));
                    }
                    // Add a field, known (perhaps a duplicate) or not.
                    _ => fields.push((k, v)),
                }
            }
            J::Obj(fields).render()
        })
        .boxed()
}

fn body(route: &'static Route) -> BoxedStrategy<Vec<u8>> {
    let valid = J::Obj((route.valid)()).render();
    let valid2 = valid.clone();
    prop_oneof![
        6 => near_valid(route).prop_map(String::into_bytes),
        3 => json_value(route.fields).prop_map(|j| j.render().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => any::<prop::sample::Index>().prop_map(move |i| {
            // Truncated mid-token.
            let cut = i.index(valid.len().max(1));
            valid.as_bytes()[..cut].to_vec()
        }),
        1 => prop::sample::select(vec![
            String::new(),
            " ".into(),
            "null".into(),
            "[]".into(),
            "\"\"".into(),
            "{}{}".into(),
            format!("{valid2} trailing"),
            "[".repeat(300),
            format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            "{\"a\":".repeat(150),
            "\u{feff}{}".into(),
            "{\"kind\":\"probe\",\"kind\":\"probe\"}".into(),
        ])
        .prop_map(String::into_bytes),
    ]
    .boxed()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    Admin,
    ApiOnly,
    WrongAdmin,
    Nothing,
}

#[derive(Debug, Clone)]
struct Case {
    route: usize,
    path: String,
    body: Vec<u8>,
    auth: Auth,
    json_type: bool,
}

/// Cases for the routes whose `waits` is `waits`.
fn case(existing_job: String, waits: bool) -> BoxedStrategy<Case> {
    let per_route: Vec<BoxedStrategy<Case>> = ROUTES
        .iter()
        .enumerate()
        .filter(|(_, route)| route.waits == waits)
        .map(|(i, route)| {
            let param: BoxedStrategy<String> = match route.param {
                Param::None => Just(String::new()).boxed(),
                Param::Name => prop_oneof![
                    3 => "[a-z0-9_.-]{1,20}",
                    2 => odd_string(),
                    1 => Just("default".to_string()),
                ]
                .boxed(),
                Param::JobId => prop_oneof![
                    2 => any::<u128>().prop_map(|v| uuid::Uuid::from_u128(v).to_string()),
                    2 => Just(existing_job.clone()),
                    2 => odd_string(),
                ]
                .boxed(),
            };
            let auth = prop_oneof![
                17 => Just(Auth::Admin),
                1 => Just(Auth::ApiOnly),
                1 => Just(Auth::WrongAdmin),
                1 => Just(Auth::Nothing),
            ];
            (param, body(route), auth, any::<bool>())
                .prop_map(move |(param, body, auth, json_type)| Case {
                    route: i,
                    path: route.path.replace("{}", &encode(&param)),
                    body,
                    auth,
                    json_type,
                })
                .boxed()
        })
        .collect();
    prop::strategy::Union::new(per_route).boxed()
}

/// Sends one case; Err names what the reply got wrong.
async fn check(client: &reqwest::Client, base: &str, c: &Case) -> Result<u16, String> {
    let route = &ROUTES[c.route];
    let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
    let mut req = client
        .request(method, format!("{base}{}", c.path))
        .body(c.body.clone());
    if c.json_type {
        req = req.header("content-type", "application/json");
    }
    req = match c.auth {
        Auth::Admin => req
            .header("authorization", format!("Bearer {API}"))
            .header("x-admin-token", ADMIN),
        Auth::ApiOnly => req.header("authorization", format!("Bearer {API}")),
        Auth::WrongAdmin => req
            .header("authorization", format!("Bearer {API}"))
            .header("x-admin-token", "not-the-admin-token"),
        Auth::Nothing => req,
    };
    let resp = req
        .send()
        .await
        .map_err(|e| format!("no reply (did the daemon die?): {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    if status >= 500 {
        return Err(format!("{status} {content_type}: {text}"));
    }
    if (400..500).contains(&status) {
        if !content_type.starts_with("application/problem+json") {
            return Err(format!(
                "{status} with content-type `{content_type}`, not problem+json: {text}"
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{status}: the problem is not JSON ({e}): {text}"))?;
        match v["detail"].as_str() {
            Some(d) if !d.trim().is_empty() => {}
            _ => return Err(format!("{status}: no detail: {text}")),
        }
        if v["status"].as_u64() != Some(status as u64) {
            return Err(format!("{status}: the problem's status differs: {text}"));
        }
    }
    Ok(status)
}

type Tally = std::collections::BTreeMap<u16, usize>;

/// Sends cases for the routes whose `waits` is `waits` to `d`: at least `min`, then more in
/// rounds of 250 while `budget` lasts, never more than `max`. Panics, with the daemon's log,
/// at the first reply that breaks the rules (after shrinking it to a small case).
async fn fuzz(
    d: &Daemon,
    existing_job: String,
    waits: bool,
    (min, max): (usize, usize),
    budget: Duration,
) -> (usize, Tally) {
    let base = d.url("");
    let sent = Arc::new(AtomicUsize::new(0));
    let by_status: Arc<Mutex<Tally>> = Arc::default();
    let outcome: Result<(), String> = {
        let (sent, by_status) = (sent.clone(), by_status.clone());
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let strategy = case(existing_job, waits);
            let started = Instant::now();
            loop {
                let done = sent.load(Ordering::Relaxed);
                if done >= max || (done >= min && started.elapsed() >= budget) {
                    return Ok(());
                }
                let mut runner = TestRunner::new(Config {
                    cases: 250.min(max - done) as u32,
                    failure_persistence: None,
                    max_shrink_iters: 200,
                    ..Config::default()
                });
                runner
                    .run(&strategy, |c| {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let status = rt
                            .block_on(check(&client, &base, &c))
                            .map_err(TestCaseError::fail)?;
                        *by_status.lock().unwrap().entry(status).or_default() += 1;
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
            }
        })
        .await
        .unwrap()
    };
    if let Err(e) = outcome {
        panic!(
            "{e}\ndaemon log tail:\n{}",
            crate::harness::tail(&d.logs(), 30)
        );
    }
    let tally = by_status.lock().unwrap().clone();
    (sent.load(Ordering::Relaxed), tally)
}

fn rejected(tally: &Tally) -> usize {
    tally
        .iter()
        .filter(|(s, _)| **s >= 400)
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn control_port_bodies_never_5xx_and_rejections_are_problems() {
    let t0 = Instant::now();
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let mut d = Daemon::builder(&db.url)
        .config("[queues.default]\nconcurrency = 2")
        .ready()
        .await;
    // Quiet: no fuzzed job or schedule runs; every request is still served.
    d.quiet().await;
    let existing: uuid::Uuid = sqlx::query_scalar("SELECT memwarden.enqueue('probe', '{}'::jsonb)")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (sent, tally) = fuzz(
        &d,
        existing.to_string(),
        false,
        scale((1000, 6000), (10_000, 100_000)),
        Duration::from_secs(scale(20, 300)),
    )
    .await;

    // A body over the size limit is a 4xx problem too.
    let big = vec![b'x'; 3 << 20];
    let r = crate::harness::admin_client()
        .post(d.url("/v1/jobs"))
        .body(big)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap_or_default();
    assert!(
        (400..500).contains(&status) && content_type.starts_with("application/problem+json"),
        "a 3 MiB body: {status} {content_type} {text}"
    );

    assert!(d.alive(), "the daemon is still up");
    assert_eq!(d.status_of("/healthz").await, Some(200));
    d.assert_no_panic("bad input");
    let jobs = crate::harness::count(
        &pool,
        "SELECT count(*) FROM memwarden.jobs WHERE kind = 'probe'",
    )
    .await;
    // Every admin call of the fuzz was audited, whatever its body.
    let unaudited = d.logs().matches("audit row not written").count();
    assert_eq!(unaudited, 0, "admin calls without their audit row");
    eprintln!(
        "bad input: {sent} requests, replies by status {tally:?}, {jobs} jobs created, \
         {unaudited} audit rows not written"
    );
    report(Row {
        scenario: "bad input (control port)",
        runs: format!(
            "{sent} requests, {} routes",
            ROUTES.iter().filter(|r| !r.waits).count()
        ),
        faults: format!("{} rejected with a problem (4xx), 0 5xx", rejected(&tally)),
        jobs: format!("{jobs} enqueued by fuzz"),
        lost: 0,
        duplicates: "0".into(),
        worst_recovery: "n/a (no panic, stayed up)".into(),
        wall: t0.elapsed(),
    });
}

/// Memory Service's `POST /v1/admin/evict` answers only when its eviction job has ended, so it
/// is fuzzed against a daemon that runs jobs (on an empty memory store).
#[tokio::test]
async fn waiting_evict_route_never_5xx_on_bad_bodies() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    let (sent, tally) = fuzz(
        &d,
        uuid::Uuid::nil().to_string(),
        true,
        scale((100, 400), (1000, 5000)),
        Duration::from_secs(scale(8, 60)),
    )
    .await;
    assert_eq!(d.status_of("/healthz").await, Some(200));
    d.assert_no_panic("bad input, evict");
    eprintln!("bad input, /v1/admin/evict: {sent} requests, replies by status {tally:?}");
}

/// A NUL character in a text field would reach PostgreSQL, which cannot store it in text or
/// jsonb: the request is a 400 that says so, never a 500. (The general property above finds
/// this too; these are the cases that once were 500s, kept by name.)
#[tokio::test]
async fn nul_in_text_fields_is_a_400() {
    let db = TestDb::migrated();
    let d = Daemon::builder(&db.url).ready().await;
    d.quiet().await;
    let cases = [
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {}, "unique_key": "a\u{0}b"}),
        ),
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {"note": "a\u{0}b"}}),
        ),
        (
            "POST",
            "/v1/jobs",
            serde_json::json!({"kind": "probe", "args": {"a\u{0}b": 1}}),
        ),
        (
            "PUT",
            "/v1/schedules/nul",
            serde_json::json!({"cron": "0 0 * * * *", "kind": "probe", "args": {"note": "a\u{0}b"}}),
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        let r = crate::harness::admin_client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                d.url(path),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status != 400 {
            failures.push(format!(
                "{method} {path} {body}: {status} {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every admin call is audited, allowed or refused (a row in `memwarden.audit_log`), even when
/// its `justification` holds a NUL character, which PostgreSQL text cannot store. Regression:
/// the audit insert used to fail ("audit row not written") while the call itself took effect
/// (the pause routes read no body, so nothing refused the NUL).
#[tokio::test]
async fn a_nul_in_the_justification_never_skips_the_audit_row() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let d = Daemon::builder(&db.url).ready().await;
    let rows =
        || async { crate::harness::count(&pool, "SELECT count(*) FROM memwarden.audit_log").await };
    let client = crate::harness::admin_client();
    let mut problems = Vec::new();
    for (queue, query, body) in [
        ("nul-body", "", "{\"justification\": \"a\\u0000b\"}"),
        ("nul-query", "?justification=a%00b", ""),
    ] {
        let before = rows().await;
        let r = client
            .post(d.url(&format!("/v1/queues/{queue}/pause{query}")))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        // The audit row is written before the reply goes out.
        let audited = rows().await - before;
        let paused: Option<bool> =
            sqlx::query_scalar("SELECT paused FROM memwarden.queues WHERE name = $1")
                .bind(queue)
                .fetch_optional(&pool)
                .await
                .unwrap();
        if audited != 1 {
            problems.push(format!(
                "pause {queue}{query}: {status}, paused = {paused:?}, {audited} audit rows"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nlog: {}",
        problems.join("\n"),
        d.logs()
            .lines()
            .filter(|l| l.contains("audit row not written"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The parsers, in process.

fn parser_cases() -> u32 {
    scale(1500, 20_000)
}

fn config_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => number(),
        1 => prop::sample::select(vec!["inf", "-inf", "nan", "+nan", "1e300", "-1e300", "0.0", "1_000"])
            .prop_map(String::from),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        3 => odd_string().prop_map(|s| toml::Value::String(s).to_string()),
        1 => Just("[1, \"a\", {x = 1}]".to_string()),
        1 => Just("{ a = 1, b = \"c\" }".to_string()),
        1 => Just("1979-05-27T07:32:00Z".to_string()),
        1 => "[ -~]{0,20}",
    ]
    .boxed()
}

const SECTIONS: &[&str] = &[
    "database",
    "control",
    "auth",
    "admin",
    "shutdown",
    "log",
    "queue",
    "queues.default",
    "queues.\"odd name\"",
    "kinds.probe",
    "kinds.job-purge",
    "purge",
    "testing",
    "bogus",
];
const ARRAY_SECTIONS: &[&str] = &["schedules", "auth.keys"];
const KEYS: &[&str] = &[
    "url",
    "listen_url",
    "migrate",
    "max_connections",
    "acquire_timeout",
    "addr",
    "require_auth_metrics",
    "api_token",
    "admin_token",
    "require_justification",
    "grace_period",
    "level",
    "poll_interval_ms",
    "lease",
    "heartbeat",
    "reaper_interval",
    "depth_interval",
    "claim_batch",
    "complete_batch",
    "complete_delay_ms",
    "complete_concurrency",
    "default_concurrency",
    "prefetch",
    "max_attempts",
    "concurrency",
    "timeout",
    "queue",
    "backoff_base",
    "backoff_cap",
    "name",
    "cron",
    "kind",
    "args",
    "enabled",
    "timezone",
    "client_id",
    "role",
    "token",
    "token_sha256",
    "min_retention",
    "retention",
    "batch_size",
    "probe_kinds",
];

fn toml_line() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(SECTIONS).prop_map(|s| format!("[{s}]")),
        1 => prop::sample::select(ARRAY_SECTIONS).prop_map(|s| format!("[[{s}]]")),
        8 => (prop::sample::select(KEYS), config_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => ("[a-z_.]{1,12}", config_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
        1 => any::<String>().prop_map(|s| s.chars().take(30).collect()),
    ]
    .boxed()
}

fn env_override() -> BoxedStrategy<(String, String)> {
    let name = prop_oneof![
        4 => (prop::sample::select(SECTIONS), prop::sample::select(KEYS)).prop_map(|(s, k)| {
            format!(
                "MEMWARDEN_{}__{}",
                s.replace('.', "__").replace('"', "").to_ascii_uppercase(),
                k.to_ascii_uppercase()
            )
        }),
        1 => prop::sample::select(vec![
            "MEMWARDEN_API_TOKEN",
            "MEMWARDEN_ADMIN_TOKEN",
            "MEMWARDEN_ADMIN_REQUIRE_JUSTIFICATION",
            "DATABASE_URL",
            "MEMWARDEN_CONFIG",
            "MEMWARDEN___",
            "MEMWARDEN_____",
            "MEMWARDEN_QUEUE__",
            "MEMWARDEN___LEASE",
            "MEMWARDEN_A__B__C__D",
            "MEMWARDEN_QUEUE__LEASE__DEEPER",
            "MEMWARDEN_SCHEDULES__NAME",
        ])
        .prop_map(String::from),
        1 => "MEMWARDEN_[A-Z_]{0,20}",
    ];
    let value = prop_oneof![
        3 => number(),
        1 => prop::sample::select(vec!["", "true", "false", "nan", "inf", "postgres://u@h/db", "mysql://x"])
            .prop_map(String::from),
        2 => odd_string(),
    ];
    (name, value).boxed()
}

fn toml_ish() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::collection::vec(toml_line(), 0..14).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
    ]
    .boxed()
}

/// RFC 3339 and near misses: out-of-range fields, odd separators and offsets, missing parts.
fn rfc3339ish() -> BoxedStrategy<String> {
    let year = prop_oneof![0i64..=10_000, -300_000i64..=300_000];
    let field = |hi: u32| 0u32..=hi;
    let sep = prop::sample::select(vec!["T", "t", " ", "_", ""]);
    let frac = prop_oneof![Just(String::new()), "\\.[0-9]{1,12}", Just(".".to_string())];
    let offset = prop_oneof![
        Just("Z".to_string()),
        Just("z".to_string()),
        Just(String::new()),
        Just("-00:00".to_string()),
        (prop::sample::select(vec!["+", "-"]), 0u32..=99, 0u32..=99)
            .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
        Just("+0100".to_string()),
        Just(" UTC".to_string()),
    ];
    let structured = (
        year,
        field(13),
        field(32),
        sep,
        field(25),
        field(61),
        field(61),
        frac,
        offset,
    )
        .prop_map(|(y, mo, d, sep, h, mi, s, frac, off)| {
            let y = if (0..10_000).contains(&y) {
                format!("{y:04}")
            } else {
                format!("{y:+}")
            };
            format!("{y}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        });
    prop_oneof![
        6 => structured,
        1 => "[0-9T:.Z+ -]{0,30}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
    .boxed()
}

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

    /// The config parser never panics; every error names a key or says the text is not TOML.
    #[test]
    fn config_parser_never_panics_and_names_the_key(
        text in toml_ish(),
        env in prop::collection::vec(env_override(), 0..4),
    ) {
        match Settings::from_parts(&text, None, &env, &Overrides::default()) {
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                match &e {
                    ConfigError::Syntax { .. } => prop_assert!(message.contains("TOML"), "{message}"),
                    ConfigError::Invalid { key, reason } => {
                        prop_assert!(!key.trim().is_empty(), "no key named: {message}");
                        prop_assert!(!reason.trim().is_empty(), "no reason given: {message}");
                        prop_assert!(message.contains(key.as_str()), "{message}");
                    }
                    ConfigError::Read { .. } => prop_assert!(false, "nothing is read: {message}"),
                }
            }
        }
    }

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

/// An override whose name has an empty part (`MEMWARDEN___=0`, `MEMWARDEN_QUEUE__=1`) is
/// rejected, and the error names the variable (or a non-empty key), so the operator can find
/// it. Regression: it once said "invalid value for ``: unknown field ``".
#[test]
fn env_name_with_an_empty_segment_is_named() {
    for name in [
        "MEMWARDEN___",
        "MEMWARDEN_____",
        "MEMWARDEN_QUEUE__",
        "MEMWARDEN___LEASE",
    ] {
        let env = vec![(name.to_string(), "0".to_string())];
        let e = Settings::from_parts("", None, &env, &Overrides::default())
            .expect_err("an override of no setting is an error");
        let message = e.to_string();
        let named = match &e {
            ConfigError::Invalid { key, .. } => {
                !key.trim().is_empty() && !key.ends_with('.') && !key.starts_with('.')
            }
            _ => false,
        };
        assert!(
            named || message.contains(name),
            "{name}=0: the error names neither a key nor the variable: {message}"
        );
    }
}

/// Seconds-valued settings the parser accepts must be usable by the runtime, which turns
/// each into a `std::time::Duration`. Regression: a finite but huge value
/// (`shutdown.grace_period = 1e300`) used to pass validation and then panic the daemon (at
/// startup for `purge.min_retention`, at SIGTERM for `shutdown.grace_period`, in the completer
/// for `kinds.*.backoff_*`); it is now an error naming the key at load time.
#[test]
fn accepted_seconds_fit_a_duration() {
    let keys: &[(&str, &str)] = &[
        ("shutdown", "grace_period"),
        ("queue", "lease"),
        ("queue", "reaper_interval"),
        ("queue", "depth_interval"),
        ("purge", "min_retention"),
        ("kinds.probe", "timeout"),
        ("kinds.probe", "backoff_base"),
        ("kinds.probe", "backoff_cap"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(keys),
        prop_oneof![Just(1e300f64), 1e19f64..1e308f64],
    );
    let result = runner.run(&strategy, |((section, key), value)| {
        let mut text = format!("[{section}]\n{key} = {value:e}\n");
        if section == "purge" {
            text.push_str(&format!("retention = {value:e}\n"));
        }
        // Settings hold durations as `Duration`: a value no `Duration` can hold (these are
        // all beyond ten years) must be refused by name, never accepted and then panic.
        match Settings::from_parts(&text, None, &[], &Overrides::default()) {
            Ok(_) => prop_assert!(false, "`{section}.{key} = {value:e}` was accepted"),
            Err(e) => prop_assert!(
                e.to_string().contains(key),
                "`{section}.{key} = {value:e}`: the error does not name the key: {e}"
            ),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
