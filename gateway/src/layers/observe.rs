//! `Observe`: counts every answered request for `/metrics` (route class,
//! method, agent, status, latency to the response head), counts upstream
//! transport failures that `Rescue` marked on the response, and keeps the
//! open-SSE-streams gauge up while an event stream's body lives. Runs right
//! inside `Trace` and outside `Rescue`, so it sees the status the client
//! gets, whatever failed below.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, Response};
use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;
use tower::{Layer, Service};

use crate::metrics::{agent_of, route_class, GatewayMetrics};
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
            metrics.record_request(
                route,
                &method,
                agent.as_deref(),
                response.status().as_u16(),
                started.elapsed(),
            );
            if let Some(failed) = response.extensions().get::<UpstreamFailed>() {
                metrics.record_upstream_error(&failed.agent, failed.kind);
            }
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
