//! Per-request translation between the A2A 0.3 and 1.0 dialects, on JSON
//! values so unknown fields survive. Inside the gateway every call is 1.0;
//! a 0.3 client's request is lifted with [`request_to_v1`] and its answers
//! lowered with [`result_to_v03`] / [`event_to_v03`]; a 0.3 upstream gets
//! [`request_to_v03`] and its answers are lifted with [`result_to_v1`] /
//! [`event_to_v1`]. Mapping (shared/a2a/NOTES.md §13): `kind` parts ↔ oneof
//! parts, `file{bytes|uri,name,mimeType}` ↔ `raw|url,filename,mediaType`,
//! lowercase states ↔ `TASK_STATE_*`, `user|agent` ↔ `ROLE_*`, `blocking` ↔
//! `!returnImmediately`, `final` added from the state, `kind` results ↔
//! `{task}|{message}|{statusUpdate}|{artifactUpdate}` wrappers, and the push
//! config shapes.

use convergio_schemas::a2a::{Method, TaskState};
use serde_json::{json, Map, Value};

use crate::GatewayError;

// --- enums ---

fn state_to_v1(state: &Value) -> Value {
    match state.as_str().and_then(TaskState::parse) {
        Some(state) => Value::from(state.v1_name()),
        None => state.clone(),
    }
}

fn state_to_v03(state: &Value) -> Value {
    match state.as_str().and_then(TaskState::parse) {
        Some(state) => Value::from(state.v03_name()),
        None => state.clone(),
    }
}

fn role_to_v1(role: &Value) -> Value {
    match role.as_str() {
        Some("user") => Value::from("ROLE_USER"),
        Some("agent") => Value::from("ROLE_AGENT"),
        _ => role.clone(),
    }
}

fn role_to_v03(role: &Value) -> Value {
    match role.as_str() {
        Some("ROLE_USER") => Value::from("user"),
        Some("ROLE_AGENT") => Value::from("agent"),
        _ => role.clone(),
    }
}

// --- parts, messages, tasks ---

fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = map.remove(from) {
        map.insert(to.to_owned(), value);
    }
}

fn map_array(value: &mut Value, key: &str, function: fn(Value) -> Value) {
    if let Some(Value::Array(items)) = value.get_mut(key) {
        for item in items.iter_mut() {
            *item = function(item.take());
        }
    }
}

/// A 0.3 part (`kind`) to a 1.0 part (oneof member).
pub fn part_to_v1(part: Value) -> Value {
    let Value::Object(mut map) = part else {
        return part;
    };
    // Text and data parts already carry their member name; file parts
    // flatten `file{bytes|uri,name,mimeType}`.
    if map.remove("kind").as_ref().and_then(Value::as_str) == Some("file") {
        if let Some(Value::Object(mut file)) = map.remove("file") {
            rename(&mut file, "bytes", "raw");
            rename(&mut file, "uri", "url");
            rename(&mut file, "name", "filename");
            rename(&mut file, "mimeType", "mediaType");
            map.extend(file);
        }
    }
    Value::Object(map)
}

/// A 1.0 part to a 0.3 part.
pub fn part_to_v03(part: Value) -> Value {
    let Value::Object(mut map) = part else {
        return part;
    };
    let mut out = Map::new();
    if map.contains_key("text") {
        out.insert("kind".into(), Value::from("text"));
    } else if map.contains_key("data") {
        out.insert("kind".into(), Value::from("data"));
    } else if map.contains_key("raw") || map.contains_key("url") {
        out.insert("kind".into(), Value::from("file"));
        let mut file = Map::new();
        for (from, to) in [
            ("raw", "bytes"),
            ("url", "uri"),
            ("filename", "name"),
            ("mediaType", "mimeType"),
        ] {
            if let Some(value) = map.remove(from) {
                file.insert(to.into(), value);
            }
        }
        out.insert("file".into(), Value::Object(file));
    }
    out.extend(map);
    Value::Object(out)
}

/// A 0.3 message to 1.0.
pub fn message_to_v1(message: Value) -> Value {
    let Value::Object(mut map) = message else {
        return message;
    };
    map.remove("kind");
    if let Some(role) = map.get_mut("role") {
        *role = role_to_v1(role);
    }
    let mut message = Value::Object(map);
    map_array(&mut message, "parts", part_to_v1);
    message
}

/// A 1.0 message to 0.3.
pub fn message_to_v03(message: Value) -> Value {
    let Value::Object(map) = message else {
        return message;
    };
    let mut out = Map::new();
    out.insert("kind".into(), Value::from("message"));
    out.extend(map);
    if let Some(role) = out.get_mut("role") {
        *role = role_to_v03(role);
    }
    let mut message = Value::Object(out);
    map_array(&mut message, "parts", part_to_v03);
    message
}

fn status_to_v1(mut status: Value) -> Value {
    if let Some(state) = status.get_mut("state") {
        *state = state_to_v1(state);
    }
    if let Some(message) = status.get_mut("message") {
        *message = message_to_v1(message.take());
    }
    status
}

fn status_to_v03(mut status: Value) -> Value {
    if let Some(state) = status.get_mut("state") {
        *state = state_to_v03(state);
    }
    if let Some(message) = status.get_mut("message") {
        *message = message_to_v03(message.take());
    }
    status
}

fn artifact_to_v1(mut artifact: Value) -> Value {
    map_array(&mut artifact, "parts", part_to_v1);
    artifact
}

fn artifact_to_v03(mut artifact: Value) -> Value {
    map_array(&mut artifact, "parts", part_to_v03);
    artifact
}

/// A 0.3 task to 1.0.
pub fn task_to_v1(task: Value) -> Value {
    let Value::Object(mut map) = task else {
        return task;
    };
    map.remove("kind");
    let mut task = Value::Object(map);
    if let Some(status) = task.get_mut("status") {
        *status = status_to_v1(status.take());
    }
    map_array(&mut task, "history", message_to_v1);
    map_array(&mut task, "artifacts", artifact_to_v1);
    task
}

/// A 1.0 task to 0.3.
pub fn task_to_v03(task: Value) -> Value {
    let Value::Object(map) = task else {
        return task;
    };
    let mut out = Map::new();
    out.insert("kind".into(), Value::from("task"));
    out.extend(map);
    let mut task = Value::Object(out);
    if let Some(status) = task.get_mut("status") {
        *status = status_to_v03(status.take());
    }
    map_array(&mut task, "history", message_to_v03);
    map_array(&mut task, "artifacts", artifact_to_v03);
    task
}

// --- stream events and send results ---

/// A 1.0 `StreamResponse` (or `SendMessageResponse`) to its 0.3 `kind` form.
pub fn event_to_v03(event: Value) -> Value {
    let Value::Object(mut map) = event else {
        return event;
    };
    if let Some(task) = map.remove("task") {
        return task_to_v03(task);
    }
    if let Some(message) = map.remove("message") {
        return message_to_v03(message);
    }
    if let Some(Value::Object(update)) = map.remove("statusUpdate") {
        let mut out = Map::new();
        out.insert("kind".into(), Value::from("status-update"));
        out.extend(update);
        let state = out
            .get("status")
            .and_then(|status| status.get("state"))
            .and_then(Value::as_str)
            .and_then(TaskState::parse);
        // 0.3 marks the last event; 1.0 closes the stream instead.
        let last = state.is_some_and(|state| state.is_terminal() || state.is_interrupted());
        out.insert("final".into(), Value::from(last));
        let mut update = Value::Object(out);
        if let Some(status) = update.get_mut("status") {
            *status = status_to_v03(status.take());
        }
        return update;
    }
    if let Some(Value::Object(update)) = map.remove("artifactUpdate") {
        let mut out = Map::new();
        out.insert("kind".into(), Value::from("artifact-update"));
        out.extend(update);
        let mut update = Value::Object(out);
        if let Some(artifact) = update.get_mut("artifact") {
            *artifact = artifact_to_v03(artifact.take());
        }
        return update;
    }
    Value::Object(map)
}

/// A 0.3 `kind` result or event to the 1.0 wrapper form.
pub fn event_to_v1(event: Value) -> Value {
    let kind = event.get("kind").and_then(Value::as_str).map(str::to_owned);
    match kind.as_deref() {
        Some("task") => json!({ "task": task_to_v1(event) }),
        Some("message") => json!({ "message": message_to_v1(event) }),
        Some("status-update") => {
            let Value::Object(mut map) = event else {
                return Value::Null;
            };
            map.remove("kind");
            map.remove("final");
            let mut update = Value::Object(map);
            if let Some(status) = update.get_mut("status") {
                *status = status_to_v1(status.take());
            }
            json!({ "statusUpdate": update })
        }
        Some("artifact-update") => {
            let Value::Object(mut map) = event else {
                return Value::Null;
            };
            map.remove("kind");
            let mut update = Value::Object(map);
            if let Some(artifact) = update.get_mut("artifact") {
                *artifact = artifact_to_v1(artifact.take());
            }
            json!({ "artifactUpdate": update })
        }
        _ => event,
    }
}

// --- push notification configs ---

fn push_config_to_v1(config: Value) -> Value {
    // 0.3 {id,url,token,authentication{schemes[],credentials}}.
    let Value::Object(mut map) = config else {
        return config;
    };
    if let Some(Value::Object(authentication)) = map.get_mut("authentication") {
        if let Some(Value::Array(schemes)) = authentication.remove("schemes") {
            if let Some(first) = schemes.into_iter().next() {
                authentication.insert("scheme".into(), first);
            }
        }
    }
    Value::Object(map)
}

fn push_config_to_v03(config: Value) -> Value {
    let Value::Object(mut map) = config else {
        return config;
    };
    if let Some(Value::Object(authentication)) = map.get_mut("authentication") {
        if let Some(scheme) = authentication.remove("scheme") {
            authentication.insert("schemes".into(), Value::Array(vec![scheme]));
        }
    }
    Value::Object(map)
}

/// 1.0 `TaskPushNotificationConfig` (flat) to 0.3 (nested).
fn task_push_config_to_v03(config: Value) -> Value {
    let Value::Object(mut map) = config else {
        return config;
    };
    let task_id = map.remove("taskId").unwrap_or(Value::Null);
    map.remove("tenant");
    json!({ "taskId": task_id, "pushNotificationConfig": push_config_to_v03(Value::Object(map)) })
}

/// 0.3 `TaskPushNotificationConfig` (nested) to 1.0 (flat).
fn task_push_config_to_v1(config: Value) -> Value {
    let Value::Object(mut map) = config else {
        return config;
    };
    let mut out = Map::new();
    if let Some(task_id) = map.remove("taskId") {
        out.insert("taskId".into(), task_id);
    }
    let nested = map.remove("pushNotificationConfig").unwrap_or(Value::Null);
    if let Value::Object(inner) = push_config_to_v1(nested) {
        out.extend(inner);
    }
    out.extend(map);
    Value::Object(out)
}

// --- requests ---

fn object(params: Value) -> Map<String, Value> {
    match params {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Lifts a 0.3 request's params to the 1.0 request of `method`.
pub fn request_to_v1(method: Method, params: Value) -> Result<Value, GatewayError> {
    let mut map = object(params);
    match method {
        Method::SendMessage | Method::SendStreamingMessage => {
            if let Some(message) = map.get_mut("message") {
                *message = message_to_v1(message.take());
            }
            if let Some(Value::Object(configuration)) = map.get_mut("configuration") {
                if let Some(blocking) = configuration.remove("blocking") {
                    if let Some(blocking) = blocking.as_bool() {
                        configuration.insert("returnImmediately".into(), Value::from(!blocking));
                    }
                }
                if let Some(push) = configuration.remove("pushNotificationConfig") {
                    configuration
                        .insert("taskPushNotificationConfig".into(), push_config_to_v1(push));
                }
            }
        }
        Method::CreateTaskPushNotificationConfig => {
            return Ok(task_push_config_to_v1(Value::Object(map)));
        }
        Method::GetTaskPushNotificationConfig
        | Method::DeleteTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs => {
            // 0.3 names the task `id` and the config `pushNotificationConfigId`.
            let task_id = map.remove("id");
            let config_id = map.remove("pushNotificationConfigId");
            if let Some(task_id) = task_id {
                map.insert("taskId".into(), task_id);
            }
            if let Some(config_id) = config_id {
                map.insert("id".into(), config_id);
            }
        }
        _ => {}
    }
    Ok(Value::Object(map))
}

/// Lowers a 1.0 request's params for a 0.3 upstream.
pub fn request_to_v03(method: Method, params: Value) -> Result<Value, GatewayError> {
    let mut map = object(params);
    // 0.3 has no tenant field.
    map.remove("tenant");
    match method {
        Method::SendMessage | Method::SendStreamingMessage => {
            if let Some(message) = map.get_mut("message") {
                *message = message_to_v03(message.take());
            }
            if let Some(Value::Object(configuration)) = map.get_mut("configuration") {
                if let Some(immediately) = configuration.remove("returnImmediately") {
                    if let Some(immediately) = immediately.as_bool() {
                        configuration.insert("blocking".into(), Value::from(!immediately));
                    }
                }
                if let Some(push) = configuration.remove("taskPushNotificationConfig") {
                    configuration.insert("pushNotificationConfig".into(), push_config_to_v03(push));
                }
            }
        }
        Method::CreateTaskPushNotificationConfig => {
            return Ok(task_push_config_to_v03(Value::Object(map)));
        }
        Method::GetTaskPushNotificationConfig
        | Method::DeleteTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs => {
            let config_id = map.remove("id");
            let task_id = map.remove("taskId");
            if let Some(task_id) = task_id {
                map.insert("id".into(), task_id);
            }
            if let Some(config_id) = config_id {
                map.insert("pushNotificationConfigId".into(), config_id);
            }
        }
        Method::ListTasks => {
            return Err(GatewayError::UnsupportedOperation {
                detail: "ListTasks does not exist in A2A 0.3 and the agent speaks only 0.3".into(),
            })
        }
        _ => {}
    }
    Ok(Value::Object(map))
}

// --- results ---

/// Lowers a 1.0 result of `method` for a 0.3 client.
pub fn result_to_v03(method: Method, result: Value) -> Value {
    match method {
        Method::SendMessage | Method::SendStreamingMessage | Method::SubscribeToTask => {
            event_to_v03(result)
        }
        Method::GetTask | Method::CancelTask => task_to_v03(result),
        Method::CreateTaskPushNotificationConfig | Method::GetTaskPushNotificationConfig => {
            task_push_config_to_v03(result)
        }
        Method::ListTaskPushNotificationConfigs => {
            let configs = match result {
                Value::Object(mut map) => map.remove("configs").unwrap_or(Value::Array(vec![])),
                other => other,
            };
            match configs {
                Value::Array(items) => {
                    Value::Array(items.into_iter().map(task_push_config_to_v03).collect())
                }
                other => other,
            }
        }
        Method::DeleteTaskPushNotificationConfig => Value::Null,
        Method::ListTasks | Method::GetExtendedAgentCard => result,
    }
}

/// Lifts a 0.3 upstream's result of `method` to 1.0.
pub fn result_to_v1(method: Method, result: Value) -> Value {
    match method {
        Method::SendMessage | Method::SendStreamingMessage | Method::SubscribeToTask => {
            event_to_v1(result)
        }
        Method::GetTask | Method::CancelTask => task_to_v1(result),
        Method::CreateTaskPushNotificationConfig | Method::GetTaskPushNotificationConfig => {
            task_push_config_to_v1(result)
        }
        Method::ListTaskPushNotificationConfigs => match result {
            Value::Array(items) => json!({
                "configs": items.into_iter().map(task_push_config_to_v1).collect::<Vec<_>>(),
                "nextPageToken": "",
            }),
            other => other,
        },
        Method::DeleteTaskPushNotificationConfig => json!({}),
        Method::ListTasks | Method::GetExtendedAgentCard => result,
    }
}

#[cfg(test)]
mod tests;
