//! Stored WebAssembly plugins over REST (issue 21): upload a new version,
//! list, show, download a version, delete — behind the gateway's layers
//! (authentication, and the `Limits` layer's own body bound for this
//! prefix, `plugins.max_module_bytes`) and decided by policy on the owning
//! organisation as model agents are (`manage_model_agent` to upload and
//! delete, `read_model_agent` to list, show and download: a plugin is code
//! an organisation runs in its gateway, as a model agent is).
//!
//! An upload is the module's raw bytes (`POST /v1/plugins/{name}?kind=
//! agent|guardrail`, `Content-Type: application/wasm`; any type is read as
//! the module), optionally with a
//! `Convergio-Plugin-Signature` header: a detached compact JWS over the
//! module's SHA-256 by a key of the owning organisation
//! ([`convergio_auth::plugin_signature`]); with `plugins.require_signed`
//! an upload without one is refused (`SIGNATURE_REQUIRED`). The version's
//! capability grants are declared with it (`?grants=clock,random`, next to
//! `kind`; see `convergio_plugins::grants`): one the gateway's config does
//! not allow (`plugins.allow_grants`) is refused (`GRANT_NOT_ALLOWED`), as
//! is an unknown name (`UNKNOWN_GRANT`), before the module is compiled.
//! Before anything is stored the module is compiled and checked by the
//! sandbox (valid WebAssembly, no import but the `convergio` host functions
//! of its kind and its grants, so a module importing `clock_ms` without
//! the `clock` grant is `FORBIDDEN_IMPORT` naming the grant; the exports
//! its kind needs) and the signature verified; a refusal is a 422 problem
//! naming why
//! ([`GatewayError::PluginRefused`]). Another organisation's plugin is
//! answered as an unknown one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use convergio_auth::card_signature::CardCheck;
use convergio_auth::plugin_signature::{module_sha256, verify_module};
use convergio_plugins::{
    AgentCalling, Grants, PluginError, PluginRuntime, WasmAgent, WasmGuardrail,
};
use convergio_policy::Action;
use convergio_registry::plugins::{
    NewPluginVersion, PluginKind, PluginRow, PluginStore, PluginVersionRow,
};
use convergio_registry::{OrgKeys, RegistryError};
use convergio_schemas::graph_agent::check_agent_name;
use serde::{Deserialize, Serialize};

use crate::authorize::PolicyGate;
use crate::layers::{BodyLimit, ErrorShape, Failure};
use crate::model_agents::{principal_of, rfc3339, Decision};
use crate::{GatewayError, Principal};

/// The request header carrying an upload's signature.
pub const SIGNATURE_HEADER: &str = "convergio-plugin-signature";

/// The media type of a module.
pub const MEDIA_WASM: &str = "application/wasm";

/// The path prefix of these routes (the `Limits` layer's own bound).
pub const PLUGINS_PREFIX: &str = "/v1/plugins";

/// A module's bytes, as OpenAPI describes them.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WasmModule(pub Vec<u8>);

/// One version as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginVersionView {
    /// 1, 2, …
    pub version: i64,
    /// The module's SHA-256, lowercase hex.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: i64,
    /// Whether it was uploaded with a signature that verified.
    pub signed: bool,
    /// The key (`kid`) that verified its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// A plugin agent's declaration (what its `describe` export answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub declaration: Option<serde_json::Value>,
    /// The capabilities it was uploaded with (`clock`, `random`, `env`).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, RFC 3339.
    pub uploaded_at: String,
}

/// A plugin as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    /// Its name.
    pub name: String,
    /// The owning organisation.
    pub org: String,
    /// `agent` or `guardrail`.
    pub kind: String,
    /// The newest version's number.
    pub latest: i64,
    /// Every version, oldest first.
    pub versions: Vec<PluginVersionView>,
}

fn version_view(row: &PluginVersionRow) -> PluginVersionView {
    PluginVersionView {
        version: row.version,
        sha256: row.sha256.clone(),
        size: row.size,
        signed: row.signed_by.is_some(),
        signed_by: row.signed_by.clone(),
        declaration: row.declaration.clone(),
        grants: row.grants.clone(),
        uploaded_by: row.uploaded_by.clone(),
        uploaded_at: rfc3339(row.uploaded_at),
    }
}

fn view(row: &PluginRow) -> PluginView {
    PluginView {
        name: row.name.clone(),
        org: row.org.clone(),
        kind: row.kind.as_str().to_owned(),
        latest: row.latest().map_or(0, |latest| latest.version),
        versions: row.versions.iter().map(version_view).collect(),
    }
}

/// One upload.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The owning organisation.
    pub org: &'a str,
    /// Who uploads it (a principal's subject).
    pub uploaded_by: &'a str,
    /// The plugin's name.
    pub name: &'a str,
    /// Its kind.
    pub kind: PluginKind,
    /// The module.
    pub module: &'a [u8],
    /// The detached compact JWS over its SHA-256, if signed.
    pub signature: Option<&'a str>,
    /// The capabilities it declares.
    pub grants: Grants,
}

/// Stored plugins: checks, signatures and storage.
pub struct Plugins {
    store: Arc<dyn PluginStore>,
    runtime: PluginRuntime,
    org_keys: Arc<dyn OrgKeys>,
    default_org: String,
    require_signed: bool,
    allow_grants: Grants,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("default_org", &self.default_org)
            .field("require_signed", &self.require_signed)
            .field("allow_grants", &self.allow_grants)
            .finish_non_exhaustive()
    }
}

// === impl Plugins ===

impl Plugins {
    /// Plugins in `store`, compiled and checked by `runtime`, signatures
    /// verified with `org_keys`; callers without an organisation upload
    /// into `default_org` (the deployment's).
    pub fn new(
        store: Arc<dyn PluginStore>,
        runtime: PluginRuntime,
        org_keys: Arc<dyn OrgKeys>,
        default_org: impl Into<String>,
    ) -> Self {
        Self {
            store,
            runtime,
            org_keys,
            default_org: default_org.into(),
            require_signed: false,
            allow_grants: Grants::NONE,
        }
    }

    /// The capabilities an upload may declare (`plugins.allow_grants`;
    /// none by default): declaring another is `GRANT_NOT_ALLOWED`, nothing
    /// stored.
    pub fn allow_grants(mut self, allow_grants: Grants) -> Self {
        self.allow_grants = allow_grants;
        self
    }

    /// Refuses every upload without a signature (`plugins.require_signed`):
    /// `SIGNATURE_REQUIRED`, nothing stored.
    pub fn require_signed(mut self, require_signed: bool) -> Self {
        self.require_signed = require_signed;
        self
    }

    /// The organisation `principal` uploads into.
    pub fn org_of(&self, principal: &Principal) -> String {
        principal
            .org
            .clone()
            .unwrap_or_else(|| self.default_org.clone())
    }

    /// Checks `upload` (name, module, signature) and stores it as a new
    /// version: nothing is stored when a check fails.
    pub async fn upload(&self, upload: Upload<'_>) -> Result<PluginView, GatewayError> {
        check_agent_name(upload.name).map_err(|violation| GatewayError::SchemaViolation {
            violations: vec![violation],
        })?;
        // Before the module is compiled: an unsigned upload is refused
        // whatever it holds, so there is no need to pay for compiling it.
        if self.require_signed && upload.signature.is_none() {
            return Err(GatewayError::PluginRefused {
                reason: "SIGNATURE_REQUIRED",
                detail: format!(
                    "this gateway runs only signed plugins (plugins.require_signed): \
                     send a signature of the module by a key of {} in the Convergio-Plugin-Signature header \
                     (convergio plugins sign)",
                    upload.org
                ),
            });
        }
        // Also before compiling: a grant this gateway does not allow is
        // refused whatever the module imports.
        let refused = upload.grants.not_in(self.allow_grants);
        if !refused.is_empty() {
            let refused: Vec<&str> = refused.iter().map(|grant| grant.as_str()).collect();
            return Err(GatewayError::PluginRefused {
                reason: "GRANT_NOT_ALLOWED",
                detail: format!(
                    "this gateway does not allow the grant {} (plugins.allow_grants allows {})",
                    refused.join(", "),
                    self.allow_grants
                ),
            });
        }
        // Compiling a module of a few MiB takes a while: off the event loop.
        // A plugin agent's declaration (its `describe` export) is read now.
        // The module is checked against its declared grants: importing a
        // grantable host function it was not granted is FORBIDDEN_IMPORT.
        let runtime = self.runtime.clone();
        let name = upload.name.to_owned();
        let module = upload.module.to_vec();
        let kind = upload.kind;
        let grants = upload.grants;
        let declaration = tokio::task::spawn_blocking(move || match kind {
            PluginKind::Agent => {
                WasmAgent::load_granted(&runtime, &name, &module, AgentCalling::none(), grants)
                    .map(|agent| Some(agent.declaration().clone()))
            }
            PluginKind::Guardrail => {
                WasmGuardrail::load_granted(&runtime, &name, &module, grants).map(|_| None)
            }
        })
        .await
        .map_err(|error| GatewayError::internal("compiling a plugin", error))?
        .map_err(|error| GatewayError::PluginRefused {
            reason: error.code(),
            detail: error.to_string(),
        })?;
        let sha256 = module_sha256(upload.module);
        let grant_names = upload.grants.names();
        let signed_by = match upload.signature {
            Some(signature) => Some(self.verify(upload.org, &sha256, signature)?),
            None => None,
        };
        let stored = self
            .store
            .put_version(&NewPluginVersion {
                org: upload.org,
                name: upload.name,
                kind: upload.kind,
                module: upload.module,
                sha256: &sha256,
                signature: upload.signature.map(str::trim),
                signed_by: signed_by.as_deref(),
                declaration: declaration.as_ref(),
                grants: &grant_names,
                uploaded_by: upload.uploaded_by,
                at: chrono::Utc::now().timestamp(),
            })
            .await
            .map_err(|error| match error {
                RegistryError::AgentExists { agent_id } => {
                    GatewayError::NameTaken { name: agent_id }
                }
                RegistryError::InvalidInput { message } => GatewayError::PluginRefused {
                    reason: "KIND_MISMATCH",
                    detail: message,
                },
                other => storage_error(other),
            })?;
        tracing::info!(
            org = %upload.org,
            plugin = %upload.name,
            kind = upload.kind.as_str(),
            version = stored.version,
            sha256 = %sha256,
            signed = signed_by.is_some(),
            grants = %upload.grants,
            "plugin version stored"
        );
        let row = self
            .store
            .get(upload.name)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| GatewayError::internal_plain("a stored plugin vanished"))?;
        Ok(view(&row))
    }

    /// The key id of `org` that verifies `signature` over `sha256`.
    fn verify(&self, org: &str, sha256: &str, signature: &str) -> Result<String, GatewayError> {
        let keys = self.org_keys.keys_for(org);
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
        match verify_module(sha256, signature, &keys, now) {
            CardCheck::Verified { kid, .. } => Ok(kid),
            CardCheck::Invalid { reason } => Err(GatewayError::PluginRefused {
                reason: "SIGNATURE_INVALID",
                detail: format!(
                    "the signature does not verify for this module (changed after signing?): {reason}"
                ),
            }),
            CardCheck::Unverifiable { reason } => Err(GatewayError::PluginRefused {
                reason: "SIGNATURE_UNVERIFIABLE",
                detail: format!("no usable key of {org} verifies the signature: {reason}"),
            }),
            CardCheck::Unsigned => Err(GatewayError::PluginRefused {
                reason: "SIGNATURE_INVALID",
                detail: "the signature header holds no signature".to_owned(),
            }),
        }
    }

    /// One plugin, whoever owns it.
    pub async fn get(&self, name: &str) -> Result<Option<PluginRow>, GatewayError> {
        self.store.get(name).await.map_err(storage_error)
    }

    /// `org`'s plugins.
    pub async fn list(&self, org: &str) -> Result<Vec<PluginView>, GatewayError> {
        let rows = self.store.list(Some(org)).await.map_err(storage_error)?;
        Ok(rows.iter().map(view).collect())
    }

    /// The bytes of one version.
    pub async fn module(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>, GatewayError> {
        self.store
            .module(name, version)
            .await
            .map_err(storage_error)
    }

    /// Deletes `org`'s plugin `name`; whether it existed.
    pub async fn delete(&self, org: &str, name: &str) -> Result<bool, GatewayError> {
        let deleted = self.store.delete(org, name).await.map_err(storage_error)?;
        if deleted {
            tracing::info!(org = %org, plugin = %name, "plugin deleted");
        }
        Ok(deleted)
    }
}

fn storage_error(error: RegistryError) -> GatewayError {
    GatewayError::internal("reading or writing plugins", error)
}

#[derive(Clone)]
struct ApiState {
    plugins: Arc<Plugins>,
    gate: Arc<PolicyGate>,
}

/// The routes under [`PLUGINS_PREFIX`], decided by `gate`; mount behind the
/// `Authenticate` layer.
pub fn plugins_router(plugins: Arc<Plugins>, gate: Arc<PolicyGate>) -> Router {
    Router::new()
        .route("/v1/plugins", get(list_handler))
        .route(
            "/v1/plugins/{name}",
            get(get_handler).post(upload_handler).delete(delete_handler),
        )
        .route(
            "/v1/plugins/{name}/versions/{version}",
            get(download_handler),
        )
        .with_state(ApiState { plugins, gate })
}

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, get_handler, upload_handler, download_handler, delete_handler),
    components(schemas(PluginView, PluginVersionView, WasmModule)),
    tags((name = "plugins", description = "Sandboxed WebAssembly plugins: guardrails and agents"))
)]
pub(crate) struct PluginsApiDoc;

fn problem(error: GatewayError) -> Failure {
    Failure::new(error, ErrorShape::Problem)
}

fn not_found(name: &str) -> Failure {
    problem(GatewayError::RouteNotFound {
        path: format!("{PLUGINS_PREFIX}/{name}"),
    })
}

/// The row `name` if `principal` may do `action` on it; another
/// organisation's plugin it may not touch is answered as unknown.
async fn permitted_row(
    state: &ApiState,
    principal: &Principal,
    extensions: &Extensions,
    action: Action,
    name: &str,
) -> Result<PluginRow, Failure> {
    let row = state
        .plugins
        .get(name)
        .await
        .map_err(problem)?
        .ok_or_else(|| not_found(name))?;
    let own = state.plugins.org_of(principal);
    decision(state, principal, extensions, action)
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
    decision(state, principal, extensions, action)
        .on_own(state.plugins.org_of(principal))
        .await
}

fn decision<'a>(
    state: &'a ApiState,
    principal: &'a Principal,
    extensions: &'a Extensions,
    action: Action,
) -> Decision<'a> {
    Decision {
        gate: &state.gate,
        principal,
        extensions,
        action,
        what: "plugins",
    }
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    operation_id = "listPlugins",
    tag = "plugins",
    responses(
        (status = 200, description = "The caller's organisation's plugins (`{\"plugins\": [...]}`).", body = Object),
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
    let plugins = state.plugins.list(&org).await.map_err(problem)?;
    Ok(Json(serde_json::json!({ "plugins": plugins })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    operation_id = "getPlugin",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The plugin and its versions.", body = PluginView),
        (status = 404, description = "No such plugin"),
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
    Ok(Json(view(&row)).into_response())
}

/// The query of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// `agent` or `guardrail`.
    kind: String,
    /// The capabilities the version is granted, comma-separated (`clock`,
    /// `random`, `env`; default none). Each must be in the gateway's
    /// `plugins.allow_grants` (else 422 `GRANT_NOT_ALLOWED`); a module
    /// importing a grantable host function without its grant is 422
    /// `FORBIDDEN_IMPORT`. Files and the network are never grantable.
    #[serde(default)]
    grants: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/plugins/{name}",
    operation_id = "uploadPlugin",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        UploadQuery,
        ("Convergio-Plugin-Signature" = Option<String>, Header, description = "A detached compact JWS over the module's SHA-256 by a key of the owning organisation; required when plugins.require_signed is on"),
    ),
    request_body(description = "The WebAssembly module (ABI v1), raw: application/wasm or application/octet-stream", content((WasmModule = "application/octet-stream"))),
    responses(
        (status = 201, description = "The new version is stored.", body = PluginView),
        (status = 409, description = "Another organisation owns the name"),
        (status = 413, description = "The module is over plugins.max_module_bytes"),
        (status = 422, description = "The module, its signature or its grants are refused (the detail starts `plugin refused (CODE)`: INVALID_MODULE, FORBIDDEN_IMPORT, MISSING_EXPORT, SIGNATURE_*, KIND_MISMATCH, GRANT_NOT_ALLOWED, UNKNOWN_GRANT); nothing was stored"),
    )
)]
async fn upload_handler(
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
    let query = Query::<UploadQuery>::try_from_uri(request.uri()).map_err(|error| {
        problem(GatewayError::InvalidRequest {
            detail: format!("an upload names its kind: ?kind=agent|guardrail ({error})"),
        })
    })?;
    let kind = PluginKind::parse(&query.kind).ok_or_else(|| {
        problem(GatewayError::InvalidRequest {
            detail: format!(
                "kind must be agent or guardrail, not {:?}",
                convergio_schemas::echo(&query.kind)
            ),
        })
    })?;
    let grants = Grants::parse_names(query.grants.as_deref().unwrap_or_default().split(','))
        .map_err(|error| {
            let error = PluginError::from(error);
            problem(GatewayError::PluginRefused {
                reason: error.code(),
                detail: error.to_string(),
            })
        })?;
    let signature = match request.headers().get(SIGNATURE_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    problem(GatewayError::InvalidRequest {
                        detail: format!("{SIGNATURE_HEADER} is not text"),
                    })
                })?
                .to_owned(),
        ),
        None => None,
    };
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map(|BodyLimit(limit)| *limit);
    let module = crate::a2a::read_body(request.into_body(), limit)
        .await
        .map_err(problem)?;
    let view = state
        .plugins
        .upload(Upload {
            org: &org,
            uploaded_by: &principal.subject,
            name: &name,
            kind,
            module: &module,
            signature: signature.as_deref(),
            grants,
        })
        .await
        .map_err(problem)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}/versions/{version}",
    operation_id = "downloadPlugin",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = i64, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "The module, as uploaded.", content((WasmModule = "application/wasm"))),
        (status = 404, description = "No such plugin or version"),
    )
)]
async fn download_handler(
    State(state): State<ApiState>,
    Path((name, version)): Path<(String, String)>,
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
    let missing = || {
        problem(GatewayError::RouteNotFound {
            path: format!("{PLUGINS_PREFIX}/{name}/versions/{version}"),
        })
    };
    let number: i64 = version.parse().map_err(|_| missing())?;
    let stored = row
        .versions
        .iter()
        .find(|stored| stored.version == number)
        .ok_or_else(missing)?;
    let module = state
        .plugins
        .module(&row.name, number)
        .await
        .map_err(problem)?
        .ok_or_else(missing)?;
    let mut response = Response::new(Body::from(module));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_WASM));
    if let Ok(sha256) = HeaderValue::from_str(&stored.sha256) {
        response
            .headers_mut()
            .insert("convergio-plugin-sha256", sha256);
    }
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    operation_id = "deletePlugin",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 204, description = "Removed, with every version."),
        (status = 404, description = "No such plugin"),
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
        .plugins
        .delete(&row.org, &row.name)
        .await
        .map_err(problem)?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}
