//! The registry's REST API under `/v1/`, described by [`RegistryApiDoc`]
//! (generated from the handlers' `#[utoipa::path]` attributes; the gateway
//! serves it, merged with its other APIs, at `/v1/openapi.json`, and the
//! registry's own [`router`] serves it alone).
//!
//! Every error is an `application/problem+json` document with a stable
//! `type` ([`convergio_schemas::Problem`]). The handlers read bodies
//! themselves instead of using axum's `Json` extractor, so content type, size
//! and syntax failures get typed problems; a last layer turns any remaining
//! non-problem error response (unknown route, wrong method) into one too.
//!
//! Writes (register, update, deregister, trust changes) need the bootstrap
//! admin token as `Authorization: Bearer <token>` until gateway security
//! brings real principals: no header is 401, a wrong token is 403, and with
//! no token configured every write is 403. `PUT /v1/agents/{id}` requires
//! `If-Match` (428 without it, 412 when stale); `DELETE` and trust changes
//! honour `If-Match` when it is sent.
//!
//! Behind a [`Guard`] ([`guarded_router`], what the gateway mounts), every
//! route is authorised instead: discovery lists only agents the caller may
//! `discover` (pages stay correct: see [`discover`]), reading one agent
//! needs `read_card` (a refusal is the same 404 as an unknown agent), and
//! writes need `register_agent`, `update_agent` or `set_trust`. The caller is
//! the `Principal` request extension, or the bootstrap administrator when the
//! bearer token is the admin token (so that path keeps working).
//!
//! Only a caller who may `update_agent` an agent sees how the gateway
//! reaches it: its `upstreams` and its card as registered. Everyone else
//! gets no upstreams and the card as [`CardView`] shows it (the gateway's
//! view: every interface pointing at the gateway, unless the card's owner
//! signed it as it is), so discovering or reading an agent reveals no
//! internal address its owner did not sign.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use convergio_schemas::problem::{self, PROBLEM_JSON};
use convergio_schemas::{
    AgentId, AgentRole, AuthMethod, ErrorKind, Principal, Problem, TrustLevel,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::{etag_for, Actor, AgentRecord, Registration};
use crate::store::DiscoveryQuery;
use crate::{Registry, RegistryError};

/// The OpenAPI description of the registry's routes (without
/// `/v1/openapi.json` itself, which whoever serves the document adds).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        register,
        discover,
        get_agent,
        update_agent,
        delete_agent,
        versions,
        trust_history,
        set_trust
    ),
    components(schemas(
        AgentRecord,
        Registration,
        crate::model::Upstream,
        Actor,
        crate::model::TrustChange,
        DiscoveryPage,
        VersionList,
        TrustHistory,
        TrustRequest,
        AgentRole,
        TrustLevel
    )),
    tags((name = "agents", description = "Agent cards: registration, discovery, versions, trust"))
)]
pub struct RegistryApiDoc;

/// The registry alone's OpenAPI 3.1 document, as its [`router`] serves it at
/// `/v1/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = <RegistryApiDoc as utoipa::OpenApi>::openapi();
    document.info = utoipa::openapi::Info::new("Convergio registry", env!("CARGO_PKG_VERSION"));
    document.paths.add_path_operation(
        OPENAPI_PATH,
        vec![utoipa::openapi::HttpMethod::Get],
        openapi_operation(),
    );
    convergio_schemas::openapi::finish(&mut document);
    document
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The operation `GET /v1/openapi.json`: public, a JSON document.
pub fn openapi_operation() -> utoipa::openapi::path::Operation {
    use utoipa::openapi::path::OperationBuilder;
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    OperationBuilder::new()
        .operation_id(Some("getOpenApi"))
        .summary(Some("This OpenAPI 3.1 document"))
        .tag("meta")
        .security(utoipa::openapi::security::SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document of this server's REST API.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new()))
                        .build(),
                ),
        )
        .build()
}

/// `{"agents": […], "next_page_token": …}`: one page of discovery.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DiscoveryPage {
    /// The agents of this page. In a federated answer every item also has
    /// `provenance` (`org`, `source`: `local` or `peer`, and for a peer's
    /// agent `peer_trust` and `trust_at_peer`), and a peer's agent has the
    /// id `external://<peer>/agents/<name>`.
    pub agents: Vec<AgentRecord>,
    /// Continues the (local) listing; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// `{"agent_id", "versions"}`: every stored version of one agent, oldest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct VersionList {
    /// The agent.
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    /// Its versions, oldest first.
    pub versions: Vec<AgentRecord>,
}

/// `{"agent_id", "trust", "changes"}`: an agent's trust and how it got there.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TrustHistory {
    /// The agent.
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    /// Its current level.
    pub trust: TrustLevel,
    /// Every change, oldest first.
    pub changes: Vec<crate::model::TrustChange>,
}

/// Characters kept as they are when an id is put into a URL path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The bootstrap admin token; `None` disables every write.
    pub admin_token: Option<String>,
    /// The largest accepted request body, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What a [`Guard`] is asked to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// See the agent in discovery results.
    Discover,
    /// Read the agent's record, versions or trust history.
    ReadCard,
    /// Register the agent.
    RegisterAgent,
    /// Update or deregister the agent.
    UpdateAgent,
    /// Change the agent's trust level.
    SetTrust,
}

/// One authorisation question of the registry API.
#[derive(Debug, Clone, Copy)]
pub struct GuardRequest<'a> {
    /// Who asks.
    pub caller: &'a Principal,
    /// What it wants.
    pub action: GuardAction,
    /// The agent (for a registration: the record it would create).
    pub target: &'a AgentRecord,
    /// The request's extensions (request id, connection info).
    pub extensions: &'a Extensions,
}

/// Authorisation of the registry API, implemented outside the registry (the
/// gateway implements it with the policy engine), so the registry does not
/// depend on the policy crate.
#[async_trait]
pub trait Guard: Send + Sync {
    /// Decides one request and records the decision.
    async fn decide(&self, request: GuardRequest<'_>) -> bool;
    /// Whether the caller may discover `request.target`, without recording
    /// it (discovery filters many agents per request).
    fn may_discover(&self, request: GuardRequest<'_>) -> bool;
    /// Whether the caller may see how the gateway reaches
    /// `request.target` (its upstreams and its card as registered), without
    /// recording it: whether it may update the agent.
    fn may_see_upstreams(&self, request: GuardRequest<'_>) -> bool;
    /// Records that a discovery page was filtered: `shown` agents listed,
    /// `hidden` left out.
    async fn record_listing(
        &self,
        caller: &Principal,
        extensions: &Extensions,
        shown: usize,
        hidden: usize,
    );
}

/// The card of an agent as the gateway serves it to callers (interfaces
/// pointing at the gateway for this request's host), implemented outside
/// the registry like [`Guard`].
pub trait CardView: Send + Sync {
    /// `record`'s card as served for a request with `headers`.
    fn served_card(&self, record: &AgentRecord, headers: &HeaderMap) -> Value;
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    config: Arc<ApiConfig>,
    guard: Option<Guarded>,
}

/// The authorisation of a guarded router, and how it shows agents to those
/// who may not see their upstreams.
#[derive(Clone)]
struct Guarded {
    guard: Arc<dyn Guard>,
    cards: Arc<dyn CardView>,
}

// === impl Guarded ===

impl std::ops::Deref for Guarded {
    type Target = dyn Guard;

    fn deref(&self) -> &Self::Target {
        self.guard.as_ref()
    }
}

impl Guarded {
    /// `record` as `caller` may see it: whole for whoever may update the
    /// agent; otherwise its card as served and no upstreams.
    fn shown(
        &self,
        caller: &Principal,
        headers: &HeaderMap,
        extensions: &Extensions,
        mut record: AgentRecord,
    ) -> AgentRecord {
        let whole = self.guard.may_see_upstreams(GuardRequest {
            caller,
            action: GuardAction::UpdateAgent,
            target: &record,
            extensions,
        });
        if !whole {
            record.card = self.cards.served_card(&record, headers);
            record.upstreams = Vec::new();
        }
        record
    }
}

/// The registry API router, ready to be nested or served; writes need the
/// bootstrap admin token and reads are open (no [`Guard`]).
pub fn router(registry: Registry, config: ApiConfig) -> Router {
    let document = serde_json::to_string(&openapi_document()).unwrap_or_default();
    let openapi = Router::new().route(OPENAPI_PATH, get(move || openapi(document.clone())));
    openapi.merge(build(AppState {
        registry,
        config: Arc::new(config),
        guard: None,
    }))
}

/// The registry API router with every route authorised by `guard`, agents
/// shown to those who may not update them as `cards` serves them.
pub fn guarded_router(
    registry: Registry,
    config: ApiConfig,
    guard: Arc<dyn Guard>,
    cards: Arc<dyn CardView>,
) -> Router {
    build(AppState {
        registry,
        config: Arc::new(config),
        guard: Some(Guarded { guard, cards }),
    })
}

fn build(state: AppState) -> Router {
    Router::new()
        .route("/v1/agents", get(discover).post(register))
        .route(
            "/v1/agents/{id}",
            get(get_agent).put(update_agent).delete(delete_agent),
        )
        .route("/v1/agents/{id}/versions", get(versions))
        .route("/v1/agents/{id}/trust", get(trust_history).put(set_trust))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(ensure_problem))
        .with_state(state)
}

/// An error response: a problem document plus any extra headers (boxed, so
/// results stay small on the happy path).
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorParts>);

#[derive(Debug)]
struct ApiErrorParts {
    problem: Problem,
    headers: HeaderMap,
}

// === impl ApiError ===

impl ApiError {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self(Box::new(ApiErrorParts {
            problem: Problem::new(kind, detail),
            headers: HeaderMap::new(),
        }))
    }

    fn with_status(mut self, status: u16, title: &str) -> Self {
        self.0.problem.status = status;
        self.0.problem.title = title.to_owned();
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        // The one error path: internals are logged once and never shown.
        let problem =
            problem::http::problem_for(&error, error.kind()).with_violations(error.violations());
        Self(Box::new(ApiErrorParts {
            problem,
            headers: HeaderMap::new(),
        }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiErrorParts { problem, headers } = *self.0;
        problem::http::respond(&problem, headers)
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn record_response(status: StatusCode, record: &AgentRecord) -> Response {
    let mut response = json_response(status, record);
    if let Ok(etag) = HeaderValue::from_str(&record.etag()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The URL path of an agent.
pub fn agent_path(id: &AgentId) -> String {
    format!(
        "/v1/agents/{}",
        utf8_percent_encode(&id.to_string(), PATH_SEGMENT)
    )
}

// --- request reading ---

/// The caller, from the bearer token (see module docs).
fn admin_actor(headers: &HeaderMap, config: &ApiConfig) -> ApiResult<Actor> {
    let Some(expected) = config.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "writes are disabled: no admin token is configured",
        ));
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let mut error = ApiError::new(
            ErrorKind::Unauthenticated,
            "this write needs the admin token: Authorization: Bearer <token>",
        );
        error.0.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"convergio\""),
        );
        return Err(error);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|text| text.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        Ok(Actor::admin())
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            "the bearer token is not the admin token",
        ))
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The caller of a guarded route: the authenticated principal, else the
/// bootstrap administrator when the bearer token is the admin token, else
/// anonymous.
fn caller(headers: &HeaderMap, extensions: &Extensions, config: &ApiConfig) -> Principal {
    if let Some(principal) = extensions.get::<Principal>() {
        if principal.method != AuthMethod::Anonymous {
            return principal.clone();
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.strip_prefix("Bearer "))
        .map(str::trim);
    let expected = config.admin_token.as_deref().filter(|t| !t.is_empty());
    if let (Some(token), Some(expected)) = (bearer, expected) {
        if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            return Principal {
                subject: "admin".to_owned(),
                org: None,
                scopes: vec!["admin".to_owned()],
                method: AuthMethod::AdminToken,
            };
        }
    }
    Principal::anonymous()
}

/// The actor of a write: with a guard, the caller if the guard allows
/// `action` on `target` (401 for an anonymous caller without credentials,
/// 403 otherwise); without one, the bootstrap admin token.
async fn write_actor(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    action: GuardAction,
    target: &AgentRecord,
) -> ApiResult<Actor> {
    let Some(guard) = &state.guard else {
        return admin_actor(headers, &state.config);
    };
    let caller = caller(headers, extensions, &state.config);
    let allowed = guard
        .decide(GuardRequest {
            caller: &caller,
            action,
            target,
            extensions,
        })
        .await;
    if allowed {
        // The policy is the authority: a caller it allows acts with the
        // rights the registry's own rules reserve for administrators.
        return Ok(Actor {
            subject: caller.owner_key(),
            is_admin: true,
        });
    }
    if caller.method == AuthMethod::Anonymous && !headers.contains_key(header::AUTHORIZATION) {
        let mut error = ApiError::new(
            ErrorKind::Unauthenticated,
            "this write needs credentials: Authorization: Bearer <token>",
        );
        error.0.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"convergio\""),
        );
        return Err(error);
    }
    // A caller that may not even discover the agent gets the unknown-agent
    // answer, so a refused change does not reveal that the agent exists.
    let hidden = action != GuardAction::RegisterAgent
        && !guard.may_discover(GuardRequest {
            caller: &caller,
            action: GuardAction::Discover,
            target,
            extensions,
        });
    if hidden {
        return Err(RegistryError::not_found(&target.id).into());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!("{} may not change {}", caller.subject, target.id),
    ))
}

/// Refuses a read the guard does not allow with the same 404 an unknown
/// agent gets, so existence does not leak; otherwise `records` as the
/// caller may see them ([`Guarded::shown`]). `records` are versions of one
/// agent, newest last, which decides.
async fn readable(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    records: Vec<AgentRecord>,
) -> ApiResult<Vec<AgentRecord>> {
    let (Some(guard), Some(newest)) = (&state.guard, records.last()) else {
        return Ok(records);
    };
    let caller = caller(headers, extensions, &state.config);
    let allowed = guard
        .decide(GuardRequest {
            caller: &caller,
            action: GuardAction::ReadCard,
            target: newest,
            extensions,
        })
        .await;
    if !allowed {
        return Err(RegistryError::not_found(&newest.id).into());
    }
    Ok(records
        .into_iter()
        .map(|record| guard.shown(&caller, headers, extensions, record))
        .collect())
}

/// Reads a JSON body: checks the content type and the size limit, then parses.
async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("the body must be application/json, not {content_type:?}"),
        ));
    }
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(too_large()),
        Err(error) => {
            return Err(ApiError::new(
                ErrorKind::MalformedBody,
                format!("could not read the body: {error}"),
            ))
        }
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            ErrorKind::MalformedBody,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    // Refused here, the same for both backends (PostgreSQL cannot store
    // NUL, SQLite can): issue 15.
    if let Some(pointer) = convergio_schemas::find_nul(&value) {
        let mut error = ApiError::new(ErrorKind::InvalidInput, convergio_schemas::NUL_MESSAGE);
        error.0.problem.violations = vec![convergio_schemas::Violation {
            pointer,
            message: convergio_schemas::NUL_MESSAGE.to_owned(),
        }];
        return Err(error);
    }
    Ok(value)
}

/// Deserialises a parsed body into `T`, as a 400 with a pointer-free detail.
fn from_body<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|error| {
        ApiError::new(
            ErrorKind::InvalidInput,
            format!("the body does not have the expected fields: {error}"),
        )
    })
}

/// A registration body: a `Registration`, or a bare agent card.
fn registration_from(value: Value) -> ApiResult<(Registration, bool)> {
    if value.get("card").is_some() {
        Ok((from_body(value)?, false))
    } else if value.is_object() {
        Ok((
            Registration {
                name: None,
                org: None,
                role: None,
                card: value,
                upstreams: None,
                trust: None,
            },
            true,
        ))
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidInput,
            "the body must be a JSON object: a registration or an agent card",
        ))
    }
}

/// Maps a registry error for a request whose body was a bare card: the
/// violations point into the body itself, not into `/card`.
fn bare_card_error(error: RegistryError, bare: bool) -> ApiError {
    let mut api_error = ApiError::from(error);
    if bare {
        for violation in &mut api_error.0.problem.violations {
            if let Some(rest) = violation.pointer.strip_prefix("/card") {
                violation.pointer = rest.to_owned();
            }
        }
    }
    api_error
}

fn agent_id(registry: &Registry, path: Result<Path<String>, PathRejection>) -> ApiResult<AgentId> {
    let Path(text) =
        path.map_err(|rejection| ApiError::new(ErrorKind::InvalidInput, rejection.body_text()))?;
    Ok(registry.parse_id(&text)?)
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::new(ErrorKind::InvalidInput, rejection.body_text()))
}

/// The version an `If-Match` header names for `id`: `Ok(None)` for `*`.
fn if_match_version(headers: &HeaderMap, id: &AgentId) -> ApiResult<Option<Option<i64>>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(None));
    }
    for candidate in text.split(',') {
        let candidate = candidate.trim().trim_start_matches("W/");
        let version = candidate
            .trim_matches('"')
            .rsplit_once("-v")
            .and_then(|(_, version)| version.parse::<i64>().ok());
        if let Some(version) = version {
            if etag_for(id, version) == candidate {
                return Ok(Some(Some(version)));
            }
        }
    }
    Err(ApiError::new(
        ErrorKind::PreconditionFailed,
        format!("If-Match {text:?} does not name a version of {id}"),
    ))
}

// --- handlers ---

/// Registers an agent: a [`Registration`], or a bare A2A agent card.
#[utoipa::path(
    post,
    path = "/v1/agents",
    operation_id = "registerAgent",
    tag = "agents",
    request_body(
        description = "A registration, or a bare A2A 1.0 agent card (then every default applies).",
        content(
            (Registration = "application/json"),
        )
    ),
    responses(
        (status = 201, description = "Registered.", body = AgentRecord,
            headers(("Location" = String, description = "The agent's URL"), ("ETag" = String, description = "The version's entity tag"))),
        (status = 409, description = "An agent of that id exists already"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> ApiResult {
    let actor = match state.guard {
        None => Some(admin_actor(&headers, &state.config)?),
        Some(_) => None,
    };
    let value = read_json(&headers, body, state.config.max_body_bytes).await?;
    let (registration, bare) = registration_from(value)?;
    let actor = match actor {
        Some(actor) => actor,
        None => {
            // The guard decides on the record the registration would create;
            // a registration too broken to build one is refused as invalid.
            let planned = state
                .registry
                .planned_record(registration.clone())
                .map_err(|error| bare_card_error(error, bare))?;
            write_actor(
                &state,
                &headers,
                &extensions,
                GuardAction::RegisterAgent,
                &planned,
            )
            .await?
        }
    };
    let record = state
        .registry
        .register(&actor, registration)
        .await
        .map_err(|error| bare_card_error(error, bare))?;
    let mut response = record_response(StatusCode::CREATED, &record);
    if let Ok(location) = HeaderValue::from_str(&agent_path(&record.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionParams {
    version: Option<String>,
}

/// One agent, at its current or an earlier version.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's name, or its full id percent-encoded"),
        ("version" = Option<i64>, Query, description = "An earlier version (1 is the first)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer; 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "The agent.", body = AgentRecord, headers(("ETag" = String, description = "The version's entity tag"))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 404, description = "No such agent or version, or the caller may not read it"),
    )
)]
async fn get_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<VersionParams>, QueryRejection>,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let params = query(params)?;
    let version = params
        .version
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidInput,
                    format!("version must be a whole number, not {text:?}"),
                )
            })
        })
        .transpose()?;
    let record = state.registry.get_version(&id, version).await?;
    let Some(record) = readable(&state, &headers, &extensions, vec![record])
        .await?
        .pop()
    else {
        return Err(RegistryError::not_found(&id).into());
    };
    if not_modified(&headers, &record.etag()) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(etag) = HeaderValue::from_str(&record.etag()) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Ok(response);
    }
    Ok(record_response(StatusCode::OK, &record))
}

/// Whether `If-None-Match` names `etag` (or is `*`): the client's copy is current.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == "*" || candidate == etag)
}

/// The live record a guarded write acts on (its absence is the registry's
/// usual 404).
async fn guarded_target(state: &AppState, id: &AgentId) -> ApiResult<AgentRecord> {
    let record = state.registry.get(id).await?;
    Ok(record)
}

/// The actor of a write to the existing agent `id`.
async fn existing_write_actor(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    action: GuardAction,
    id: &AgentId,
) -> ApiResult<Actor> {
    if state.guard.is_none() {
        return admin_actor(headers, &state.config);
    }
    let target = guarded_target(state, id).await?;
    write_actor(state, headers, extensions, action, &target).await
}

/// Replaces an agent's registration (its card, upstreams, role).
#[utoipa::path(
    put,
    path = "/v1/agents/{id}",
    operation_id = "updateAgent",
    tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's name, or its full id percent-encoded"),
        ("If-Match" = String, Header, description = "The agent's current ETag (or `*`)"),
    ),
    request_body(
        description = "A registration, or a bare A2A 1.0 agent card.",
        content((Registration = "application/json"))
    ),
    responses(
        (status = 200, description = "Updated.", body = AgentRecord),
        (status = 404, description = "No such agent"),
        (status = 409, description = "The write collides with another"),
        (status = 412, description = "The ETag is not the current version's"),
        (status = 415, description = "The body is not application/json"),
        (status = 428, description = "If-Match is missing"),
    )
)]
async fn update_agent(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let actor =
        existing_write_actor(&state, &headers, &extensions, GuardAction::UpdateAgent, &id).await?;
    let Some(expected) = if_match_version(&headers, &id)? else {
        return Err(ApiError::new(
            ErrorKind::PreconditionFailed,
            "an update needs If-Match with the agent's current ETag",
        )
        .with_status(428, "precondition required"));
    };
    let value = read_json(&headers, body, state.config.max_body_bytes).await?;
    let (registration, bare) = registration_from(value)?;
    let expected = match expected {
        Some(version) => version,
        None => state.registry.get(&id).await?.version,
    };
    let record = state
        .registry
        .update(&actor, &id, expected, registration)
        .await
        .map_err(|error| bare_card_error(error, bare))?;
    Ok(record_response(StatusCode::OK, &record))
}

/// Deregisters an agent (soft: its history stays).
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    operation_id = "deregisterAgent",
    tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's name, or its full id percent-encoded"),
        ("If-Match" = Option<String>, Header, description = "The agent's current ETag"),
    ),
    responses(
        (status = 200, description = "Deregistered; the final version.", body = AgentRecord),
        (status = 404, description = "No such agent"),
        (status = 409, description = "The write collides with another"),
        (status = 412, description = "The ETag is not the current version's"),
    )
)]
async fn delete_agent(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: Extensions,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let actor =
        existing_write_actor(&state, &headers, &extensions, GuardAction::UpdateAgent, &id).await?;
    let expected = if_match_version(&headers, &id)?.flatten();
    let record = state.registry.deregister(&actor, &id, expected).await?;
    Ok(record_response(StatusCode::OK, &record))
}

/// Every version of an agent, oldest first.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/versions",
    operation_id = "listAgentVersions",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's name, or its full id percent-encoded")),
    responses(
        (status = 200, description = "The versions.", body = VersionList),
        (status = 404, description = "No such agent"),
    )
)]
async fn versions(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let versions = state.registry.versions(&id).await?;
    let versions = readable(&state, &headers, &extensions, versions).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!(VersionList {
            agent_id: id,
            versions
        }),
    ))
}

/// `{"level", "reason"}`: a trust change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustRequest {
    /// The new level.
    #[schema(value_type = TrustLevel)]
    level: String,
    /// Why (1 to 1000 characters).
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Changes an agent's trust level, recording who, when and why.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/trust",
    operation_id = "setTrust",
    tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's name, or its full id percent-encoded"),
        ("If-Match" = Option<String>, Header, description = "The agent's current ETag"),
    ),
    request_body(content((TrustRequest = "application/json"))),
    responses(
        (status = 200, description = "Changed; the new version.", body = AgentRecord),
        (status = 404, description = "No such agent"),
        (status = 409, description = "The write collides with another"),
        (status = 412, description = "The ETag is not the current version's"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn set_trust(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let actor =
        existing_write_actor(&state, &headers, &extensions, GuardAction::SetTrust, &id).await?;
    let expected = if_match_version(&headers, &id)?.flatten();
    let value = read_json(&headers, body, state.config.max_body_bytes).await?;
    let trust: TrustRequest = from_body(value)?;
    let level = TrustLevel::from_str(&trust.level)
        .map_err(|error| ApiError::new(ErrorKind::InvalidInput, error.to_string()))?;
    let record = state
        .registry
        .set_trust(&actor, &id, level, &trust.reason, expected)
        .await?;
    Ok(record_response(StatusCode::OK, &record))
}

/// An agent's trust level and every change of it.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/trust",
    operation_id = "getTrustHistory",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's name, or its full id percent-encoded")),
    responses(
        (status = 200, description = "The trust history.", body = TrustHistory),
        (status = 404, description = "No such agent"),
    )
)]
async fn trust_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = agent_id(&state.registry, path)?;
    let record = state.registry.store().get(&id, None).await?;
    let trust = record.trust;
    readable(&state, &headers, &extensions, vec![record]).await?;
    let changes = state.registry.trust_history(&id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!(TrustHistory {
            agent_id: id,
            trust,
            changes
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoveryParams {
    q: Option<String>,
    skill: Option<String>,
    tag: Option<String>,
    input_mode: Option<String>,
    output_mode: Option<String>,
    role: Option<String>,
    org: Option<String>,
    min_trust: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
    include_deleted: Option<String>,
    federated: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.trim().is_empty())
}

/// How many store pages one guarded discovery request scans at most before
/// it answers a short page (with a token to continue).
const MAX_SCANNED_PAGES: usize = 20;

/// `GET /v1/agents`. Under a guard, agents the caller may not `discover`
/// are left out without breaking paging: the store is asked for at most the
/// number of items still missing, so every visible item of a scanned store
/// page fits in the answer, and the answer's token is the last scanned store
/// page's token. A page may be short (at most [`MAX_SCANNED_PAGES`] store
/// pages are scanned per request); following the tokens lists exactly the
/// visible agents, each once.
#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "discoverAgents",
    tag = "agents",
    params(
        ("q" = Option<String>, Query, description = "Free text over name, description and skill names, descriptions and tags"),
        ("skill" = Option<String>, Query, description = "A skill id or name (exact, case-insensitive)"),
        ("tag" = Option<String>, Query, description = "A skill tag (exact, case-insensitive)"),
        ("input_mode" = Option<String>, Query, description = "An accepted input media type (exact)"),
        ("output_mode" = Option<String>, Query, description = "A produced output media type (exact)"),
        ("role" = Option<AgentRole>, Query, description = "The agent role"),
        ("org" = Option<String>, Query, description = "The owning organisation's domain"),
        ("min_trust" = Option<TrustLevel>, Query, description = "The lowest acceptable trust level"),
        ("page_size" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100; default 20"),
        ("page_token" = Option<String>, Query, description = "The next_page_token of the previous page"),
        ("include_deleted" = Option<bool>, Query, description = "Also list deregistered agents"),
        ("federated" = Option<bool>, Query, description = "Also ask every approved federation peer (a gateway with federation only; otherwise 400). The answer then also has `partial` (peers that failed) and `peers` (peers that answered)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier page; 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "One page of agents.", body = DiscoveryPage, headers(("ETag" = String, description = "Entity tag of this page's bytes"))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
    )
)]
async fn discover(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    params: Result<Query<DiscoveryParams>, QueryRejection>,
) -> ApiResult {
    let params = query(params)?;
    let invalid = |message: String| ApiError::new(ErrorKind::InvalidInput, message);
    let role = non_empty(params.role)
        .map(|text| AgentRole::from_str(&text).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    let min_trust = non_empty(params.min_trust)
        .map(|text| TrustLevel::from_str(&text).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    let page_size = non_empty(params.page_size)
        .map(|text| {
            text.parse::<u32>()
                .map_err(|_| invalid(format!("page_size must be 1 to 100, not {text:?}")))
        })
        .transpose()?;
    let include_deleted = match non_empty(params.include_deleted).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid(format!(
                "include_deleted must be true or false, not {other:?}"
            )))
        }
    };
    match non_empty(params.federated).as_deref() {
        None | Some("false") => {}
        Some("true") => {
            return Err(invalid(
                "federated discovery needs a gateway with federation enabled".to_owned(),
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "federated must be true or false, not {other:?}"
            )))
        }
    }
    let discovery = DiscoveryQuery {
        q: non_empty(params.q),
        skill: non_empty(params.skill),
        tag: non_empty(params.tag),
        input_mode: non_empty(params.input_mode),
        output_mode: non_empty(params.output_mode),
        role,
        org: non_empty(params.org),
        min_trust,
        page_size,
        page_token: non_empty(params.page_token),
        include_deleted,
    };
    let Some(guard) = &state.guard else {
        let page = state.registry.discover(&discovery).await?;
        return Ok(listing_response(
            &headers,
            &json!(DiscoveryPage {
                agents: page.items,
                next_page_token: page.next_page_token
            }),
        ));
    };
    let caller = caller(&headers, &extensions, &state.config);
    let wanted = crate::store::check_page_size(discovery.page_size)? as usize;
    let mut query = discovery;
    let mut agents: Vec<AgentRecord> = Vec::with_capacity(wanted);
    let mut hidden = 0;
    let mut next_page_token = None;
    for _ in 0..MAX_SCANNED_PAGES {
        query.page_size = Some((wanted - agents.len()) as u32);
        let page = state.registry.discover(&query).await?;
        for record in page.items {
            let visible = guard.may_discover(GuardRequest {
                caller: &caller,
                action: GuardAction::Discover,
                target: &record,
                extensions: &extensions,
            });
            if visible {
                agents.push(guard.shown(&caller, &headers, &extensions, record));
            } else {
                hidden += 1;
            }
        }
        next_page_token = page.next_page_token;
        match &next_page_token {
            Some(token) if agents.len() < wanted => query.page_token = Some(token.clone()),
            _ => break,
        }
    }
    guard
        .record_listing(&caller, &extensions, agents.len(), hidden)
        .await;
    Ok(listing_response(
        &headers,
        &json!(DiscoveryPage {
            agents,
            next_page_token
        }),
    ))
}

/// A discovery page with an `ETag` over its exact bytes (so it differs per
/// caller exactly when what the caller may see differs), or 304 when the
/// caller's `If-None-Match` names it: federated peers revalidate their
/// cached answers this way.
fn listing_response(headers: &HeaderMap, listing: &Value) -> Response {
    let body = serde_json::to_vec(listing).unwrap_or_default();
    let etag = listing_etag(&body);
    if not_modified(headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return response;
    }
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The entity tag of a listing's bytes: `DefaultHasher::new` has fixed
/// keys, so every replica running the same build tags the same bytes alike.
fn listing_etag(body: &[u8]) -> String {
    use std::hash::Hasher as _;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(body);
    format!("\"l-{:016x}-{:x}\"", hasher.finish(), body.len())
}

async fn openapi(document: String) -> Response {
    let mut response = (StatusCode::OK, document).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn unknown_route() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorKind::InvalidInput,
        "this method is not allowed on this route; see /v1/openapi.json",
    )
    .with_status(405, "method not allowed")
}

/// The rescue of last resort: an error response that is not a problem
/// document yet (e.g. one made by axum itself) becomes one. The gateway
/// applies it to every `/v1/…` answer too.
pub async fn ensure_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::RequestTimeout,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::PreconditionFailed,
        413 => ErrorKind::PayloadTooLarge,
        415 => ErrorKind::UnsupportedMediaType,
        429 => ErrorKind::RateLimited,
        431 => ErrorKind::HeadersTooLarge,
        400..=499 => ErrorKind::InvalidInput,
        503 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let (parts, _) = response.into_parts();
    let mut error = ApiError::new(kind, status.canonical_reason().unwrap_or("error"))
        .with_status(status.as_u16(), kind.title());
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            error.0.headers.append(name.clone(), value.clone());
        }
    }
    error.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_internal_failure_renders_the_one_problem_shape_without_its_cause() {
        let error = RegistryError::corrupt("agents.card of row 7 in /srv/secret.db");
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a small body");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
        let document: Problem = serde_json::from_slice(&body).expect("a problem document");
        assert_eq!(
            document,
            Problem::new(ErrorKind::Internal, problem::INTERNAL_DETAIL)
        );
    }
}
