//! Small helpers both suites use: a free port, a count, a poll until a check holds, the tail
//! of a log, and where a daemon started on port 0 is listening.

use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// A port nothing listens on now (the integration suite points a daemon at it as an
/// unreachable database). Daemons bind port 0 instead: see [`bound_control_addr`].
#[allow(dead_code)] // the reliability suite has no use for it
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Waits until `check` is true, polling; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !within(limit, check).await {
        panic!("timed out after {limit:?} waiting for: {what}");
    }
}

/// Polls `check` until it is true (then `true`) or `limit` has passed (then `false`), for a
/// caller that explains a timeout with what it finds.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The control address a daemon started with `--control-addr 127.0.0.1:0` bound, read from
/// its JSON log. A port picked in advance and handed over can be taken by another test's
/// process in between: the daemon then fails to bind, and `/readyz` on that port is answered
/// by someone else's daemon. Panics with the log if the daemon exits or never says.
pub fn bound_control_addr(child: &mut Child, log: &Path, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "control port listening")
            .and_then(|v| v["addr"].as_str().map(str::to_string));
        if let Some(addr) = addr {
            return addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited ({status}) before binding its control port; log:\n{text}");
        }
        if t0.elapsed() > limit {
            panic!("the daemon did not bind its control port within {limit:?}; log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sum of the values of every series of `name` in a Prometheus text page.
pub fn metric_in(page: &str, name: &str) -> (f64, Vec<String>) {
    let mut sum = 0.0;
    let mut series = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            series.push(line.to_string());
        }
    }
    (sum, series)
}

/// Says what a slow first-time step is doing, on the terminal of a plain `cargo test` (which
/// captures `eprintln!` but not the process's stderr), so that nothing looks hung.
pub fn notice(what: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "memwarden tests: {what}");
    let _ = err.flush();
}
