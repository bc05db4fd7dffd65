//! ProtoJSON's two spellings of a field: parsers must accept the proto's
//! original name (`task_id`) as well as its lowerCamelCase JSON name
//! (`taskId`). The generated pbjson code of the gRPC binding does; the JSON
//! bindings keep requests as JSON values (unknown fields pass through, as a
//! proxy must), so [`to_json_names`] renames the original names of a 1.0
//! request to the JSON names everything after decoding reads (routing,
//! ownership, policy, the upstream). It walks the request's message types
//! from the proto's table below and nothing else: free-form values
//! (`metadata`, a data part's `data`) and unknown fields are left as they
//! are. A field given in both spellings is an invalid request, as it is to
//! a ProtoJSON parser.

use convergio_schemas::a2a::Method;
use serde_json::{Map, Value};

use crate::GatewayError;

/// One field of a request message whose name or type matters here.
struct Field {
    /// The proto field name.
    proto: &'static str,
    /// Its lowerCamelCase JSON name.
    json: &'static str,
    /// The message type of its value (each element, when repeated), if any.
    message: Option<&'static [Field]>,
}

const fn renamed(proto: &'static str, json: &'static str) -> Field {
    Field {
        proto,
        json,
        message: None,
    }
}

const fn nested(proto: &'static str, json: &'static str, message: &'static [Field]) -> Field {
    Field {
        proto,
        json,
        message: Some(message),
    }
}

// The tables hold every field of `a2a.proto`'s request messages whose
// original name differs from its JSON name, and every field holding a
// message; other fields are spelled the same both ways.

const AUTHENTICATION_INFO: &[Field] = &[];

const TASK_PUSH_NOTIFICATION_CONFIG: &[Field] = &[
    renamed("task_id", "taskId"),
    nested("authentication", "authentication", AUTHENTICATION_INFO),
];

const PART: &[Field] = &[renamed("media_type", "mediaType")];

const MESSAGE: &[Field] = &[
    renamed("message_id", "messageId"),
    renamed("context_id", "contextId"),
    renamed("task_id", "taskId"),
    renamed("reference_task_ids", "referenceTaskIds"),
    nested("parts", "parts", PART),
];

const SEND_MESSAGE_CONFIGURATION: &[Field] = &[
    renamed("accepted_output_modes", "acceptedOutputModes"),
    nested(
        "task_push_notification_config",
        "taskPushNotificationConfig",
        TASK_PUSH_NOTIFICATION_CONFIG,
    ),
    renamed("history_length", "historyLength"),
    renamed("return_immediately", "returnImmediately"),
];

const SEND_MESSAGE_REQUEST: &[Field] = &[
    nested("message", "message", MESSAGE),
    nested("configuration", "configuration", SEND_MESSAGE_CONFIGURATION),
];

const GET_TASK_REQUEST: &[Field] = &[renamed("history_length", "historyLength")];

const LIST_TASKS_REQUEST: &[Field] = &[
    renamed("context_id", "contextId"),
    renamed("page_size", "pageSize"),
    renamed("page_token", "pageToken"),
    renamed("history_length", "historyLength"),
    renamed("status_timestamp_after", "statusTimestampAfter"),
    renamed("include_artifacts", "includeArtifacts"),
];

const TASK_PUSH_NOTIFICATION_CONFIG_REQUEST: &[Field] = &[renamed("task_id", "taskId")];

const LIST_TASK_PUSH_NOTIFICATION_CONFIGS_REQUEST: &[Field] = &[
    renamed("task_id", "taskId"),
    renamed("page_size", "pageSize"),
    renamed("page_token", "pageToken"),
];

const NO_RENAMES: &[Field] = &[];

/// The request message of `method`.
fn request_message(method: Method) -> &'static [Field] {
    match method {
        Method::SendMessage | Method::SendStreamingMessage => SEND_MESSAGE_REQUEST,
        Method::GetTask => GET_TASK_REQUEST,
        Method::ListTasks => LIST_TASKS_REQUEST,
        Method::CreateTaskPushNotificationConfig => TASK_PUSH_NOTIFICATION_CONFIG,
        Method::GetTaskPushNotificationConfig | Method::DeleteTaskPushNotificationConfig => {
            TASK_PUSH_NOTIFICATION_CONFIG_REQUEST
        }
        Method::ListTaskPushNotificationConfigs => LIST_TASK_PUSH_NOTIFICATION_CONFIGS_REQUEST,
        Method::CancelTask | Method::SubscribeToTask | Method::GetExtendedAgentCard => NO_RENAMES,
    }
}

/// Renames the original proto field names in `method`'s 1.0 request to
/// their JSON names, in place, and says whether it renamed any; a field
/// given in both spellings is [`GatewayError::InvalidParams`].
pub fn to_json_names(method: Method, params: &mut Value) -> Result<bool, GatewayError> {
    rename_message(request_message(method), params, &FieldPath::Root)
}

/// The JSON name of an HTTP+JSON query parameter given by its proto name
/// (query parameters are the request message's fields, spelled either way).
pub fn query_name(method: Method, key: &str) -> Option<&'static str> {
    request_message(method)
        .iter()
        .find(|field| field.proto == key && field.proto != field.json)
        .map(|field| field.json)
}

/// Where a message sits in the request, for the error naming a field given
/// twice: a chain on the stack, written out only then, so a well-formed
/// request (every request on the hot path) allocates nothing for it.
enum FieldPath<'a> {
    Root,
    Field(&'a FieldPath<'a>, &'static str),
}

impl std::fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Field(parent, name) => write!(f, "{parent}{name}."),
        }
    }
}

fn rename_message(
    fields: &[Field],
    value: &mut Value,
    path: &FieldPath<'_>,
) -> Result<bool, GatewayError> {
    let Value::Object(object) = value else {
        // Not an object where a message belongs: left for the checks that
        // follow (or the upstream) to refuse.
        return Ok(false);
    };
    let mut renamed = false;
    for field in fields {
        if field.proto != field.json {
            renamed |= rename_field(object, field, path)?;
        }
        let Some(message) = field.message else {
            continue;
        };
        let inner_path = FieldPath::Field(path, field.json);
        match object.get_mut(field.json) {
            Some(Value::Array(elements)) => {
                for element in elements {
                    renamed |= rename_message(message, element, &inner_path)?;
                }
            }
            Some(inner) => renamed |= rename_message(message, inner, &inner_path)?,
            None => {}
        }
    }
    Ok(renamed)
}

/// Renames `field` in `object` when given by its proto name; whether it was.
fn rename_field(
    object: &mut Map<String, Value>,
    field: &Field,
    path: &FieldPath<'_>,
) -> Result<bool, GatewayError> {
    let Some(value) = object.remove(field.proto) else {
        return Ok(false);
    };
    if object.contains_key(field.json) {
        return Err(GatewayError::InvalidParams {
            detail: format!(
                "{path}{} and {path}{} are the same field, given twice",
                field.proto, field.json
            ),
        });
    }
    object.insert(field.json.to_owned(), value);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn renamed(method: Method, mut params: Value) -> Value {
        to_json_names(method, &mut params).expect("renames");
        params
    }

    #[test]
    fn original_names_become_json_names_through_nested_messages() {
        let params = json!({
            "tenant": "t",
            "message": {
                "message_id": "m1", "context_id": "c1", "task_id": "t1", "role": "ROLE_USER",
                "reference_task_ids": ["t0"],
                "parts": [{"text": "hi", "media_type": "text/plain"}, {"data": {"snake_key": 1}}],
                "metadata": {"user_key": {"nested_key": true}}
            },
            "configuration": {
                "history_length": 2, "return_immediately": true,
                "accepted_output_modes": ["text/plain"],
                "task_push_notification_config": {"url": "https://h.example/", "task_id": "t1",
                    "authentication": {"scheme": "Bearer"}}
            },
            "metadata": {"free_form": 1},
            "unknown_field": {"kept_as_is": 1}
        });
        assert_eq!(
            renamed(Method::SendMessage, params),
            json!({
                "tenant": "t",
                "message": {
                    "messageId": "m1", "contextId": "c1", "taskId": "t1", "role": "ROLE_USER",
                    "referenceTaskIds": ["t0"],
                    "parts": [{"text": "hi", "mediaType": "text/plain"}, {"data": {"snake_key": 1}}],
                    "metadata": {"user_key": {"nested_key": true}}
                },
                "configuration": {
                    "historyLength": 2, "returnImmediately": true,
                    "acceptedOutputModes": ["text/plain"],
                    "taskPushNotificationConfig": {"url": "https://h.example/", "taskId": "t1",
                        "authentication": {"scheme": "Bearer"}}
                },
                "metadata": {"free_form": 1},
                "unknown_field": {"kept_as_is": 1}
            })
        );
    }

    #[test]
    fn every_method_renames_its_own_fields() {
        let cases = [
            (
                Method::GetTask,
                json!({"id": "t", "history_length": 0}),
                json!({"id": "t", "historyLength": 0}),
            ),
            (
                Method::ListTasks,
                json!({"context_id": "c", "page_size": 5, "page_token": "p", "include_artifacts": true}),
                json!({"contextId": "c", "pageSize": 5, "pageToken": "p", "includeArtifacts": true}),
            ),
            (
                Method::CreateTaskPushNotificationConfig,
                json!({"task_id": "t", "url": "u"}),
                json!({"taskId": "t", "url": "u"}),
            ),
            (
                Method::GetTaskPushNotificationConfig,
                json!({"task_id": "t", "id": "c"}),
                json!({"taskId": "t", "id": "c"}),
            ),
            (
                Method::ListTaskPushNotificationConfigs,
                json!({"task_id": "t", "page_size": 1}),
                json!({"taskId": "t", "pageSize": 1}),
            ),
            (
                Method::CancelTask,
                json!({"id": "t", "metadata": {"a_b": 1}}),
                json!({"id": "t", "metadata": {"a_b": 1}}),
            ),
        ];
        for (method, given, expected) in cases {
            assert_eq!(renamed(method, given), expected, "{method:?}");
        }
    }

    #[test]
    fn a_field_given_in_both_spellings_is_invalid() {
        let mut params = json!({"message": {"messageId": "a", "message_id": "b", "parts": []}});
        let error = to_json_names(Method::SendMessage, &mut params).expect_err("twice");
        assert!(
            matches!(&error, GatewayError::InvalidParams { detail } if detail.contains("message.message_id")),
            "{error}"
        );
    }

    #[test]
    fn query_names_map_to_json_names() {
        assert_eq!(query_name(Method::ListTasks, "page_size"), Some("pageSize"));
        assert_eq!(
            query_name(Method::GetTask, "history_length"),
            Some("historyLength")
        );
        assert_eq!(query_name(Method::ListTasks, "pageSize"), None);
        assert_eq!(query_name(Method::ListTasks, "tenant"), None);
    }
}
