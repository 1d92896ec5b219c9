//! Memory Service's admin data API over memwarden's conversations and attachments, sent as
//! Memory Service's admin clients send them (camelCase, `x-api-key` with a role): what an
//! operator sees before eviction, soft delete and restore (`conversations`), and attachments
//! with their bytes, signed download URLs and shared blobs (`attachments`).

mod attachments;
mod conversations;

use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Daemon, TestDb};

pub(super) const ADMIN_KEY: &str = "ms-admin-key";
pub(super) const AUDITOR_KEY: &str = "ms-auditor-key";
pub(super) const INDEXER_KEY: &str = "ms-indexer-key";
pub(super) const URL_KEY: &str = "download-url-key-of-thirty-two-characters";

pub(super) async fn daemon(db: &TestDb, blobs: &Path, extra: &str) -> Daemon {
    Daemon::builder(&db.url)
        .config(&format!(
            "[blobs]\ndir = \"{}\"\n{extra}\n",
            blobs.display()
        ))
        .with_role_keys("ms")
        .ready()
        .await
}

pub(super) async fn send(
    d: &Daemon,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, d.url(path));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

pub(super) async fn call(
    d: &Daemon,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let resp = send(d, method, path, Some(key), body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    call(d, Method::GET, path, AUDITOR_KEY, None).await
}

pub(super) fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}
