//! The gateway's OpenAPI 3.1 document, served at `/v1/openapi.json`: every
//! `/v1/…` REST route that this gateway mounts, generated from the
//! handlers' `#[utoipa::path]` attributes (each API module's `…ApiDoc`),
//! with problem responses and security schemes completed in one place
//! ([`convergio_schemas::openapi::finish`]).
//!
//! The A2A surfaces (`/agents/{name}` JSON-RPC and HTTP+JSON, `/a2a`,
//! `/external/…`, gRPC) are not described here: their contract is the A2A
//! specification's (`schemas/vendor/`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::{HttpMethod, Info, OpenApi};
use utoipa::OpenApi as _;

use convergio_registry::api::{openapi_operation, RegistryApiDoc, OPENAPI_PATH};

/// Which optional APIs a gateway mounts (the registry, envelope, graph, run
/// and plan APIs always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountedApis {
    /// `/v1/peers`.
    pub federation: bool,
    /// `/v1/api-keys`.
    pub api_keys: bool,
    /// `/v1/model-agents`.
    pub model_agents: bool,
    /// `/v1/graph-agents`.
    pub graph_agents: bool,
    /// `/v1/plugins`.
    pub plugins: bool,
    /// `/v1/secrets`.
    pub secrets: bool,
    /// `/v1/memory`.
    pub memory: bool,
    /// `/v1/policies`, `/v1/audit`.
    pub policy: bool,
    /// `/v1/tasks/{task_id}/push-deliveries`.
    pub push: bool,
}

// === impl MountedApis ===

impl MountedApis {
    /// Every API mounted.
    pub const ALL: Self = Self {
        federation: true,
        api_keys: true,
        model_agents: true,
        graph_agents: true,
        plugins: true,
        secrets: true,
        memory: true,
        policy: true,
        push: true,
    };
}

/// The OpenAPI document of a gateway that mounts `mounted`.
pub fn document(mounted: MountedApis) -> OpenApi {
    let mut document = RegistryApiDoc::openapi();
    document.merge(crate::a2a::EnvelopeApiDoc::openapi());
    document.merge(crate::runs_api::RunsApiDoc::openapi());
    document.merge(crate::plans_api::PlansApiDoc::openapi());
    let optional = [
        (
            mounted.federation,
            crate::federation::api::FederationApiDoc::openapi as fn() -> OpenApi,
        ),
        (mounted.api_keys, crate::api_keys::ApiKeysApiDoc::openapi),
        (
            mounted.model_agents,
            crate::model_agents::ModelAgentsApiDoc::openapi,
        ),
        (
            mounted.graph_agents,
            crate::graph_agents_api::GraphAgentsApiDoc::openapi,
        ),
        (mounted.plugins, crate::plugins_api::PluginsApiDoc::openapi),
        (mounted.secrets, crate::secrets::SecretsApiDoc::openapi),
        (mounted.memory, crate::memory_api::MemoryApiDoc::openapi),
        (mounted.policy, convergio_policy::api::PolicyApiDoc::openapi),
        (mounted.push, crate::a2a::push::PushApiDoc::openapi),
    ];
    for (on, api) in optional {
        if on {
            document.merge(api());
        }
    }
    document
        .paths
        .add_path_operation(OPENAPI_PATH, vec![HttpMethod::Get], openapi_operation());
    let mut info = Info::new("Convergio", env!("CARGO_PKG_VERSION"));
    info.description = Some(
        "The management API of a Convergio A2A gateway. Every failure is an \
         application/problem+json document. The A2A endpoints (/agents/{name}, /a2a, \
         /external/…, gRPC) follow the A2A specification instead."
            .to_owned(),
    );
    document.info = info;
    convergio_schemas::openapi::finish(&mut document);
    document
}

/// The route serving `document` at `/v1/openapi.json`.
pub fn router(document: &OpenApi) -> Router {
    let body = serde_json::to_vec(document).unwrap_or_default();
    Router::new().route(
        OPENAPI_PATH,
        get(move || {
            let body = body.clone();
            async move {
                let mut response = (StatusCode::OK, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
        }),
    )
}
