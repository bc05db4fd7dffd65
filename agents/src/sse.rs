//! Server-sent events: one `data:` line per event, written as soon as it is
//! produced (axum's `Sse` body yields one frame per event and hyper flushes
//! each frame). Headers match a2a-sdk 1.3.0 (NOTES.md §6).

use std::convert::Infallible;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// An SSE response whose events are `events` serialised as compact JSON.
pub(crate) fn sse_response(events: impl Stream<Item = Value> + Send + 'static) -> Response {
    let frames =
        events.map(|event| Ok::<Event, Infallible>(Event::default().data(event.to_string())));
    let mut response = Sse::new(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
