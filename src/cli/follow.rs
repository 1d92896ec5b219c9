//! Following a job from the CLI: a progress bar on a terminal, plain lines otherwise, until
//! the job ends. The exit code says how it ended.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use super::client::Client;

pub async fn follow(client: &Client, job_id: &str, what: &str) -> Result<ExitCode> {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}%")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        Some(bar)
    } else {
        None
    };
    let mut last = -1i64;
    loop {
        let (_, job) = client
            .call(Method::GET, &format!("/v1/jobs/{job_id}"), None)
            .await?;
        let progress = job["progress"].as_i64().unwrap_or(0);
        let status = job["status"].as_str().unwrap_or("?").to_string();
        if progress != last {
            match &bar {
                Some(b) => b.set_position(progress as u64),
                None => eprintln!("{what}: {progress}% ({status})"),
            }
            last = progress;
        }
        if matches!(status.as_str(), "succeeded" | "failed" | "canceled") {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(report(&job, &status));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report(job: &Value, status: &str) -> ExitCode {
    if status == "succeeded" {
        println!(
            "{}",
            serde_json::to_string_pretty(&job["result"]).unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "job {} {status}: {}",
            job["id"].as_str().unwrap_or("?"),
            job["last_error"].as_str().unwrap_or("")
        );
        ExitCode::from(1)
    }
}
