//! The JSON-RPC 2.0 binding at `POST /`: envelope checks in the order
//! a2a-sdk 1.3.0 applies them (NOTES.md §11), version and dialect choice,
//! then dispatch to the service. Streaming methods answer SSE whose every
//! `data:` line is a full JSON-RPC response; an error found before the
//! stream opens is a plain JSON response.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use convergio_schemas::a2a::{self, A2aError, Method, ProtocolVersion};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::dialect;
use crate::protocol::ProtocolError;
use crate::server::ServerState;
use crate::service::AgentService;
use crate::sse::sse_response;

fn json_response(body: &Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a2a::MEDIA_JSON),
    );
    response
}

fn envelope_error(id: Value, code: i64, message: &str, reason: &str) -> Response {
    json_response(&a2a::jsonrpc_error(id, code, message, reason))
}

fn version_error(id: Value, message: &str) -> Response {
    json_response(&ProtocolError::a2a_with(A2aError::VersionNotSupported, message).to_jsonrpc(id))
}

/// Reads the request's protocol version from the `A2A-Version` header, or
/// else from the `A2A-Version` query parameter (spec §3.2.6). Absent or
/// empty means 0.3; `None` means unsupported.
pub(crate) fn request_version(headers: &HeaderMap, uri: &Uri) -> Option<ProtocolVersion> {
    if let Some(value) = headers.get(a2a::VERSION_HEADER) {
        return ProtocolVersion::from_header(Some(value.to_str().ok()?));
    }
    let from_query = uri.query().unwrap_or("").split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case(a2a::VERSION_HEADER)
            .then_some(value)
    });
    ProtocolVersion::from_header(from_query)
}

/// Handles one JSON-RPC request.
pub(crate) async fn handle(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => {
            return envelope_error(
                Value::Null,
                a2a::JSONRPC_PARSE_ERROR,
                "Parse error",
                "PARSE_ERROR",
            )
        }
    };
    let object = match request {
        Value::Object(object) => object,
        Value::Array(_) => {
            return envelope_error(
                Value::Null,
                a2a::JSONRPC_INVALID_REQUEST,
                "Batch requests are not supported",
                "INVALID_REQUEST",
            )
        }
        _ => {
            return envelope_error(
                Value::Null,
                a2a::JSONRPC_INVALID_REQUEST,
                "Invalid Request",
                "INVALID_REQUEST",
            )
        }
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    if !(id.is_null() || id.is_string() || id.is_number()) {
        return envelope_error(
            Value::Null,
            a2a::JSONRPC_INVALID_REQUEST,
            "Invalid Request: bad id",
            "INVALID_REQUEST",
        );
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return envelope_error(
            id,
            a2a::JSONRPC_INVALID_REQUEST,
            "Invalid Request: jsonrpc must be \"2.0\"",
            "INVALID_REQUEST",
        );
    }
    let Some(method_name) = object.get("method").and_then(Value::as_str) else {
        return envelope_error(
            id,
            a2a::JSONRPC_INVALID_REQUEST,
            "Invalid Request: method must be a string",
            "INVALID_REQUEST",
        );
    };
    let dialects = state.dialects;
    let (version, method) = match request_version(&headers, &uri) {
        None => return version_error(id, "Protocol version is not supported; use A2A-Version: 1.0"),
        Some(ProtocolVersion::V1_0) if !dialects.v1 => {
            return version_error(id, "This agent speaks A2A 0.3 only; send no A2A-Version header")
        }
        Some(ProtocolVersion::V0_3) if !dialects.v03 => {
            return version_error(id, "A missing A2A-Version header means 0.3, which this agent does not serve; send A2A-Version: 1.0")
        }
        Some(ProtocolVersion::V1_0) => match Method::from_v1_name(method_name) {
            Some(method) => (ProtocolVersion::V1_0, method),
            None => return envelope_error(id, a2a::JSONRPC_METHOD_NOT_FOUND, "Method not found", "METHOD_NOT_FOUND"),
        },
        Some(ProtocolVersion::V0_3) => match Method::from_v03_name(method_name) {
            Some(method) => (ProtocolVersion::V0_3, method),
            None if Method::from_v1_name(method_name).is_some() => {
                return version_error(id, "A missing A2A-Version header means 0.3; send A2A-Version: 1.0 with 1.0 method names")
            }
            None => return envelope_error(id, a2a::JSONRPC_METHOD_NOT_FOUND, "Method not found", "METHOD_NOT_FOUND"),
        },
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(params @ Value::Object(_)) => params.clone(),
        Some(_) => {
            return json_response(
                &ProtocolError::invalid("params", "must be an object").to_jsonrpc(id),
            )
        }
    };
    let legacy = version == ProtocolVersion::V0_3;
    let params = if legacy && matches!(method, Method::SendMessage | Method::SendStreamingMessage) {
        dialect::send_params_from_v03(&params)
    } else {
        params
    };
    dispatch(&state.service, method, &params, id, legacy).await
}

async fn dispatch(
    service: &AgentService,
    method: Method,
    params: &Value,
    id: Value,
    legacy: bool,
) -> Response {
    let convert = move |result: Value| {
        if legacy {
            dialect::result_to_v03(&result)
        } else {
            result
        }
    };
    let unary = match method {
        Method::SendMessage => service.send(params).await,
        Method::GetTask => service.get(params).map(|task| json!({ "task": task })),
        Method::CancelTask => service.cancel(params).map(|task| json!({ "task": task })),
        Method::ListTasks => service.list(params),
        Method::CreateTaskPushNotificationConfig
        | Method::GetTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs
        | Method::DeleteTaskPushNotificationConfig => Err(AgentService::push_not_supported()),
        Method::GetExtendedAgentCard => Err(AgentService::extended_card_not_supported()),
        Method::SendStreamingMessage | Method::SubscribeToTask => {
            let opened = if method == Method::SendStreamingMessage {
                service.stream(params).await
            } else {
                service.subscribe(params)
            };
            return match opened {
                Ok(events) => {
                    let id = id.clone();
                    sse_response(events.map(move |event| {
                        json!({ "jsonrpc": "2.0", "id": id, "result": convert(event) })
                    }))
                }
                Err(error) => json_response(&error.to_jsonrpc(id)),
            };
        }
    };
    match unary {
        Ok(result) => {
            // 1.0 GetTask/CancelTask results are the bare Task, not a wrapper.
            let result = match (method, legacy) {
                (Method::GetTask | Method::CancelTask, false) => result["task"].clone(),
                _ => convert(result),
            };
            json_response(&json!({ "jsonrpc": "2.0", "id": id, "result": result }))
        }
        Err(error) => json_response(&error.to_jsonrpc(id)),
    }
}
