//! Every request body of the control port, sent to a running daemon: arbitrary JSON, arbitrary
//! bytes, and near-valid variants of a route's valid body, with a path parameter and
//! credentials of every kind. Never a 5xx; every 4xx is `application/problem+json` with a
//! non-empty `detail`; the daemon never panics, stays up, and audits every admin call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::routes::{Param, Route, ROUTES};
use super::strategies::{bad_value, json_value, key, odd_string, J};
use crate::harness::{report, scale, Daemon, Row, TestDb, ADMIN, API};

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
