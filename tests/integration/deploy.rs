//! The deployment assets against the real thing: the KEDA scaler's query (read from
//! deploy/k8s/keda-scaledobject.yaml) on a migrated database, and a real Prometheus (Debian's
//! `prometheus` package) that scrapes a running memwarden, loads deploy/prometheus/alerts.yml,
//! and answers a query for one of memwarden's metrics through its HTTP API.
//!
//! Size: two end-to-end scenarios with a real Prometheus, whose set-up (config, rules, the
//! binary's install) is most of the file and is shared by both.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Daemon, TestDb};

fn deploy(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// The `query` of the ScaledObject's postgresql trigger. The file keeps it a one-line,
/// double-quoted YAML scalar, so reading it needs no YAML parser.
fn keda_query() -> String {
    let path = deploy("k8s/keda-scaledobject.yaml");
    let text = std::fs::read_to_string(&path).expect("reading keda-scaledobject.yaml");
    let mut queries = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("query:"))
        .map(str::trim);
    let raw = queries
        .next()
        .expect("keda-scaledobject.yaml has a `query:`");
    assert!(
        queries.next().is_none(),
        "more than one `query:` in keda-scaledobject.yaml"
    );
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| {
            panic!("the KEDA query must be a one-line double-quoted scalar, got {raw}")
        });
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// The value KEDA would read: the query's single number.
async fn depth(pool: &sqlx::PgPool, query: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(query)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("the KEDA query fails: {e}\n{query}"))
}

#[tokio::test]
async fn keda_query_returns_the_queue_depth() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let query = keda_query();

    assert_eq!(depth(&pool, &query).await, 0, "an empty queue");

    // Due jobs count, whatever their queue: available or retryable with run_at in the past.
    // Scheduled (future run_at), running and terminal jobs do not.
    let rows: &[(&str, &str, &str)] = &[
        ("default", "available", "-1 minute"),
        ("default", "available", "-1 hour"),
        ("bulk", "available", "-5 seconds"),
        ("default", "retryable", "-30 seconds"),
        ("bulk", "retryable", "-2 minutes"),
        ("default", "available", "+1 hour"),
        ("bulk", "available", "+10 minutes"),
        ("default", "retryable", "+5 minutes"),
        ("default", "running", "-1 minute"),
        ("default", "succeeded", "-1 minute"),
        ("default", "failed", "-1 minute"),
        ("bulk", "canceled", "-1 minute"),
    ];
    for (queue, status, offset) in rows {
        sqlx::query(
            "INSERT INTO memwarden.jobs (kind, queue, status, run_at) \
             VALUES ('probe', $1, $2, now() + $3::interval)",
        )
        .bind(*queue)
        .bind(*status)
        .bind(*offset)
        .execute(&pool)
        .await
        .unwrap();
    }
    assert_eq!(depth(&pool, &query).await, 5);

    // It follows the table: a claim takes a job out, a scheduled job coming due adds one.
    sqlx::query(
        "UPDATE memwarden.jobs SET status = 'running' \
         WHERE id = (SELECT id FROM memwarden.jobs WHERE status = 'available' AND run_at <= now() LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE memwarden.jobs SET run_at = now() - interval '1 second' \
         WHERE id = (SELECT id FROM memwarden.jobs WHERE status = 'available' AND run_at > now() LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(depth(&pool, &query).await, 5);
    sqlx::query("UPDATE memwarden.jobs SET status = 'succeeded', finished_at = now() WHERE status = 'retryable'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(depth(&pool, &query).await, 3);

    // KEDA reads the value as a number; make sure it is one in PostgreSQL's eyes too.
    let as_float: f64 = sqlx::query_scalar(&format!("SELECT ({query})::float8"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(as_float, 3.0);
    pool.close().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// The `prometheus` server binary, from Debian's `prometheus` package (installed here when
/// missing and we are root).
fn prometheus_binary() -> PathBuf {
    if let Some(found) = on_path("prometheus") {
        return found;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        crate::harness::notice(
            "installing Debian's prometheus package with apt-get for the real-Prometheus test (first run only, about a minute)",
        );
        let steps: [&[&str]; 2] = [
            &["update", "-qq"],
            &[
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "prometheus",
            ],
        ];
        for args in steps {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("running apt-get");
            assert!(status.success(), "apt-get {args:?} failed");
        }
    }
    on_path("prometheus").expect("`prometheus` is not on PATH: apt-get install prometheus")
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second as job "memwarden", and loads `rules`.
    fn start(target: &str, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: memwarden\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n",
                rules = serde_json::to_string(&rules.to_string_lossy()).unwrap(),
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; None while the server is not answering.
    async fn get(&self, client: &reqwest::Client, path: &str) -> Option<(u16, String)> {
        let resp = client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// An instant query's result vector, through /api/v1/query.
    async fn query(&self, client: &reqwest::Client, promql: &str) -> Vec<Value> {
        let resp = client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql)])
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .unwrap_or_else(|e| panic!("querying prometheus: {e}\n{}", self.logs()));
        let body: Value = resp.json().await.expect("a JSON answer");
        assert_eq!(body["status"], "success", "query {promql}: {body}");
        assert_eq!(
            body["data"]["resultType"], "vector",
            "query {promql}: {body}"
        );
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `check` every 250 ms until it returns Some, or panics with Prometheus's log.
    async fn eventually<T, F, Fut>(&self, limit: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let t0 = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if t0.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; prometheus log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_scrapes_memwarden_and_loads_the_alerts() {
    let db = TestDb::migrated();
    let daemon = Daemon::start(&db.url).await;
    let prom = Prometheus::start(&daemon.addr, &deploy("prometheus/alerts.yml"));
    let client = reqwest::Client::new();

    prom.eventually(
        Duration::from_secs(30),
        "prometheus to be ready",
        || async {
            match prom.get(&client, "/-/ready").await {
                Some((200, _)) => Some(()),
                _ => None,
            }
        },
    )
    .await;

    // The metric comes back through Prometheus, labelled with the scrape job and target.
    let sample = prom
        .eventually(
            Duration::from_secs(30),
            "memwarden_lifecycle_state{state=\"READY\"} == 1 in prometheus",
            || async {
                let result = prom
                    .query(&client, "memwarden_lifecycle_state{state=\"READY\"}")
                    .await;
                result.into_iter().find(|s| s["value"][1] == "1")
            },
        )
        .await;
    assert_eq!(sample["metric"]["__name__"], "memwarden_lifecycle_state");
    assert_eq!(sample["metric"]["job"], "memwarden");
    assert_eq!(sample["metric"]["instance"], daemon.addr.as_str());

    // Every state is exported, exactly one of them at 1.
    let states = prom.query(&client, "memwarden_lifecycle_state").await;
    let mut names: Vec<&str> = states
        .iter()
        .filter_map(|s| s["metric"]["state"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["DRAINING", "QUIESCED", "READY", "STARTING"],
        "{states:?}"
    );
    let on: Vec<&Value> = states.iter().filter(|s| s["value"][1] == "1").collect();
    assert_eq!(on.len(), 1, "one current state: {states:?}");

    // The target is up, and the alert rules load and evaluate without errors on real data.
    let up = prom.query(&client, "up{job=\"memwarden\"}").await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1");
    let rules: Value = prom
        .eventually(
            Duration::from_secs(30),
            "every alert rule to be evaluated",
            || async {
                let (status, body) = prom.get(&client, "/api/v1/rules?type=alert").await?;
                if status != 200 {
                    return None;
                }
                let v: Value = serde_json::from_str(&body).ok()?;
                let groups = v["data"]["groups"].as_array()?;
                let evaluated = !groups.is_empty()
                    && groups.iter().all(|g| {
                        g["rules"].as_array().is_some_and(|rules| {
                            !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")
                        })
                    });
                evaluated.then_some(v)
            },
        )
        .await;
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert!(
        groups.iter().any(|g| g["name"] == "memwarden"),
        "the memwarden group is loaded: {rules}"
    );
    for group in groups {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(
                rule["health"], "ok",
                "alert {} does not evaluate: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
    // Every Grafana panel query runs on the real server, with the dashboard's variables
    // expanded the way Grafana does for "All".
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/memwarden-dashboard.json"))
            .expect("reading the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$job", ".*")
                .replace("$instance", ".*")
                .replace("$queue", ".*")
        })
        .collect();
    assert!(!exprs.is_empty());
    for expr in &exprs {
        let result = prom.query(&client, expr).await;
        if expr.starts_with("count by (state) (memwarden_lifecycle_state") {
            assert!(
                result
                    .iter()
                    .any(|s| s["metric"]["state"] == "READY" && s["value"][1] == "1"),
                "{expr}: {result:?}"
            );
        }
    }

    // A freshly started, healthy daemon fires none of them (MemwardenAbsent included).
    let firing: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r["state"] == "firing")
        .collect();
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy daemon: {firing:?}"
    );
}
