//! `GET /v1/events`: Server-Sent Events of job and lifecycle changes (Memory Service's
//! `/v1/admin/events` is the same stream). A justification is always required.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::extract::{QueryParams, ReadyQueue};
use super::problem::{CommonErrors, Problem};
use crate::app::App;
use crate::queue::Event;

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Required: why the caller reads the stream (it is audited).
    pub justification: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "Server-Sent Events of job and lifecycle changes", content_type = "text/event-stream", body = String), CommonErrors))]
pub async fn stream(
    State(app): State<App>,
    ReadyQueue(queue): ReadyQueue,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<impl IntoResponse, Problem> {
    if q.justification
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .is_empty()
    {
        return Err(Problem::bad_request(
            "justification_required",
            "query parameter `justification`: the events stream always requires a justification",
        ));
    }
    let mut jobs = queue.events().subscribe();
    let mut lifecycle = app.lifecycle().subscribe();
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(async_stream::stream! {
            let first = Event::lifecycle(lifecycle.borrow_and_update().state.as_str());
            yield Ok(to_sse(&first));
            loop {
                tokio::select! {
                    e = jobs.recv() => match e {
                        Ok(e) => yield Ok(to_sse(&e)),
                        Err(RecvError::Lagged(n)) => yield Ok(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"))),
                        Err(RecvError::Closed) => break,
                    },
                    changed = lifecycle.changed() => {
                        if changed.is_err() { break; }
                        let e = Event::lifecycle(lifecycle.borrow_and_update().state.as_str());
                        yield Ok(to_sse(&e));
                    }
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .event(e.event)
        .data(serde_json::to_string(e).unwrap_or_default())
}
