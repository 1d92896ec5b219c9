//! A fake OpenAI-compatible server, the network edge the tests cannot reach: the embeddings
//! API (vectors from the hash embedder, short answers, any error with its headers, and an
//! optional delay per request) and chat completions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use memwarden_jobs::{HashEmbedder, OpenAiEmbeddingConfig};
use serde_json::{json, Value};

/// What the fake answers to the next embeddings request.
#[derive(Clone)]
pub(crate) enum Reply {
    /// One hash-embedder vector per input: of the request's `dimensions`, else `dims`.
    Vectors { dims: usize },
    /// One vector fewer than asked for.
    Short { dims: usize },
    /// A fixed status, headers and JSON body.
    Fail {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: Value,
    },
}

pub(crate) struct Seen {
    pub(crate) at: Instant,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

pub(crate) struct Fake {
    pub(crate) script: Mutex<VecDeque<Reply>>,
    pub(crate) otherwise: Reply,
    pub(crate) embeddings: Mutex<Vec<Seen>>,
    pub(crate) chats: Mutex<Vec<Value>>,
    /// How long each embeddings request takes.
    pub(crate) delay: Duration,
    in_flight: AtomicUsize,
    /// The most embeddings requests that were in flight at once.
    pub(crate) max_in_flight: AtomicUsize,
}

impl Fake {
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.embeddings
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.body.clone())
            .collect()
    }
}

pub(crate) async fn fake_embeddings(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.embeddings.lock().unwrap().push(Seen {
        at: Instant::now(),
        headers,
        body: body.clone(),
    });
    if !fake.delay.is_zero() {
        let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(fake.delay).await;
        fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let reply = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| fake.otherwise.clone());
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let vectors = |dims: usize, n: usize| {
        let dims = body["dimensions"].as_u64().map_or(dims, |d| d as usize);
        let e = HashEmbedder::new(dims);
        let data: Vec<Value> = inputs
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": e.embed_one(t)}))
            .collect();
        Json(json!({
            "object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}
        }))
        .into_response()
    };
    match reply {
        Reply::Vectors { dims } => vectors(dims, inputs.len()),
        Reply::Short { dims } => vectors(dims, inputs.len().saturating_sub(1)),
        Reply::Fail {
            status,
            headers,
            body,
        } => {
            let mut r = (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
    }
}

pub(crate) async fn fake_chat(State(fake): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    fake.chats.lock().unwrap().push(body.clone());
    let content = json!({"entities": [
        {"category": "person", "value": "Ada Lovelace"},
        {"category": "tool", "value": "Postgres"},
        {"category": "concept", "value": "feature hashing"}
    ]})
    .to_string();
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
    .into_response()
}

/// Starts the fake on 127.0.0.1:0; returns it and its base URL (`http://…/v1`).
pub(crate) async fn fake_openai(script: Vec<Reply>, otherwise: Reply) -> (Arc<Fake>, String) {
    slow_fake_openai(script, otherwise, Duration::ZERO).await
}

/// A fake whose every embeddings request takes `delay`.
pub(crate) async fn slow_fake_openai(
    script: Vec<Reply>,
    otherwise: Reply,
    delay: Duration,
) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        script: Mutex::new(script.into()),
        otherwise,
        embeddings: Mutex::new(Vec::new()),
        chats: Mutex::new(Vec::new()),
        delay,
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v1/embeddings", post(fake_embeddings))
        .route("/v1/chat/completions", post(fake_chat))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}/v1"))
}

pub(crate) fn openai(
    base_url: &str,
    model: &str,
    dimensions: Option<u32>,
) -> OpenAiEmbeddingConfig {
    OpenAiEmbeddingConfig {
        base_url: base_url.to_string(),
        api_key: Some("sk-test".into()),
        model: model.into(),
        dimensions,
        timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        ..Default::default()
    }
}

pub(crate) fn rate_limited(retry_after: &'static str) -> Reply {
    Reply::Fail {
        status: 429,
        headers: vec![("retry-after", retry_after)],
        body: json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
                               "param": null, "code": "rate_limit_exceeded"}}),
    }
}

pub(crate) fn quota() -> Reply {
    Reply::Fail {
        status: 429,
        headers: vec![],
        body: json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                               "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
    }
}

pub(crate) fn server_error(status: u16) -> Reply {
    Reply::Fail {
        status,
        headers: vec![],
        body: json!({"error": {"message": "The server had an error", "type": "server_error"}}),
    }
}
