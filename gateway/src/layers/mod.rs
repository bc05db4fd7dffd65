//! The gateway's request pipeline as tower layers, outermost first:
//! [`TraceLayer`] → [`RescueLayer`] → [`LimitsLayer`] →
//! [`AnonymousPrincipalLayer`] → routing and forwarding (the axum router).
//! Authentication and authorisation (later issues) slot in between `Limits`
//! and the router; they replace or precede `AnonymousPrincipal`, which only
//! sets a principal when none is present.

mod limits;
mod principal;
mod rescue;
mod trace;

use std::convert::Infallible;

use axum::Router;
use tower::ServiceBuilder;

pub(crate) use limits::is_length_limit;
pub use limits::{BodyLimit, Limits, LimitsConfig, LimitsLayer};
pub use principal::{AnonymousPrincipal, AnonymousPrincipalLayer};
pub(crate) use rescue::{render_jsonrpc_error_value, render_rest_error_value};
pub use rescue::{ErrorShape, Failure, Rescue, RescueLayer};
pub use trace::{RequestId, Trace, TraceLayer, REQUEST_ID_HEADER};

/// Wraps `router` in the whole layer stack (trace, rescue, limits, anonymous
/// principal), so the registry REST API and the A2A routes share one
/// pipeline. The stack wraps the router as one service (not per route), so
/// the concurrency limit is global.
pub fn with_layers(router: Router, config: &LimitsConfig) -> Router {
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new())
        .layer(RescueLayer::new())
        .layer(LimitsLayer::new(config.clone()))
        .layer(AnonymousPrincipalLayer::new())
        .service(router);
    Router::new().fallback_service(service)
}

impl From<Infallible> for crate::GatewayError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}
