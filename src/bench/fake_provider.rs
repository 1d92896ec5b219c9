//! An OpenAI-compatible embeddings server for `memwarden bench enrich-remote`, the network
//! edge a benchmark cannot reach: each request answers after a fixed latency with hash-embedder
//! vectors of the requested `dimensions`, and requests over the per-minute limit get a 429
//! with `retry-after-ms`, as OpenAI's own limiter does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use memwarden_jobs::HashEmbedder;
use serde_json::{json, Value};

pub struct FakeProvider {
    pub url: String,
    state: Arc<Limiter>,
    task: tokio::task::JoinHandle<()>,
}

/// A token bucket of one second's requests, refilled continuously.
struct Limiter {
    latency: Duration,
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
    requests: AtomicU64,
    inputs: AtomicU64,
    limited: AtomicU64,
}

impl Limiter {
    /// Takes a request's token, or says how long until one is free.
    fn take(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().expect("limiter lock");
        let now = Instant::now();
        let (tokens, at) = *b;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.per_second)
            .min(self.per_second.max(1.0));
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            Ok(())
        } else {
            *b = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

impl FakeProvider {
    pub async fn start(latency: Duration, requests_per_minute: u32) -> Result<FakeProvider> {
        let per_second = f64::from(requests_per_minute) / 60.0;
        let state = Arc::new(Limiter {
            latency,
            per_second,
            bucket: Mutex::new((per_second.max(1.0), Instant::now())),
            requests: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeProvider { url, state, task })
    }

    /// Requests answered, inputs embedded, and requests refused with 429, since the start.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.state.requests.load(Ordering::Relaxed),
            self.state.inputs.load(Ordering::Relaxed),
            self.state.limited.load(Ordering::Relaxed),
        )
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn embeddings(State(s): State<Arc<Limiter>>, Json(body): Json<Value>) -> Response {
    if let Err(wait) = s.take() {
        s.limited.fetch_add(1, Ordering::Relaxed);
        let ms = wait.as_millis().max(1).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after-ms", ms)],
            Json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
            .into_response();
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    let dims = body["dimensions"].as_u64().unwrap_or(1536) as usize;
    tokio::time::sleep(s.latency).await;
    let hash = HashEmbedder::new(dims);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": hash.embed_one(t)}))
        .collect();
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.inputs.fetch_add(inputs.len() as u64, Ordering::Relaxed);
    Json(
        json!({"object": "list", "model": body["model"], "data": data,
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}),
    )
    .into_response()
}
