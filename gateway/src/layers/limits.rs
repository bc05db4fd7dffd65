//! `Limits`: bounds every request, and refuses a request target holding a
//! NUL (`%00`, issue 15). Needs the `RequestId` (from `Trace`) only
//! for logs, and must run inside `Rescue`, which turns its errors
//! ([`GatewayError::Overloaded`], [`GatewayError::RequestTimeout`]) into
//! responses. It caps the body (reads past the cap fail with a
//! `LengthLimitError`, which handlers map to 413), bounds the time until the
//! response head is ready, and sheds load beyond the concurrency limit
//! instead of queueing. Streams hold no permit once their head is sent:
//! long-lived SSE streams are bounded per upstream by later layers.
//!
//! The head's deadline is a [`RequestDeadline`] request extension that a
//! route may push later, never earlier: forwarding to an agent whose
//! configured timeout (or graph node's deadline) is longer than
//! `request_timeout` extends it, so a model call may take minutes while
//! every other request keeps the short bound (issue 17).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use futures_util::future::BoxFuture;
use http_body_util::Limited;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::GatewayError;

/// The bounds `Limits` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest accepted request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// Time allowed until the response head is ready (default 60 s).
    pub request_timeout: Duration,
    /// Requests in flight before new ones are shed with 503 (default 1024).
    pub max_concurrency: usize,
    /// Routes whose bodies have their own bound instead of
    /// `max_body_bytes`: a path prefix and its bound (uploaded plugins,
    /// a few MiB). The first matching prefix wins.
    pub route_body_bytes: Vec<(String, usize)>,
}

// === impl LimitsConfig ===

impl LimitsConfig {
    /// The body bound for a request to `path`.
    pub fn body_limit(&self, path: &str) -> usize {
        self.route_body_bytes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(self.max_body_bytes, |(_, limit)| *limit)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_concurrency: 1024,
            route_body_bytes: Vec::new(),
        }
    }
}

/// The body limit in force, as a request extension for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// When the response head of a request must be ready: set by `Limits`,
/// pushed later (never earlier) by a route that knows it may take longer.
/// A request extension, so no outside request can set it.
#[derive(Debug, Clone)]
pub struct RequestDeadline(Arc<Mutex<Instant>>);

// === impl RequestDeadline ===

impl RequestDeadline {
    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        Self(Arc::new(Mutex::new(Instant::now() + after)))
    }

    /// The deadline now.
    pub fn at(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the deadline to `at` if that is later.
    pub fn extend_to(&self, at: Instant) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if at > *current {
            *current = at;
        }
    }
}

/// Layer producing [`Limits`]; every service it makes shares one semaphore.
#[derive(Debug, Clone)]
pub struct LimitsLayer {
    config: LimitsConfig,
    semaphore: Arc<Semaphore>,
}

// === impl LimitsLayer ===

impl LimitsLayer {
    /// A layer enforcing `config`.
    pub fn new(config: LimitsConfig) -> Self {
        let semaphore = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        Self { config, semaphore }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            inner,
            config: self.config.clone(),
            semaphore: self.semaphore.clone(),
        }
    }
}

/// Enforces body size, head timeout and concurrency.
#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
    config: LimitsConfig,
    semaphore: Arc<Semaphore>,
}

// === impl Limits ===

impl<S, ResBody> Service<Request<Body>> for Limits<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<GatewayError>,
{
    type Response = Response<ResBody>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // A NUL in the path or query is refused once, here, for every
        // route and both storage backends (PostgreSQL cannot store it).
        if has_encoded_nul(request.uri()) {
            return Box::pin(async {
                Err(GatewayError::BadPath {
                    detail: "the request target must not contain NUL (%00)".to_owned(),
                })
            });
        }
        // Load shedding: no waiting room, so overload cannot grow a queue.
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => return Box::pin(async { Err(GatewayError::Overloaded) }),
        };
        let limit = self.config.body_limit(request.uri().path());
        let mut request = request.map(|body| Body::new(Limited::new(body, limit)));
        request.extensions_mut().insert(BodyLimit(limit));
        let deadline = RequestDeadline::after(self.config.request_timeout);
        request.extensions_mut().insert(deadline.clone());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let call = inner.call(request);
            tokio::pin!(call);
            let outcome = loop {
                let at = deadline.at();
                match tokio::time::timeout_at(at, &mut call).await {
                    Ok(result) => break Some(result),
                    // Pushed while we waited: wait for the new deadline.
                    Err(_) if deadline.at() > at => continue,
                    Err(_) => break None,
                }
            };
            drop(permit);
            match outcome {
                Some(result) => result.map_err(Into::into),
                None => Err(GatewayError::RequestTimeout),
            }
        })
    }
}

/// Whether the path or query holds a percent-encoded NUL (a raw one does
/// not parse as a URI at all).
fn has_encoded_nul(uri: &axum::http::Uri) -> bool {
    let Some(target) = uri.path_and_query() else {
        return false;
    };
    target
        .as_str()
        .as_bytes()
        .windows(3)
        .any(|window| window[0] == b'%' && window[1] == b'0' && window[2] == b'0')
}

/// Whether a body read failed because of the `Limits` cap.
pub(crate) fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}
