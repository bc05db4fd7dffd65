//! One A2A call made in-process through the gateway's own router, as an
//! agent of this deployment: a JSON-RPC `SendMessage` (blocking) to
//! `/agents/{name}` carrying the caller's [`Principal`] (`agent:<name>` of
//! its organisation, `AuthMethod::System`), so it is authenticated, decided
//! by policy, rate limited, SSRF-guarded, guarded and audited like any other
//! call. Model agents' tool calls ([`crate::model_runtime::GatewayTools`])
//! and plugin agents' `call_agent` ([`crate::plugin_agents`]) both use it.
//! No socket is opened: the request goes to the router as a value.

use std::sync::Weak;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use convergio_gateway::layers::REQUEST_ID_HEADER;
use convergio_schemas::a2a::{MEDIA_JSON, VERSION_1_0, VERSION_HEADER};
use convergio_schemas::{AuthMethod, Principal};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// One call: who makes it, to whom, what, within which bounds.
#[derive(Debug, Clone)]
pub struct GatewayCall {
    /// The calling agent's name (the principal is `agent:<caller>`).
    pub caller: String,
    /// The calling agent's organisation.
    pub org: String,
    /// The agent called: a name (`echo`) or an id (`convergio://agents/echo`,
    /// `external://b.example/agents/echo`).
    pub agent: String,
    /// The JSON-RPC id.
    pub rpc_id: String,
    /// The request id (`x-request-id`) the call and its audit record carry.
    pub request_id: String,
    /// The A2A 1.0 message sent.
    pub message: Value,
    /// The whole exchange ends by then.
    pub timeout: Duration,
    /// The largest reply read, in bytes.
    pub max_reply_bytes: usize,
}

/// Why a call produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCallError {
    /// Policy, a quota or discovery refused it (401, 403, 404, 429, or an
    /// A2A error saying so).
    Refused(String),
    /// It was made and failed (or the gateway is not serving).
    Failed(String),
    /// No answer within the timeout.
    Timeout,
}

/// The gateway path of `agent`: a name (`echo`) or an id
/// (`convergio://agents/echo`, `external://b.example/agents/echo`, another
/// organisation's agent registered here).
fn agent_path(agent: &str) -> String {
    let segment = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    if let Some(name) = agent.strip_prefix("convergio://agents/") {
        return format!("/agents/{}", segment(name));
    }
    if let Some((org, name)) = agent
        .strip_prefix("external://")
        .and_then(|rest| rest.split_once("/agents/"))
    {
        return format!("/external/{}/agents/{}", segment(org), segment(name));
    }
    format!("/agents/{}", segment(agent))
}

/// The principal an agent of this deployment acts as: subject
/// `agent:<agent>` of `org`, authenticated by the server itself, with no
/// scopes (policy's `context.caller_agent` is `agent`).
pub fn agent_principal(agent: &str, org: &str) -> Principal {
    Principal {
        subject: format!("agent:{agent}"),
        org: Some(org.to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::System,
    }
}

/// Sends `request` through `app` as `principal`, answering the status and
/// at most `max_reply_bytes` of the body within `timeout`. Every in-process
/// call of an agent (A2A calls, memory searches) goes through here.
pub async fn exchange(
    app: &Weak<Router>,
    mut request: Request<Body>,
    principal: Principal,
    timeout: Duration,
    max_reply_bytes: usize,
) -> Result<(StatusCode, Bytes), GatewayCallError> {
    let failed = GatewayCallError::Failed;
    let app = app
        .upgrade()
        .map(|app| (*app).clone())
        .ok_or_else(|| failed("the gateway is not serving".to_owned()))?;
    request.extensions_mut().insert(principal);
    let exchange = async {
        let response = app
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), max_reply_bytes)
            .await
            .map_err(|error| failed(format!("reading the reply: {error}")))?;
        Ok::<_, GatewayCallError>((status, bytes))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| GatewayCallError::Timeout)?
}

/// Makes `call` through `app`, answering the JSON-RPC result (a Task or a
/// Message).
pub async fn call(app: &Weak<Router>, call: GatewayCall) -> Result<Value, GatewayCallError> {
    let failed = GatewayCallError::Failed;
    let body = json!({
        "jsonrpc": "2.0",
        "id": call.rpc_id,
        "method": "SendMessage",
        "params": {
            "message": call.message,
            "configuration": {"returnImmediately": false},
        },
    });
    let request = Request::builder()
        .method("POST")
        .uri(agent_path(&call.agent))
        .header(header::CONTENT_TYPE, MEDIA_JSON)
        .header(VERSION_HEADER, VERSION_1_0)
        .header(REQUEST_ID_HEADER, &call.request_id)
        .body(Body::from(body.to_string()))
        .map_err(|error| failed(format!("building the request: {error}")))?;
    let (status, bytes) = exchange(
        app,
        request,
        agent_principal(&call.caller, &call.org),
        call.timeout,
        call.max_reply_bytes,
    )
    .await?;
    let reply: Value = serde_json::from_slice(&bytes)
        .map_err(|error| failed(format!("the reply is not JSON: {error}")))?;
    if let Some(result) = reply.get("result") {
        return Ok(result.clone());
    }
    let message = reply
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the call failed")
        .to_owned();
    let refused = matches!(status.as_u16(), 401 | 403 | 404 | 429)
        || reply
            .pointer("/error/data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|detail| {
                matches!(
                    detail.get("reason").and_then(Value::as_str),
                    Some("PERMISSION_DENIED" | "RATE_LIMITED" | "AGENT_NOT_FOUND")
                )
            });
    if refused {
        Err(GatewayCallError::Refused(message))
    } else {
        Err(failed(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_become_gateway_paths() {
        for (agent, path) in [
            ("echo", "/agents/echo"),
            ("convergio://agents/echo", "/agents/echo"),
            (
                "external://b.example/agents/vault",
                "/external/b%2Eexample/agents/vault",
            ),
            ("a/b", "/agents/a%2Fb"),
        ] {
            assert_eq!(agent_path(agent), path, "{agent}");
        }
    }
}
