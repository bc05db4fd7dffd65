//! A2A protocol constants shared by the gateway, the example agents and the
//! orchestrator: versions, headers, media types, method names, task states
//! and the A2A error table (v1.0.1 HTTP statuses, see shared/a2a/NOTES.md §7).

use serde_json::{json, Value};

/// Header carrying the client's protocol version (`Major.Minor`).
pub const VERSION_HEADER: &str = "A2A-Version";
/// Header listing the extensions the client opts into.
pub const EXTENSIONS_HEADER: &str = "A2A-Extensions";
/// The 0.3 name of the extensions header, still accepted.
pub const LEGACY_EXTENSIONS_HEADER: &str = "X-A2A-Extensions";
/// The current protocol version on the wire.
pub const VERSION_1_0: &str = "1.0";
/// The legacy version a missing header means.
pub const VERSION_0_3: &str = "0.3";
/// HTTP+JSON media type (preferred since 1.0.1).
pub const MEDIA_A2A_JSON: &str = "application/a2a+json";
/// JSON-RPC media type.
pub const MEDIA_JSON: &str = "application/json";
/// Server-sent events media type.
pub const MEDIA_SSE: &str = "text/event-stream";
/// The well-known path of an agent card.
pub const WELL_KNOWN_CARD_PATH: &str = "/.well-known/agent-card.json";
/// Message metadata key where Convergio's gateway puts the verified
/// caller's organisation for its own model agents (replacing any value a
/// client sent); an `api_key: caller` agent pays with that organisation's
/// key and budget.
pub const CALLER_ORG_METADATA: &str = "convergio.caller.org";
/// Message metadata key with the most tokens the answer may use: a graph
/// run's executor sets what the run's token budgets have left. Only ever a
/// cap: a model agent uses the smallest of it and its own limits, and
/// refuses at 0 before calling its provider.
pub const MAX_TOKENS_METADATA: &str = "convergio.maxTokens";
/// Task metadata key where an agent lists the tool calls its answer made:
/// `[{"tool", "outcome", "task_id"?, "request_id"?, "duration_ms"}]`, with
/// `outcome` one of `completed`, `failed`, `refused`, `unknown_tool`. A
/// graph's run trace lists them under the node that called the agent.
pub const TOOL_CALLS_METADATA: &str = "convergio.toolCalls";
/// Answer metadata key where a gateway that answered another
/// organisation's call puts its own timing of it, when its policy lets
/// that organisation see it (`share_timings`): `{"org", "duration_ms"}`.
/// The caller's run trace shows it on the remote node.
pub const REMOTE_TIMING_METADATA: &str = "convergio.remote";
/// The ErrorInfo domain for A2A errors.
pub const ERROR_DOMAIN: &str = "a2a-protocol.org";

/// JSON-RPC: invalid JSON.
pub const JSONRPC_PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const JSONRPC_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: method does not exist.
pub const JSONRPC_METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid method parameters.
pub const JSONRPC_INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
pub const JSONRPC_INTERNAL_ERROR: i64 = -32603;

/// The protocol versions Convergio speaks, by the `A2A-Version` header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// 0.3: `category/action` methods, `kind` discriminators.
    V0_3,
    /// 1.0: PascalCase methods, oneof wrappers.
    V1_0,
}

// === impl ProtocolVersion ===

impl ProtocolVersion {
    /// Reads the `A2A-Version` header: absent or empty means 0.3; `1.0` is
    /// 1.0; anything else is unsupported (`None`).
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        match value.map(str::trim) {
            None | Some("") => Some(Self::V0_3),
            Some("0.3") => Some(Self::V0_3),
            Some("1.0") => Some(Self::V1_0),
            Some(_) => None,
        }
    }

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3 => VERSION_0_3,
            Self::V1_0 => VERSION_1_0,
        }
    }
}

/// The A2A-specific errors (JSON-RPC codes -32001…-32009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum A2aError {
    /// -32001
    TaskNotFound,
    /// -32002
    TaskNotCancelable,
    /// -32003
    PushNotificationNotSupported,
    /// -32004
    UnsupportedOperation,
    /// -32005
    ContentTypeNotSupported,
    /// -32006
    InvalidAgentResponse,
    /// -32007
    ExtendedAgentCardNotConfigured,
    /// -32008
    ExtensionSupportRequired,
    /// -32009
    VersionNotSupported,
}

// === impl A2aError ===

impl A2aError {
    /// Every A2A error, by code.
    pub const ALL: [A2aError; 9] = [
        Self::TaskNotFound,
        Self::TaskNotCancelable,
        Self::PushNotificationNotSupported,
        Self::UnsupportedOperation,
        Self::ContentTypeNotSupported,
        Self::InvalidAgentResponse,
        Self::ExtendedAgentCardNotConfigured,
        Self::ExtensionSupportRequired,
        Self::VersionNotSupported,
    ];

    /// The JSON-RPC code.
    pub fn code(self) -> i64 {
        match self {
            Self::TaskNotFound => -32001,
            Self::TaskNotCancelable => -32002,
            Self::PushNotificationNotSupported => -32003,
            Self::UnsupportedOperation => -32004,
            Self::ContentTypeNotSupported => -32005,
            Self::InvalidAgentResponse => -32006,
            Self::ExtendedAgentCardNotConfigured => -32007,
            Self::ExtensionSupportRequired => -32008,
            Self::VersionNotSupported => -32009,
        }
    }

    /// The error for a JSON-RPC code, if it is an A2A one.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|error| error.code() == code)
    }

    /// The error an ErrorInfo `reason` names, if it is an A2A one.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|error| error.reason() == reason)
    }

    /// The ErrorInfo `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TaskNotFound => "TASK_NOT_FOUND",
            Self::TaskNotCancelable => "TASK_NOT_CANCELABLE",
            Self::PushNotificationNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            Self::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            Self::ContentTypeNotSupported => "CONTENT_TYPE_NOT_SUPPORTED",
            Self::InvalidAgentResponse => "INVALID_AGENT_RESPONSE",
            Self::ExtendedAgentCardNotConfigured => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            Self::ExtensionSupportRequired => "EXTENSION_SUPPORT_REQUIRED",
            Self::VersionNotSupported => "VERSION_NOT_SUPPORTED",
        }
    }

    /// The default message.
    pub fn message(self) -> &'static str {
        match self {
            Self::TaskNotFound => "Task not found",
            Self::TaskNotCancelable => "Task cannot be canceled",
            Self::PushNotificationNotSupported => "Push Notification is not supported",
            Self::UnsupportedOperation => "This operation is not supported",
            Self::ContentTypeNotSupported => "Incompatible content types",
            Self::InvalidAgentResponse => "Invalid agent response",
            Self::ExtendedAgentCardNotConfigured => "Extended agent card is not configured",
            Self::ExtensionSupportRequired => "Extension support is required",
            Self::VersionNotSupported => "Protocol version is not supported",
        }
    }

    /// The HTTP status on the HTTP+JSON binding (v1.0.1 table).
    pub fn http_status(self) -> u16 {
        match self {
            Self::TaskNotFound => 404,
            Self::InvalidAgentResponse => 500,
            _ => 400,
        }
    }

    /// The `google.rpc.Code` name (v1.0.1 table), used as the REST `status`.
    pub fn grpc_status(self) -> &'static str {
        match self {
            Self::TaskNotFound => "NOT_FOUND",
            Self::ContentTypeNotSupported => "INVALID_ARGUMENT",
            Self::InvalidAgentResponse => "INTERNAL",
            _ => "FAILED_PRECONDITION",
        }
    }
}

/// A `google.rpc.ErrorInfo` detail object.
pub fn error_info(reason: &str, metadata: Value) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": ERROR_DOMAIN,
        "metadata": metadata,
    })
}

/// A JSON-RPC 2.0 error response echoing `id`.
pub fn jsonrpc_error(id: Value, code: i64, message: &str, reason: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": code,
            "message": crate::bounds::clip(message, crate::bounds::DETAIL_LIMIT),
            "data": [error_info(reason, json!({}))],
        }
    })
}

/// A JSON-RPC 2.0 error response for an A2A error.
pub fn jsonrpc_a2a_error(id: Value, error: A2aError, message: Option<&str>) -> Value {
    jsonrpc_error(
        id,
        error.code(),
        message.unwrap_or(error.message()),
        error.reason(),
    )
}

/// An HTTP+JSON error body: `{"error":{code,status,message,details}}`.
pub fn rest_error(http_status: u16, grpc_status: &str, message: &str, reason: &str) -> Value {
    json!({
        "error": {
            "code": http_status,
            "status": grpc_status,
            "message": crate::bounds::clip(message, crate::bounds::DETAIL_LIMIT),
            "details": [error_info(reason, json!({}))],
        }
    })
}

/// An HTTP+JSON error body for an A2A error.
pub fn rest_a2a_error(error: A2aError, message: Option<&str>) -> Value {
    rest_error(
        error.http_status(),
        error.grpc_status(),
        message.unwrap_or(error.message()),
        error.reason(),
    )
}

/// The A2A operations, named as in 1.0 (JSON-RPC name = gRPC name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Send a message, blocking or not.
    SendMessage,
    /// Send a message and stream the answer.
    SendStreamingMessage,
    /// Fetch a task.
    GetTask,
    /// List tasks (1.0 only).
    ListTasks,
    /// Cancel a task.
    CancelTask,
    /// Stream a task's updates.
    SubscribeToTask,
    /// Create a push-notification config.
    CreateTaskPushNotificationConfig,
    /// Get a push-notification config.
    GetTaskPushNotificationConfig,
    /// List push-notification configs.
    ListTaskPushNotificationConfigs,
    /// Delete a push-notification config.
    DeleteTaskPushNotificationConfig,
    /// Fetch the authenticated extended card.
    GetExtendedAgentCard,
}

// === impl Method ===

impl Method {
    /// Every method.
    pub const ALL: [Method; 11] = [
        Self::SendMessage,
        Self::SendStreamingMessage,
        Self::GetTask,
        Self::ListTasks,
        Self::CancelTask,
        Self::SubscribeToTask,
        Self::CreateTaskPushNotificationConfig,
        Self::GetTaskPushNotificationConfig,
        Self::ListTaskPushNotificationConfigs,
        Self::DeleteTaskPushNotificationConfig,
        Self::GetExtendedAgentCard,
    ];

    /// The 1.0 JSON-RPC method name.
    pub fn v1_name(self) -> &'static str {
        match self {
            Self::SendMessage => "SendMessage",
            Self::SendStreamingMessage => "SendStreamingMessage",
            Self::GetTask => "GetTask",
            Self::ListTasks => "ListTasks",
            Self::CancelTask => "CancelTask",
            Self::SubscribeToTask => "SubscribeToTask",
            Self::CreateTaskPushNotificationConfig => "CreateTaskPushNotificationConfig",
            Self::GetTaskPushNotificationConfig => "GetTaskPushNotificationConfig",
            Self::ListTaskPushNotificationConfigs => "ListTaskPushNotificationConfigs",
            Self::DeleteTaskPushNotificationConfig => "DeleteTaskPushNotificationConfig",
            Self::GetExtendedAgentCard => "GetExtendedAgentCard",
        }
    }

    /// The 0.3 JSON-RPC method name, where 0.3 had the operation.
    pub fn v03_name(self) -> Option<&'static str> {
        Some(match self {
            Self::SendMessage => "message/send",
            Self::SendStreamingMessage => "message/stream",
            Self::GetTask => "tasks/get",
            Self::ListTasks => return None,
            Self::CancelTask => "tasks/cancel",
            Self::SubscribeToTask => "tasks/resubscribe",
            Self::CreateTaskPushNotificationConfig => "tasks/pushNotificationConfig/set",
            Self::GetTaskPushNotificationConfig => "tasks/pushNotificationConfig/get",
            Self::ListTaskPushNotificationConfigs => "tasks/pushNotificationConfig/list",
            Self::DeleteTaskPushNotificationConfig => "tasks/pushNotificationConfig/delete",
            Self::GetExtendedAgentCard => "agent/getAuthenticatedExtendedCard",
        })
    }

    /// Looks a 1.0 name up.
    pub fn from_v1_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.v1_name() == name)
    }

    /// Looks a 0.3 name up.
    pub fn from_v03_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.v03_name() == Some(name))
    }

    /// Whether the answer is a server-sent event stream.
    pub fn is_streaming(self) -> bool {
        matches!(self, Self::SendStreamingMessage | Self::SubscribeToTask)
    }
}

/// Task states, with their 1.0 wire names and 0.3 spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Unknown or unset.
    Unspecified,
    /// Accepted, not started.
    Submitted,
    /// In progress.
    Working,
    /// Finished successfully (terminal).
    Completed,
    /// Finished with an error (terminal).
    Failed,
    /// Canceled (terminal).
    Canceled,
    /// Waiting for the client (interrupted).
    InputRequired,
    /// Refused by the agent (terminal).
    Rejected,
    /// Waiting for authorisation (interrupted).
    AuthRequired,
}

// === impl TaskState ===

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 9] = [
        Self::Unspecified,
        Self::Submitted,
        Self::Working,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
        Self::InputRequired,
        Self::Rejected,
        Self::AuthRequired,
    ];

    /// The 1.0 wire name (`TASK_STATE_…`).
    pub fn v1_name(self) -> &'static str {
        match self {
            Self::Unspecified => "TASK_STATE_UNSPECIFIED",
            Self::Submitted => "TASK_STATE_SUBMITTED",
            Self::Working => "TASK_STATE_WORKING",
            Self::Completed => "TASK_STATE_COMPLETED",
            Self::Failed => "TASK_STATE_FAILED",
            Self::Canceled => "TASK_STATE_CANCELED",
            Self::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            Self::Rejected => "TASK_STATE_REJECTED",
            Self::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
        }
    }

    /// The 0.3 wire name (kebab-case).
    pub fn v03_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Submitted => "submitted",
            Self::Working => "working",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::InputRequired => "input-required",
            Self::Rejected => "rejected",
            Self::AuthRequired => "auth-required",
        }
    }

    /// Parses either spelling.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.v1_name() == name || state.v03_name() == name)
    }

    /// Terminal states end a task for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Rejected
        )
    }

    /// Interrupted states wait for the client.
    pub fn is_interrupted(self) -> bool {
        matches!(self, Self::InputRequired | Self::AuthRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_header_rules() {
        assert_eq!(
            ProtocolVersion::from_header(None),
            Some(ProtocolVersion::V0_3)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("")),
            Some(ProtocolVersion::V0_3)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("1.0")),
            Some(ProtocolVersion::V1_0)
        );
        assert_eq!(ProtocolVersion::from_header(Some("0.5")), None);
        assert_eq!(ProtocolVersion::from_header(Some("1.0.1")), None);
    }

    #[test]
    fn method_names_round_trip_in_both_dialects() {
        for method in Method::ALL {
            assert_eq!(Method::from_v1_name(method.v1_name()), Some(method));
            if let Some(old) = method.v03_name() {
                assert_eq!(Method::from_v03_name(old), Some(method));
            }
        }
    }

    #[test]
    fn a2a_error_codes_are_contiguous() {
        for (index, error) in A2aError::ALL.into_iter().enumerate() {
            assert_eq!(error.code(), -32001 - index as i64);
            assert_eq!(A2aError::from_code(error.code()), Some(error));
        }
    }
}
