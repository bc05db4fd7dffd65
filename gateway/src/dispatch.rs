//! [`GatewayDispatch`]: the orchestrator's [`Dispatch`] in the server. Each
//! graph node's call becomes an in-process HTTP request sent with tower's
//! `oneshot` through the *same* layered router outside requests use, so
//! tracing, rescue, limits and — as they land — authentication, policy and
//! quotas apply to graphs exactly as to anyone else.
//!
//! - Internal agents (`name` or `convergio://agents/name`): a JSON-RPC
//!   `SendMessage` (`returnImmediately: false`) to `POST /agents/{name}`.
//! - `external://org/agents/x` (issue 18): the same JSON-RPC `SendMessage`
//!   to `POST /external/{org}/agents/{x}`, the federation route, so the
//!   node's message crosses losslessly (every part, its metadata with the
//!   `convergio.*` keys, its `contextId`); this gateway's policy decides the
//!   call out (the target's organisation is the peer), the federation layer
//!   stamps the organisation path and signs the call, and the peer's policy
//!   decides again. Without federation the answer is "federation not
//!   configured", which becomes [`DispatchError::NotRoutable`].
//!
//! - A streaming node (`stream: true`): the same request as
//!   `SendStreamingMessage`; the event stream is read as it comes, each
//!   event handed to the run's event stream, and the stream folded
//!   ([`StreamFold`]) is the reply. Across organisations the peer keeps the
//!   folded outcome under the call's idempotency key, as for a blocking call.
//!
//! The request carries the run caller's [`Principal`] and a [`GraphCall`] as
//! request extensions (extensions are not wire data, so no outside request
//! can forge them), the W3C `traceparent` header, and is abandoned at the
//! node's deadline. The reply's `metadata.usage` feeds the run's budgets.
//!
//! The router holds the runs API, which holds the executor, which holds this
//! dispatcher: to keep that from being a reference cycle the dispatcher
//! keeps only a [`Weak`] to the application. It is still a constructor
//! argument: the application is built inside [`Arc::new_cyclic`], which
//! hands out the `Weak` before the router it points to exists (see
//! `app::build_app`), so no dispatcher ever lacks its application. Until
//! that build returns, and once the server drops the application, calls
//! fail as unavailable.

use std::sync::Weak;

use crate::a2a::CallDeadline;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use convergio_orchestrator::{
    AgentCall, AgentReply, Dispatch, DispatchError, MemoryAction, MemoryOp, NodeUpdates, StreamFold,
};
use convergio_schemas::a2a::{MEDIA_JSON, MEDIA_SSE, VERSION_1_0, VERSION_HEADER};
use convergio_schemas::{AgentId, GraphCall, Principal};

use crate::a2a::sse::SseParser;
use crate::federation::idempotency::IDEMPOTENCY_KEY;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Largest reply body the dispatcher reads (the gateway already caps
/// upstream bodies; this bounds in-process ones too).
const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

/// A2A's `UnsupportedOperationError` code: what the federation route
/// answers when federation is off.
const UNSUPPORTED_OPERATION: i64 = -32004;

/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Sends graph node calls through the gateway's own router.
#[derive(Debug)]
pub struct GatewayDispatch {
    app: Weak<Router>,
}

// === impl GatewayDispatch ===

impl GatewayDispatch {
    /// A dispatcher sending calls through the fully layered application
    /// `app` (from [`std::sync::Arc::new_cyclic`] while building it, or
    /// [`std::sync::Arc::downgrade`]). The caller keeps the application
    /// alive for as long as it serves.
    pub fn new(app: Weak<Router>) -> Self {
        Self { app }
    }

    fn app(&self) -> Result<Router, DispatchError> {
        self.app
            .upgrade()
            .map(|app| (*app).clone())
            .ok_or_else(|| DispatchError::Unavailable {
                message: "the gateway is not serving".into(),
            })
    }
}

#[async_trait]
impl Dispatch for GatewayDispatch {
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError> {
        let app = self.app()?;
        let target = Target::of(&call.agent)?;
        let request = build_request(&call, &target)?;
        let agent = call.agent.as_str();
        let reply = async {
            match call.stream.clone() {
                Some(updates) => stream_exchange(app, request, updates, agent, &target).await,
                None => {
                    let (status, bytes) = exchange(app, request).await?;
                    interpret(agent, &target, status, &bytes)
                }
            }
        };
        match call.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), reply)
                .await
                .map_err(|_| DispatchError::Timeout)?,
            None => reply.await,
        }
    }

    /// A node's memory search or write (issue 20), as in-process REST calls
    /// to `/v1/memory` through the same router: the run caller's policy
    /// decides `search_memory`/`write_memory` exactly as for a direct call,
    /// and the request's [`GraphCall`] names the node's agent, so a
    /// namespace scoped to another agent is refused.
    /// A write to a vector namespace stores the output as a document (its
    /// text, with the run, graph and node as metadata); to a structured one,
    /// the output itself.
    async fn memory(&self, op: MemoryOp) -> Result<Value, DispatchError> {
        let app = self.app()?;
        let namespace = encode(&op.namespace);
        match &op.action {
            MemoryAction::Search { query, top_k } => {
                let body = json!({"query": query, "top_k": top_k});
                let path = format!("/v1/memory/{namespace}:search");
                let answer =
                    memory_exchange(&app, memory_request(&op, "POST", &path, Some(body))?).await?;
                Ok(answer
                    .get("hits")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new())))
            }
            MemoryAction::Write { key, value } => {
                let path = format!("/v1/memory/{namespace}");
                let shown = memory_exchange(&app, memory_request(&op, "GET", &path, None)?).await?;
                let document = if shown.get("kind").and_then(Value::as_str) == Some("vector") {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    json!({"text": text, "metadata": {
                        "run_id": op.run_id.to_string(),
                        "graph_id": &*op.graph_id,
                        "node_id": op.node_id,
                    }})
                } else {
                    value.clone()
                };
                let path = format!("/v1/memory/{namespace}/items/{}", encode(key));
                memory_exchange(&app, memory_request(&op, "PUT", &path, Some(document))?).await?;
                Ok(Value::Null)
            }
        }
    }
}

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

/// An in-process `/v1/memory` request as the run's caller.
fn memory_request(
    op: &MemoryOp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Request<Body>, DispatchError> {
    // The node's agent, so an agent-scoped namespace is used only by a
    // node calling that agent (the memory API checks it). An agent id that
    // does not parse names no agent here.
    let target = Target::of(&op.agent).ok();
    node_request(
        method,
        path,
        body,
        &NodeContext {
            run_id: op.run_id,
            graph_id: &op.graph_id,
            node_id: &op.node_id,
            agent: target.as_ref().and_then(Target::internal_name),
            caller: op.caller.as_deref(),
            origin: op.origin,
            traceparent: &op.traceparent,
        },
    )
}

/// Sends an in-process request through the router: the status and the
/// body (at most [`MAX_REPLY_BYTES`]).
async fn exchange(
    app: Router,
    request: Request<Body>,
) -> Result<(StatusCode, bytes::Bytes), DispatchError> {
    let response = app
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_REPLY_BYTES)
        .await
        .map_err(|error| DispatchError::Failed {
            message: format!("reading the answer failed: {error}"),
            retryable: true,
        })?;
    Ok((status, bytes))
}

/// Sends a streaming node's `SendStreamingMessage` through the router and
/// reads its event stream as it comes (issue 18): each event goes to
/// `updates`, in order, and the reply is the stream folded into the answer
/// a blocking call gives. A refusal before the stream (a JSON answer) or an
/// error event in it becomes the typed error a blocking call would get.
async fn stream_exchange(
    app: Router,
    request: Request<Body>,
    mut updates: NodeUpdates,
    agent: &str,
    target: &Target,
) -> Result<AgentReply, DispatchError> {
    let response = app
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(MEDIA_SSE));
    if !is_stream {
        let bytes = axum::body::to_bytes(response.into_body(), MAX_REPLY_BYTES)
            .await
            .map_err(|error| DispatchError::Failed {
                message: format!("reading the answer failed: {error}"),
                retryable: true,
            })?;
        return interpret(agent, target, status, &bytes);
    }
    let mut body = response.into_body().into_data_stream();
    let mut parser = SseParser::new();
    let mut fold = StreamFold::new();
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| DispatchError::Failed {
            message: format!("reading the stream failed: {error}"),
            retryable: true,
        })?;
        read += chunk.len();
        if read > MAX_REPLY_BYTES {
            return Err(DispatchError::Failed {
                message: format!("the stream passed {MAX_REPLY_BYTES} bytes"),
                retryable: false,
            });
        }
        for data in parser.push(&chunk) {
            let frame: Value =
                serde_json::from_str(&data).map_err(|error| DispatchError::Failed {
                    message: format!("a stream event is not JSON: {error}"),
                    retryable: false,
                })?;
            let Some(event) = frame.get("result") else {
                return interpret_body(agent, target, status, &frame);
            };
            updates.send(event);
            fold.push(event);
        }
    }
    fold.finish()
        .map(AgentReply::from_response)
        .ok_or_else(|| DispatchError::Failed {
            message: "the stream ended without a message or a task".into(),
            retryable: true,
        })
}

/// Sends a memory request; its JSON answer, or the problem as a typed error.
async fn memory_exchange(app: &Router, request: Request<Body>) -> Result<Value, DispatchError> {
    let (status, bytes) = exchange(app.clone(), request).await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body
        .get("detail")
        .or_else(|| body.get("title"))
        .and_then(Value::as_str)
        .unwrap_or("refused")
        .to_owned();
    Err(match status.as_u16() {
        401 | 403 => DispatchError::Denied { message },
        408 | 504 => DispatchError::Timeout,
        429 | 503 => DispatchError::Unavailable { message },
        _ => DispatchError::Failed {
            message: format!("{} {message}", status.as_u16()),
            retryable: status.is_server_error(),
        },
    })
}

/// Where a node's agent is reached.
enum Target {
    /// `/agents/{name}`.
    Internal(String),
    /// `/external/{org}/agents/{name}`: another organisation's agent.
    External {
        /// The peer organisation's domain.
        org: String,
        /// The agent's name there.
        name: String,
    },
}

// === impl Target ===

impl Target {
    fn of(agent: &str) -> Result<Self, DispatchError> {
        if !agent.contains("://") {
            return Ok(Self::Internal(agent.to_owned()));
        }
        match agent.parse::<AgentId>() {
            Ok(AgentId::Internal { name }) => Ok(Self::Internal(name)),
            Ok(AgentId::External { org, name }) => Ok(Self::External { org, name }),
            Err(error) => Err(DispatchError::NotRoutable {
                agent: agent.to_owned(),
                reason: error.to_string(),
            }),
        }
    }

    /// The agent's name here, unless it is another organisation's.
    fn internal_name(&self) -> Option<&str> {
        match self {
            Self::Internal(name) => Some(name),
            Self::External { .. } => None,
        }
    }

    /// The path of the agent's JSON-RPC endpoint on this gateway.
    fn path(&self) -> String {
        match self {
            Self::Internal(name) => format!("/agents/{}", encode(name)),
            Self::External { org, name } => {
                format!("/external/{}/agents/{}", encode(org), encode(name))
            }
        }
    }
}

fn build_request(call: &AgentCall, target: &Target) -> Result<Request<Body>, DispatchError> {
    // The message goes as the node built it, whichever side of the
    // organisation boundary its agent is on.
    // A streaming node's events come as they are made; a blocking call
    // waits for the task to end.
    let mut body = match call.stream {
        Some(_) => json!({
            "jsonrpc": "2.0",
            "id": format!("{}/{}", call.run_id, call.node_id),
            "method": "SendStreamingMessage",
            "params": {"message": call.message},
        }),
        None => json!({
            "jsonrpc": "2.0",
            "id": format!("{}/{}", call.run_id, call.node_id),
            "method": "SendMessage",
            "params": {
                "message": call.message,
                "configuration": {"returnImmediately": false},
            },
        }),
    };
    if matches!(target, Target::External { .. }) {
        // The peer answers a repeat of this key (the run resumed after a
        // crash) with its first answer. The message id is the node call's
        // run, node, iteration and attempt: the same when a resumed run
        // makes the call again.
        let key = call.message.get("messageId").cloned();
        if let (Some(key), Some(metadata)) = (key, message_metadata(&mut body)) {
            metadata.insert(IDEMPOTENCY_KEY.to_owned(), key);
        }
    }
    let mut request = node_request(
        "POST",
        &target.path(),
        Some(body),
        &NodeContext {
            run_id: call.run_id,
            graph_id: &call.graph_id,
            node_id: &call.node_id,
            agent: target.internal_name(),
            caller: call.caller.as_deref(),
            origin: call.origin,
            traceparent: &call.traceparent,
        },
    )?;
    let version = HeaderValue::from_static(VERSION_1_0);
    request.headers_mut().insert(VERSION_HEADER, version);
    if call.stream.is_some() {
        let accept = HeaderValue::from_static(MEDIA_SSE);
        request.headers_mut().insert(header::ACCEPT, accept);
    }
    let extensions = request.extensions_mut();
    if let Some(deadline) = call.deadline {
        // The node's timeout bounds the upstream call too, not the
        // gateway's default (issue 17).
        extensions.insert(CallDeadline(deadline.into()));
    }
    Ok(request)
}

/// Who and what an in-process request of a graph node is for.
struct NodeContext<'a> {
    run_id: uuid::Uuid,
    graph_id: &'a str,
    node_id: &'a str,
    /// The node's agent by its name here (`None`: another organisation's).
    agent: Option<&'a str>,
    caller: Option<&'a Principal>,
    origin: Option<std::net::IpAddr>,
    traceparent: &'a str,
}

/// An in-process JSON request of a graph node: its trace context, and the
/// run caller, where it connected from and the node as request extensions
/// (not wire data, so no outside request can forge them).
fn node_request(
    method: &str,
    path: &str,
    body: Option<Value>,
    context: &NodeContext<'_>,
) -> Result<Request<Body>, DispatchError> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, MEDIA_JSON)
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .map_err(|error| DispatchError::Failed {
            message: format!("cannot build the request to {path}: {error}"),
            retryable: false,
        })?;
    if let Ok(traceparent) = HeaderValue::from_str(context.traceparent) {
        request
            .headers_mut()
            .insert(TRACEPARENT_HEADER, traceparent);
    }
    // With spans exported, the node's call is a child of the run's
    // `invoke_workflow` span (same trace id as `call.traceparent`).
    crate::telemetry::inject(&tracing::Span::current(), request.headers_mut());
    let extensions = request.extensions_mut();
    if let Some(caller) = context.caller {
        extensions.insert(caller.clone());
    }
    if let Some(origin) = context.origin {
        // The run caller's address stands in for the connection this
        // in-process request does not have (policy's `loopback` fact).
        extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            origin, 0,
        )));
    }
    extensions.insert(GraphCall {
        run_id: context.run_id.to_string(),
        graph: context.graph_id.to_owned(),
        node_id: context.node_id.to_owned(),
        agent: context.agent.map(str::to_owned),
    });
    Ok(request)
}

/// The metadata object of the request's message, created when absent.
fn message_metadata(body: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let message = body.pointer_mut("/params/message")?.as_object_mut()?;
    let metadata = message
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    metadata.as_object_mut()
}

/// Turns the gateway's answer into a reply or a typed dispatch error.
fn interpret(
    agent: &str,
    target: &Target,
    status: StatusCode,
    bytes: &[u8],
) -> Result<AgentReply, DispatchError> {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    interpret_body(agent, target, status, &body)
}

/// [`interpret`] of a parsed answer.
fn interpret_body(
    agent: &str,
    target: &Target,
    status: StatusCode,
    body: &Value,
) -> Result<AgentReply, DispatchError> {
    let message = body
        .pointer("/error/message")
        .or_else(|| body.get("detail"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let refused = |message: String| match status.as_u16() {
        404 => DispatchError::AgentNotFound {
            agent: agent.to_owned(),
        },
        401 | 403 => DispatchError::Denied { message },
        408 | 504 => DispatchError::Timeout,
        429 | 503 => DispatchError::Unavailable { message },
        _ => DispatchError::Failed {
            message,
            retryable: status.is_server_error(),
        },
    };
    if let Some(result) = body.get("result") {
        return Ok(AgentReply::from_response(result.clone()));
    }
    if !status.is_success() {
        return Err(refused(message));
    }
    match body.pointer("/error/code").and_then(Value::as_i64) {
        // Federation is off here: no peer's agent is reachable.
        Some(UNSUPPORTED_OPERATION) if matches!(target, Target::External { .. }) => {
            Err(DispatchError::NotRoutable {
                agent: agent.to_owned(),
                reason: message,
            })
        }
        // The gateway hides why an upstream broke (unreachable,
        // garbage, past its timeout); any of those may pass.
        Some(-32006) | Some(-32603) => Err(DispatchError::Failed {
            message,
            retryable: true,
        }),
        Some(_) => Err(DispatchError::Failed {
            message,
            retryable: false,
        }),
        None => Err(DispatchError::Failed {
            message: "the gateway answered neither a result nor an error".into(),
            retryable: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_pick_the_route() {
        assert!(matches!(Target::of("echo"), Ok(Target::Internal(name)) if name == "echo"));
        assert!(matches!(
            Target::of("convergio://agents/echo"),
            Ok(Target::Internal(name)) if name == "echo"
        ));
        let external = Target::of("external://partner.example/agents/x").expect("routable");
        assert_eq!(external.path(), "/external/partner%2Eexample/agents/x");
        assert!(matches!(
            Target::of("ftp://nowhere"),
            Err(DispatchError::NotRoutable { .. })
        ));
    }

    #[test]
    fn gateway_refusals_become_typed_dispatch_errors() {
        let internal = Target::Internal("echo".into());
        let not_found = interpret("echo", &internal, StatusCode::NOT_FOUND, b"{}");
        assert!(matches!(
            not_found,
            Err(DispatchError::AgentNotFound { .. })
        ));
        let broken = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32006,"message":"Invalid agent response"}}"#;
        let broken = interpret("echo", &internal, StatusCode::OK, broken);
        assert!(matches!(
            broken,
            Err(DispatchError::Failed {
                retryable: true,
                ..
            })
        ));
        let external = Target::External {
            org: "p.example".into(),
            name: "x".into(),
        };
        let refused = interpret(
            "external://p.example/agents/x",
            &external,
            StatusCode::OK,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"federation not configured"}}"#,
        );
        assert!(matches!(refused, Err(DispatchError::NotRoutable { .. })));
    }
}
