//! The commands that talk to a running daemon's control port (`--addr`, tokens from
//! `MEMWARDEN_API_TOKEN` and `MEMWARDEN_ADMIN_TOKEN`). Work they start is followed to its end
//! unless `--no-wait`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Client;
use super::follow::follow;
use super::{
    output, Cli, ClientArgs, DrainArgs, EnqueueArgs, EvictArgs, JobsCommand, MemoriesListArgs,
    ReembedArgs, ReprocessArgs, StatusArgs, SyncArgs,
};
use memwarden::config::{Overrides, DEFAULT_CONTROL_ADDR};

/// The control port: `--addr`, else `control.addr` of the config; a broken or absent config
/// still lets a client command reach the default.
fn client(cli: &Cli, args: &ClientArgs, timeout: Duration) -> Result<Client> {
    let addr = match &args.addr {
        Some(a) => a.clone(),
        None => cli
            .settings(&Overrides::default())
            .map(|s| s.control.addr.to_string())
            .unwrap_or_else(|_| DEFAULT_CONTROL_ADDR.into()),
    };
    Client::new(&addr, timeout)
}

/// `?k=v&...` of the options that are set.
fn query(params: &[(&str, Option<String>)]) -> Result<String> {
    let set: Vec<(&str, &String)> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
        .collect();
    Ok(serde_urlencoded::to_string(set)?)
}

fn print_json(v: &Value) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn drain(cli: &Cli, a: &DrainArgs) -> Result<ExitCode> {
    let wait_s = a.timeout.unwrap_or(900);
    let c = client(cli, &a.client, Duration::from_secs(wait_s + 10))?;
    let body = json!({"reason": a.reason, "timeout_sec": wait_s, "wait_for_quiesce": a.wait});
    let (_, v) = c.call(Method::POST, "/v1/admin/drain", Some(body)).await?;
    println!(
        "{} (quiesced: {}): {}",
        output::cell(&v["state"]),
        v["quiesced"],
        output::cell(&v["message"])
    );
    if a.wait && v["quiesced"] != json!(true) {
        eprintln!("the daemon did not quiesce within {wait_s} s");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(cli: &Cli, args: &ClientArgs) -> Result<ExitCode> {
    let c = client(cli, args, Duration::from_secs(10))?;
    let (_, v) = c.call(Method::POST, "/v1/admin/resume", None).await?;
    println!("{}", output::cell(&v["state"]));
    Ok(ExitCode::SUCCESS)
}

pub async fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode> {
    let c = client(cli, &a.client, Duration::from_secs(10))?;
    let (_, v) = c.call(Method::GET, "/v1/status", None).await?;
    if a.json {
        return print_json(&v);
    }
    print!("{}", output::status(&v));
    Ok(ExitCode::SUCCESS)
}

pub async fn enqueue(cli: &Cli, a: &EnqueueArgs) -> Result<ExitCode> {
    let args: Value = serde_json::from_str(&a.args).context("--args is not valid JSON")?;
    if !args.is_object() {
        bail!("--args must be a JSON object");
    }
    let run_at = match (&a.run_at, &a.delay) {
        (Some(t), _) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--run-at `{t}` is not an RFC 3339 time"))?
                .with_timezone(&chrono::Utc),
        ),
        (None, Some(d)) => {
            let d = humantime::parse_duration(d)
                .with_context(|| format!("--delay `{d}` is not a duration like 30s or 5m"))?;
            Some(
                chrono::Utc::now()
                    + chrono::Duration::from_std(d).context("--delay is too long")?,
            )
        }
        (None, None) => None,
    };
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let body = json!({
        "kind": a.kind, "args": args, "queue": a.queue, "priority": a.priority,
        "run_at": run_at, "unique_key": a.unique_key, "max_attempts": a.max_attempts,
    });
    let (status, v) = c.call(Method::POST, "/v1/jobs", Some(body)).await?;
    let note = if status.as_u16() == 200 {
        " (existing job with that unique key)"
    } else {
        ""
    };
    println!("{}{note}", output::cell(&v["id"]));
    Ok(ExitCode::SUCCESS)
}

pub async fn jobs(cli: &Cli, cmd: &JobsCommand) -> Result<ExitCode> {
    match cmd {
        JobsCommand::List(a) => {
            let q = query(&[
                ("queue", a.queue.clone()),
                ("kind", a.kind.clone()),
                ("status", a.status.clone()),
                ("cursor", a.cursor.clone()),
                ("limit", a.limit.map(|l| l.to_string())),
            ])?;
            let c = client(cli, &a.client, Duration::from_secs(30))?;
            let (_, v) = c.call(Method::GET, &format!("/v1/jobs?{q}"), None).await?;
            if a.json {
                return print_json(&v);
            }
            print!("{}", output::jobs(&v));
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show(a) => {
            let c = client(cli, &a.client, Duration::from_secs(30))?;
            let (_, v) = c
                .call(Method::GET, &format!("/v1/jobs/{}", a.id), None)
                .await?;
            print_json(&v)
        }
        JobsCommand::Cancel(a) | JobsCommand::Retry(a) => {
            let verb = if matches!(cmd, JobsCommand::Cancel(_)) {
                "cancel"
            } else {
                "retry"
            };
            let c = client(cli, &a.client, Duration::from_secs(30))?;
            let (_, v) = c
                .call(Method::POST, &format!("/v1/jobs/{}/{verb}", a.id), None)
                .await?;
            println!(
                "{}: {}",
                output::cell(&v["status"]),
                output::cell(&v["message"])
            );
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Purge(a) => {
            let c = client(cli, &a.client, Duration::from_secs(3600))?;
            let body = json!({"older_than": a.older_than, "statuses": a.statuses, "limit": a.limit, "dry_run": a.dry_run});
            let (_, v) = c.call(Method::POST, "/v1/jobs/purge", Some(body)).await?;
            println!(
                "{}jobs: {}  attempts: {}  references: {}",
                if a.dry_run {
                    "would purge (dry run) "
                } else {
                    "purged "
                },
                v["jobs_purged"],
                v["attempts_purged"],
                v["references_purged"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn memories(cli: &Cli, a: &MemoriesListArgs) -> Result<ExitCode> {
    let q = query(&[
        ("owner", a.owner.clone()),
        ("type", a.memory_type.clone()),
        ("state", a.state.clone()),
        ("cursor", a.cursor.clone()),
        ("limit", a.limit.map(|l| l.to_string())),
    ])?;
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let (_, v) = c
        .call(Method::GET, &format!("/v1/memories?{q}"), None)
        .await?;
    if a.json {
        return print_json(&v);
    }
    print!("{}", output::memories(&v));
    Ok(ExitCode::SUCCESS)
}

pub async fn reprocess(cli: &Cli, a: &ReprocessArgs) -> Result<ExitCode> {
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let (_, v) = c
        .call(
            Method::POST,
            "/v1/work/reprocess",
            Some(json!({"ids": a.ids})),
        )
        .await?;
    let jobs: Vec<String> = v["job_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j.as_str().map(String::from))
        .collect();
    if a.no_wait {
        jobs.iter().for_each(|j| println!("{j}"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut code = ExitCode::SUCCESS;
    for (i, job) in jobs.iter().enumerate() {
        let what = format!("reprocess {}/{}", i + 1, jobs.len());
        if follow(&c, job, &what).await? != ExitCode::SUCCESS {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

/// Enqueues a kind of work through the control port, then follows it to its end (or prints
/// its job id at once with `no_wait`).
async fn start_work(
    c: &Client,
    path: &str,
    body: Value,
    no_wait: bool,
    what: &str,
) -> Result<ExitCode> {
    let (_, v) = c.call(Method::POST, path, Some(body)).await?;
    let id = output::cell(&v["job_id"]);
    if no_wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    follow(c, &id, what).await
}

pub async fn evict(cli: &Cli, a: &EvictArgs) -> Result<ExitCode> {
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let body = json!({"retention_period": a.retention, "resource_types": a.types, "dry_run": a.dry_run, "justification": a.justification});
    start_work(&c, "/v1/work/evict", body, a.no_wait, "evict").await
}

pub async fn reembed(cli: &Cli, a: &ReembedArgs) -> Result<ExitCode> {
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let body = json!({"batch_size": a.batch_size, "limit": a.limit, "force": a.force});
    start_work(&c, "/v1/work/reembed", body, a.no_wait, "reembed").await
}

pub async fn sync(cli: &Cli, a: &SyncArgs) -> Result<ExitCode> {
    let c = client(cli, &a.client, Duration::from_secs(30))?;
    let body = json!({"batch_size": a.batch_size, "dry_run": a.dry_run});
    start_work(&c, "/v1/work/sync", body, a.no_wait, "sync").await
}
