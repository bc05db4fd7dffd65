//! Fake model providers (feature `fake`): project-written, deterministic
//! servers on loopback that speak the real wire formats, for tests and
//! benches. [`FakeOpenAi::start`] serves OpenAI-compatible chat completions
//! (`{base}/chat/completions`, SSE `data:` chunks, `[DONE]`);
//! [`FakeAnthropic::start`] serves Anthropic Messages (`{base}/v1/messages`,
//! named SSE events). They are "fake" in the plain sense: they stand in for
//! the internet, never for project code.
//!
//! Each request takes the next scripted [`FakeReply`] (or the fallback when
//! the script is empty) and is recorded ([`FakeProvider::requests`]). A
//! response body dropped before its end (the client closed the connection)
//! is counted ([`FakeProvider::wait_for_disconnects`]).

mod anthropic;
mod openai;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::types::{ProviderKind, ToolCall, Usage};

/// What the fake answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeReply {
    /// A text answer in these chunks (one SSE event each), then the usage.
    Text {
        /// The answer's pieces.
        chunks: Vec<String>,
        /// The usage report.
        usage: Usage,
    },
    /// Tool calls (arguments sent in two fragments each), then the usage.
    ToolCalls {
        /// The calls.
        calls: Vec<ToolCall>,
        /// The usage report.
        usage: Usage,
    },
    /// An HTTP error with the provider's error body and, when given, a
    /// `Retry-After` header.
    Status {
        /// The status (401, 429, 500, …).
        status: u16,
        /// The `Retry-After` value.
        retry_after: Option<String>,
    },
    /// These chunks, then the body ends without the end marker.
    Cut {
        /// What is sent before the cut.
        chunks: Vec<String>,
    },
    /// One event that is not JSON.
    Malformed,
    /// The head and these chunks, then nothing until the client leaves.
    Hang {
        /// What is sent before the silence.
        chunks: Vec<String>,
    },
}

// === impl FakeReply ===

impl FakeReply {
    /// `text` in `pieces` chunks of about equal length (at least one).
    pub fn text(text: &str, pieces: usize, usage: Usage) -> Self {
        let characters: Vec<char> = text.chars().collect();
        let size = characters.len().div_ceil(pieces.max(1)).max(1);
        let chunks = characters
            .chunks(size)
            .map(|chunk| chunk.iter().collect())
            .collect();
        Self::Text { chunks, usage }
    }

    /// One tool call.
    pub fn tool_call(id: &str, name: &str, arguments: Value, usage: Usage) -> Self {
        Self::ToolCalls {
            calls: vec![ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments,
            }],
            usage,
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// The path (`/v1/chat/completions`, `/v1/messages`).
    pub path: String,
    /// The headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`null` when it was not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

// === impl FakeRequest ===

impl FakeRequest {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

struct FakeState {
    kind: ProviderKind,
    script: Mutex<Script>,
    received: watch::Sender<usize>,
    disconnects: watch::Sender<usize>,
}

struct Script {
    replies: VecDeque<FakeReply>,
    fallback: FakeReply,
    requests: Vec<FakeRequest>,
    required_key: Option<String>,
    chunk_delay: Duration,
}

/// A running fake provider. Dropping it stops the server.
pub struct FakeProvider {
    base_url: String,
    state: Arc<FakeState>,
    server: JoinHandle<()>,
}

/// The OpenAI-compatible fake.
#[derive(Debug)]
pub struct FakeOpenAi;

/// The Anthropic Messages fake.
#[derive(Debug)]
pub struct FakeAnthropic;

// === impl FakeOpenAi ===

impl FakeOpenAi {
    /// Starts the fake on 127.0.0.1; its base URL ends in `/v1`.
    pub async fn start() -> std::io::Result<FakeProvider> {
        FakeProvider::start(ProviderKind::OpenAi).await
    }
}

// === impl FakeAnthropic ===

impl FakeAnthropic {
    /// Starts the fake on 127.0.0.1; its base URL is the origin.
    pub async fn start() -> std::io::Result<FakeProvider> {
        FakeProvider::start(ProviderKind::Anthropic).await
    }
}

// === impl FakeProvider ===

impl FakeProvider {
    /// Starts a fake speaking `kind` on 127.0.0.1.
    pub async fn start(kind: ProviderKind) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (disconnects, _) = watch::channel(0);
        let (received, _) = watch::channel(0);
        let state = Arc::new(FakeState {
            kind,
            script: Mutex::new(Script {
                replies: VecDeque::new(),
                fallback: FakeReply::text(
                    "This is the fake provider's answer.",
                    3,
                    Usage {
                        input_tokens: 10,
                        output_tokens: 7,
                    },
                ),
                requests: Vec::new(),
                required_key: None,
                chunk_delay: Duration::ZERO,
            }),
            received,
            disconnects,
        });
        let (path, base_url) = match kind {
            ProviderKind::OpenAi => ("/v1/chat/completions", format!("http://{address}/v1")),
            ProviderKind::Anthropic => ("/v1/messages", format!("http://{address}")),
        };
        let router = Router::new()
            .route(path, post(handle))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            // Each streamed chunk leaves at once, as a provider's would,
            // not held by Nagle's algorithm until the peer's delayed ACK
            // (which put 40 ms stalls into the overhead bench's direct runs).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            base_url,
            state,
            server,
        })
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.state
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The base URL to configure a client with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Queues replies, answered in order, one per request.
    pub fn push(&self, replies: impl IntoIterator<Item = FakeReply>) {
        self.script().replies.extend(replies);
    }

    /// The reply once the queue is empty (by default a three-chunk text).
    pub fn set_fallback(&self, reply: FakeReply) {
        self.script().fallback = reply;
    }

    /// Answers 401 unless the request carries this key.
    pub fn require_key(&self, key: &str) {
        self.script().required_key = Some(key.to_owned());
    }

    /// Waits this long before each streamed event after the first.
    pub fn set_chunk_delay(&self, delay: Duration) {
        self.script().chunk_delay = delay;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.script().requests.clone()
    }

    /// Resolves once at least `count` requests arrived (the caller bounds
    /// the wait).
    pub async fn wait_for_requests(&self, count: usize) {
        let mut receiver = self.state.received.subscribe();
        let _ = receiver.wait_for(|seen| *seen >= count).await;
    }

    /// Response bodies dropped before their end so far.
    pub fn disconnects(&self) -> usize {
        *self.state.disconnects.borrow()
    }

    /// Resolves once at least `count` response bodies were dropped before
    /// their end (the caller bounds the wait).
    pub async fn wait_for_disconnects(&self, count: usize) {
        let mut receiver = self.state.disconnects.subscribe();
        let _ = receiver.wait_for(|seen| *seen >= count).await;
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("kind", &self.state.kind)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The key a request carries, by the provider's header.
fn presented_key(kind: ProviderKind, headers: &HeaderMap) -> Option<String> {
    let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match kind {
        ProviderKind::OpenAi => value("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned),
        ProviderKind::Anthropic => value("x-api-key").map(str::to_owned),
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (reply, delay) = {
        let mut script = state.script.lock().unwrap_or_else(PoisonError::into_inner);
        script.requests.push(FakeRequest {
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
            at: Instant::now(),
        });
        let key_ok = match &script.required_key {
            Some(required) => presented_key(state.kind, &headers).as_deref() == Some(required),
            None => true,
        };
        let reply = if key_ok {
            script
                .replies
                .pop_front()
                .unwrap_or_else(|| script.fallback.clone())
        } else {
            FakeReply::Status {
                status: 401,
                retry_after: None,
            }
        };
        (reply, script.chunk_delay)
    };
    state.received.send_modify(|count| *count += 1);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("fake");
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let presented = presented_key(state.kind, &headers).unwrap_or_default();
    if let FakeReply::Status {
        status,
        retry_after,
    } = &reply
    {
        return error_response(state.kind, *status, retry_after.as_deref(), &presented);
    }
    if !stream {
        let whole = match state.kind {
            ProviderKind::OpenAi => openai::whole(model, &reply),
            ProviderKind::Anthropic => anthropic::whole(model, &reply),
        };
        return match whole {
            Some(whole) => {
                ([("content-type", "application/json")], whole.to_string()).into_response()
            }
            None => malformed_whole(),
        };
    }
    let (events, ends) = match state.kind {
        ProviderKind::OpenAi => openai::events(model, &reply),
        ProviderKind::Anthropic => anthropic::events(model, &reply),
    };
    let frames =
        futures_util::stream::iter(events)
            .enumerate()
            .then(move |(index, frame)| async move {
                if index > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<Bytes, Infallible>(Bytes::from(frame))
            });
    let frames: Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>> = match ends {
        Ending::Closes => Box::pin(frames),
        Ending::Hangs => Box::pin(frames.chain(futures_util::stream::pending())),
    };
    let guarded = Guarded {
        inner: frames,
        finished: false,
        disconnects: state.disconnects.clone(),
    };
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(guarded),
    )
        .into_response()
}

fn malformed_whole() -> Response {
    ([("content-type", "application/json")], "{not json").into_response()
}

/// The provider's error answer. A 401 quotes the key it was given, as real
/// providers do in part, so tests can check the client never repeats it.
fn error_response(
    kind: ProviderKind,
    status: u16,
    retry_after: Option<&str>,
    presented: &str,
) -> Response {
    let (kind_name, message) = match status {
        401 => (
            "authentication_error",
            format!("Incorrect API key provided: {presented}"),
        ),
        403 => (
            "permission_error",
            "This key may not use this model".to_owned(),
        ),
        429 => ("rate_limit_error", "Rate limit reached".to_owned()),
        500..=599 => ("api_error", "The server had an error".to_owned()),
        _ => ("invalid_request_error", "The request is invalid".to_owned()),
    };
    let body = match kind {
        ProviderKind::OpenAi => {
            json!({"error": {"message": message, "type": kind_name, "code": null}})
        }
        ProviderKind::Anthropic => {
            json!({"type": "error", "error": {"type": kind_name, "message": message}})
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(retry_after) = retry_after.and_then(|value| HeaderValue::from_str(value).ok()) {
        response.headers_mut().insert("retry-after", retry_after);
    }
    response
}

/// How a streamed body ends after its events.
enum Ending {
    /// The body ends (with or without the end marker among the events).
    Closes,
    /// The body stays open and silent.
    Hangs,
}

/// A response body that counts being dropped before its end.
struct Guarded {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>>,
    finished: bool,
    disconnects: watch::Sender<usize>,
}

impl Stream for Guarded {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.finished = true;
        }
        polled
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.finished {
            self.disconnects.send_modify(|count| *count += 1);
        }
    }
}

/// Splits a tool call's JSON arguments into two fragments, as providers
/// stream them.
fn argument_fragments(arguments: &Value) -> [String; 2] {
    let text = arguments.to_string();
    let middle = text
        .char_indices()
        .map(|(index, _)| index)
        .nth(text.chars().count() / 2)
        .unwrap_or(text.len());
    [text[..middle].to_owned(), text[middle..].to_owned()]
}
