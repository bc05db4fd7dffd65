//! The gateway's one error enum. Every failure the gateway produces or relays
//! is a [`GatewayError`]; the `Rescue` layer is the only place it becomes a
//! response (A2A JSON-RPC, A2A HTTP+JSON or problem+json, by binding).

use std::borrow::Cow;

use convergio_schemas::a2a::{self, A2aError};
use convergio_schemas::{ErrorKind, Violation};
use serde_json::Value;

/// An error answered by the upstream agent itself, relayed to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamFailure {
    /// The JSON-RPC code (A2A codes for A2A errors).
    pub code: i64,
    /// The upstream's message.
    pub message: String,
    /// The upstream's `data` / `details` (ErrorInfo array), passed through.
    pub details: Value,
}

/// Everything that can go wrong between a client and an upstream agent.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON.
    #[error("malformed json: {detail}")]
    MalformedJson {
        /// What the parser said.
        detail: String,
    },
    /// The body is JSON but not a JSON-RPC 2.0 request.
    #[error("invalid json-rpc request: {detail}")]
    InvalidRequest {
        /// What is wrong with its shape.
        detail: String,
    },
    /// The JSON-RPC method is not an A2A method in the client's dialect.
    #[error("method not found: {}", convergio_schemas::echo(.method))]
    MethodNotFound {
        /// The method the client named.
        method: String,
    },
    /// The parameters lack a field the gateway needs to route.
    #[error("invalid params: {detail}")]
    InvalidParams {
        /// Which field and why.
        detail: String,
    },
    /// A request body broke a JSON Schema.
    #[error("request breaks the schema: {} violation(s)", violations.len())]
    SchemaViolation {
        /// Every violation, with its JSON pointer.
        violations: Vec<Violation>,
    },
    /// The path is not valid percent-encoded UTF-8 or names no A2A route.
    #[error("bad request path: {detail}")]
    BadPath {
        /// What is wrong with it.
        detail: String,
    },
    /// The `A2A-Version` is not one the gateway speaks.
    #[error("a2a version not supported: {}", convergio_schemas::echo(.version))]
    VersionNotSupported {
        /// The version the client asked for.
        version: String,
    },
    /// The operation is not possible here (e.g. ListTasks on a 0.3 agent).
    #[error("unsupported operation: {detail}")]
    UnsupportedOperation {
        /// Why.
        detail: String,
    },
    /// A push-notification config call to an agent whose card does not
    /// offer `capabilities.pushNotifications`: the answer the agent itself
    /// gives (A2A `PushNotificationNotSupportedError`), before the task is
    /// looked up, so it says nothing about the task.
    #[error("push notifications are not supported by agent {agent}")]
    PushNotificationNotSupported {
        /// The agent's gateway name.
        agent: String,
    },
    /// No registered agent has this gateway name (or the caller may not see it).
    #[error("agent not found: {agent}")]
    AgentNotFound {
        /// The name in the path.
        agent: String,
    },
    /// Policy does not let the caller do this to an agent it may see.
    #[error("forbidden: {action} on {agent}")]
    Forbidden {
        /// The agent's gateway name.
        agent: String,
        /// The policy action refused.
        action: String,
    },
    /// A quota or budget is spent; retry after `retry_after_seconds`.
    #[error("rate limited; retry after {retry_after_seconds} s")]
    RateLimited {
        /// Whole seconds, at least 1 (the `Retry-After` header).
        retry_after_seconds: u64,
    },
    /// The task id is unknown to the gateway or owned by someone else.
    #[error("task not found: {}", convergio_schemas::echo(.task_id))]
    TaskNotFound {
        /// The id the client asked about.
        task_id: String,
    },
    /// The context id is owned by someone else at this agent: the caller
    /// gets the unknown-task answer (A2A has no unknown-context error).
    #[error("task not found: context {context_id}")]
    ContextNotFound {
        /// The context id the client named.
        context_id: String,
    },
    /// The agent's card has no interface the gateway can forward to.
    #[error("agent {agent} has no usable interface: {detail}")]
    NoUsableInterface {
        /// The agent's gateway name.
        agent: String,
        /// What the card offers, shown only to callers who may read it.
        detail: String,
    },
    /// The upstream could not be reached (connect or I/O error).
    #[error("upstream {agent} unreachable: {detail}")]
    UpstreamUnreachable {
        /// The agent's gateway name.
        agent: String,
        /// The transport error (address and cause), shown only to callers
        /// who may read the agent's card.
        detail: String,
    },
    /// The upstream answered something that is not a valid A2A answer.
    #[error("upstream {agent} sent an invalid response: {detail}")]
    UpstreamInvalid {
        /// The agent's gateway name.
        agent: String,
        /// What was wrong, shown only to callers who may read the card.
        detail: String,
    },
    /// The upstream did not answer within the configured bound.
    #[error("upstream {agent} timed out: {detail}")]
    UpstreamTimeout {
        /// The agent's gateway name.
        agent: String,
        /// Which address and which bound, shown only to callers who may
        /// read the agent's card.
        detail: String,
    },
    /// The upstream answered with an A2A or JSON-RPC error; relayed as is.
    #[error("upstream error {}: {}", .0.code, .0.message)]
    Upstream(Box<UpstreamFailure>),
    /// An envelope addressed an `external://` agent and federation is off.
    #[error("federation not configured: cannot reach external agent {to}")]
    FederationNotConfigured {
        /// The `to` address.
        to: String,
    },
    /// A cross-organisation call would return to an organisation already
    /// on its path (issue 18).
    #[error(
        "federation loop: the call to {org} would return to an organisation on its path {path}"
    )]
    FederationLoop {
        /// The organisation reached again.
        org: String,
        /// The path so far, organisations joined by ` -> `.
        path: String,
    },
    /// A cross-organisation call would take more hops than allowed.
    #[error(
        "federation hop limit: the call would take {hops} hops, over federation.max_hops {max}"
    )]
    FederationHopLimit {
        /// Hops the call would take.
        hops: usize,
        /// The configured bound.
        max: usize,
    },
    /// The request body is over the configured limit.
    #[error("request body is over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The whole request took longer than the configured bound.
    #[error("request timed out")]
    RequestTimeout,
    /// The gateway is at its concurrency limit and shed the request.
    #[error("gateway overloaded")]
    Overloaded,
    /// A card or catalog asked for right under `/agents/`, with no agent
    /// named: what a client asks when it resolves `.well-known/…` against
    /// an agent's base URL given without its trailing slash.
    #[error("no agent named in {path}: an agent's base URL is /agents/{{name}}/ with its trailing slash, and its card /agents/{{name}}/.well-known/agent-card.json")]
    AgentNameMissing {
        /// The request path.
        path: String,
    },
    /// No route for this path on the gateway.
    #[error("no route for {}", convergio_schemas::echo(.path))]
    RouteNotFound {
        /// The request path.
        path: String,
    },
    /// No credentials where they are required, or credentials that do not
    /// verify. The reason is for logs only (it never names a secret); the
    /// client learns only that authentication failed.
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Which check failed, for logs.
        reason: String,
    },
    /// A verified caller lacks the scope this operation needs.
    #[error("forbidden: {detail}")]
    ScopeRequired {
        /// Which scope or rule refused it.
        detail: String,
    },
    /// The upstream's circuit breaker is open (or its concurrency bound is
    /// full): the call is refused at once instead of queueing.
    #[error("upstream {agent} unavailable: {detail}")]
    UpstreamUnavailable {
        /// The agent's gateway name.
        agent: String,
        /// Why, for logs.
        detail: String,
    },
    /// A peer with this domain is configured already.
    #[error("peer {domain} exists already")]
    PeerExists {
        /// The colliding domain.
        domain: String,
    },
    /// Another organisation declared a model agent of this name (issue 17).
    #[error("the agent name {name} is taken")]
    NameTaken {
        /// The colliding name.
        name: String,
    },
    /// A guardrail refused a payload (issue 21): the caller reads the
    /// guardrail's name, its reason code and its message.
    #[error("refused by guardrail {guardrail} ({reason}): {message}")]
    GuardrailDenied {
        /// The guardrail's configured name.
        guardrail: String,
        /// Its reason code (`CARD_NUMBER`, `GUARDRAIL_OUT_OF_FUEL`).
        reason: String,
        /// Its message (never the offending content).
        message: String,
        /// `request` or `response`.
        direction: &'static str,
    },
    /// An uploaded plugin was refused (issue 21): it does not compile,
    /// imports what the sandbox does not provide, lacks an export its kind
    /// needs, its signature fails, it has none where one is required, or
    /// it declares a capability grant the config does not allow (or that
    /// does not exist). Nothing was stored; 422.
    #[error("plugin refused ({reason}): {detail}")]
    PluginRefused {
        /// A stable code (`INVALID_MODULE`, `FORBIDDEN_IMPORT`,
        /// `MISSING_EXPORT`, `SIGNATURE_INVALID`, `SIGNATURE_UNVERIFIABLE`,
        /// `SIGNATURE_REQUIRED`, `KIND_MISMATCH`, `GRANT_NOT_ALLOWED`,
        /// `UNKNOWN_GRANT`).
        reason: &'static str,
        /// What is wrong, for people.
        detail: String,
    },
    /// A bug or an unexpected failure; details go to logs only (`Rescue`
    /// logs the whole cause chain), the client reads
    /// [`INTERNAL_DETAIL`](convergio_schemas::problem::INTERNAL_DETAIL).
    #[error("internal error: {context}")]
    Internal {
        /// What was being done, for logs only.
        context: Cow<'static, str>,
        /// What failed, when another error did.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

/// The ErrorInfo domain of reasons Convergio defines (not A2A's).
pub const CONVERGIO_ERROR_DOMAIN: &str = "convergio.dev";

/// Why a call to an upstream agent failed, as every caller may learn it.
/// All four are A2A's `-32006 InvalidAgentResponse` on the wire; this
/// category travels beside it (a second ErrorInfo, domain
/// [`CONVERGIO_ERROR_DOMAIN`]) so a caller can tell a dead agent from a
/// slow or a broken one. The cause (addresses, transport errors) is added
/// only for callers who may read the agent's card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProblem {
    /// Nothing answered at the upstream's address.
    Unreachable,
    /// The upstream did not answer within the bound.
    TimedOut,
    /// The upstream answered something that is not A2A.
    BadResponse,
    /// The card names no interface the gateway can forward to.
    NoUsableInterface,
}

// === impl UpstreamProblem ===

impl UpstreamProblem {
    /// The ErrorInfo `reason` (domain [`CONVERGIO_ERROR_DOMAIN`]).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unreachable => "UPSTREAM_UNREACHABLE",
            Self::TimedOut => "UPSTREAM_TIMEOUT",
            Self::BadResponse => "UPSTREAM_BAD_RESPONSE",
            Self::NoUsableInterface => "NO_USABLE_INTERFACE",
        }
    }

    /// The machine-readable category (ErrorInfo metadata `category`).
    pub fn category(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::TimedOut => "timed_out",
            Self::BadResponse => "bad_response",
            Self::NoUsableInterface => "no_usable_interface",
        }
    }

    /// The words the public message ends with.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Unreachable => "upstream unreachable",
            Self::TimedOut => "upstream timed out",
            Self::BadResponse => "upstream sent a bad response",
            Self::NoUsableInterface => "agent has no usable interface",
        }
    }
}

// === impl GatewayError ===

impl GatewayError {
    /// An internal failure: `source` failed while doing `context`.
    pub fn internal<E>(context: impl Into<Cow<'static, str>>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::Internal {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// An internal failure no other error caused (a broken invariant, a
    /// configuration that cannot work).
    pub fn internal_plain(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// The shared classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MalformedJson { .. } => ErrorKind::MalformedBody,
            Self::InvalidRequest { .. }
            | Self::MethodNotFound { .. }
            | Self::InvalidParams { .. }
            | Self::SchemaViolation { .. }
            | Self::BadPath { .. }
            | Self::VersionNotSupported { .. }
            | Self::UnsupportedOperation { .. }
            | Self::PushNotificationNotSupported { .. }
            | Self::FederationNotConfigured { .. }
            | Self::PluginRefused { .. } => ErrorKind::InvalidInput,
            Self::AgentNotFound { .. }
            | Self::TaskNotFound { .. }
            | Self::ContextNotFound { .. }
            | Self::AgentNameMissing { .. }
            | Self::RouteNotFound { .. } => ErrorKind::NotFound,
            Self::Forbidden { .. }
            | Self::FederationLoop { .. }
            | Self::FederationHopLimit { .. } => ErrorKind::Forbidden,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::NoUsableInterface { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::UpstreamInvalid { .. }
            | Self::Upstream(_) => ErrorKind::BadUpstream,
            Self::UpstreamTimeout { .. } => ErrorKind::UpstreamTimeout,
            Self::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Self::RequestTimeout => ErrorKind::RequestTimeout,
            Self::Overloaded | Self::UpstreamUnavailable { .. } => ErrorKind::Unavailable,
            Self::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Self::ScopeRequired { .. } => ErrorKind::Forbidden,
            Self::Internal { .. } => ErrorKind::Internal,
            Self::PeerExists { .. } | Self::NameTaken { .. } => ErrorKind::Conflict,
            Self::GuardrailDenied { .. } => ErrorKind::Forbidden,
        }
    }

    /// The A2A error this is, if it is one of -32001…-32009.
    pub fn a2a_error(&self) -> Option<A2aError> {
        match self {
            Self::VersionNotSupported { .. } => Some(A2aError::VersionNotSupported),
            Self::UnsupportedOperation { .. } | Self::FederationNotConfigured { .. } => {
                Some(A2aError::UnsupportedOperation)
            }
            Self::PushNotificationNotSupported { .. } => {
                Some(A2aError::PushNotificationNotSupported)
            }
            Self::TaskNotFound { .. } | Self::ContextNotFound { .. } => {
                Some(A2aError::TaskNotFound)
            }
            Self::NoUsableInterface { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::UpstreamInvalid { .. }
            | Self::UpstreamTimeout { .. } => Some(A2aError::InvalidAgentResponse),
            Self::Upstream(failure) => A2aError::from_code(failure.code),
            _ => None,
        }
    }

    /// The JSON-RPC error code on the JSON-RPC binding.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Self::MalformedJson { .. } => a2a::JSONRPC_PARSE_ERROR,
            Self::InvalidRequest { .. } => a2a::JSONRPC_INVALID_REQUEST,
            // An unknown agent is an unknown endpoint: the closest JSON-RPC
            // meaning is "method not found" (the HTTP status says 404).
            Self::MethodNotFound { .. }
            | Self::AgentNotFound { .. }
            | Self::RouteNotFound { .. } => a2a::JSONRPC_METHOD_NOT_FOUND,
            Self::InvalidParams { .. } | Self::SchemaViolation { .. } | Self::BadPath { .. } => {
                a2a::JSONRPC_INVALID_PARAMS
            }
            Self::Upstream(failure) => failure.code,
            other => match other.a2a_error() {
                Some(error) => error.code(),
                None => other.kind().jsonrpc_code(),
            },
        }
    }

    /// The HTTP status: the A2A v1.0.1 table for A2A errors, 404 for unknown
    /// agents and routes, the [`ErrorKind`] table otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Upstream(failure) => match A2aError::from_code(failure.code) {
                Some(error) => error.http_status(),
                None if failure.code == a2a::JSONRPC_INTERNAL_ERROR => 500,
                None => 400,
            },
            Self::AgentNotFound { .. }
            | Self::RouteNotFound { .. }
            | Self::AgentNameMissing { .. } => 404,
            // Well-formed (a module) but unusable: 422, so a client tells
            // a refused module from a malformed request.
            Self::PluginRefused { .. } => 422,
            other => match other.a2a_error() {
                Some(error) => error.http_status(),
                None => other.kind().http_status(),
            },
        }
    }

    /// The `google.rpc.Code` name used as the HTTP+JSON `status`.
    pub fn grpc_status(&self) -> &'static str {
        if let Some(error) = self.a2a_error() {
            return error.grpc_status();
        }
        match self.http_status() {
            400 | 422 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            408 | 504 => "DEADLINE_EXCEEDED",
            409 => "ALREADY_EXISTS",
            413 => "RESOURCE_EXHAUSTED",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    /// The ErrorInfo `reason` and its domain.
    pub fn reason(&self) -> (&'static str, &'static str) {
        if let Some(error) = self.a2a_error() {
            return (error.reason(), a2a::ERROR_DOMAIN);
        }
        let reason = match self {
            Self::MalformedJson { .. } => "PARSE_ERROR",
            Self::InvalidRequest { .. } => "INVALID_REQUEST",
            Self::MethodNotFound { .. } => "METHOD_NOT_FOUND",
            Self::InvalidParams { .. } | Self::SchemaViolation { .. } => "INVALID_PARAMS",
            Self::BadPath { .. } => "BAD_PATH",
            Self::AgentNotFound { .. } => "AGENT_NOT_FOUND",
            Self::RouteNotFound { .. } | Self::AgentNameMissing { .. } => "ROUTE_NOT_FOUND",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::Overloaded => "OVERLOADED",
            Self::Unauthenticated { .. } => "UNAUTHENTICATED",
            Self::Forbidden { .. }
            | Self::ScopeRequired { .. }
            | Self::FederationLoop { .. }
            | Self::FederationHopLimit { .. } => "PERMISSION_DENIED",
            Self::UpstreamUnavailable { .. } => "UPSTREAM_UNAVAILABLE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::PeerExists { .. } => "PEER_EXISTS",
            Self::NameTaken { .. } => "NAME_TAKEN",
            Self::GuardrailDenied { .. } => "GUARDRAIL_DENIED",
            Self::PluginRefused { reason, .. } => *reason,
            _ => "INTERNAL",
        };
        let domain = match self {
            Self::MalformedJson { .. }
            | Self::InvalidRequest { .. }
            | Self::MethodNotFound { .. }
            | Self::InvalidParams { .. }
            | Self::SchemaViolation { .. } => a2a::ERROR_DOMAIN,
            _ => CONVERGIO_ERROR_DOMAIN,
        };
        (reason, domain)
    }

    /// For a failed upstream call: its category, the agent and the cause
    /// (which only callers who may read the agent's card are shown).
    pub fn upstream_problem(&self) -> Option<(UpstreamProblem, &str, &str)> {
        let (problem, agent, detail) = match self {
            Self::UpstreamUnreachable { agent, detail } => {
                (UpstreamProblem::Unreachable, agent, detail)
            }
            Self::UpstreamTimeout { agent, detail } => (UpstreamProblem::TimedOut, agent, detail),
            Self::UpstreamInvalid { agent, detail } => {
                (UpstreamProblem::BadResponse, agent, detail)
            }
            Self::NoUsableInterface { agent, detail } => {
                (UpstreamProblem::NoUsableInterface, agent, detail)
            }
            _ => return None,
        };
        Some((problem, agent.as_str(), detail.as_str()))
    }

    /// The message a client may see: no upstream addresses, no transport
    /// detail. Internals are logged by `Rescue` with the request id.
    pub fn public_message(&self) -> String {
        if let Some((problem, _, _)) = self.upstream_problem() {
            // A2A's message for -32006, then which of the four it was.
            return format!(
                "{}: {}",
                A2aError::InvalidAgentResponse.message(),
                problem.phrase()
            );
        }
        match self {
            Self::Upstream(failure) => failure.message.clone(),
            Self::Internal { .. } => convergio_schemas::problem::INTERNAL_DETAIL.to_owned(),
            Self::Unauthenticated { .. } => "authentication required".to_owned(),
            Self::UpstreamUnavailable { .. } => {
                "upstream agent temporarily unavailable, retry later".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Whether the detail must stay in logs (it may name upstream internals).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Internal { .. }
                | Self::NoUsableInterface { .. }
                | Self::UpstreamUnreachable { .. }
                | Self::UpstreamInvalid { .. }
                | Self::UpstreamTimeout { .. }
                | Self::UpstreamUnavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_follow_the_v1_0_1_table() {
        let cases: Vec<(GatewayError, i64, u16)> = vec![
            (
                GatewayError::MalformedJson {
                    detail: String::new(),
                },
                -32700,
                400,
            ),
            (
                GatewayError::InvalidRequest {
                    detail: String::new(),
                },
                -32600,
                400,
            ),
            (
                GatewayError::MethodNotFound { method: "x".into() },
                -32601,
                400,
            ),
            (
                GatewayError::InvalidParams {
                    detail: String::new(),
                },
                -32602,
                400,
            ),
            (
                GatewayError::BadPath {
                    detail: String::new(),
                },
                -32602,
                400,
            ),
            (
                GatewayError::VersionNotSupported {
                    version: "0.5".into(),
                },
                -32009,
                400,
            ),
            (
                GatewayError::AgentNotFound { agent: "x".into() },
                -32601,
                404,
            ),
            (
                GatewayError::TaskNotFound {
                    task_id: "t".into(),
                },
                -32001,
                404,
            ),
            (
                GatewayError::UpstreamTimeout {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                -32006,
                500,
            ),
            (
                GatewayError::UpstreamInvalid {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                -32006,
                500,
            ),
            (
                GatewayError::UpstreamUnreachable {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                -32006,
                500,
            ),
            (GatewayError::Overloaded, -32603, 503),
            (
                GatewayError::Forbidden {
                    agent: "a".into(),
                    action: "send_message".into(),
                },
                -32603,
                403,
            ),
            (
                GatewayError::RateLimited {
                    retry_after_seconds: 2,
                },
                -32603,
                429,
            ),
            (GatewayError::PayloadTooLarge { limit: 1 }, -32602, 413),
        ];
        for (error, code, status) in cases {
            assert_eq!(error.jsonrpc_code(), code, "{error}");
            assert_eq!(error.http_status(), status, "{error}");
        }
    }

    #[test]
    fn upstream_internals_never_reach_the_public_message() {
        let error = GatewayError::UpstreamUnreachable {
            agent: "echo".into(),
            detail: "connect 10.0.0.7:9000 refused".into(),
        };
        assert!(!error.public_message().contains("10.0.0.7"));
        assert!(error.is_internal());
    }

    #[test]
    fn display_messages_are_lowercase_without_a_period() {
        let detail = || "d".to_owned();
        let agent = || "a".to_owned();
        let errors = [
            GatewayError::MalformedJson { detail: detail() },
            GatewayError::InvalidRequest { detail: detail() },
            GatewayError::MethodNotFound { method: detail() },
            GatewayError::InvalidParams { detail: detail() },
            GatewayError::SchemaViolation {
                violations: Vec::new(),
            },
            GatewayError::BadPath { detail: detail() },
            GatewayError::VersionNotSupported { version: detail() },
            GatewayError::UnsupportedOperation { detail: detail() },
            GatewayError::PushNotificationNotSupported { agent: agent() },
            GatewayError::AgentNotFound { agent: agent() },
            GatewayError::Forbidden {
                agent: agent(),
                action: detail(),
            },
            GatewayError::RateLimited {
                retry_after_seconds: 1,
            },
            GatewayError::TaskNotFound { task_id: detail() },
            GatewayError::NoUsableInterface {
                agent: agent(),
                detail: detail(),
            },
            GatewayError::UpstreamUnreachable {
                agent: agent(),
                detail: detail(),
            },
            GatewayError::UpstreamInvalid {
                agent: agent(),
                detail: detail(),
            },
            GatewayError::UpstreamTimeout {
                agent: agent(),
                detail: detail(),
            },
            GatewayError::FederationNotConfigured { to: detail() },
            GatewayError::FederationLoop {
                org: detail(),
                path: detail(),
            },
            GatewayError::FederationHopLimit { hops: 5, max: 4 },
            GatewayError::PayloadTooLarge { limit: 1 },
            GatewayError::RequestTimeout,
            GatewayError::Overloaded,
            GatewayError::RouteNotFound { path: detail() },
            GatewayError::AgentNameMissing { path: detail() },
            GatewayError::Unauthenticated { reason: detail() },
            GatewayError::ScopeRequired { detail: detail() },
            GatewayError::UpstreamUnavailable {
                agent: agent(),
                detail: detail(),
            },
            GatewayError::PeerExists { domain: detail() },
            GatewayError::NameTaken { name: detail() },
            GatewayError::internal_plain("d"),
            GatewayError::internal("d", std::io::Error::other("cause")),
        ];
        for error in errors {
            let text = error.to_string();
            let first = text.chars().next().unwrap_or('x');
            assert!(!first.is_uppercase(), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn upstream_failures_name_their_category_in_the_public_message() {
        let cases = [
            (
                GatewayError::UpstreamUnreachable {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                "Invalid agent response: upstream unreachable",
            ),
            (
                GatewayError::UpstreamTimeout {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                "Invalid agent response: upstream timed out",
            ),
            (
                GatewayError::UpstreamInvalid {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                "Invalid agent response: upstream sent a bad response",
            ),
            (
                GatewayError::NoUsableInterface {
                    agent: "a".into(),
                    detail: "d".into(),
                },
                "Invalid agent response: agent has no usable interface",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.public_message(), message);
            assert!(!error.public_message().contains(": d"));
            assert_eq!(error.jsonrpc_code(), -32006, "{error}");
        }
    }
}
