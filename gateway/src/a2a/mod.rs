//! A2A routing: per registered agent `{name}`, its rewritten card at
//! `/agents/{name}/.well-known/agent-card.json`, JSON-RPC at
//! `POST /agents/{name}`, HTTP+JSON under `/agents/{name}/…`; the gateway's
//! own card at `/.well-known/agent-card.json` with its `/a2a` endpoints
//! (agent chosen by tenant); the AI Catalogs of what the caller may
//! discover at `/.well-known/ai-catalog.json` and per agent ([`catalog`]);
//! `POST /v1/envelope`; and, with federation,
//! another organisation's agent `external://<domain>/agents/<name>` at
//! `/external/<domain>/agents/<name>` (JSON-RPC and HTTP+JSON as above),
//! forwarded to that peer's gateway as a signed call. Streams are recorded
//! for resumption with `Last-Event-ID` ([`resume`]).
//!
//! Handlers decode the request ([`inbound`]), forward it ([`forward`]) and
//! return [`Failure`]s that the `Rescue` layer renders. Paths are parsed from
//! the raw URI here (not by axum extractors) so that bad percent-encoding is
//! a typed error and `%3A` colons match.

mod answer;
pub(crate) mod card;
mod catalog;
mod client;
mod credentials;
mod envelope;
mod forward;
pub mod grpc;
mod guard;
mod inbound;
mod model_slots;
mod protojson;
pub mod push;
mod resume;
pub(crate) mod sse;

pub(crate) use envelope::EnvelopeApiDoc;
mod timeouts;
pub mod translate;

/// The request decoders, re-exported for the fuzz targets in `gateway/fuzz`
/// only (cargo feature `fuzzing`): not an API, and free to change with them.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use super::inbound::{
        client_version, decode_segments, parse_jsonrpc, parse_rest, query_pairs,
    };
}

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method as HttpMethod};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use convergio_schemas::a2a::{REMOTE_TIMING_METADATA, WELL_KNOWN_CARD_PATH};
use serde_json::Value;
use tracing::Instrument;

pub use client::UpstreamClient;
pub use credentials::UpstreamCredentials;
pub use inbound::{Call, ClientSide};
// The routing types live in the leaf module `crate::routes` (authorisation
// and federation use them too, and a2a uses both); re-exported here, where
// callers have always found them.
pub use crate::routes::{
    AgentFacts, Binding, InMemoryRoutes, RouteTable, RouteTarget, TaskRoute, UpstreamInterface,
};
pub use convergio_registry::stream_events::StreamEventStore;
pub use model_slots::{ModelSlots, CALLER_ORG_KEY};
pub use resume::LAST_EVENT_ID;
pub use sse::SseParser;
pub use timeouts::{AgentTimeouts, CallDeadline};

use self::answer::Answer;
use self::forward::Reply;
use crate::authorize::{is_loopback, CallFacts, Gatekeeper, OpenGate};
use crate::federation::Federation;
use crate::layers::{is_length_limit, BodyLimit, ErrorShape, Failure, RequestDeadline, RequestId};
use crate::ssrf::AllowList;
use crate::{GatewayError, Principal};
use convergio_auth::CardSigner;
use convergio_schemas::GraphCall;

/// Settings of A2A routing.
#[derive(Debug, Clone, PartialEq)]
pub struct A2aConfig {
    /// Bound on waiting for an upstream's response head and unary body,
    /// for agents without their own (default 30 s; see `timeouts.rs`).
    pub upstream_timeout: Duration,
    /// No agent's or graph node's bound exceeds this (default 15 min).
    pub max_upstream_timeout: Duration,
    /// Agents' own bounds, by name (config and model agents). Default none.
    pub agent_timeouts: AgentTimeouts,
    /// This process's model agents' loopback sockets and their token
    /// (`model_slots.rs`). Default none.
    pub model_slots: Option<ModelSlots>,
    /// Bound on the silence between two events of a relayed stream (default 300 s).
    pub stream_idle_timeout: Duration,
    /// Largest unary upstream body accepted (default 16 MiB).
    pub max_upstream_body_bytes: usize,
    /// `max-age` of served cards (default 300 s).
    pub card_max_age: Duration,
    /// Whether `X-Forwarded-Proto/Host/Prefix` are honoured (default true:
    /// deploy behind a proxy that sets them, or turn this off).
    pub trust_forwarded_headers: bool,
    /// The gateway card's `name`.
    pub gateway_name: String,
    /// The gateway card's `description`.
    pub gateway_description: String,
    /// The gateway card's `version`.
    pub gateway_version: String,
    /// Calls in flight to one upstream before more are refused with 503
    /// (default 4096). A stream holds its slot until it ends, and streams
    /// are mostly idle, so the default leaves room for thousands of open
    /// subscriptions to one agent while still bounding a runaway client.
    pub upstream_concurrency: usize,
    /// Consecutive transport failures that open an upstream's circuit
    /// (default 5).
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe (default 10 s).
    pub breaker_cooldown: Duration,
    /// Extra attempts, with exponential backoff and jitter, for calls that
    /// could not connect, only where a repeat is safe: reads, and
    /// SendMessage (the upstream de-duplicates by `messageId`) (default 2).
    pub upstream_retries: u32,
    /// Credentials the gateway presents to upstreams, by agent name (the
    /// caller's own are never forwarded); a live set a reload replaces.
    /// Default none.
    pub upstream_credentials: UpstreamCredentials,
    /// Non-public addresses upstreams may resolve to (the SSRF guard,
    /// `ssrf.rs`). Default none: loopback, private, link-local and metadata
    /// addresses are refused at connect time.
    pub upstream_allow: AllowList,
    /// Re-signs served agent cards after their interfaces are rewritten.
    /// Default none: served cards carry no signatures.
    pub card_signer: Option<CardSignerHandle>,
}

/// The key the gateway signs served cards with (a [`CardSigner`] behind an
/// `Arc`; compared by identity, debug-printed by `kid` only).
#[derive(Clone)]
pub struct CardSignerHandle(pub Arc<dyn CardSigner>);

impl std::fmt::Debug for CardSignerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CardSignerHandle")
            .field(&self.0.kid())
            .finish()
    }
}

impl PartialEq for CardSignerHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the gateway presents to one upstream, from the agent's config.
#[derive(Clone, Default)]
pub struct UpstreamCredential {
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// TLS toward this agent (its own CA bundle, a client certificate for
    /// mTLS); `None` is the public web PKI without a client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Forward the caller's own `Authorization` header to this agent (off by
    /// default: the caller's credentials never leave the gateway otherwise).
    /// A configured `bearer_token` wins over it.
    pub forward_caller_authorization: bool,
}

impl PartialEq for UpstreamCredential {
    // A TLS configuration has no equality of its own: the same one is equal.
    fn eq(&self, other: &Self) -> bool {
        self.bearer_token == other.bearer_token
            && self.forward_caller_authorization == other.forward_caller_authorization
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl std::fmt::Debug for UpstreamCredential {
    // Hand-written so the token can never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tls", &self.tls.is_some())
            .field(
                "forward_caller_authorization",
                &self.forward_caller_authorization,
            )
            .finish()
    }
}

impl Default for A2aConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: forward::DEFAULT_UPSTREAM_TIMEOUT,
            max_upstream_timeout: Duration::from_secs(15 * 60),
            agent_timeouts: AgentTimeouts::default(),
            model_slots: None,
            stream_idle_timeout: Duration::from_secs(300),
            max_upstream_body_bytes: 16 * 1024 * 1024,
            card_max_age: Duration::from_secs(300),
            trust_forwarded_headers: true,
            gateway_name: "Convergio".into(),
            gateway_description:
                "Convergio A2A gateway: routes to the agents this caller may reach".into(),
            gateway_version: env!("CARGO_PKG_VERSION").into(),
            upstream_concurrency: 4096,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            upstream_retries: 2,
            upstream_credentials: UpstreamCredentials::default(),
            upstream_allow: AllowList::none(),
            card_signer: None,
        }
    }
}

/// Shared state of the A2A routes.
#[derive(Clone)]
pub struct A2aState {
    /// Where agents and task routes come from.
    pub routes: Arc<dyn RouteTable>,
    /// The pooled upstream client.
    pub client: UpstreamClient,
    /// Settings.
    pub config: Arc<A2aConfig>,
    /// Decides every call after routing, before the upstream.
    pub gatekeeper: Arc<dyn Gatekeeper>,
    /// Peers and signing for `external://` agents; `None`: federation off.
    pub federation: Option<Arc<Federation>>,
    /// Payload guardrails (issue 21); default none.
    pub guardrails: convergio_plugins::Guardrails,
    /// Where streams are recorded for resumption (`resume.rs`); `None`
    /// (the default): not recorded, `Last-Event-ID` ignored.
    pub stream_log: Option<Arc<dyn StreamEventStore>>,
    /// Push notifications through the gateway (`push.rs`); `None` (the
    /// default): push-config calls go to the agent unchanged.
    pub push: Option<Arc<push::Push>>,
}

// === impl A2aState ===

impl A2aState {
    /// State over `routes` with a fresh pooled client, admitting every call
    /// ([`OpenGate`]) until [`A2aState::with_gatekeeper`] sets a policy.
    pub fn new(routes: Arc<dyn RouteTable>, config: A2aConfig) -> Self {
        Self {
            routes,
            client: UpstreamClient::with_credentials(
                config.upstream_credentials.clone(),
                config.upstream_allow.clone(),
            ),
            config: Arc::new(config),
            gatekeeper: Arc::new(OpenGate),
            federation: None,
            guardrails: convergio_plugins::Guardrails::default(),
            stream_log: None,
            push: None,
        }
    }

    /// The same state keeping callers' push configs and relaying the
    /// agents' notifications through `push`.
    pub fn with_push(mut self, push: Arc<push::Push>) -> Self {
        self.push = Some(push);
        self
    }

    /// The same state recording streams in `log` for resumption.
    pub fn with_stream_log(mut self, log: Arc<dyn StreamEventStore>) -> Self {
        self.stream_log = Some(log);
        self
    }

    /// The same state running `guardrails` on every payload.
    pub fn with_guardrails(mut self, guardrails: convergio_plugins::Guardrails) -> Self {
        self.guardrails = guardrails;
        self
    }

    /// The same state routing `external://` agents through `federation`.
    pub fn with_federation(mut self, federation: Option<Arc<Federation>>) -> Self {
        self.federation = federation;
        self
    }

    /// The same state deciding calls with `gatekeeper`.
    pub fn with_gatekeeper(mut self, gatekeeper: Arc<dyn Gatekeeper>) -> Self {
        self.gatekeeper = gatekeeper;
        self
    }
}

/// The A2A routes. Mount behind [`crate::layers::with_layers`].
pub fn a2a_router(state: A2aState) -> Router {
    Router::new()
        .route(WELL_KNOWN_CARD_PATH, get(gateway_card_handler))
        .route(catalog::WELL_KNOWN_PATH, get(catalog_handler))
        .route("/v1/envelope", post(envelope::envelope_handler))
        .route("/agents/{*rest}", any(agents_handler))
        .route("/external/{*rest}", any(external_handler))
        .route("/a2a", post(gateway_jsonrpc_handler))
        .route("/a2a/{*rest}", any(gateway_rest_handler))
        .route_service(
            &format!("{}{{method}}", grpc::SERVICE_PATH),
            grpc::server(state.clone()),
        )
        .with_state(state)
}

/// Per-request values every handler needs (the body travels separately:
/// it is not `Sync`, and these are borrowed across awaits).
#[derive(Clone)]
struct Incoming {
    principal: Principal,
    graph_call: Option<GraphCall>,
    loopback: bool,
    request_id: Option<RequestId>,
    body_limit: Option<usize>,
    deadline: Option<RequestDeadline>,
    call_deadline: Option<CallDeadline>,
    headers: HeaderMap,
    http_method: HttpMethod,
    path: String,
    query: Option<String>,
}

fn incoming(request: Request) -> (Incoming, Body) {
    let (parts, body) = request.into_parts();
    let meta = Incoming::from_parts(
        &parts.extensions,
        parts.headers,
        parts.method,
        parts.uri.path().to_owned(),
        parts.uri.query().map(str::to_owned),
    );
    (meta, body)
}

// === impl Incoming ===

impl Incoming {
    /// What the layers left in `extensions`, with the request line and
    /// headers (gRPC metadata are the headers of a gRPC call).
    fn from_parts(
        extensions: &axum::http::Extensions,
        headers: HeaderMap,
        http_method: HttpMethod,
        path: String,
        query: Option<String>,
    ) -> Self {
        Self {
            principal: extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
            graph_call: extensions.get::<GraphCall>().cloned(),
            loopback: is_loopback(extensions),
            request_id: extensions.get::<RequestId>().cloned(),
            body_limit: extensions.get::<BodyLimit>().map(|limit| limit.0),
            deadline: extensions.get::<RequestDeadline>().cloned(),
            call_deadline: extensions.get::<CallDeadline>().copied(),
            path,
            query,
            headers,
            http_method,
        }
    }
}

/// Reads a request body; a body over the `Limits` layer's bound is a 413.
pub(crate) async fn read_body(body: Body, limit: Option<usize>) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                GatewayError::PayloadTooLarge {
                    limit: limit.unwrap_or_default(),
                }
            } else {
                GatewayError::InvalidRequest {
                    detail: format!("reading the request body failed: {error}"),
                }
            }
        })
}

/// Reads a REST request's JSON body under the `Limits` layer's bound (a
/// 413 over it, `MalformedJson` when it is not JSON).
pub(crate) async fn read_json_body(request: axum::extract::Request) -> Result<Value, GatewayError> {
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map(|BodyLimit(limit)| *limit);
    let body = read_body(request.into_body(), limit).await?;
    serde_json::from_slice(&body).map_err(|error| GatewayError::MalformedJson {
        detail: error.to_string(),
    })
}

/// The route to another organisation's agent, through its peer gateway.
/// A peer's own call never goes on to another organisation: this gateway
/// would sign it with its key, lending its standing to the peer (a
/// confused deputy), so for a peer principal every external agent is
/// unknown.
async fn resolve_external(
    state: &A2aState,
    principal: &Principal,
    org: &str,
    name: &str,
) -> Result<Arc<RouteTarget>, GatewayError> {
    if principal.method == convergio_schemas::AuthMethod::Peer {
        return Err(GatewayError::AgentNotFound {
            agent: format!("external://{org}/agents/{name}"),
        });
    }
    match &state.federation {
        Some(federation) => federation.peer_target(org, name).await.map(Arc::new),
        None => Err(GatewayError::FederationNotConfigured {
            to: format!("external://{org}/agents/{name}"),
        }),
    }
}

async fn resolve(state: &A2aState, name: &str) -> Result<Arc<RouteTarget>, GatewayError> {
    state
        .routes
        .resolve(name)
        .await?
        .ok_or_else(|| GatewayError::AgentNotFound {
            agent: name.to_owned(),
        })
}

/// Asks the gatekeeper whether `request` may make `method` (a card read
/// when `None`) on `target`: after routing, before the upstream.
async fn admit(
    state: &A2aState,
    target: &RouteTarget,
    method: Option<convergio_schemas::a2a::Method>,
    params: &Value,
    request: &Incoming,
) -> Result<(), GatewayError> {
    state
        .gatekeeper
        .admit(&CallFacts {
            principal: &request.principal,
            target,
            method,
            params,
            graph_call: request.graph_call.as_ref(),
            loopback: request.loopback,
            request_id: request.request_id.as_ref(),
        })
        .await
}

/// Authorises, forwards a decoded call and encodes the answer for the
/// client.
async fn run_call(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    call: Call,
    request: &Incoming,
) -> Result<Response, Failure> {
    let client = call.client.clone();
    let method = call.method;
    match execute(state, target, call, request).await? {
        Reply::Unary(answer) => forward::unary_response(&client, method, answer)
            .map_err(|error| Failure::new(error, shape_of(&client))),
        Reply::Stream(body) => Ok(forward::stream_response(body)),
    }
}

/// The pipeline every binding's call goes through after decoding: the
/// gatekeeper (policy, quotas, audit), the organisation path, stored
/// idempotent outcomes, then [`forward::forward`] (task ownership,
/// guardrails, the upstream call), inside the call's `invoke_agent` span
/// (issue 18).
async fn execute(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    call: Call,
    request: &Incoming,
) -> Result<Reply, Failure> {
    let span = crate::telemetry::invoke_agent_span(
        &target.name,
        target.facts.as_ref().map(|facts| facts.org.as_str()),
        call.method.v1_name(),
        inbound::task_id_of(call.method, call.params()),
        inbound::context_id_of(call.method, call.params()),
    );
    let answered = execute_in_span(state, target, call, request)
        .instrument(span.clone())
        .await;
    if answered.is_err() {
        crate::telemetry::record_error(&span);
    }
    answered
}

async fn execute_in_span(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    mut call: Call,
    request: &Incoming,
) -> Result<Reply, Failure> {
    let started = std::time::Instant::now();
    let client = call.client.clone();
    let method = call.method;
    let shape = shape_of(&client);
    admit(state, target, Some(method), call.params(), request)
        .await
        .map_err(|error| Failure::new(error, shape.clone()))?;
    if let Some(federation) = state
        .federation
        .as_ref()
        .filter(|federation| federation.keeps_hops(&request.principal, &target.name))
    {
        // Admitted, and before any byte leaves: the organisation path.
        federation
            .stamp_hops(&request.principal, &target.name, method, call.params_mut())
            .map_err(|error| Failure::new(error, shape.clone()))?;
    }
    let idempotent = match &state.federation {
        Some(federation) => federation
            .idempotent_call(&request.principal, &target.name, method, call.params())
            .map_err(|error| Failure::new(error, shape.clone()))?
            .map(|key| (federation.clone(), key)),
        None => None,
    };
    let forwarded = match idempotent {
        None => match &state.push {
            Some(push)
                if forward::is_push_config(method)
                    || push::has_inline_config(method, call.params()) =>
            {
                // Boxed, as below: a rare path's future would otherwise
                // size every call's state (and the handler's copy of it).
                Box::pin(push::handle(state, push, target, call, request)).await
            }
            _ => forward::forward(state, target, call, request).await,
        },
        Some((federation, key)) => {
            if let Some(stored) = federation
                .stored_outcome(&key)
                .await
                .map_err(|error| Failure::new(error, shape.clone()))?
            {
                tracing::info!(peer = %key.peer, agent = %key.agent, "repeated idempotency key answered from its stored outcome");
                return Ok(Reply::Unary(stored.into()));
            }
            Box::pin(forward_detached(
                state, target, call, request, federation, key,
            ))
            .await
            .map_err(|error| Failure::new(error, shape.clone()))?
        }
    };
    match forwarded {
        Ok(Reply::Unary(answer)) => {
            crate::telemetry::record_reply(&tracing::Span::current(), answer.facts());
            state
                .gatekeeper
                .observe_reply(&request.principal, answer.facts());
            share_timing(state, target, request, started, answer)
                .map(Reply::Unary)
                .map_err(|error| Failure::new(error, shape))
        }
        Ok(stream @ Reply::Stream(_)) => Ok(stream),
        Err(error) => Err(upstream_failure(state, target, request, error, shape)),
    }
}

/// Adds this deployment's timing of the call to the answer's metadata
/// (`convergio.remote`) when the caller is another organisation that
/// policy lets see it (`share_timings`), so its run trace shows how long
/// the agent took here.
fn share_timing(
    state: &A2aState,
    target: &RouteTarget,
    request: &Incoming,
    started: std::time::Instant,
    answer: Answer,
) -> Result<Answer, GatewayError> {
    let Some(federation) = &state.federation else {
        return Ok(answer);
    };
    let from_elsewhere = request
        .principal
        .org
        .as_deref()
        .is_some_and(|org| org != federation.domain());
    if !from_elsewhere
        || !state
            .gatekeeper
            .may_share_timings(&request.principal, target, request.loopback)
    {
        return Ok(answer);
    }
    let mut result = answer.into_value()?;
    let kind = if result.get("task").is_some() {
        "task"
    } else {
        "message"
    };
    let Some(side) = result.get_mut(kind).and_then(Value::as_object_mut) else {
        return Ok(result.into());
    };
    let metadata = side
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(metadata) = metadata.as_object_mut() {
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        metadata.insert(
            REMOTE_TIMING_METADATA.to_owned(),
            serde_json::json!({"org": federation.domain(), "duration_ms": duration_ms}),
        );
    }
    Ok(result.into())
}

/// Forwards an idempotent peer call on its own task, so the call ends (and
/// its answer is stored under `key`) even when the caller goes away.
async fn forward_detached(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    call: Call,
    request: &Incoming,
    federation: Arc<Federation>,
    key: convergio_registry::peer_calls::PeerCallKey,
) -> Result<Result<Reply, GatewayError>, GatewayError> {
    let state = state.clone();
    let target = Arc::clone(target);
    let request = request.clone();
    let task = tokio::spawn(
        async move {
            // A stream's outcome is kept by its relay, at its end.
            let keep = forward::KeptOutcome {
                federation: Arc::clone(&federation),
                key: key.clone(),
            };
            match forward::forward_keeping(&state, &target, call, &request, Some(keep)).await {
                Ok(Reply::Unary(answer)) => {
                    let result = answer.into_value()?;
                    federation.remember_outcome(&key, &result).await;
                    Ok(Reply::Unary(result.into()))
                }
                reply => reply,
            }
        }
        .in_current_span(),
    );
    task.await
        .map_err(|error| GatewayError::internal("an idempotent peer call's task ended", error))
}

/// The failure of a forwarded call: the cause of a failed upstream call is
/// shown only to a caller who may read the agent's card.
fn upstream_failure(
    state: &A2aState,
    target: &RouteTarget,
    request: &Incoming,
    error: GatewayError,
    shape: ErrorShape,
) -> Failure {
    let disclose = error.upstream_problem().is_some()
        && state
            .gatekeeper
            .may_read_card(&request.principal, target, request.loopback);
    Failure::new(error, shape).with_cause_disclosed(disclose)
}

fn shape_of(client: &ClientSide) -> ErrorShape {
    match client.binding {
        Binding::JsonRpc => ErrorShape::JsonRpc {
            id: client.id.clone(),
        },
        Binding::HttpJson => ErrorShape::A2aRest,
        Binding::Grpc => ErrorShape::Grpc,
    }
}

/// Decodes and runs a JSON-RPC request addressed to `agent_name`, or to the
/// agent named by `params.tenant` when `agent_name` is `None`.
async fn jsonrpc(
    state: &A2aState,
    agent_name: Option<String>,
    resolved: Option<Arc<RouteTarget>>,
    request: Incoming,
    body: Body,
) -> Result<Response, Failure> {
    let null_shape = ErrorShape::JsonRpc { id: Value::Null };
    let version = inbound::client_version(&request.headers, request.query.as_deref())
        .map_err(|error| Failure::new(error, null_shape.clone()))?;
    let bytes = read_body(body, request.body_limit)
        .await
        .map_err(|error| Failure::new(error, null_shape))?;
    let call = inbound::parse_jsonrpc(&bytes, version).map_err(|rejection| {
        let (error, id) = *rejection;
        Failure::new(error, ErrorShape::JsonRpc { id })
    })?;
    let shape = shape_of(&call.client);
    if let Some(target) = resolved {
        return run_call(state, &target, call, &request).await;
    }
    let name = match agent_name {
        Some(name) => name,
        None => match call.params().get("tenant").and_then(Value::as_str) {
            Some(tenant) if !tenant.is_empty() => tenant.to_owned(),
            _ => {
                return Err(Failure::new(
                    GatewayError::InvalidParams {
                        detail: "tenant must name the agent on the gateway endpoint".into(),
                    },
                    shape,
                ))
            }
        },
    };
    let target = resolve(state, &name)
        .await
        .map_err(|error| Failure::new(error, shape))?;
    run_call(state, &target, call, &request).await
}

/// Decodes and runs an HTTP+JSON request for `target`.
async fn rest(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    segments: &[String],
    request: Incoming,
    body: Body,
) -> Result<Response, Failure> {
    let shape = ErrorShape::A2aRest;
    let version = inbound::client_version(&request.headers, request.query.as_deref())
        .map_err(|error| Failure::new(error, shape.clone()))?;
    let bytes = read_body(body, request.body_limit)
        .await
        .map_err(|error| Failure::new(error, shape.clone()))?;
    let call = inbound::parse_rest(
        &request.http_method,
        segments,
        request.query.as_deref(),
        &bytes,
        version,
    )
    .map_err(|error| Failure::new(error, shape))?;
    run_call(state, target, call, &request).await
}

/// Everything under `/agents/`.
async fn agents_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, body) = incoming(request);
    let tail = request
        .path
        .strip_prefix("/agents/")
        .unwrap_or_default()
        .to_owned();
    let is_jsonrpc =
        request.http_method == HttpMethod::POST && !tail.trim_end_matches('/').contains('/');
    let shape = if is_jsonrpc {
        ErrorShape::JsonRpc { id: Value::Null }
    } else {
        ErrorShape::A2aRest
    };
    let mut segments =
        inbound::decode_segments(&tail).map_err(|error| Failure::new(error, shape.clone()))?;
    if segments.is_empty() {
        return Err(Failure::new(
            GatewayError::RouteNotFound {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    let name = segments.remove(0);
    if is_jsonrpc {
        return jsonrpc(&state, Some(name), None, request, body).await;
    }
    if name == ".well-known" {
        // `/agents/echo` + `.well-known/agent-card.json` resolved as a
        // relative URL: say what the client's base URL lacks.
        return Err(Failure::new(
            GatewayError::AgentNameMissing {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    let target = resolve(&state, &name)
        .await
        .map_err(|error| Failure::new(error, shape.clone()))?;
    if request.http_method == HttpMethod::GET
        && segments.len() == 2
        && segments[0] == ".well-known"
        && segments[1] == "agent-card.json"
    {
        admit(&state, &target, None, &Value::Null, &request)
            .await
            .map_err(|error| Failure::new(error, shape.clone()))?;
        let base = card::gateway_base(&request.headers, &state.config);
        // The agent's URL ends with a slash: clients take an interface URL
        // as the agent's base URL and resolve `.well-known/agent-card.json`
        // relative to it (the JavaScript SDK does), which needs the slash;
        // the endpoints answer with and without it alike.
        let served = card::rewrite_card(&target.card, &format!("{base}/agents/{name}/"), &name);
        let served = card::sign_served(served, state.config.card_signer.as_ref());
        let cache = format!("public, max-age={}", state.config.card_max_age.as_secs());
        return Ok(card::card_response(&served, &request.headers, &cache));
    }
    if request.http_method == HttpMethod::GET && catalog::is_catalog_path(&segments) {
        return catalog::tenant_catalog(&state, &target, &request)
            .await
            .map_err(|error| Failure::new(error, shape));
    }
    if segments.is_empty() {
        return Err(Failure::new(
            GatewayError::RouteNotFound {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    rest(&state, &target, &segments, request, body).await
}

/// Everything under `/external/<domain>/agents/<name>`: another
/// organisation's agent, JSON-RPC on the base path and HTTP+JSON below it.
async fn external_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, body) = incoming(request);
    let tail = request
        .path
        .strip_prefix("/external/")
        .unwrap_or_default()
        .to_owned();
    let segment_count = tail.trim_end_matches('/').split('/').count();
    let is_jsonrpc = request.http_method == HttpMethod::POST && segment_count == 3;
    let shape = if is_jsonrpc {
        ErrorShape::JsonRpc { id: Value::Null }
    } else {
        ErrorShape::A2aRest
    };
    let mut segments =
        inbound::decode_segments(&tail).map_err(|error| Failure::new(error, shape.clone()))?;
    if segments.len() < 3 || segments[1] != "agents" {
        return Err(Failure::new(
            GatewayError::RouteNotFound {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    let remaining = segments.split_off(3);
    let target = resolve_external(&state, &request.principal, &segments[0], &segments[2])
        .await
        .map_err(|error| Failure::new(error, shape.clone()))?;
    if is_jsonrpc {
        return jsonrpc(&state, None, Some(target), request, body).await;
    }
    if remaining.is_empty() {
        return Err(Failure::new(
            GatewayError::RouteNotFound {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    rest(&state, &target, &remaining, request, body).await
}

/// `POST /a2a`: JSON-RPC on the gateway's own interface (agent by tenant).
async fn gateway_jsonrpc_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, body) = incoming(request);
    jsonrpc(&state, None, None, request, body).await
}

/// `/a2a/{tenant}/…`: HTTP+JSON on the gateway's own interface.
async fn gateway_rest_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, body) = incoming(request);
    let shape = ErrorShape::A2aRest;
    let tail = request
        .path
        .strip_prefix("/a2a/")
        .unwrap_or_default()
        .to_owned();
    let mut segments =
        inbound::decode_segments(&tail).map_err(|error| Failure::new(error, shape.clone()))?;
    if segments.len() < 2 {
        return Err(Failure::new(
            GatewayError::RouteNotFound {
                path: request.path.clone(),
            },
            shape,
        ));
    }
    let name = segments.remove(0);
    let target = resolve(&state, &name)
        .await
        .map_err(|error| Failure::new(error, shape.clone()))?;
    if request.http_method == HttpMethod::GET && catalog::is_catalog_path(&segments) {
        return catalog::tenant_catalog(&state, &target, &request)
            .await
            .map_err(|error| Failure::new(error, shape));
    }
    rest(&state, &target, &segments, request, body).await
}

/// `GET /.well-known/ai-catalog.json`: the agents the caller may discover.
async fn catalog_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, _body) = incoming(request);
    catalog::host_catalog(&state, &request)
        .await
        .map_err(|error| Failure::new(error, ErrorShape::Problem))
}

/// The agents `request`'s caller may discover, the listing audited like
/// `GET /v1/agents` (how many shown, how many hidden).
async fn discoverable(
    state: &A2aState,
    request: &Incoming,
) -> Result<Vec<RouteTarget>, GatewayError> {
    let listed = state.routes.visible_agents(&request.principal).await?;
    let total = listed.len();
    let agents: Vec<RouteTarget> = listed
        .into_iter()
        .filter(|target| {
            state
                .gatekeeper
                .may_discover(&request.principal, target, request.loopback)
        })
        .collect();
    state
        .gatekeeper
        .record_listing(
            &request.principal,
            request.request_id.as_ref(),
            agents.len(),
            total - agents.len(),
        )
        .await;
    Ok(agents)
}

/// `GET /.well-known/agent-card.json`: the gateway's own card.
async fn gateway_card_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, _body) = incoming(request);
    // Skills of agents the caller may not discover are not shown.
    let agents = discoverable(&state, &request)
        .await
        .map_err(|error| Failure::new(error, ErrorShape::Problem))?;
    let base = card::gateway_base(&request.headers, &state.config);
    let served = card::gateway_card(&base, &state.config, &agents);
    let served = card::sign_served(served, state.config.card_signer.as_ref());
    // The skills depend on the caller, so shared caches must not keep it.
    let cache = format!(
        "private, max-age={}",
        state.config.card_max_age.as_secs().min(60)
    );
    Ok(card::card_response(&served, &request.headers, &cache))
}
