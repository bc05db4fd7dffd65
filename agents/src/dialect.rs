//! The 0.3 JSON-RPC dialect, translated at the edge: 0.3 requests become 1.0
//! params before the service sees them, and 1.0 results become 0.3 objects
//! (`kind` discriminators, lowercase kebab states, `final` on status
//! updates) before they are written. The service itself only speaks 1.0.

use convergio_schemas::a2a::TaskState;
use serde_json::{json, Map, Value};

fn role_from_v03(role: &str) -> &str {
    match role {
        "user" => "ROLE_USER",
        "agent" => "ROLE_AGENT",
        other => other,
    }
}

fn role_to_v03(role: &str) -> &str {
    match role {
        "ROLE_USER" => "user",
        "ROLE_AGENT" => "agent",
        other => other,
    }
}

fn part_from_v03(part: &Value) -> Value {
    let Some(object) = part.as_object() else {
        return part.clone();
    };
    let mut out = Map::new();
    match object.get("kind").and_then(Value::as_str) {
        Some("file") => {
            let file = object.get("file").cloned().unwrap_or(Value::Null);
            if let Some(bytes) = file.get("bytes") {
                out.insert("raw".into(), bytes.clone());
            } else if let Some(uri) = file.get("uri") {
                out.insert("url".into(), uri.clone());
            }
            if let Some(name) = file.get("name") {
                out.insert("filename".into(), name.clone());
            }
            if let Some(mime) = file.get("mimeType") {
                out.insert("mediaType".into(), mime.clone());
            }
        }
        _ => {
            for (key, value) in object {
                if key != "kind" {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
    }
    if let Some(metadata) = object.get("metadata") {
        out.insert("metadata".into(), metadata.clone());
    }
    Value::Object(out)
}

fn part_to_v03(part: &Value) -> Value {
    let mut out = Map::new();
    if let Some(text) = part.get("text") {
        out.insert("kind".into(), json!("text"));
        out.insert("text".into(), text.clone());
    } else if let Some(data) = part.get("data") {
        out.insert("kind".into(), json!("data"));
        out.insert("data".into(), data.clone());
    } else {
        let mut file = Map::new();
        if let Some(raw) = part.get("raw") {
            file.insert("bytes".into(), raw.clone());
        }
        if let Some(url) = part.get("url") {
            file.insert("uri".into(), url.clone());
        }
        if let Some(name) = part.get("filename") {
            file.insert("name".into(), name.clone());
        }
        if let Some(media) = part.get("mediaType") {
            file.insert("mimeType".into(), media.clone());
        }
        out.insert("kind".into(), json!("file"));
        out.insert("file".into(), Value::Object(file));
    }
    if let Some(metadata) = part.get("metadata") {
        out.insert("metadata".into(), metadata.clone());
    }
    Value::Object(out)
}

fn map_parts(value: &mut Value, convert: fn(&Value) -> Value) {
    if let Some(Value::Array(parts)) = value.get_mut("parts") {
        for part in parts.iter_mut() {
            *part = convert(part);
        }
    }
}

/// A 0.3 Message as a 1.0 Message.
pub(crate) fn message_from_v03(message: &Value) -> Value {
    let mut out = message.clone();
    if let Some(object) = out.as_object_mut() {
        object.remove("kind");
        if let Some(role) = object.get("role").and_then(Value::as_str) {
            let role = role_from_v03(role).to_owned();
            object.insert("role".into(), json!(role));
        }
    }
    map_parts(&mut out, part_from_v03);
    out
}

/// A 1.0 Message as a 0.3 Message.
pub(crate) fn message_to_v03(message: &Value) -> Value {
    let mut out = message.clone();
    if let Some(object) = out.as_object_mut() {
        object.insert("kind".into(), json!("message"));
        if let Some(role) = object.get("role").and_then(Value::as_str) {
            let role = role_to_v03(role).to_owned();
            object.insert("role".into(), json!(role));
        }
    }
    map_parts(&mut out, part_to_v03);
    out
}

fn status_to_v03(status: &Value) -> Value {
    let mut out = status.clone();
    if let Some(state) = status
        .get("state")
        .and_then(Value::as_str)
        .and_then(TaskState::parse)
    {
        out["state"] = json!(state.v03_name());
    }
    if let Some(message) = status.get("message") {
        out["message"] = message_to_v03(message);
    }
    out
}

fn artifact_to_v03(artifact: &Value) -> Value {
    let mut out = artifact.clone();
    map_parts(&mut out, part_to_v03);
    out
}

/// A 1.0 Task as a 0.3 Task.
pub(crate) fn task_to_v03(task: &Value) -> Value {
    let mut out = task.clone();
    out["kind"] = json!("task");
    if let Some(status) = task.get("status") {
        out["status"] = status_to_v03(status);
    }
    if let Some(Value::Array(history)) = task.get("history") {
        out["history"] = Value::Array(history.iter().map(message_to_v03).collect());
    }
    if let Some(Value::Array(artifacts)) = task.get("artifacts") {
        out["artifacts"] = Value::Array(artifacts.iter().map(artifact_to_v03).collect());
    }
    out
}

/// A 1.0 `SendMessageResponse` or `StreamResponse` (a `task`, `message`,
/// `statusUpdate` or `artifactUpdate` wrapper) as the 0.3 result object.
pub(crate) fn result_to_v03(result: &Value) -> Value {
    if let Some(task) = result.get("task") {
        task_to_v03(task)
    } else if let Some(message) = result.get("message") {
        message_to_v03(message)
    } else if let Some(update) = result.get("statusUpdate") {
        let mut out = update.clone();
        out["kind"] = json!("status-update");
        let state = update
            .pointer("/status/state")
            .and_then(Value::as_str)
            .and_then(TaskState::parse);
        if let Some(status) = update.get("status") {
            out["status"] = status_to_v03(status);
        }
        out["final"] = json!(state.is_some_and(|s| s.is_terminal() || s.is_interrupted()));
        out
    } else if let Some(update) = result.get("artifactUpdate") {
        let mut out = update.clone();
        out["kind"] = json!("artifact-update");
        if let Some(artifact) = update.get("artifact") {
            out["artifact"] = artifact_to_v03(artifact);
        }
        out
    } else {
        result.clone()
    }
}

/// 0.3 `message/send` params as 1.0 `SendMessage` params: the message is
/// converted and `configuration.blocking` (default true) becomes
/// `returnImmediately`.
pub(crate) fn send_params_from_v03(params: &Value) -> Value {
    let mut out = params.clone();
    if let Some(message) = params.get("message") {
        out["message"] = message_from_v03(message);
    }
    if let Some(configuration) = params.get("configuration").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (key, value) in configuration {
            match key.as_str() {
                "blocking" => {
                    converted.insert("returnImmediately".into(), json!(value == &json!(false)));
                }
                "pushNotificationConfig" => {}
                _ => {
                    converted.insert(key.clone(), value.clone());
                }
            }
        }
        out["configuration"] = Value::Object(converted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_v03_message_with_every_part_kind() {
        let message = json!({
            "kind": "message", "messageId": "m1", "role": "user",
            "parts": [
                {"kind": "text", "text": "hi"},
                {"kind": "data", "data": {"a": 1}},
                {"kind": "file", "file": {"uri": "https://x/y", "name": "y", "mimeType": "text/plain"}}
            ]
        });
        let converted = message_from_v03(&message);
        assert_eq!(
            converted,
            json!({
                "messageId": "m1", "role": "ROLE_USER",
                "parts": [
                    {"text": "hi"},
                    {"data": {"a": 1}},
                    {"url": "https://x/y", "filename": "y", "mediaType": "text/plain"}
                ]
            })
        );
        assert_eq!(message_to_v03(&converted)["parts"], message["parts"]);
    }

    #[test]
    fn marks_terminal_and_interrupted_status_updates_final() {
        for (state, expected) in [
            ("TASK_STATE_WORKING", false),
            ("TASK_STATE_COMPLETED", true),
            ("TASK_STATE_INPUT_REQUIRED", true),
        ] {
            let event = json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": state}}});
            let converted = result_to_v03(&event);
            assert_eq!(converted["kind"], "status-update");
            assert_eq!(converted["final"], expected, "{state}");
        }
    }

    #[test]
    fn blocking_false_means_return_immediately() {
        let params = json!({"message": {"kind": "message", "messageId": "m", "role": "user", "parts": []},
            "configuration": {"blocking": false, "historyLength": 2}});
        let converted = send_params_from_v03(&params);
        assert_eq!(
            converted["configuration"],
            json!({"returnImmediately": true, "historyLength": 2})
        );
    }
}
