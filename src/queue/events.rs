//! Job and lifecycle events, for `/v1/events` (SSE). In-process: each replica streams what it
//! sees itself (jobs it enqueued or ran, and its own lifecycle).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// enqueued, started, progress, succeeded, failed, retryable, canceled, lifecycle
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

impl Event {
    fn base(event: &'static str) -> Self {
        Event {
            event,
            job_id: None,
            kind: None,
            queue: None,
            progress: None,
            state: None,
            error: None,
            at: Utc::now(),
        }
    }

    pub fn job(event: &'static str, id: Uuid, kind: &str, queue: &str) -> Self {
        Event {
            job_id: Some(id),
            kind: Some(kind.to_string()),
            queue: Some(queue.to_string()),
            ..Self::base(event)
        }
    }

    pub fn progress(id: Uuid, p: i16) -> Self {
        Event {
            job_id: Some(id),
            progress: Some(p),
            ..Self::base("progress")
        }
    }

    pub fn lifecycle(state: &'static str) -> Self {
        Event {
            state: Some(state),
            ..Self::base("lifecycle")
        }
    }

    pub fn with_error(mut self, error: Option<String>) -> Self {
        self.error = error;
        self
    }
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Events { tx }
    }
}

impl Events {
    /// Publishing never blocks; with no subscriber the event is simply dropped.
    pub fn publish(&self, event: Event) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
