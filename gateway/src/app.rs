//! The HTTP application `convergio serve` runs: the registry REST API, the
//! A2A routes, the envelope endpoint, the graph/run API (with the
//! orchestrator's executor, whose dispatcher calls back into this same
//! router, see [`crate::dispatch`]) and (with [`PolicyServices`]) the
//! policy and audit API, and (with federation) the JWKS and `/v1/peers`,
//! mounted on one router behind the one layer stack
//! ([`crate::layers::with_layers`]), so every surface shares tracing, error
//! rescue, limits, authentication and policy.
//!
//! [`serve`] takes a bound listener, so tests bind 127.0.0.1:0 and read the
//! port back.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use convergio_policy::{AuditSink, PolicyAdmin, PolicyApi, PolicyEngine, Quotas};
use convergio_registry::api::ApiConfig;
use convergio_registry::Registry;
use convergio_schemas::{AuthMethod, Principal};
use tokio::net::TcpListener;

use convergio_orchestrator::{Executor, ExecutorConfig, GraphStore, MemoryGraphStore, RunJournal};

use crate::a2a::{a2a_router, A2aConfig, A2aState, RouteTable};
use crate::api_keys::{api_keys_router, StoredApiKeys};
use crate::authorize::{CallBudget, PolicyGate};
use crate::dispatch::GatewayDispatch;
use crate::federation::api::federation_router;
use crate::federation::Federation;
use crate::graph_agents_api::{graph_agents_router, GraphAgents};
use crate::layers::{
    with_layers_observed, Authenticator, LimitsConfig, RequestId, REQUEST_ID_HEADER,
};
use crate::memory_api::{memory_router, MemoryApi};
use crate::metrics::{Exposition, GatewayMetrics};
use crate::model_agents::{model_agents_router, ModelAgents};
use crate::plans_api::{plans_router, PlanReplanner, Planning, PlansApi};
use crate::readiness::Readiness;
use crate::registry_routes::RegistryRoutes;
use crate::runs_api::{runs_router, GraphsConfig, RunsApi};
use crate::secrets::{secrets_router, Secrets};
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
    /// Model agent declarations: mounts `/v1/model-agents` when set.
    pub model_agents: Option<Arc<ModelAgents>>,
    /// Stored graphs published as agents (issue 18): mounts
    /// `/v1/graph-agents` when set.
    pub graph_agents: Option<Arc<GraphAgents>>,
    /// Stored WebAssembly plugins (issue 21): mounts `/v1/plugins` when set.
    pub plugins: Option<Arc<crate::plugins_api::Plugins>>,
    /// Organisations' sealed secrets: mounts `/v1/secrets` when set.
    pub secrets: Option<Arc<Secrets>>,
    /// Memory namespaces (issue 20): mounts `/v1/memory` when set.
    pub memory: Option<MemoryApi>,
    /// Checked after policy and quotas before a message reaches its agent
    /// (model agents' daily budgets); `None`: no such check.
    pub call_budget: Option<CallBudgetHandle>,
    /// Request limits shared by every surface.
    pub limits: LimitsConfig,
    /// A2A routing settings.
    pub a2a: A2aConfig,
    /// Graph and run API settings.
    pub graphs: GraphsConfig,
    /// The graph executor's settings.
    pub executor: ExecutorConfig,
    /// Where checkpointed runs are journaled (durable runs, issue 8); with
    /// it, `lease_keeper` renews this replica's leases and takes over runs
    /// whose replica died.
    pub journal: Option<JournalHandle>,
    /// Where stored graphs are kept (`convergio serve`: the run store's
    /// `graphs` table); `None` keeps them in memory.
    pub graph_store: Option<GraphStoreHandle>,
    /// Where plans are kept (issue 19; `convergio serve`: the `plans`
    /// table); `None` keeps them in memory.
    pub plan_store: Option<PlanStoreHandle>,
    /// How often leases are renewed and expired runs looked for, and
    /// whether they are taken over; `None` runs no keeper.
    pub lease_keeper: Option<(std::time::Duration, bool)>,
    /// Stored policy, audit log and quotas. Without them every call is
    /// still decided, by the embedded example set, but nothing is audited
    /// and the policy API is not mounted (tests of other surfaces).
    /// Registry changes reach the audit log through the registry's own
    /// change hook, fixed when the registry was built.
    pub policy: Option<PolicyServices>,
    /// Federation (identity, peers, signed calls): mounts the JWKS and
    /// `/v1/peers`, and routes `external://` agents. `None`: off.
    pub federation: Option<Arc<Federation>>,
    /// What `/readyz` checks, and the draining flag shutdown sets. The
    /// default has no checks: ready until draining.
    pub readiness: Arc<Readiness>,
    /// The gateway's `/metrics` families (requests, upstreams, decisions,
    /// streams) and what the scrape-time gauges read.
    pub metrics: Arc<GatewayMetrics>,
    /// Payload guardrails on every A2A call (issue 21); default none.
    pub guardrails: convergio_plugins::Guardrails,
    /// Where streams are recorded so a caller can resume them on any
    /// replica (issue 24); `None`: not recorded.
    pub stream_log: Option<StreamLogHandle>,
    /// Push notifications through the gateway (issue 24); `None`:
    /// push-config calls go to the agents unchanged.
    pub push: Option<Arc<crate::a2a::push::Push>>,
}

/// The stream event store handed to A2A routing (a newtype so the config
/// stays `Debug`).
#[derive(Clone)]
pub struct StreamLogHandle(pub Arc<dyn convergio_registry::stream_events::StreamEventStore>);

impl std::fmt::Debug for StreamLogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLogHandle").finish_non_exhaustive()
    }
}

/// The run journal handed to the executor (a newtype so the config stays
/// `Debug`).
#[derive(Clone)]
pub struct JournalHandle(pub Arc<dyn RunJournal>);

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHandle")
            .field("replica", &self.0.replica())
            .finish_non_exhaustive()
    }
}

/// The call budget handed to the gatekeeper (a newtype so the config
/// stays `Debug`).
#[derive(Clone)]
pub struct CallBudgetHandle(pub Arc<dyn CallBudget>);

impl std::fmt::Debug for CallBudgetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallBudgetHandle").finish_non_exhaustive()
    }
}

/// The graph store handed to the graph API (a newtype so the config stays
/// `Debug`).
#[derive(Clone)]
pub struct GraphStoreHandle(pub Arc<dyn GraphStore>);

impl std::fmt::Debug for GraphStoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphStoreHandle").finish_non_exhaustive()
    }
}

/// The plan store handed to the plan API (a newtype so the config stays
/// `Debug`).
#[derive(Clone)]
pub struct PlanStoreHandle(pub Arc<dyn convergio_planner::PlanStore>);

impl std::fmt::Debug for PlanStoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanStoreHandle").finish_non_exhaustive()
    }
}

/// What authorisation needs from `convergio serve`.
#[derive(Clone)]
pub struct PolicyServices {
    /// The engine with its store (the watcher keeps it current).
    pub admin: PolicyAdmin,
    /// Where decisions and changes are recorded.
    pub audit: AuditSink,
    /// Rate limits and budgets, if configured.
    pub quotas: Option<Arc<Quotas>>,
}

impl std::fmt::Debug for PolicyServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyServices")
            .field("version", &self.admin.engine().active_version())
            .field("quotas", &self.quotas.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the application router over `registry`.
pub fn build_router(registry: Registry, config: AppConfig) -> Router {
    build_app(registry, config).0
}

/// Builds the application router over `registry` and returns the graph
/// API's state too (its executor, for in-process runs and benches).
///
/// The registry comes with its collaborators fixed (issue #16): its
/// upstream check should refuse what `config.a2a.upstream_allow` refuses,
/// and with `config.policy` its change hook should be an
/// [`AuditChanges`](crate::authorize::AuditChanges) over the same audit
/// sink, as `convergio serve` builds it; federation syncs into the
/// registry it was built with.
pub fn build_app(registry: Registry, config: AppConfig) -> (Router, RunsApi) {
    let routes: Arc<dyn RouteTable> = Arc::new(RegistryRoutes::new(registry.clone()));
    let gate = match &config.policy {
        Some(services) => PolicyGate::new(
            services.admin.engine().clone(),
            Some(services.audit.clone()),
            services.quotas.clone(),
        ),
        None => PolicyGate::new(
            Arc::new(
                PolicyEngine::with_defaults()
                    .expect("the shipped example policies validate against the shipped schema"),
            ),
            None,
            None,
        ),
    };
    let gate = gate.with_metrics(config.metrics.clone());
    let gate = match &config.call_budget {
        Some(CallBudgetHandle(budget)) => gate.with_budget(budget.clone()),
        None => gate,
    };
    let gate = Arc::new(gate);
    let plan_registry = registry.clone();
    let memory_registry = registry.clone();
    let plan_store: Arc<dyn convergio_planner::PlanStore> = match config.plan_store {
        Some(PlanStoreHandle(store)) => store,
        None => Arc::new(convergio_planner::MemoryPlanStore::default()),
    };
    let api = convergio_registry::api::guarded_router(
        registry,
        ApiConfig {
            admin_token: config.admin_token.clone(),
            max_body_bytes: config.limits.max_body_bytes,
        },
        gate.clone(),
        Arc::new(crate::a2a::card::ServedCards::new(&config.a2a)),
    );
    // Federated discovery wraps the registry's listing: it asks the local
    // registry (through the guard, as any listing) and the peers at once.
    let api = match &config.federation {
        Some(federation) => api.layer(axum::middleware::from_fn_with_state(
            crate::federation::discovery::DiscoveryState::new(federation.clone(), gate.clone()),
            crate::federation::discovery::federated_discovery,
        )),
        None => api,
    };
    let a2a_state = A2aState::new(routes.clone(), config.a2a)
        .with_gatekeeper(gate.clone())
        .with_federation(config.federation.clone())
        .with_guardrails(config.guardrails.clone());
    let a2a_state = match config.stream_log {
        Some(StreamLogHandle(log)) => a2a_state.with_stream_log(log),
        None => a2a_state,
    };
    let push = config.push;
    let a2a_state = match &push {
        Some(push) => a2a_state.with_push(Arc::clone(push)),
        None => a2a_state,
    };
    // `/metrics` reads each upstream's circuit from the same client.
    let upstreams = a2a_state.client.clone();
    let a2a = a2a_router(a2a_state);
    let graph_store = match config.graph_store {
        Some(GraphStoreHandle(store)) => store,
        None => Arc::new(MemoryGraphStore::default()),
    };
    let readiness = config.readiness.clone();
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.respond().await }
            }),
        );
    let mounted = crate::openapi::MountedApis {
        federation: config.federation.is_some(),
        api_keys: config.api_keys.is_some(),
        model_agents: config.model_agents.is_some(),
        graph_agents: config.graph_agents.is_some(),
        plugins: config.plugins.is_some(),
        secrets: config.secrets.is_some(),
        memory: config.memory.is_some(),
        policy: config.policy.is_some(),
        push: push.is_some(),
    };
    let mut router = health
        .merge(crate::openapi::router(&crate::openapi::document(mounted)))
        .merge(api)
        .merge(a2a)
        .merge(crate::console::console_router());
    if let Some(federation) = config.federation {
        router = router.merge(federation_router(federation));
    }
    if let Some(keys) = config.api_keys {
        router = router.merge(api_keys_router(keys));
    }
    if let Some(push) = push {
        let hook = crate::a2a::push::PushHook {
            push,
            gatekeeper: gate.clone(),
            routes: routes.clone(),
        };
        // Deliveries a stopped replica left overdue are taken over.
        crate::a2a::push::spawn_sweeper(hook.clone());
        router = router.merge(crate::a2a::push::push_router(hook));
    }
    if let Some(agents) = config.model_agents {
        router = router.merge(model_agents_router(agents, gate.clone()));
    }
    if let Some(agents) = config.graph_agents {
        router = router.merge(graph_agents_router(agents, gate.clone()));
    }
    if let Some(plugins) = config.plugins {
        router = router.merge(crate::plugins_api::plugins_router(plugins, gate.clone()));
    }
    if let Some(secrets) = config.secrets {
        router = router.merge(secrets_router(secrets, gate.clone()));
    }
    if let Some(memory) = config.memory {
        router = router.merge(memory_router(memory, gate.clone(), memory_registry));
    }
    if let Some(services) = config.policy {
        let policy = convergio_policy::router(PolicyApi {
            admin: services.admin,
        });
        let token = config.admin_token.clone();
        // With authentication off (tests of other surfaces), the bootstrap
        // admin token still acts as an administrator on the policy API; with
        // it on, `Authenticate` has already made that principal.
        let policy = policy.layer(axum::middleware::from_fn(move |request, next| {
            admin_token_principal(token.clone(), request, next)
        }));
        router = router.merge(policy);
    }
    // The graph API's executor dispatches through the finished, layered
    // application, which contains that API: `new_cyclic` hands the
    // dispatcher its (weak) application as a constructor argument before
    // the application exists, so nothing is attached afterwards.
    let mut built = None;
    let app = Arc::new_cyclic(|app| {
        let dispatch = Arc::new(GatewayDispatch::new(app.clone()));
        let plan_dispatch: Arc<dyn convergio_orchestrator::Dispatch> = dispatch.clone();
        let plan_limits = config.graphs.limits;
        let planning = Planning::new(
            plan_registry,
            routes.clone(),
            gate.clone(),
            plan_dispatch,
            plan_store,
            plan_limits,
        );
        // Runs started from a plan with `replan` ask the plan's planner
        // again when a step fails (§9.2).
        let replanner: Arc<dyn convergio_orchestrator::Replanner> =
            Arc::new(PlanReplanner::new(planning.clone()));
        let journal = config.journal.map(|JournalHandle(journal)| journal);
        let executor = Executor::with_parts(dispatch, config.executor, journal, Some(replanner));
        let exposition = Arc::new(Exposition::new(
            config.metrics.clone(),
            executor.metrics(),
            Box::new(upstreams),
            config.graphs.retention_metrics.clone(),
            config.graphs.model_metrics.clone(),
        ));
        let runs_api = RunsApi::new(
            executor.clone(),
            routes,
            gate,
            graph_store,
            config.graphs,
            exposition,
        );
        let plans = PlansApi::new(planning, runs_router(runs_api.clone()));
        let router = router
            .merge(runs_router(runs_api.clone()))
            .merge(plans_router(plans))
            .layer(axum::middleware::from_fn(v1_problems));
        built = Some((executor, runs_api));
        let authenticator = config
            .authenticator
            .unwrap_or_else(|| Arc::new(Authenticator::off()));
        with_layers_observed(router, &config.limits, authenticator, config.metrics)
    });
    let (executor, runs_api) = built.expect("Arc::new_cyclic runs its builder before returning");
    if let Some((every, take_over)) = config.lease_keeper {
        // Spawned once the application exists, so runs it takes over can
        // dispatch. The keeper lives as long as the runtime: leases stop
        // being renewed only when the process does.
        let _keeper = executor.spawn_lease_keeper(every, take_over);
    }
    // The dispatcher holds only a weak reference (no cycle through the
    // executor); the served router below keeps the application alive.
    let keep_alive = app;
    let served = Router::new().fallback_service(tower::service_fn(
        move |request: axum::extract::Request| {
            let app = (*keep_alive).clone();
            async move { tower::ServiceExt::oneshot(app, request).await }
        },
    ));
    (served, runs_api)
}

/// Every failure of the `/v1/…` API is a problem document, as its OpenAPI
/// document says: an extractor's own rejection (a path segment that is not
/// UTF-8 once decoded, a bad query) is plain text until it passes here. The
/// A2A surfaces keep their own error shapes, and a handler's parked
/// `Failure` (no content type yet) is left for `Rescue` to render.
async fn v1_problems(request: Request, next: Next) -> Response {
    let is_v1 = request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    let is_plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/plain"));
    if is_v1 && is_plain_text {
        convergio_registry::api::ensure_problem(response).await
    } else {
        response
    }
}

async fn admin_token_principal(
    token: Option<String>,
    mut request: Request,
    next: Next,
) -> Response {
    let anonymous = request
        .extensions()
        .get::<Principal>()
        .is_none_or(|principal| principal.method == AuthMethod::Anonymous);
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.strip_prefix("Bearer "))
        .map(str::trim);
    if let (true, Some(expected), Some(bearer)) = (anonymous, token.as_deref(), bearer) {
        if !expected.is_empty()
            && convergio_auth::constant_time_eq(bearer.as_bytes(), expected.as_bytes())
        {
            request.extensions_mut().insert(Principal {
                subject: "admin".to_owned(),
                org: None,
                scopes: vec!["admin".to_owned()],
                method: AuthMethod::AdminToken,
            });
        }
    }
    // The policy API quotes the request id from the header; give it the one
    // `Trace` assigned when the client sent none.
    let assigned = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| axum::http::HeaderValue::from_str(id.as_str()).ok());
    if let Some(value) = assigned {
        if !request.headers().contains_key(REQUEST_ID_HEADER) {
            request.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
    }
    next.run(request).await
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
