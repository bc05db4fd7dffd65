//! The HTTP application `convergio serve` runs: the registry REST API, the
//! A2A routes and the envelope endpoint, mounted on one router behind the
//! one layer stack ([`crate::layers::with_layers`]), so every surface shares
//! tracing, error rescue, limits and — as they land — authentication and
//! policy.
//!
//! [`serve`] takes a bound listener, so tests bind 127.0.0.1:0 and read the
//! port back.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use convergio_registry::api::ApiConfig;
use convergio_registry::Registry;
use tokio::net::TcpListener;

use crate::a2a::{a2a_router, A2aConfig, A2aState, RouteTable};
use crate::api_keys::{api_keys_router, StoredApiKeys};
use crate::layers::{with_layers, with_layers_auth, Authenticator, LimitsConfig};
use crate::registry_routes::RegistryRoutes;
use crate::server::{serve_with, ServerConfig};

/// Settings of the whole application.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Bootstrap administrator token for registry writes.
    pub admin_token: Option<String>,
    /// The credential checks of the `Authenticate` layer; `None` turns
    /// authentication off (every caller anonymous: tests of other layers).
    pub authenticator: Option<Arc<Authenticator>>,
    /// Stored API keys: mounts the `/v1/api-keys` admin API when set.
    pub api_keys: Option<Arc<StoredApiKeys>>,
    /// Request limits shared by every surface.
    pub limits: LimitsConfig,
    /// A2A routing settings.
    pub a2a: A2aConfig,
}

/// Builds the application router over `registry`.
pub fn build_router(registry: Registry, config: AppConfig) -> Router {
    let routes: Arc<dyn RouteTable> = Arc::new(RegistryRoutes::new(registry.clone()));
    let api = convergio_registry::api::router(
        registry,
        ApiConfig {
            admin_token: config.admin_token.clone(),
            max_body_bytes: config.limits.max_body_bytes,
        },
    );
    let a2a = a2a_router(A2aState::new(routes, config.a2a));
    let health = Router::new().route("/healthz", get(|| async { "ok" }));
    let mut router = health.merge(api).merge(a2a);
    if let Some(keys) = config.api_keys {
        router = router.merge(api_keys_router(keys));
    }
    match config.authenticator {
        Some(authenticator) => with_layers_auth(router, &config.limits, authenticator),
        None => with_layers(router, &config.limits),
    }
}

/// Serves `router` in plaintext on `listener` with the default connection
/// bounds until `shutdown` completes, then drains in-flight requests. See
/// [`crate::server::serve_with`] for TLS and explicit bounds.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServerConfig::default(), None, shutdown).await
}
