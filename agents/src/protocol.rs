//! Protocol-level failures (what an A2A client sees) and their two wire
//! renderings: a JSON-RPC error object and an HTTP+JSON `{"error":…}` body
//! with the v1.0.1 status table (shared/a2a/NOTES.md §7, §11).

use convergio_schemas::a2a::{self, A2aError};
use serde_json::{json, Value};

/// One field that failed validation (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldViolation {
    /// The request field, in dotted camelCase (`message.parts`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// A failure answered to the client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProtocolError {
    /// One of the A2A errors -32001…-32009.
    A2a(A2aError, String),
    /// The params broke the request schema (-32602, HTTP 400 INVALID_ARGUMENT).
    InvalidParams(Vec<FieldViolation>),
}

// === impl ProtocolError ===

impl ProtocolError {
    /// An A2A error with its default message.
    pub fn a2a(error: A2aError) -> Self {
        Self::A2a(error, error.message().to_owned())
    }

    /// An A2A error with a specific message.
    pub fn a2a_with(error: A2aError, message: impl Into<String>) -> Self {
        Self::A2a(error, message.into())
    }

    /// An invalid-params error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidParams(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// The task-not-found error for `id`.
    pub fn task_not_found(id: &str) -> Self {
        Self::a2a_with(A2aError::TaskNotFound, format!("Task {id} not found"))
    }

    fn bad_request_detail(violations: &[FieldViolation]) -> Value {
        json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations
                .iter()
                .map(|violation| json!({"field": violation.field, "description": violation.description}))
                .collect::<Vec<_>>(),
        })
    }

    /// The JSON-RPC error response echoing `id`.
    pub fn to_jsonrpc(&self, id: Value) -> Value {
        match self {
            Self::A2a(error, message) => a2a::jsonrpc_a2a_error(id, *error, Some(message)),
            Self::InvalidParams(violations) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": a2a::JSONRPC_INVALID_PARAMS,
                    "message": "Validation failed",
                    "data": [
                        a2a::error_info("INVALID_PARAMS", json!({})),
                        Self::bad_request_detail(violations),
                    ],
                }
            }),
        }
    }

    /// The HTTP status and `{"error":…}` body on the HTTP+JSON binding.
    pub fn to_rest(&self) -> (u16, Value) {
        match self {
            Self::A2a(error, message) => (
                error.http_status(),
                a2a::rest_a2a_error(*error, Some(message)),
            ),
            Self::InvalidParams(violations) => (
                400,
                json!({
                    "error": {
                        "code": 400,
                        "status": "INVALID_ARGUMENT",
                        "message": "Validation failed",
                        "details": [
                            a2a::error_info("INVALID_PARAMS", json!({})),
                            Self::bad_request_detail(violations),
                        ],
                    }
                }),
            ),
        }
    }
}

/// Reads an optional non-negative integer that may come as a JSON number or
/// as a decimal string (ProtoJSON accepts both; REST query values are strings).
pub(crate) fn optional_u64(params: &Value, field: &str) -> Result<Option<u64>, ProtocolError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| ProtocolError::invalid(field, "must be a non-negative integer")),
        Some(Value::String(text)) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ProtocolError::invalid(field, "must be a non-negative integer")),
        Some(_) => Err(ProtocolError::invalid(
            field,
            "must be a non-negative integer",
        )),
    }
}

/// Reads an optional boolean given as JSON or as `"true"`/`"false"`.
pub(crate) fn optional_bool(params: &Value, field: &str) -> Result<Option<bool>, ProtocolError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) if text == "true" => Ok(Some(true)),
        Some(Value::String(text)) if text == "false" => Ok(Some(false)),
        Some(_) => Err(ProtocolError::invalid(field, "must be a boolean")),
    }
}

/// Reads an optional string.
pub(crate) fn optional_str<'a>(
    params: &'a Value,
    field: &str,
) -> Result<Option<&'a str>, ProtocolError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(ProtocolError::invalid(field, "must be a string")),
    }
}

/// Reads a required, non-empty string.
pub(crate) fn required_str<'a>(params: &'a Value, field: &str) -> Result<&'a str, ProtocolError> {
    match optional_str(params, field)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(ProtocolError::invalid(field, "is required")),
    }
}
