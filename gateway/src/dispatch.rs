//! [`GatewayDispatch`]: the orchestrator's [`Dispatch`] in the server. Each
//! graph node's call becomes an in-process HTTP request sent with tower's
//! `oneshot` through the *same* layered router outside requests use, so
//! tracing, rescue, limits and — as they land — authentication, policy and
//! quotas apply to graphs exactly as to anyone else.
//!
//! - Internal agents (`name` or `convergio://agents/name`): a JSON-RPC
//!   `SendMessage` (`returnImmediately: false`) to `POST /agents/{name}`.
//! - `external://org/agents/x`: the design document's envelope to
//!   `POST /v1/envelope`, the cross-organisation path; until federation is
//!   configured it answers "federation not configured", which becomes
//!   [`DispatchError::NotRoutable`].
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

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use convergio_orchestrator::{AgentCall, AgentReply, Dispatch, DispatchError};
use convergio_schemas::a2a::{MEDIA_JSON, VERSION_1_0, VERSION_HEADER};
use convergio_schemas::{AgentId, GraphCall, Principal};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Largest reply body the dispatcher reads (the gateway already caps
/// upstream bodies; this bounds in-process ones too).
const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

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
        let exchange = async {
            let response = app
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), MAX_REPLY_BYTES)
                .await
                .map_err(|error| DispatchError::Failed {
                    message: format!("reading the reply failed: {error}"),
                    retryable: true,
                })?;
            Ok::<_, DispatchError>((status, bytes))
        };
        let (status, bytes) = match call.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), exchange)
                .await
                .map_err(|_| DispatchError::Timeout)??,
            None => exchange.await?,
        };
        interpret(&call.agent, &target, status, &bytes)
    }
}

/// Where a node's agent is reached.
enum Target {
    /// `/agents/{name}`.
    Internal(String),
    /// The envelope endpoint, addressed to this agent id.
    External(String),
}

// === impl Target ===

impl Target {
    fn of(agent: &str) -> Result<Self, DispatchError> {
        if !agent.contains("://") {
            return Ok(Self::Internal(agent.to_owned()));
        }
        match agent.parse::<AgentId>() {
            Ok(AgentId::Internal { name }) => Ok(Self::Internal(name)),
            Ok(external @ AgentId::External { .. }) => Ok(Self::External(external.to_string())),
            Err(error) => Err(DispatchError::NotRoutable {
                agent: agent.to_owned(),
                reason: error.to_string(),
            }),
        }
    }
}

fn build_request(call: &AgentCall, target: &Target) -> Result<Request<Body>, DispatchError> {
    let (uri, body) = match target {
        Target::Internal(name) => {
            let body = json!({
                "jsonrpc": "2.0",
                "id": format!("{}/{}", call.run_id, call.node_id),
                "method": "SendMessage",
                "params": {
                    "message": call.message,
                    "configuration": {"returnImmediately": false},
                },
            });
            let uri = format!("/agents/{}", utf8_percent_encode(name, NON_ALPHANUMERIC));
            (uri, body)
        }
        Target::External(to) => ("/v1/envelope".to_owned(), envelope(call, to)),
    };
    let mut request = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, MEDIA_JSON)
        .header(VERSION_HEADER, VERSION_1_0)
        .body(Body::from(body.to_string()))
        .map_err(|error| DispatchError::Failed {
            message: format!("cannot build the request: {error}"),
            retryable: false,
        })?;
    if let Ok(traceparent) = HeaderValue::from_str(&call.traceparent) {
        request
            .headers_mut()
            .insert(TRACEPARENT_HEADER, traceparent);
    }
    let extensions = request.extensions_mut();
    if let Some(caller) = &call.caller {
        extensions.insert(Principal::clone(caller));
    }
    if let Some(origin) = call.origin {
        // The run caller's address stands in for the connection this
        // in-process request does not have (policy's `loopback` fact).
        extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            origin, 0,
        )));
    }
    extensions.insert(GraphCall {
        run_id: call.run_id.to_string(),
        graph: call.graph_id.to_string(),
        node_id: call.node_id.clone(),
    });
    Ok(request)
}

/// The design document's envelope for a call to an external agent: the
/// message's single part (or all its parts) as the payload.
fn envelope(call: &AgentCall, to: &str) -> Value {
    let parts = call
        .message
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let payload = match parts {
        [only] => only
            .get("data")
            .or_else(|| only.get("text"))
            .cloned()
            .unwrap_or_else(|| only.clone()),
        many => Value::Array(many.to_vec()),
    };
    let sender: String = call
        .graph_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let id: String = call
        .message
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let mut envelope = json!({
        "protocol": "a2a/1.0",
        "from": format!("convergio://agents/{}", if sender.is_empty() { "graph" } else { &sender }),
        "to": to,
        "action": format!("graph.{}", call.node_id),
        "payload": payload,
    });
    if !id.is_empty() {
        envelope["id"] = Value::String(id);
    }
    envelope
}

/// Turns the gateway's answer into a reply or a typed dispatch error.
fn interpret(
    agent: &str,
    target: &Target,
    status: StatusCode,
    bytes: &[u8],
) -> Result<AgentReply, DispatchError> {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
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
    match target {
        Target::Internal(_) => {
            if let Some(result) = body.get("result") {
                return Ok(AgentReply::from_response(result.clone()));
            }
            if !status.is_success() {
                return Err(refused(message));
            }
            match body.pointer("/error/code").and_then(Value::as_i64) {
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
        Target::External(_) => {
            if status.is_success() {
                return match body.get("payload") {
                    Some(payload) => Ok(AgentReply::from_response(payload.clone())),
                    None => Err(DispatchError::Failed {
                        message: "the envelope reply has no payload".into(),
                        retryable: false,
                    }),
                };
            }
            if status == StatusCode::BAD_REQUEST {
                return Err(DispatchError::NotRoutable {
                    agent: agent.to_owned(),
                    reason: message,
                });
            }
            Err(refused(message))
        }
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
        assert!(matches!(
            Target::of("external://partner.example/agents/x"),
            Ok(Target::External(to)) if to == "external://partner.example/agents/x"
        ));
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
        let external = Target::External("external://p.example/agents/x".into());
        let refused = interpret(
            "external://p.example/agents/x",
            &external,
            StatusCode::BAD_REQUEST,
            br#"{"detail":"federation not configured"}"#,
        );
        assert!(matches!(refused, Err(DispatchError::NotRoutable { .. })));
    }
}
