//! `Observe`: counts every answered request for `/metrics` (route class,
//! method, agent, status, latency to the response head), counts upstream
//! transport failures that `Rescue` marked on the response, and keeps the
//! open-SSE-streams gauge up while an event stream's body lives. Runs right
//! inside `Trace` and outside `Rescue`, so it sees the status the client
//! gets, whatever failed below.
//!
//! A gRPC answer is HTTP 200 whatever happened: its outcome is the
//! `grpc-status`, in the head of a trailers-only answer (every error before
//! a message) or else in the trailers after the messages. Such a call is
//! counted when its status is known, under the HTTP status the code
//! corresponds to; one whose body ends without a status counts as 500, one
//! the client abandons before the trailers as 499 (cancelled). Its latency
//! is still the time to the response head.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, Response};
use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;
use tower::{Layer, Service};

use crate::metrics::{agent_of, http_status_of_grpc, route_class, GatewayMetrics};
use crate::GatewayError;

/// The response extension `Rescue` sets when an upstream call failed in
/// transport (never for an A2A error the upstream answered with).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamFailed {
    /// The agent called.
    pub(crate) agent: String,
    /// `unreachable`, `timeout`, `invalid` or `refused` (its breaker or
    /// concurrency bound).
    pub(crate) kind: &'static str,
}

impl UpstreamFailed {
    /// The mark for `error`, if it is an upstream transport failure.
    pub(crate) fn of(error: &GatewayError) -> Option<Self> {
        let (agent, kind) = match error {
            GatewayError::UpstreamUnreachable { agent, .. } => (agent, "unreachable"),
            GatewayError::UpstreamTimeout { agent, .. } => (agent, "timeout"),
            GatewayError::UpstreamInvalid { agent, .. } => (agent, "invalid"),
            GatewayError::UpstreamUnavailable { agent, .. } => (agent, "refused"),
            _ => return None,
        };
        Some(Self {
            agent: agent.clone(),
            kind,
        })
    }
}

/// A request whose outcome is not counted yet.
struct PendingRequest {
    metrics: Arc<GatewayMetrics>,
    route: &'static str,
    method: axum::http::Method,
    agent: Option<String>,
    elapsed: std::time::Duration,
    recorded: bool,
}

// === impl PendingRequest ===

impl PendingRequest {
    /// Counts the request as answered with `status`.
    fn finish(mut self, status: u16) {
        self.record(status);
    }

    /// Counts a gRPC call that ended with `code`.
    fn finish_grpc(mut self, code: i32) {
        self.record_grpc(code);
    }

    fn record_grpc(&mut self, code: i32) {
        if !self.recorded {
            self.metrics.record_grpc_status(code);
        }
        self.record(http_status_of_grpc(code));
    }

    fn record(&mut self, status: u16) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.metrics.record_request(
            self.route,
            &self.method,
            self.agent.as_deref(),
            status,
            self.elapsed,
        );
    }
}

impl Drop for PendingRequest {
    // The body went away before the trailers: the client cancelled.
    fn drop(&mut self) {
        self.record_grpc(tonic::Code::Cancelled as i32);
    }
}

fn is_grpc(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The `grpc-status` in a head or trailers; an unreadable one is UNKNOWN.
fn grpc_status(headers: &axum::http::HeaderMap) -> Option<i32> {
    let value = headers.get("grpc-status")?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(tonic::Code::Unknown as i32),
    )
}

/// Passes a gRPC body through (trailers included) and counts the call when
/// its trailers arrive: by their `grpc-status`, or as INTERNAL when the
/// body ends without one.
fn observe_grpc_body(body: Body, mut pending: PendingRequest) -> Body {
    let mut frames = http_body_util::BodyStream::new(body);
    let relayed = async_stream::stream! {
        while let Some(frame) = frames.next().await {
            if let Some(trailers) = frame.as_ref().ok().and_then(|frame| frame.trailers_ref()) {
                pending.record_grpc(grpc_status(trailers).unwrap_or(tonic::Code::Internal as i32));
            }
            yield frame;
        }
        pending.record_grpc(tonic::Code::Internal as i32);
    };
    Body::new(http_body_util::StreamBody::new(relayed))
}

/// Layer producing [`Observe`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: Arc<GatewayMetrics>,
}

// === impl ObserveLayer ===

impl ObserveLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<GatewayMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records each request's outcome.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<GatewayMetrics>,
}

// === impl Observe ===

impl<S, ReqBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let route = route_class(path);
        let agent = agent_of(path).map(str::to_owned);
        let method = request.method().clone();
        let metrics = self.metrics.clone();
        // The clone that was made ready is the one called (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await?;
            if let Some(failed) = response.extensions().get::<UpstreamFailed>() {
                metrics.record_upstream_error(&failed.agent, failed.kind);
            }
            let pending = PendingRequest {
                metrics: metrics.clone(),
                route,
                method,
                agent,
                elapsed: started.elapsed(),
                recorded: false,
            };
            if is_grpc(&response) {
                return Ok(match grpc_status(response.headers()) {
                    Some(code) => {
                        pending.finish_grpc(code);
                        response
                    }
                    None => response.map(|body| observe_grpc_body(body, pending)),
                });
            }
            let status = response.status().as_u16();
            pending.finish(status);
            let is_sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("text/event-stream"));
            if !is_sse {
                return Ok(response);
            }
            // The gauge stays up until the body is dropped: the stream
            // ended, or the client went away.
            let guard = metrics.sse_stream();
            Ok(response.map(|body| {
                Body::from_stream(body.into_data_stream().map(move |frame| {
                    let _open = &guard;
                    frame
                }))
            }))
        })
    }
}
