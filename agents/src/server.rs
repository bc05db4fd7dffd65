//! A small, reusable A2A 1.0 server on axum: one base URL serving the agent
//! card (`GET /.well-known/agent-card.json`), JSON-RPC (`POST /`) and
//! HTTP+JSON (every other path, see the `rest` module).
//!
//! Lifecycle: [`spawn_logic`] builds and validates the card, starts the
//! server on the given listener and returns a [`RunningAgent`]. Shutting it
//! down (or dropping it) cancels every open task, which closes their event
//! streams, and stops the server.
//!
//! A server given a [`GateToken`] answers only requests carrying it as a
//! bearer token (the card stays public): `convergio serve` gates its model
//! agents' loopback servers so that only its gateway — with policy, budgets
//! and audit — can reach them, not any process on the machine.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use convergio_schemas::a2a;
use convergio_schemas::{validate, SchemaId};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::logic::AgentLogic;
use crate::service::AgentService;
use crate::tasks::TaskStore;
use crate::{jsonrpc, rest, AgentsError};

/// How long [`RunningAgent::shutdown`] waits for open connections to end
/// before it stops the server task anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which protocol dialects a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialects {
    /// A2A 1.0 (`A2A-Version: 1.0`), on both bindings.
    pub v1: bool,
    /// A2A 0.3 (no version header), on JSON-RPC only.
    pub v03: bool,
}

impl Default for Dialects {
    fn default() -> Self {
        Self {
            v1: true,
            v03: true,
        }
    }
}

/// Server options.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The dialects served; both by default. A 0.3-only server lists
    /// `protocolVersion: "0.3"` in its card and answers 1.0 requests with
    /// VersionNotSupported (-32009), and the reverse for 1.0-only.
    pub dialects: Dialects,
    /// When set, every request but the card's must carry
    /// `Authorization: Bearer <token>`, else 401. Default none.
    pub gate: Option<GateToken>,
}

/// The bearer token a gated server requires (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct GateToken(Arc<str>);

// === impl GateToken ===

impl GateToken {
    /// A gate requiring `token`.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token, for the one client allowed to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, in time independent of where the
    /// two differ (a hand-written loop: one comparison is not worth a crate).
    fn admits(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for GateToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateToken(<redacted>)")
    }
}

/// Lets through only requests bearing the gate's token.
async fn require_gate(State(gate): State<GateToken>, request: Request, next: Next) -> Response {
    let admitted = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| gate.admits(presented));
    if admitted {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this agent answers only its gateway",
        )
            .into_response()
    }
}

/// Shared state of one agent server.
pub(crate) struct ServerState {
    pub service: AgentService,
    pub dialects: Dialects,
    card_body: String,
    card_etag: String,
}

/// A running agent server. Dropping it stops the server.
pub struct RunningAgent {
    /// `http://127.0.0.1:<port>`: the JSON-RPC endpoint and HTTP+JSON base.
    pub base_url: String,
    card: Value,
    store: Arc<TaskStore>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

// === impl RunningAgent ===

impl RunningAgent {
    /// The card the server serves.
    pub fn card(&self) -> Value {
        self.card.clone()
    }

    /// Cancels open tasks, stops accepting connections and waits (briefly)
    /// for open ones to finish.
    pub async fn shutdown(mut self) {
        self.store.cancel_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.store.cancel_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The served card: the template with `supportedInterfaces` set to this
/// server (JSON-RPC first, then HTTP+JSON for 1.0; JSON-RPC only for a
/// 0.3-only server, which also carries the 0.3 top-level `url`,
/// `preferredTransport` and `protocolVersion` so 0.3 clients can read it).
fn build_card(template: Value, base_url: &str, dialects: Dialects) -> Result<Value, AgentsError> {
    let mut card = template;
    if !card.is_object() {
        return Err(AgentsError::InvalidCard {
            violations: vec![convergio_schemas::Violation {
                pointer: String::new(),
                message: "card template must be a JSON object".into(),
            }],
        });
    }
    if dialects.v1 {
        card["supportedInterfaces"] = json!([
            {"url": base_url, "protocolBinding": "JSONRPC", "protocolVersion": a2a::VERSION_1_0},
            {"url": base_url, "protocolBinding": "HTTP+JSON", "protocolVersion": a2a::VERSION_1_0},
        ]);
    } else {
        card["supportedInterfaces"] = json!([
            {"url": base_url, "protocolBinding": "JSONRPC", "protocolVersion": a2a::VERSION_0_3},
        ]);
        card["url"] = json!(base_url);
        card["preferredTransport"] = json!("JSONRPC");
        card["protocolVersion"] = json!("0.3.0");
    }
    validate(SchemaId::AgentCard, &card)
        .map_err(|violations| AgentsError::InvalidCard { violations })?;
    Ok(card)
}

/// FNV-1a: a stable, dependency-free content hash for the card's ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn serve_card(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == state.card_etag);
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (StatusCode::OK, state.card_body.clone()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a2a::MEDIA_JSON),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&state.card_etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Starts an A2A server running `logic` on `listener`.
///
/// `card_template` is a full A2A 1.0 card except `supportedInterfaces`,
/// which is filled in from the listener's address. The result must validate
/// against the AgentCard schema, else [`AgentsError::InvalidCard`].
/// `capabilities.streaming` in the template decides whether the streaming
/// methods are served.
pub async fn spawn_logic(
    logic: Arc<dyn AgentLogic>,
    card_template: Value,
    listener: TcpListener,
    options: ServeOptions,
) -> Result<RunningAgent, AgentsError> {
    let address = listener.local_addr()?;
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        address.ip().to_string()
    };
    let base_url = if address.is_ipv6() && !address.ip().is_unspecified() {
        format!("http://[{host}]:{}", address.port())
    } else {
        format!("http://{host}:{}", address.port())
    };
    let card = build_card(card_template, &base_url, options.dialects)?;
    let streaming = card
        .pointer("/capabilities/streaming")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let card_body = card.to_string();
    let card_etag = format!("\"{:016x}\"", fnv1a(card_body.as_bytes()));
    let store = Arc::new(TaskStore::default());
    let state = Arc::new(ServerState {
        service: AgentService::new(logic, Arc::clone(&store), streaming),
        dialects: options.dialects,
        card_body,
        card_etag,
    });
    let mut router = Router::new()
        .route("/", post(jsonrpc::handle))
        .fallback(rest::handle);
    if let Some(gate) = options.gate {
        router = router.layer(middleware::from_fn_with_state(gate, require_gate));
    }
    // Added after the gate: the card stays public.
    let router = router
        .route(a2a::WELL_KNOWN_CARD_PATH, get(serve_card))
        .with_state(state)
        .layer(middleware::from_fn(crate::trace_context::adopt));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // Small JSON answers and SSE events must leave at once, not wait
        // for Nagle's algorithm to meet the peer's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Either an explicit stop or the sender being dropped.
                let _ = stopped.await;
            })
            .await
    });
    tracing::debug!(base_url = %base_url, "agent server listening");
    Ok(RunningAgent {
        base_url,
        card,
        store,
        stop: Some(stop),
        server: Some(server),
    })
}
