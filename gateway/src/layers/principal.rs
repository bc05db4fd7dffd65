//! `AnonymousPrincipal`: sets the anonymous [`Principal`] on requests that
//! carry none. Needs nothing; runs after `Limits` and after any
//! authentication layer (which sets a verified principal first), so routing
//! can always rely on a `Principal` extension.

use std::task::{Context, Poll};

use axum::http::Request;
use tower::{Layer, Service};

use crate::Principal;

/// Layer producing [`AnonymousPrincipal`].
#[derive(Debug, Clone, Default)]
pub struct AnonymousPrincipalLayer;

// === impl AnonymousPrincipalLayer ===

impl AnonymousPrincipalLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for AnonymousPrincipalLayer {
    type Service = AnonymousPrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnonymousPrincipal { inner }
    }
}

/// Fills in the anonymous principal when no layer set one.
#[derive(Debug, Clone)]
pub struct AnonymousPrincipal<S> {
    inner: S,
}

// === impl AnonymousPrincipal ===

impl<S, ReqBody> Service<Request<ReqBody>> for AnonymousPrincipal<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<Principal>().is_none() {
            request.extensions_mut().insert(Principal::anonymous());
        }
        self.inner.call(request)
    }
}
