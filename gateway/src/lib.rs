//! The Convergio A2A gateway: the layer stack every request passes
//! ([`layers`]), A2A routing and forwarding to upstream agents ([`a2a`]),
//! the caller's identity ([`Principal`]), the crate's error
//! ([`GatewayError`]), and the orchestrator's server side: the dispatcher
//! that sends graph nodes' calls through this pipeline ([`dispatch`]) and the
//! `/v1/graphs`, `/v1/runs` and `/metrics` API ([`runs_api`]); federation:
//! identity, peers and signed calls ([`federation`]); and the SSRF guard on
//! every upstream address ([`ssrf`]); the pruner that bounds the tables
//! growing with every call ([`retention`]); `/readyz` and the drain on
//! shutdown ([`readiness`]); the `/metrics` families ([`metrics`]); model
//! agent declarations and organisations' sealed secrets over REST
//! ([`model_agents`], [`secrets`]); stored graphs published as agents
//! ([`graph_agents_api`]);
//! the web console at `/console/` ([`console`]).

pub mod a2a;
mod api_error;
pub mod api_keys;
pub mod app;
pub mod authorize;
pub mod console;
pub mod dispatch;
mod early_errors;
pub mod error;
pub mod federation;
mod fetch;
pub mod graph_agents_api;
mod grpc_status;
pub mod layers;
pub mod memory_api;
pub mod metrics;
pub mod model_agents;
pub mod model_metrics;
pub mod openapi;
pub mod plans_api;
pub mod plugins_api;
pub mod readiness;
mod registry_routes;
pub mod retention;
pub mod routes;
pub mod runs_api;
pub mod secrets;
pub mod server;
pub mod ssrf;
pub mod telemetry;
pub mod tls;

/// The caller's identity, shared with the other crates (defined in `convergio-schemas`).
pub use convergio_schemas::{AuthMethod, Principal};
pub use error::GatewayError;
pub use layers::with_layers;
pub use registry_routes::RegistryRoutes;
