//! Memory over REST (issue 20): namespaces under `/v1/memory/{namespace}`
//! (`PUT` creates, `GET` shows, `DELETE` removes with everything in it;
//! `GET /v1/memory` lists the caller's organisation's), items under
//! `/v1/memory/{namespace}/items/{key}` (`PUT`, `GET`, `DELETE`; `GET
//! …/items` lists), and `POST /v1/memory/{namespace}:search`. Behind the
//! gateway's layers (authentication), every call decided by policy on the
//! namespace's owning organisation (`context.target_org`): `read_memory`,
//! `write_memory`, `search_memory`.
//!
//! A namespace of another organisation that policy does not open to the
//! caller is answered exactly as a missing one (404), so its existence is
//! not disclosed; a refusal in the caller's own organisation is 401/403.
//! Items carry an `ETag` naming their version; `PUT` and `DELETE` honour
//! `If-Match` (412 when stale), like agent cards.
//!
//! Agent and global contexts: a namespace's `scope` is its organisation's
//! shared knowledge (`global`) or one agent's own memory (`{"agent":
//! NAME}`, an agent of the same organisation in the registry, checked at
//! creation: 400 otherwise; creating is decided for the organisation, like
//! listing). Every decision about one namespace carries its
//! scope as `context.namespace_agent` (`""` when global); listing carries
//! none, unless `?agent=NAME` lists that agent's namespaces only (then it
//! carries `NAME`, so an agent may list its own). A graph node's request
//! (a [`GraphCall`] extension) may use an agent-scoped namespace only when
//! the node calls that agent: anything else is 403 naming both, whatever
//! policy says about the run's caller.
//!
//! [`SecretKeys`] hands the memory crate's embedding providers the
//! organisation's own keys from `/v1/secrets` (BYOK), read per call.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use convergio_memory::embed::{EmbeddingKey, KeySource};
use convergio_memory::store::{ItemRow, NamespaceRow};
use convergio_memory::{EmbeddingSpec, Memory, MemoryError, NamespaceSpec, SearchRequest};
use convergio_policy::Action;
use convergio_registry::Registry;
use convergio_schemas::problem::http::{problem_for, respond};
use convergio_schemas::{AgentId, GraphCall, StorageError, StorageFailure};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authorize::PolicyGate;
use crate::layers::{ErrorShape, Failure};
use crate::model_agents::{principal_of, refusal, rfc3339};
use crate::secrets::Secrets;
use crate::ssrf::{check_url_resolved, parse_url, AllowList};
use crate::{GatewayError, Principal};

/// The suffix of a namespace's search path segment.
const SEARCH_SUFFIX: &str = ":search";

/// Organisations' keys for embedding providers: their sealed secrets.
pub struct SecretKeys(pub Arc<Secrets>);

#[async_trait]
impl KeySource for SecretKeys {
    async fn secret(
        &self,
        org: &str,
        name: &str,
    ) -> convergio_memory::Result<Option<EmbeddingKey>> {
        let value = self.0.resolve(org, name).await.map_err(|error| {
            MemoryError::Storage(StorageError::new(
                StorageFailure::Other,
                "reading an embedding key",
                error,
            ))
        })?;
        Ok(value.map(|value| EmbeddingKey::new(value.expose())))
    }
}

/// What the memory routes serve: the service, the organisation of
/// callers without one (the admin token's), and the addresses an
/// embedding provider's `base_url` may name besides the public internet
/// (the same SSRF check as an agent's URL, at namespace creation).
#[derive(Debug, Clone)]
pub struct MemoryApi {
    /// The service.
    pub memory: Arc<Memory>,
    /// The deployment's organisation.
    pub default_org: String,
    /// Private addresses a provider may have.
    pub allow: AllowList,
}

#[derive(Clone)]
struct ApiState {
    memory: Arc<Memory>,
    gate: Arc<PolicyGate>,
    registry: Registry,
    default_org: String,
    allow: AllowList,
}

/// The memory routes, decided by `gate`; `registry` says which agents an
/// agent-scoped namespace may name. Mount behind `Authenticate`.
pub fn memory_router(api: MemoryApi, gate: Arc<PolicyGate>, registry: Registry) -> Router {
    Router::new()
        .route("/v1/memory", get(list_namespaces))
        .route(
            "/v1/memory/{namespace}",
            get(get_namespace)
                .put(create_namespace)
                .delete(delete_namespace)
                .post(search),
        )
        .route("/v1/memory/{namespace}/items", get(list_items))
        .route(
            "/v1/memory/{namespace}/items/{key}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .with_state(ApiState {
            memory: api.memory,
            gate,
            registry,
            default_org: api.default_org,
            allow: api.allow,
        })
}

/// A memory error as a problem document.
fn failed(error: MemoryError) -> Response {
    let kind = error.kind();
    respond(&problem_for(&error, kind), HeaderMap::new())
}

fn gateway_failed(error: GatewayError) -> Response {
    Failure::new(error, ErrorShape::Problem).into_response()
}

fn not_found(namespace: &str) -> Response {
    failed(MemoryError::NamespaceNotFound {
        namespace: namespace.to_owned(),
    })
}

// === impl ApiState ===

impl ApiState {
    fn org_of(&self, principal: &Principal) -> String {
        principal
            .org
            .clone()
            .unwrap_or_else(|| self.default_org.clone())
    }

    /// The namespace `name` if `principal` may do `action` on it; another
    /// organisation's namespace it may not touch is answered as missing.
    async fn permitted(
        &self,
        extensions: &Extensions,
        action: Action,
        name: &str,
    ) -> Result<NamespaceRow, Response> {
        let principal = principal_of(extensions);
        let row = match self.memory.namespace(name).await {
            Ok(row) => row,
            Err(MemoryError::NamespaceNotFound { .. }) => return Err(not_found(name)),
            Err(error) => return Err(failed(error)),
        };
        let scope_agent = row.spec.scope.agent();
        if self
            .gate
            .decide_memory(
                &principal,
                action,
                &row.org,
                Some(scope_agent.unwrap_or_default()),
                extensions,
            )
            .await
        {
            // Checked after policy, so a namespace the caller may not see
            // is still answered as missing, never named.
            if let (Some(agent), Some(node)) = (scope_agent, extensions.get::<GraphCall>()) {
                if node.agent.as_deref() != Some(agent) {
                    return Err(failed(MemoryError::OtherAgentsMemory {
                        namespace: row.name.clone(),
                        agent: agent.to_owned(),
                        node: node.node_id.clone(),
                        node_agent: node
                            .agent
                            .clone()
                            .unwrap_or_else(|| "another organisation's agent".to_owned()),
                    }));
                }
            }
            Ok(row)
        } else if row.org == self.org_of(&principal) {
            Err(refusal(&principal, action, "memory").into_response())
        } else {
            Err(not_found(name))
        }
    }

    /// The caller's own organisation, when policy lets it do `action`
    /// there (about namespaces of scope `namespace_agent`, when given).
    async fn own_org(
        &self,
        extensions: &Extensions,
        action: Action,
        namespace_agent: Option<&str>,
    ) -> Result<String, Response> {
        let principal = principal_of(extensions);
        let org = self.org_of(&principal);
        if self
            .gate
            .decide_memory(&principal, action, &org, namespace_agent, extensions)
            .await
        {
            Ok(org)
        } else {
            Err(refusal(&principal, action, "memory").into_response())
        }
    }
}

async fn read_json(request: axum::extract::Request) -> Result<Value, Response> {
    crate::a2a::read_json_body(request)
        .await
        .map_err(gateway_failed)
}

/// Whether `agent` is a live agent of `org` in the registry (a namespace
/// scoped to it may be created).
async fn is_agent_of(registry: &Registry, agent: &str, org: &str) -> Result<bool, Response> {
    let Ok(id) = AgentId::internal(agent) else {
        return Ok(false);
    };
    match registry.get_shared(&id).await {
        Ok(record) => Ok(record.org == org && record.deleted_at.is_none()),
        Err(convergio_registry::RegistryError::AgentNotFound { .. }) => Ok(false),
        Err(error) => {
            let kind = error.kind();
            Err(respond(&problem_for(&error, kind), HeaderMap::new()))
        }
    }
}

fn namespace_view(row: &NamespaceRow) -> Value {
    json!({
        "name": row.name,
        "org": row.org,
        "kind": row.spec.kind.as_str(),
        "scope": scope_view(row),
        "created_at": rfc3339(row.created_at),
        "spec": row.spec,
    })
}

fn item_view(row: &ItemRow) -> Value {
    json!({
        "key": row.key,
        "version": row.version,
        "updated_at": rfc3339(row.updated_at),
        "expires_at": row.expires_at.map(rfc3339),
        "value": row.value,
    })
}

/// A namespace's scope as shown: `"global"` or `{"agent": NAME}`.
fn scope_view(row: &NamespaceRow) -> Value {
    match row.spec.scope.agent() {
        Some(agent) => json!({ "agent": agent }),
        None => json!("global"),
    }
}

/// An item's ETag: its namespace, key and version.
fn etag(namespace: &str, key: &str, version: i64) -> String {
    format!("\"{namespace}/{key}/v{version}\"")
}

fn with_etag(mut response: Response, namespace: &str, key: &str, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&etag(namespace, key, version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The version `If-Match` names, if sent (`*` names none: any version).
fn if_match(headers: &HeaderMap, namespace: &str, key: &str) -> Result<Option<i64>, MemoryError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let prefix = format!("\"{namespace}/{key}/v");
    text.strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| MemoryError::invalid("If-Match must be an ETag this item was served with"))
}

/// `?agent=NAME` of a namespace listing.
#[derive(Debug, Deserialize)]
struct ListFilter {
    agent: Option<String>,
}

/// A query string axum refuses, as a problem like every other failure.
fn bad_query(rejection: &QueryRejection) -> Response {
    respond(
        &convergio_schemas::Problem::new(
            convergio_schemas::ErrorKind::InvalidInput,
            rejection.body_text(),
        ),
        HeaderMap::new(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/memory",
    operation_id = "listMemoryNamespaces",
    tag = "memory",
    params(
        ("agent" = Option<String>, Query, description = "Only the namespaces scoped to this agent (its memory)"),
    ),
    responses(
        (status = 200, description = "The caller's organisation's namespaces, each with its scope (`global` or `{agent}`).", body = Object),
    )
)]
async fn list_namespaces(
    State(state): State<ApiState>,
    filter: Result<Query<ListFilter>, QueryRejection>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let Query(filter) = filter.map_err(|rejection| bad_query(&rejection))?;
    let agent = filter.agent.as_deref();
    let org = state
        .own_org(request.extensions(), Action::ReadMemory, agent)
        .await?;
    let rows = match agent {
        Some(agent) => state.memory.agent_namespaces(&org, agent).await,
        None => state.memory.namespaces(&org).await,
    }
    .map_err(failed)?;
    let views: Vec<Value> = rows.iter().map(namespace_view).collect();
    Ok(Json(json!({ "org": org, "namespaces": views })).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/memory/{namespace}",
    operation_id = "createMemoryNamespace",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
    ),
    request_body(description = "A namespace spec (`kind`, `scope`: `global` or `{agent}`, `schema`, `embedding`, `chunking`, `retention`)", content((Object = "application/json"))),
    responses(
        (status = 201, description = "Created.", body = Object),
        (status = 400, description = "The declaration is invalid, or its scope names no agent of the organisation"),
        (status = 404, description = "No such namespace"),
        (status = 409, description = "The namespace exists already"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn create_namespace(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    // Creating is decided for the organisation, before the body is read,
    // whatever the scope (no `namespace_agent`): under the example
    // policies members with memory:write create namespaces, agents do not.
    let org = state
        .own_org(request.extensions(), Action::WriteMemory, None)
        .await?;
    let document = read_json(request).await?;
    let spec = NamespaceSpec::from_value(document).map_err(failed)?;
    if let Some(agent) = spec.scope.agent() {
        if !is_agent_of(&state.registry, agent, &org).await? {
            return Err(failed(MemoryError::invalid(format!(
                "scope.agent: {agent} is not an agent of {org}"
            ))));
        }
    }
    if let Some(EmbeddingSpec::Openai { base_url, .. }) = &spec.embedding {
        let checked = match parse_url(base_url) {
            Ok(url) => check_url_resolved(&url, &state.allow).await,
            Err(error) => Err(error),
        };
        if let Err(error) = checked {
            return Err(failed(MemoryError::invalid(format!(
                "embedding.base_url: {error}"
            ))));
        }
    }
    let row = state
        .memory
        .create_namespace(&org, &namespace, spec)
        .await
        .map_err(failed)?;
    Ok((StatusCode::CREATED, Json(namespace_view(&row))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/memory/{namespace}",
    operation_id = "getMemoryNamespace",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
    ),
    responses(
        (status = 200, description = "The namespace.", body = Object),
        (status = 404, description = "No such namespace"),
    )
)]
async fn get_namespace(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let row = state
        .permitted(request.extensions(), Action::ReadMemory, &namespace)
        .await?;
    Ok(Json(namespace_view(&row)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/memory/{namespace}",
    operation_id = "deleteMemoryNamespace",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
    ),
    responses(
        (status = 204, description = "Removed with everything in it."),
        (status = 404, description = "No such namespace"),
    )
)]
async fn delete_namespace(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let row = state
        .permitted(request.extensions(), Action::WriteMemory, &namespace)
        .await?;
    state.memory.delete_namespace(&row).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/v1/memory/{namespace}",
    operation_id = "searchMemory",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "`<namespace>:search`"),
    ),
    request_body(description = "`{query, top_k?, filter?}`", content((Object = "application/json"))),
    responses(
        (status = 200, description = "`{namespace}:search`: the best matches.", body = Object),
        (status = 404, description = "No such namespace or action"),
        (status = 415, description = "The body is not application/json"),
        (status = 502, description = "The embedding provider answered badly"),
        (status = 504, description = "The embedding provider did not answer in time"),
    )
)]
async fn search(
    State(state): State<ApiState>,
    Path(segment): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let Some(namespace) = segment.strip_suffix(SEARCH_SUFFIX) else {
        return Err(gateway_failed(GatewayError::RouteNotFound {
            path: format!("/v1/memory/{segment}"),
        }));
    };
    let row = state
        .permitted(request.extensions(), Action::SearchMemory, namespace)
        .await?;
    let document = read_json(request).await?;
    let search: SearchRequest = serde_json::from_value(document)
        .map_err(|error| failed(MemoryError::invalid(format!("search request: {error}"))))?;
    let hits = state.memory.search(&row, &search).await.map_err(failed)?;
    Ok(Json(json!({ "namespace": row.name, "hits": hits })).into_response())
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_namespaces, create_namespace, get_namespace, delete_namespace, search, list_items, get_item, put_item, delete_item),
    tags((name = "memory", description = "Memory namespaces, items and search"))
)]
pub(crate) struct MemoryApiDoc;

/// `?after=KEY&limit=N` of an item listing.
#[derive(Debug, Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/memory/{namespace}/items",
    operation_id = "listMemoryItems",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("after" = Option<String>, Query, description = "List keys after this one"),
        ("limit" = Option<u32>, Query, description = "Items per page"),
    ),
    responses(
        (status = 200, description = "One page of items, by key.", body = Object),
        (status = 404, description = "No such namespace"),
    )
)]
async fn list_items(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    // axum's own rejection is plain text; a bad query is a problem like
    // every other failure (schemathesis found `?limit=-1`).
    let Query(page) = page.map_err(|rejection| bad_query(&rejection))?;
    let row = state
        .permitted(request.extensions(), Action::ReadMemory, &namespace)
        .await?;
    let limit = page.limit.unwrap_or(100);
    let items = state
        .memory
        .list(&row, page.after.as_deref(), limit)
        .await
        .map_err(failed)?;
    let next = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| items.last().map(|item| item.key.clone()))
        .flatten();
    let views: Vec<Value> = items.iter().map(item_view).collect();
    Ok(Json(json!({ "namespace": row.name, "items": views, "next_after": next })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/memory/{namespace}/items/{key}",
    operation_id = "getMemoryItem",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("key" = String, Path, description = "The item's key"),
    ),
    responses(
        (status = 200, description = "The item.", body = Object),
        (status = 404, description = "No such item"),
    )
)]
async fn get_item(
    State(state): State<ApiState>,
    Path((namespace, key)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let row = state
        .permitted(request.extensions(), Action::ReadMemory, &namespace)
        .await?;
    let item = state.memory.get(&row, &key).await.map_err(failed)?;
    let response = Json(item_view(&item)).into_response();
    Ok(with_etag(response, &row.name, &key, item.version))
}

#[utoipa::path(
    put,
    path = "/v1/memory/{namespace}/items/{key}",
    operation_id = "putMemoryItem",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("key" = String, Path, description = "The item's key"),
        ("If-Match" = Option<String>, Header, description = "The item's current ETag"),
    ),
    request_body(description = "`{text?, data?, metadata?}`: the item", content((Object = "application/json"))),
    responses(
        (status = 200, description = "Replaced.", body = Object),
        (status = 201, description = "Created.", body = Object),
        (status = 404, description = "No such namespace"),
        (status = 412, description = "The ETag is not the current version's"),
        (status = 415, description = "The body is not application/json"),
        (status = 502, description = "The embedding provider answered badly"),
        (status = 504, description = "The embedding provider did not answer in time"),
    )
)]
async fn put_item(
    State(state): State<ApiState>,
    Path((namespace, key)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let row = state
        .permitted(request.extensions(), Action::WriteMemory, &namespace)
        .await?;
    let expected = if_match(request.headers(), &row.name, &key).map_err(failed)?;
    let value = read_json(request).await?;
    let result = state
        .memory
        .put(&row, &key, value, expected)
        .await
        .map_err(failed)?;
    let status = if result.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "key": key,
        "version": result.version,
        "chunks": result.chunk_ids.len(),
    });
    let response = (status, Json(body)).into_response();
    Ok(with_etag(response, &row.name, &key, result.version))
}

#[utoipa::path(
    delete,
    path = "/v1/memory/{namespace}/items/{key}",
    operation_id = "deleteMemoryItem",
    tag = "memory",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("key" = String, Path, description = "The item's key"),
        ("If-Match" = Option<String>, Header, description = "The item's current ETag"),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such item"),
        (status = 412, description = "The ETag is not the current version's"),
    )
)]
async fn delete_item(
    State(state): State<ApiState>,
    Path((namespace, key)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let row = state
        .permitted(request.extensions(), Action::WriteMemory, &namespace)
        .await?;
    let expected = if_match(request.headers(), &row.name, &key).map_err(failed)?;
    state
        .memory
        .delete(&row, &key, expected)
        .await
        .map_err(failed)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
