//! The gateway's request pipeline as tower layers, outermost first:
//! [`TraceLayer`] → [`ObserveLayer`] (metrics) → [`RescueLayer`] → [`LimitsLayer`] →
//! [`AuthenticateLayer`] → routing and forwarding (the axum router).
//! Authorisation (the policy issue) slots in between `Authenticate` and the
//! router. `AnonymousPrincipal` stays for tests that want no checks at all.
//!
//! Why these are hand-written rather than `tower-http`'s (issue 22):
//! `SetRequestId`/`PropagateRequestId` take any client id, where [`Trace`]
//! accepts only short visible ASCII (no forged log lines) and parents the
//! request span on `traceparent`; `TimeoutLayer` has one fixed deadline,
//! where [`Limits`]' deadline is pushed later by the route (a model agent's
//! minutes) and its errors become problem JSON in [`Rescue`];
//! `RequestBodyLimitLayer` answers a bare 413, where the body cap here fails
//! the read and each binding answers in its own error shape (JSON-RPC,
//! HTTP+JSON problem, gRPC status); and `ConcurrencyLimit` queues where we
//! shed. `tower-http` is therefore not a dependency.

mod authenticate;
mod jwks;
mod limits;
mod observe;
mod principal;
mod rescue;
mod trace;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use tower::ServiceBuilder;

pub use authenticate::{
    admin_principal, is_public_path, ApiKeyVerifier, Authenticate, AuthenticateConfig,
    AuthenticateLayer, Authenticator, JwksSource, JwtAuthConfig, PeerCertificate, PeerVerifier,
    API_KEY_HEADER,
};
pub(crate) use limits::is_length_limit;
pub use limits::{BodyLimit, Limits, LimitsConfig, LimitsLayer, RequestDeadline};
pub(crate) use observe::UpstreamFailed;
pub use observe::{Observe, ObserveLayer};
pub use principal::{AnonymousPrincipal, AnonymousPrincipalLayer};
pub(crate) use rescue::{render_grpc_status, render_jsonrpc_error_value, render_rest_error_value};
pub use rescue::{ErrorShape, Failure, Rescue, RescueLayer, WWW_AUTHENTICATE_CHALLENGE};
pub use trace::{RequestId, Trace, TraceLayer, REQUEST_ID_HEADER};

/// Wraps `router` in the whole layer stack with authentication off: every
/// caller is anonymous (tests and benches of the other layers); see
/// [`with_layers_auth`].
pub fn with_layers(router: Router, config: &LimitsConfig) -> Router {
    with_layers_auth(router, config, Arc::new(Authenticator::off()))
}

/// Wraps `router` in the whole layer stack (trace, rescue, limits,
/// authenticate), so the registry REST API and the A2A routes share one
/// pipeline. The stack wraps the router as one service (not per route), so
/// the concurrency limit is global.
pub fn with_layers_auth(
    router: Router,
    config: &LimitsConfig,
    authenticator: Arc<Authenticator>,
) -> Router {
    with_layers_observed(router, config, authenticator, Arc::default())
}

/// [`with_layers_auth`], recording every request into `metrics` (the
/// application's, so `/metrics` shows them).
pub fn with_layers_observed(
    router: Router,
    config: &LimitsConfig,
    authenticator: Arc<Authenticator>,
    metrics: Arc<crate::metrics::GatewayMetrics>,
) -> Router {
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new())
        .layer(ObserveLayer::new(metrics))
        .layer(RescueLayer::new())
        .layer(LimitsLayer::new(config.clone()))
        .layer(AuthenticateLayer::new(authenticator))
        .service(router);
    Router::new().fallback_service(service)
}

impl From<Infallible> for crate::GatewayError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}
