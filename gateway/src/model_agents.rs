//! Model agent declarations over REST (issue 17): `PUT`, `GET` and `DELETE
//! /v1/model-agents/{name}` and `GET /v1/model-agents`, behind the
//! gateway's layers (authentication) and decided by policy
//! (`manage_model_agent`, `read_model_agent` on the owning organisation).
//!
//! A declaration belongs to the caller's organisation (the deployment's
//! for callers without one, such as the admin token). It is checked by
//! [`ModelAgentSpec::from_value`] (a bad one is 400 with a JSON pointer per
//! violation), stored, and handed to the [`ModelAgentHost`] (`convergio
//! serve` starts, restarts or stops the agent and registers it), which also
//! says whether each agent is available and, if not, why (a missing key).
//! Another organisation's declaration is answered as an unknown one.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use convergio_policy::Action;
use convergio_registry::model_agents::{ModelAgentRow, ModelAgentStore};
use convergio_registry::RegistryError;
use convergio_schemas::{AuthMethod, ModelAgentSpec, Violation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authorize::PolicyGate;
use crate::layers::{ErrorShape, Failure};
use crate::{GatewayError, Principal};

/// Whether a model agent can answer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Whether calls reach the model.
    pub available: bool,
    /// Why not, when not (never a key: at most its reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// === impl AgentStatus ===

impl AgentStatus {
    /// Available.
    pub fn available() -> Self {
        Self {
            available: true,
            reason: None,
        }
    }

    /// Unavailable because of `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            available: false,
            reason: Some(reason.into()),
        }
    }
}

/// What serves the declared agents (`convergio serve`): told of every
/// change made through this API, asked for each agent's status.
#[async_trait]
pub trait ModelAgentHost: Send + Sync + 'static {
    /// `row` was created or updated: (re)start and (re)register it.
    async fn applied(&self, row: &ModelAgentRow, spec: &ModelAgentSpec);
    /// `org`'s agent `name` was deleted: stop and deregister it.
    async fn removed(&self, org: &str, name: &str);
    /// Whether the agent can answer now, and why not.
    async fn status(&self, row: &ModelAgentRow) -> AgentStatus;
}

/// A declaration as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAgentView {
    /// The agent's name.
    pub name: String,
    /// The declaring organisation.
    pub org: String,
    /// 1 on creation, one more on every update.
    pub version: i64,
    /// Last write, RFC 3339.
    pub updated_at: String,
    /// Whether it answers now, and why not.
    pub status: AgentStatus,
    /// The declaration.
    pub spec: Value,
}

/// Model agent declarations: storage, checks, and the host to tell.
pub struct ModelAgents {
    store: Arc<dyn ModelAgentStore>,
    host: Arc<dyn ModelAgentHost>,
    default_org: String,
}

impl std::fmt::Debug for ModelAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelAgents")
            .field("default_org", &self.default_org)
            .finish_non_exhaustive()
    }
}

// === impl ModelAgents ===

impl ModelAgents {
    /// Declarations in `store`, served by `host`; callers without an
    /// organisation declare into `default_org` (the deployment's).
    pub fn new(
        store: Arc<dyn ModelAgentStore>,
        host: Arc<dyn ModelAgentHost>,
        default_org: impl Into<String>,
    ) -> Self {
        Self {
            store,
            host,
            default_org: default_org.into(),
        }
    }

    /// The organisation `principal` declares into.
    pub fn org_of(&self, principal: &Principal) -> String {
        principal
            .org
            .clone()
            .unwrap_or_else(|| self.default_org.clone())
    }

    /// Checks `document`, stores it as `org`'s agent `name` and tells the
    /// host. `name` must be the document's name.
    pub async fn put(
        &self,
        org: &str,
        name: &str,
        document: &Value,
    ) -> Result<ModelAgentView, GatewayError> {
        let spec = ModelAgentSpec::from_value(document).map_err(|error| {
            GatewayError::SchemaViolation {
                violations: error.violations,
            }
        })?;
        if spec.name != name {
            return Err(GatewayError::SchemaViolation {
                violations: vec![Violation {
                    pointer: "/name".to_owned(),
                    message: format!(
                        "the declaration names {:?} but was sent to {:?}",
                        convergio_schemas::echo(&spec.name),
                        convergio_schemas::echo(name)
                    ),
                }],
            });
        }
        let row = self
            .store
            .put(org, name, &spec.to_value(), chrono::Utc::now().timestamp())
            .await
            .map_err(|error| match error {
                RegistryError::AgentExists { agent_id } => {
                    GatewayError::NameTaken { name: agent_id }
                }
                other => storage_error(other),
            })?;
        tracing::info!(org = %row.org, agent = %row.name, version = row.version, "model agent declared");
        self.host.applied(&row, &spec).await;
        Ok(self.view(row).await)
    }

    /// One declaration, whoever declared it.
    pub async fn get(&self, name: &str) -> Result<Option<ModelAgentRow>, GatewayError> {
        self.store.get(name).await.map_err(storage_error)
    }

    /// `org`'s declarations (every one for `None`), with their status.
    pub async fn list(&self, org: Option<&str>) -> Result<Vec<ModelAgentView>, GatewayError> {
        let rows = self.store.list(org).await.map_err(storage_error)?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view(row).await);
        }
        Ok(views)
    }

    /// Deletes `org`'s agent `name` and tells the host; whether it existed.
    pub async fn delete(&self, org: &str, name: &str) -> Result<bool, GatewayError> {
        let deleted = self.store.delete(org, name).await.map_err(storage_error)?;
        if deleted {
            tracing::info!(org = %org, agent = %name, "model agent deleted");
            self.host.removed(org, name).await;
        }
        Ok(deleted)
    }

    /// The view of `row`, with its status from the host.
    pub async fn view(&self, row: ModelAgentRow) -> ModelAgentView {
        let status = self.host.status(&row).await;
        ModelAgentView {
            updated_at: rfc3339(row.updated_at),
            name: row.name,
            org: row.org,
            version: row.version,
            status,
            spec: row.spec,
        }
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub(crate) fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn storage_error(error: RegistryError) -> GatewayError {
    GatewayError::internal("reading or writing model agent declarations", error)
}

#[derive(Clone)]
struct ApiState {
    agents: Arc<ModelAgents>,
    gate: Arc<PolicyGate>,
}

/// `PUT`/`GET`/`DELETE /v1/model-agents/{name}` and `GET /v1/model-agents`,
/// decided by `gate`; mount behind the `Authenticate` layer.
pub fn model_agents_router(agents: Arc<ModelAgents>, gate: Arc<PolicyGate>) -> Router {
    Router::new()
        .route("/v1/model-agents", get(list_handler))
        .route(
            "/v1/model-agents/{name}",
            get(get_handler).put(put_handler).delete(delete_handler),
        )
        .with_state(ApiState { agents, gate })
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, get_handler, put_handler, delete_handler),
    tags((name = "model-agents", description = "Language models declared as A2A agents"))
)]
pub(crate) struct ModelAgentsApiDoc;

fn problem(error: GatewayError) -> Failure {
    Failure::new(error, ErrorShape::Problem)
}

/// The refusal of `principal`: 401 without credentials, else 403.
pub(crate) fn refusal(principal: &Principal, action: Action, what: &str) -> Failure {
    if principal.method == AuthMethod::Anonymous {
        problem(GatewayError::Unauthenticated {
            reason: format!("{what} needs credentials"),
        })
    } else {
        problem(GatewayError::Forbidden {
            agent: what.to_owned(),
            action: action.as_str().to_owned(),
        })
    }
}

fn not_found(name: &str) -> Failure {
    problem(GatewayError::RouteNotFound {
        path: format!("/v1/model-agents/{name}"),
    })
}

/// The row `name` if `principal` may do `action` on it; another
/// organisation's agent it may not touch is answered as unknown.
async fn permitted_row(
    state: &ApiState,
    principal: &Principal,
    extensions: &Extensions,
    action: Action,
    name: &str,
) -> Result<ModelAgentRow, Failure> {
    let row = state
        .agents
        .get(name)
        .await
        .map_err(problem)?
        .ok_or_else(|| not_found(name))?;
    let own = state.agents.org_of(principal);
    let decision = Decision {
        gate: &state.gate,
        principal,
        extensions,
        action,
        what: "model agents",
    };
    decision
        .on_owned(&row.org, &own, || not_found(name))
        .await?;
    Ok(row)
}

/// The caller's own organisation, when policy lets it do `action` there.
async fn own_org_permitted(
    state: &ApiState,
    principal: &Principal,
    extensions: &Extensions,
    action: Action,
) -> Result<String, Failure> {
    let decision = Decision {
        gate: &state.gate,
        principal,
        extensions,
        action,
        what: "model agents",
    };
    decision.on_own(state.agents.org_of(principal)).await
}

/// One policy question of an organisation-owned REST resource (model
/// agents, plugins): who asks to do what, on which kind of thing.
pub(crate) struct Decision<'a> {
    pub(crate) gate: &'a PolicyGate,
    pub(crate) principal: &'a Principal,
    pub(crate) extensions: &'a Extensions,
    pub(crate) action: Action,
    /// The kind of thing, for the refusal (`model agents`).
    pub(crate) what: &'static str,
}

// === impl Decision ===

impl Decision<'_> {
    /// Allowed on something `owner` owns; refused (401 or 403) when that is
    /// the caller's own organisation `own`; otherwise `hidden`: another
    /// organisation's thing it may not touch is answered as unknown.
    pub(crate) async fn on_owned(
        &self,
        owner: &str,
        own: &str,
        hidden: impl FnOnce() -> Failure,
    ) -> Result<(), Failure> {
        if self
            .gate
            .decide_org(self.principal, self.action, owner, self.extensions)
            .await
        {
            Ok(())
        } else if owner == own {
            Err(refusal(self.principal, self.action, self.what))
        } else {
            Err(hidden())
        }
    }

    /// The caller's own organisation `org`, when allowed there.
    pub(crate) async fn on_own(&self, org: String) -> Result<String, Failure> {
        if self
            .gate
            .decide_org(self.principal, self.action, &org, self.extensions)
            .await
        {
            Ok(org)
        } else {
            Err(refusal(self.principal, self.action, self.what))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/model-agents",
    operation_id = "listModelAgents",
    tag = "model-agents",
    responses(
        (status = 200, description = "The model agents the caller may see.", body = Object),
    )
)]
async fn list_handler(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let principal = principal_of(request.extensions());
    let org = own_org_permitted(
        &state,
        &principal,
        request.extensions(),
        Action::ReadModelAgent,
    )
    .await?;
    let views = state.agents.list(Some(&org)).await.map_err(problem)?;
    Ok(Json(serde_json::json!({ "model_agents": views })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/model-agents/{name}",
    operation_id = "getModelAgent",
    tag = "model-agents",
    params(
        ("name" = String, Path, description = "The model agent's name"),
    ),
    responses(
        (status = 200, description = "The model agent's declaration.", body = Object),
        (status = 404, description = "No such model agent"),
    )
)]
async fn get_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let principal = principal_of(request.extensions());
    let row = permitted_row(
        &state,
        &principal,
        request.extensions(),
        Action::ReadModelAgent,
        &name,
    )
    .await?;
    Ok(Json(state.agents.view(row).await).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/model-agents/{name}",
    operation_id = "putModelAgent",
    tag = "model-agents",
    params(
        ("name" = String, Path, description = "The model agent's name"),
    ),
    request_body(description = "A model agent declaration (schemas/json/model-agent.schema.json)", content((Object = "application/json"))),
    responses(
        (status = 200, description = "Replaced.", body = Object),
        (status = 201, description = "Created.", body = Object),
        (status = 404, description = "No such model agent"),
        (status = 409, description = "A conflict with the current state"),
        (status = 415, description = "The body is not JSON or YAML"),
    )
)]
async fn put_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let principal = principal_of(request.extensions());
    let org = own_org_permitted(
        &state,
        &principal,
        request.extensions(),
        Action::ManageModelAgent,
    )
    .await?;
    let document = crate::a2a::read_json_body(request).await.map_err(problem)?;
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
    path = "/v1/model-agents/{name}",
    operation_id = "deleteModelAgent",
    tag = "model-agents",
    params(
        ("name" = String, Path, description = "The model agent's name"),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such model agent"),
    )
)]
async fn delete_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let principal = principal_of(request.extensions());
    let row = permitted_row(
        &state,
        &principal,
        request.extensions(),
        Action::ManageModelAgent,
        &name,
    )
    .await?;
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

/// The caller (anonymous when authentication is off).
pub(crate) fn principal_of(extensions: &Extensions) -> Principal {
    extensions
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}
