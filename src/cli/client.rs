//! The HTTP client of the client commands: the control port at `--addr`, with the tokens from
//! `MEMWARDEN_API_TOKEN` and `MEMWARDEN_ADMIN_TOKEN`.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: &str, timeout: Duration) -> Result<Self> {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Client { base, http })
    }

    /// Sends a request; a problem+json answer becomes an error that says what went wrong.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Ok(t) = std::env::var("MEMWARDEN_API_TOKEN") {
            req = req.bearer_auth(t);
        }
        if let Ok(t) = std::env::var("MEMWARDEN_ADMIN_TOKEN") {
            req = req.header("X-Admin-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the control port at {} (is memwarden running? see --addr)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_client_error() || status.is_server_error() {
            let title = value
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let detail = value.get("detail").and_then(Value::as_str).unwrap_or("");
            return Err(anyhow!("{} {title}: {detail}", status.as_u16()));
        }
        Ok((status, value))
    }
}
