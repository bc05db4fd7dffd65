//! A2A errors as gRPC statuses and back (spec §10.6): the status code is
//! the one the error table gives (`GatewayError::grpc_status`, the HTTP+JSON
//! body's `status`), the message is the public one, and the details are the
//! same `google.rpc.ErrorInfo` (domain `a2a-protocol.org`, reason such as
//! `TASK_NOT_FOUND`) and `google.rpc.BadRequest` entries the JSON bindings
//! carry, in `grpc-status-details-bin`. Both directions go through the
//! HTTP+JSON error body, so every binding says the same thing: the gateway
//! renders one error once (`layers::rescue`) and this module re-spells it.
//! A leaf module (it uses only the error type), so both `layers::rescue`
//! and `a2a::grpc` use it without importing each other.

use std::collections::HashMap;

use convergio_schemas::a2a::{self, A2aError};
use serde_json::{json, Value};
use tonic::Code;
use tonic_types::{BadRequest, ErrorDetail, ErrorInfo, FieldViolation, StatusExt};

use crate::error::UpstreamFailure;

/// The path prefix of every A2A gRPC method (`lf.a2a.v1.A2AService`).
pub(crate) const SERVICE_PATH: &str = "/lf.a2a.v1.A2AService/";

/// The gRPC status for an A2A HTTP+JSON error body
/// (`{"error":{code,status,message,details}}`).
pub(crate) fn from_rest_error(body: &Value) -> tonic::Status {
    let error = body.get("error").unwrap_or(&Value::Null);
    let code = error
        .get("status")
        .and_then(Value::as_str)
        .and_then(code_from_name)
        .or_else(|| {
            error
                .get("code")
                .and_then(Value::as_u64)
                .map(code_from_http)
        })
        .unwrap_or(Code::Unknown);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let details = error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(detail_from_json);
    tonic::Status::with_error_details_vec(code, message, details)
}

/// An upstream gRPC agent's error status as a relayable failure: the A2A
/// code comes from its ErrorInfo reason, else from the status code; the
/// details are re-spelled as the JSON bindings carry them.
pub(crate) fn to_upstream_failure(status: &tonic::Status) -> UpstreamFailure {
    let details: Vec<Value> = status
        .get_error_details_vec()
        .iter()
        .filter_map(detail_to_json)
        .collect();
    let reason = details
        .iter()
        .find_map(|detail| detail.get("reason").and_then(Value::as_str));
    let code = reason
        .and_then(A2aError::from_reason)
        .map(A2aError::code)
        .unwrap_or(match status.code() {
            Code::NotFound => A2aError::TaskNotFound.code(),
            Code::InvalidArgument => a2a::JSONRPC_INVALID_PARAMS,
            Code::Unimplemented => A2aError::UnsupportedOperation.code(),
            _ => a2a::JSONRPC_INTERNAL_ERROR,
        });
    UpstreamFailure {
        code,
        message: status.message().to_owned(),
        details: Value::Array(details),
    }
}

/// A status code from its canonical name (`NOT_FOUND`).
pub(crate) fn code_from_name(name: &str) -> Option<Code> {
    Some(match name {
        "OK" => Code::Ok,
        "CANCELLED" => Code::Cancelled,
        "UNKNOWN" => Code::Unknown,
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "DEADLINE_EXCEEDED" => Code::DeadlineExceeded,
        "NOT_FOUND" => Code::NotFound,
        "ALREADY_EXISTS" => Code::AlreadyExists,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "ABORTED" => Code::Aborted,
        "OUT_OF_RANGE" => Code::OutOfRange,
        "UNIMPLEMENTED" => Code::Unimplemented,
        "INTERNAL" => Code::Internal,
        "UNAVAILABLE" => Code::Unavailable,
        "DATA_LOSS" => Code::DataLoss,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        _ => return None,
    })
}

/// The status code an HTTP status means (google.rpc's HTTP mapping).
fn code_from_http(status: u64) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        413 | 429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// One JSON detail (`{"@type": …ErrorInfo, reason, domain, metadata}` or
/// `…BadRequest`) as a typed detail; other types are not carried.
fn detail_from_json(detail: &Value) -> Option<ErrorDetail> {
    let kind = detail.get("@type").and_then(Value::as_str)?;
    let text = |key: &str| {
        detail
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if kind.ends_with("google.rpc.ErrorInfo") {
        let metadata: HashMap<String, String> = detail
            .get("metadata")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect();
        return Some(ErrorInfo::new(text("reason"), text("domain"), metadata).into());
    }
    if kind.ends_with("google.rpc.BadRequest") {
        let violations: Vec<FieldViolation> = detail
            .get("fieldViolations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|violation| {
                let field = violation.get("field").and_then(Value::as_str);
                let description = violation.get("description").and_then(Value::as_str);
                FieldViolation::new(field.unwrap_or_default(), description.unwrap_or_default())
            })
            .collect();
        return Some(BadRequest::new(violations).into());
    }
    None
}

/// A typed detail as the JSON bindings carry it.
fn detail_to_json(detail: &ErrorDetail) -> Option<Value> {
    match detail {
        ErrorDetail::ErrorInfo(info) => Some(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        })),
        ErrorDetail::BadRequest(bad_request) => {
            let violations: Vec<Value> = bad_request
                .field_violations
                .iter()
                .map(|violation| {
                    json!({"field": violation.field, "description": violation.description})
                })
                .collect();
            Some(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_not_found_body_becomes_not_found_with_its_error_info() {
        let body = json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "task not found",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "TASK_NOT_FOUND", "domain": "a2a-protocol.org", "metadata": {"requestId": "r1"}}]}});
        let status = from_rest_error(&body);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "task not found");
        let failure = to_upstream_failure(&status);
        assert_eq!(failure.code, A2aError::TaskNotFound.code());
        assert_eq!(failure.details[0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(failure.details[0]["domain"], "a2a-protocol.org");
        assert_eq!(failure.details[0]["metadata"]["requestId"], "r1");
    }

    #[test]
    fn a_status_without_details_maps_by_its_code() {
        let failure = to_upstream_failure(&tonic::Status::not_found("gone"));
        assert_eq!(failure.code, A2aError::TaskNotFound.code());
        let failure = to_upstream_failure(&tonic::Status::internal("boom"));
        assert_eq!(failure.code, a2a::JSONRPC_INTERNAL_ERROR);
    }
}
