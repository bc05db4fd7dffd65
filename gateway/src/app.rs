//! The HTTP application `convergio serve` runs: the registry REST API, the
//! A2A routes, the envelope endpoint and the graph/run API (with the
//! orchestrator's executor, whose dispatcher calls back into this same
//! router, see [`crate::dispatch`]), mounted on one router behind the
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

use convergio_orchestrator::{Executor, ExecutorConfig};

use crate::a2a::{a2a_router, A2aConfig, A2aState, RouteTable};
use crate::api_keys::{api_keys_router, StoredApiKeys};
use crate::dispatch::GatewayDispatch;
use crate::layers::{with_layers, with_layers_auth, Authenticator, LimitsConfig};
use crate::registry_routes::RegistryRoutes;
use crate::runs_api::{runs_router, GraphsConfig, RunsApi};
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
    /// Graph and run API settings.
    pub graphs: GraphsConfig,
    /// The graph executor's settings.
    pub executor: ExecutorConfig,
}

/// Builds the application router over `registry`.
pub fn build_router(registry: Registry, config: AppConfig) -> Router {
    build_app(registry, config).0
}

/// Builds the application router over `registry` and returns the graph
/// API's state too (its executor, for in-process runs and benches).
pub fn build_app(registry: Registry, config: AppConfig) -> (Router, RunsApi) {
    let routes: Arc<dyn RouteTable> = Arc::new(RegistryRoutes::new(registry.clone()));
    let api = convergio_registry::api::router(
        registry,
        ApiConfig {
            admin_token: config.admin_token.clone(),
            max_body_bytes: config.limits.max_body_bytes,
        },
    );
    let a2a = a2a_router(A2aState::new(routes.clone(), config.a2a));
    let dispatch = Arc::new(GatewayDispatch::new());
    let executor = Executor::new(dispatch.clone(), config.executor);
    let runs_api = RunsApi::new(executor, routes, config.graphs);
    let graphs = runs_router(runs_api.clone());
    let health = Router::new().route("/healthz", get(|| async { "ok" }));
    let mut router = health.merge(api).merge(a2a).merge(graphs);
    if let Some(keys) = config.api_keys {
        router = router.merge(api_keys_router(keys));
    }
    let app = Arc::new(match config.authenticator {
        Some(authenticator) => with_layers_auth(router, &config.limits, authenticator),
        None => with_layers(router, &config.limits),
    });
    // The dispatcher holds only a weak reference (no cycle through the
    // executor); the served router below keeps the application alive.
    dispatch.attach(&app);
    let keep_alive = app.clone();
    let served = Router::new().fallback_service(tower::service_fn(
        move |request: axum::extract::Request| {
            let app = (*keep_alive).clone();
            async move { tower::ServiceExt::oneshot(app, request).await }
        },
    ));
    (served, runs_api)
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
