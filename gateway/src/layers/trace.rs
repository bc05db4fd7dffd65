//! `Trace`: the outermost layer. Needs nothing; must run first so that every
//! later layer (and every log line) sees the request id. It takes a sane
//! incoming `x-request-id` or makes a UUIDv7, stores it as the [`RequestId`]
//! extension, runs the inner service inside a `request` span (the server
//! span: a well-formed `traceparent` is its parent when spans are exported,
//! see [`crate::telemetry`]; its `trace_id` field is the exported trace id,
//! else the caller's, else empty) and echoes the id on the response.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, Request, Response};
use futures_util::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

/// The request id header, read and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one request, shared by every log line about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

// === impl RequestId ===

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a client-supplied id only when it is short visible ASCII, so
    /// it cannot forge log lines; otherwise a fresh UUIDv7.
    fn from_header(value: Option<&HeaderValue>) -> Self {
        let accepted = value.and_then(|value| value.to_str().ok()).filter(|text| {
            !text.is_empty()
                && text.len() <= 128
                && text.bytes().all(|byte| byte.is_ascii_graphic())
        });
        match accepted {
            Some(text) => Self(Arc::from(text)),
            None => Self(Arc::from(uuid::Uuid::now_v7().to_string())),
        }
    }
}

/// Layer producing [`Trace`].
#[derive(Debug, Clone, Default)]
pub struct TraceLayer;

// === impl TraceLayer ===

impl TraceLayer {
    /// A new trace layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// Assigns the request id and opens the request span.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

// === impl Trace ===

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Trace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let request_id = RequestId::from_header(request.headers().get(REQUEST_ID_HEADER));
        let route = crate::metrics::route_class(request.uri().path());
        // The server span of this request (issue 18): with OpenTelemetry
        // export on, the caller's `traceparent` is its parent, so one trace
        // crosses organisations; its trace id is on every log line below.
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            request_id = %request_id.as_str(),
            trace_id = tracing::field::Empty,
            method = %request.method(),
            path = %request.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        crate::telemetry::adopt_parent(&span, request.headers());
        // The exported span's trace id, else the caller's W3C trace id when
        // it sent one, so log lines of one trace can be found across
        // organisations.
        let trace_id = crate::telemetry::trace_id(&span).or_else(|| {
            request
                .headers()
                .get(crate::telemetry::TRACEPARENT)
                .and_then(|value| value.to_str().ok())
                .and_then(convergio_orchestrator::trace::trace_id_of)
        });
        if let Some(trace_id) = &trace_id {
            span.record("trace_id", trace_id.as_str());
        }
        request.extensions_mut().insert(request_id.clone());
        // The clone that was made ready is the one called (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(
            async move {
                let mut response = inner.call(request).await?;
                tracing::Span::current()
                    .record("http.response.status_code", response.status().as_u16());
                if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                tracing::debug!(
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    "answered"
                );
                Ok(response)
            }
            .instrument(span),
        )
    }
}
