//! `POST /v1/envelope`: the design document's envelope
//! (`{"protocol":"a2a/1.0","from","to","action","payload","auth"}`),
//! validated with the shared JSON Schema and mapped onto `SendMessage`:
//! `payload` becomes a data part, `action` the message metadata
//! `convergio.action`, `from` the metadata `convergio.from`, `context_id` the
//! message's `contextId`. The answer is an envelope back:
//! `{protocol, from: <to>, to: <from>, action: "<action>.result", payload:
//! <the SendMessage result: {"task":…} or {"message":…}>}`. The envelope's
//! `auth` is never forwarded (callers authenticate to the gateway).
//! `external://` addresses go to the peer's gateway as signed calls when
//! federation is on, and are refused as not configured otherwise.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use convergio_schemas::a2a::{Method, ProtocolVersion, MEDIA_JSON};
use convergio_schemas::{validate, AgentId, SchemaId};
use serde_json::{json, Value};

use super::forward::{self, Reply};
use super::inbound::{Call, ClientSide};
use super::{incoming, read_body, resolve, A2aState};
use crate::layers::{ErrorShape, Failure};
use crate::routes::Binding;
use crate::GatewayError;

/// Builds the SendMessage params for a validated envelope.
pub fn envelope_to_send(envelope: &Value) -> Value {
    let mut message = json!({
        "messageId": envelope.get("id").and_then(Value::as_str).map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        "role": "ROLE_USER",
        "parts": [{"data": envelope.get("payload").cloned().unwrap_or(Value::Null)}],
        "metadata": {
            "convergio.action": envelope.get("action").cloned().unwrap_or(Value::Null),
            "convergio.from": envelope.get("from").cloned().unwrap_or(Value::Null),
        },
    });
    if let Some(context_id) = envelope.get("context_id").and_then(Value::as_str) {
        message["contextId"] = Value::from(context_id);
    }
    json!({"message": message, "configuration": {"returnImmediately": false}})
}

/// The reply envelope for a SendMessage result.
pub fn result_to_envelope(request: &Value, result: Value) -> Value {
    let action = request.get("action").and_then(Value::as_str).unwrap_or("");
    let context_id = result
        .get("task")
        .or_else(|| result.get("message"))
        .and_then(|inner| inner.get("contextId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut reply = json!({
        "protocol": "a2a/1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "from": request.get("to").cloned().unwrap_or(Value::Null),
        "to": request.get("from").cloned().unwrap_or(Value::Null),
        "action": format!("{action}.result"),
        "payload": result,
    });
    if let Some(context_id) = context_id {
        reply["context_id"] = Value::from(context_id);
    }
    reply
}

/// The OpenAPI description of `POST /v1/envelope`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(envelope_handler))]
pub(crate) struct EnvelopeApiDoc;

#[utoipa::path(
    post,
    path = "/v1/envelope",
    operation_id = "sendEnvelope",
    tag = "a2a",
    request_body(description = "A Convergio envelope (schemas/json/envelope.schema.json)", content((Object = "application/json"))),
    responses(
        (status = 200, description = "The reply envelope (`action` + `.result`).", body = Object),
        (status = 404, description = "No such agent"),
        (status = 415, description = "The body is not application/json"),
        (status = 502, description = "The agent answered badly"),
        (status = 504, description = "The agent did not answer in time"),
    )
)]
pub(super) async fn envelope_handler(
    State(state): State<A2aState>,
    request: Request,
) -> Result<Response, Failure> {
    let (request, body) = incoming(request);
    let fail = |error: GatewayError| Failure::new(error, ErrorShape::Problem);
    let bytes = read_body(body, request.body_limit).await.map_err(fail)?;
    let envelope: Value = serde_json::from_slice(&bytes).map_err(|error| {
        fail(GatewayError::MalformedJson {
            detail: error.to_string(),
        })
    })?;
    validate(SchemaId::Envelope, &envelope)
        .map_err(|violations| fail(GatewayError::SchemaViolation { violations }))?;
    let to = envelope
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let agent_id: AgentId = to
        .parse()
        .map_err(|error: convergio_schemas::AgentIdError| {
            fail(GatewayError::InvalidParams {
                detail: error.to_string(),
            })
        })?;
    let target = match &agent_id {
        AgentId::Internal { name } => resolve(&state, name).await.map_err(fail)?,
        AgentId::External { org, name } => {
            super::resolve_external(&state, &request.principal, org, name)
                .await
                .map_err(fail)?
        }
    };
    let name = target.name.clone();
    let params = envelope_to_send(&envelope);
    super::admit(
        &state,
        &target,
        Some(Method::SendMessage),
        &params,
        &request,
    )
    .await
    .map_err(fail)?;
    let call = Call::new(
        Method::SendMessage,
        params,
        ClientSide {
            binding: Binding::JsonRpc,
            version: ProtocolVersion::V1_0,
            id: Value::Null,
        },
    );
    let reply = forward::forward(&state, &target, call, &request)
        .await
        .map_err(|error| {
            super::upstream_failure(&state, &target, &request, error, ErrorShape::Problem)
        })?;
    let Reply::Unary(answer) = reply else {
        return Err(fail(GatewayError::UpstreamInvalid {
            agent: name,
            detail: "answered SendMessage with a stream".into(),
        }));
    };
    let result = answer.into_value().map_err(fail)?;
    state.gatekeeper.observe_reply(&request.principal, &result);
    let mut response = Response::new(result_to_envelope(&envelope, result).to_string().into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_JSON));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_maps_onto_send_message_and_back() {
        let envelope = json!({
            "protocol": "a2a/1.0", "id": "e1",
            "from": "convergio://agents/planner", "to": "convergio://agents/echo",
            "action": "review", "payload": {"code": "fn main() {}"}, "context_id": "c1"
        });
        assert!(validate(SchemaId::Envelope, &envelope).is_ok());
        let params = envelope_to_send(&envelope);
        assert_eq!(params["message"]["messageId"], json!("e1"));
        assert_eq!(
            params["message"]["parts"][0]["data"],
            json!({"code": "fn main() {}"})
        );
        assert_eq!(
            params["message"]["metadata"]["convergio.action"],
            json!("review")
        );
        assert_eq!(
            params["message"]["metadata"]["convergio.from"],
            json!("convergio://agents/planner")
        );
        assert_eq!(params["message"]["contextId"], json!("c1"));

        let reply = result_to_envelope(
            &envelope,
            json!({"message": {"messageId": "r", "contextId": "c1", "parts": []}}),
        );
        assert_eq!(reply["from"], json!("convergio://agents/echo"));
        assert_eq!(reply["to"], json!("convergio://agents/planner"));
        assert_eq!(reply["action"], json!("review.result"));
        assert!(
            validate(SchemaId::Envelope, &reply).is_ok(),
            "the reply is itself a valid envelope"
        );
    }
}
