//! Graphs published as A2A agents over REST (issue 18): `PUT`, `GET` and
//! `DELETE /v1/graph-agents/{name}` and `GET /v1/graph-agents`, behind the
//! gateway's layers and decided by policy on the published graph:
//! publishing and withdrawing are `store_graph`, reading is `read_graph`,
//! both on the caller's organisation's graph.
//!
//! A publication ([`GraphAgentSpec`]) names a stored graph of the caller's
//! organisation, which must exist when it is published. It is stored and
//! handed to the [`GraphAgentHost`] (`convergio serve` runs the agent on a
//! gated loopback server and registers it as an internal agent of the
//! organisation, so the gateway routes, decides and audits calls to it
//! like any agent's), which also says whether it answers now. A caller of
//! no organisation (the bootstrap admin token) cannot publish: the agent's
//! runs belong to an organisation, whose graphs its policy lets it run.
//! Another organisation's publication is answered as an unknown one.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use convergio_orchestrator::{GraphAgentRow, GraphAgentStore, GraphStore};
use convergio_schemas::graph_agent::check_agent_name;
use convergio_schemas::{AuthMethod, GraphAgentSpec, Violation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authorize::{Gatekeeper, GraphAction, PolicyGate};
use crate::layers::{ErrorShape, Failure, RequestId};
use crate::model_agents::{principal_of, AgentStatus};
use crate::{GatewayError, Principal};

/// What serves the published graphs (`convergio serve`): told of every
/// change made through this API, asked for each agent's status.
#[async_trait]
pub trait GraphAgentHost: Send + Sync + 'static {
    /// `row` was created or updated: (re)start and (re)register it.
    async fn applied(&self, row: &GraphAgentRow);
    /// `org`'s graph agent `name` was deleted: stop and deregister it.
    async fn removed(&self, org: &str, name: &str);
    /// Whether the agent can answer now, and why not.
    async fn status(&self, row: &GraphAgentRow) -> AgentStatus;
}

/// A publication as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphAgentView {
    /// The agent's name: it answers at `/agents/{name}`.
    pub name: String,
    /// The publishing organisation.
    pub org: String,
    /// 1 on creation, one more on every update.
    pub version: i64,
    /// Last write, RFC 3339.
    pub updated_at: String,
    /// Whether it answers now, and why not.
    pub status: AgentStatus,
    /// The publication.
    pub spec: Value,
}

/// Published graphs: storage, checks, and the host to tell.
pub struct GraphAgents {
    store: Arc<dyn GraphAgentStore>,
    graphs: Arc<dyn GraphStore>,
    host: Arc<dyn GraphAgentHost>,
}

impl std::fmt::Debug for GraphAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphAgents").finish_non_exhaustive()
    }
}

// === impl GraphAgents ===

impl GraphAgents {
    /// Publications in `store`, of graphs in `graphs`, served by `host`.
    pub fn new(
        store: Arc<dyn GraphAgentStore>,
        graphs: Arc<dyn GraphStore>,
        host: Arc<dyn GraphAgentHost>,
    ) -> Self {
        Self {
            store,
            graphs,
            host,
        }
    }

    /// Checks `document`, stores it as `org`'s graph agent `name` and
    /// tells the host. The graph must be one of `org`'s stored graphs.
    pub async fn put(
        &self,
        org: &str,
        name: &str,
        document: &Value,
    ) -> Result<GraphAgentView, GatewayError> {
        let spec = GraphAgentSpec::from_value(document).map_err(|error| {
            GatewayError::SchemaViolation {
                violations: error.violations,
            }
        })?;
        check_agent_name(name).map_err(|violation| GatewayError::SchemaViolation {
            violations: vec![violation],
        })?;
        let stored = self
            .graphs
            .get(org, &spec.graph, spec.graph_version)
            .await
            .map_err(|error| GatewayError::internal("reading a stored graph", error))?;
        if stored.is_none() {
            return Err(GatewayError::SchemaViolation {
                violations: vec![Violation {
                    pointer: "/graph".to_owned(),
                    message: format!(
                        "{org} has no stored graph {:?}{}",
                        convergio_schemas::echo(&spec.graph),
                        spec.graph_version
                            .map(|version| format!(" version {version}"))
                            .unwrap_or_default()
                    ),
                }],
            });
        }
        let row = self
            .store
            .put_graph_agent(org, name, &spec.to_value(), chrono::Utc::now().timestamp())
            .await
            .map_err(storage_error)?
            .ok_or_else(|| GatewayError::NameTaken {
                name: name.to_owned(),
            })?;
        tracing::info!(org = %row.org, agent = %row.name, graph = %spec.graph, version = row.version, "graph published as an agent");
        self.host.applied(&row).await;
        Ok(self.view(row).await)
    }

    /// One publication, whoever made it.
    pub async fn get(&self, name: &str) -> Result<Option<GraphAgentRow>, GatewayError> {
        self.store
            .get_graph_agent(name)
            .await
            .map_err(storage_error)
    }

    /// `org`'s publications, with their status.
    pub async fn list(&self, org: &str) -> Result<Vec<GraphAgentView>, GatewayError> {
        let rows = self
            .store
            .list_graph_agents(Some(org))
            .await
            .map_err(storage_error)?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view(row).await);
        }
        Ok(views)
    }

    /// Deletes `org`'s graph agent `name` and tells the host; whether it
    /// existed.
    pub async fn delete(&self, org: &str, name: &str) -> Result<bool, GatewayError> {
        let deleted = self
            .store
            .delete_graph_agent(org, name)
            .await
            .map_err(storage_error)?;
        if deleted {
            tracing::info!(org = %org, agent = %name, "graph agent withdrawn");
            self.host.removed(org, name).await;
        }
        Ok(deleted)
    }

    /// The view of `row`, with its status from the host.
    pub async fn view(&self, row: GraphAgentRow) -> GraphAgentView {
        let status = self.host.status(&row).await;
        GraphAgentView {
            updated_at: crate::model_agents::rfc3339(row.updated_at),
            name: row.name,
            org: row.org,
            version: row.version,
            status,
            spec: row.spec,
        }
    }
}

fn storage_error(error: convergio_orchestrator::OrchestratorError) -> GatewayError {
    GatewayError::internal("reading or writing graph agents", error)
}

/// The graph a stored publication names (empty when it does not decode,
/// which policy then decides on as it would on any name).
fn graph_of(row: &GraphAgentRow) -> String {
    row.spec
        .get("graph")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[derive(Clone)]
struct ApiState {
    agents: Arc<GraphAgents>,
    gate: Arc<PolicyGate>,
}

/// `PUT`/`GET`/`DELETE /v1/graph-agents/{name}` and `GET
/// /v1/graph-agents`, decided by `gate`; mount behind the `Authenticate`
/// layer.
pub fn graph_agents_router(agents: Arc<GraphAgents>, gate: Arc<PolicyGate>) -> Router {
    Router::new()
        .route("/v1/graph-agents", get(list_handler))
        .route(
            "/v1/graph-agents/{name}",
            get(get_handler).put(put_handler).delete(delete_handler),
        )
        .with_state(ApiState { agents, gate })
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, get_handler, put_handler, delete_handler),
    tags((name = "graph-agents", description = "Stored graphs published as A2A agents"))
)]
pub(crate) struct GraphAgentsApiDoc;

fn problem(error: GatewayError) -> Failure {
    Failure::new(error, ErrorShape::Problem)
}

fn not_found(name: &str) -> Failure {
    problem(GatewayError::RouteNotFound {
        path: format!("/v1/graph-agents/{name}"),
    })
}

/// Who asks, from where: what a graph decision needs.
struct Asker {
    principal: Principal,
    loopback: bool,
    request_id: Option<RequestId>,
}

// === impl Asker ===

impl Asker {
    fn of(extensions: &Extensions) -> Self {
        Self {
            principal: principal_of(extensions),
            loopback: extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .is_some_and(|axum::extract::ConnectInfo(address)| address.ip().is_loopback()),
            request_id: extensions.get::<RequestId>().cloned(),
        }
    }

    /// The caller's organisation, which publications belong to.
    fn org(&self) -> Option<&str> {
        self.principal.org.as_deref().filter(|org| !org.is_empty())
    }

    /// Decides (and records) `action` on `org`'s graph `graph`.
    async fn may(&self, state: &ApiState, action: GraphAction, graph: &str, org: &str) -> bool {
        state
            .gate
            .decide_graph(
                &self.principal,
                action,
                graph,
                org,
                self.loopback,
                self.request_id.as_ref(),
            )
            .await
    }

    /// 401 without credentials, else 403 naming the action.
    fn refusal(&self, action: &str, graph: &str) -> Failure {
        if self.principal.method == AuthMethod::Anonymous {
            problem(GatewayError::Unauthenticated {
                reason: "graph agents need credentials".to_owned(),
            })
        } else {
            problem(GatewayError::Forbidden {
                agent: format!("graph:{graph}"),
                action: action.to_owned(),
            })
        }
    }

    /// The row `name` of the caller's organisation, if policy lets it do
    /// `action` on its graph; anything else is answered as unknown.
    async fn row(
        &self,
        state: &ApiState,
        action: GraphAction,
        name: &str,
    ) -> Result<GraphAgentRow, Failure> {
        let row = state
            .agents
            .get(name)
            .await
            .map_err(problem)?
            .filter(|row| Some(row.org.as_str()) == self.org())
            .ok_or_else(|| not_found(name))?;
        let graph = graph_of(&row);
        if self.may(state, action, &graph, &row.org).await {
            Ok(row)
        } else {
            Err(self.refusal(verb(action), &graph))
        }
    }
}

fn verb(action: GraphAction) -> &'static str {
    match action {
        GraphAction::Store => "store_graph",
        GraphAction::Read => "read_graph",
        GraphAction::Run => "run_graph",
        GraphAction::Plan => "create_plan",
    }
}

#[utoipa::path(
    get,
    path = "/v1/graph-agents",
    operation_id = "listGraphAgents",
    tag = "graph-agents",
    responses(
        (status = 200, description = "The caller's organisation's graph agents whose graphs it may read.", body = Object),
    )
)]
async fn list_handler(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let asker = Asker::of(request.extensions());
    let mut shown = Vec::new();
    if let Some(org) = asker.org() {
        for view in state.agents.list(org).await.map_err(problem)? {
            let graph = view
                .spec
                .get("graph")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if asker.may(&state, GraphAction::Read, &graph, org).await {
                shown.push(view);
            }
        }
    }
    Ok(Json(serde_json::json!({ "graph_agents": shown })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/graph-agents/{name}",
    operation_id = "getGraphAgent",
    tag = "graph-agents",
    params(
        ("name" = String, Path, description = "The graph agent's name"),
    ),
    responses(
        (status = 200, description = "The publication and whether the agent answers.", body = Object),
        (status = 404, description = "No such graph agent"),
    )
)]
async fn get_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let asker = Asker::of(request.extensions());
    let row = asker.row(&state, GraphAction::Read, &name).await?;
    Ok(Json(state.agents.view(row).await).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/graph-agents/{name}",
    operation_id = "putGraphAgent",
    tag = "graph-agents",
    params(
        ("name" = String, Path, description = "The agent's name (it answers at /agents/{name})"),
    ),
    request_body(description = "A publication: {graph, graph_version?, description?, tags?}", content((Object = "application/json"))),
    responses(
        (status = 200, description = "Replaced.", body = Object),
        (status = 201, description = "Published.", body = Object),
        (status = 409, description = "Another organisation holds the name"),
    )
)]
async fn put_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let asker = Asker::of(request.extensions());
    let Some(org) = asker.org().map(str::to_owned) else {
        return Err(problem(GatewayError::InvalidParams {
            detail: "publishing a graph needs a caller of an organisation (the agent's runs belong to it)".to_owned(),
        }));
    };
    let document = crate::a2a::read_json_body(request).await.map_err(problem)?;
    let graph = document
        .get("graph")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Publishing lets whoever may call the agent run the graph as the
    // organisation's agent: decided like storing the graph.
    if !asker.may(&state, GraphAction::Store, &graph, &org).await {
        return Err(asker.refusal("store_graph", &graph));
    }
    if let Some(existing) = state.agents.get(&name).await.map_err(problem)? {
        if existing.org == org {
            let old = graph_of(&existing);
            if old != graph && !asker.may(&state, GraphAction::Store, &old, &org).await {
                return Err(asker.refusal("store_graph", &old));
            }
        }
    }
    let view = state
        .agents
        .put(&org, &name, &document)
        .await
        .map_err(problem)?;
    let status = if view.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/graph-agents/{name}",
    operation_id = "deleteGraphAgent",
    tag = "graph-agents",
    params(
        ("name" = String, Path, description = "The graph agent's name"),
    ),
    responses(
        (status = 204, description = "Withdrawn: the agent stops and is deregistered."),
        (status = 404, description = "No such graph agent"),
    )
)]
async fn delete_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let asker = Asker::of(request.extensions());
    let row = asker.row(&state, GraphAction::Store, &name).await?;
    if state
        .agents
        .delete(&row.org, &row.name)
        .await
        .map_err(problem)?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}
