//! Table-driven tests of every 0.3 ↔ 1.0 mapping, checked in both directions
//! where the mapping is reversible.

use convergio_schemas::a2a::{Method, TaskState};
use serde_json::{json, Value};

use super::*;

/// Checks `to_v1(old) == new` and `to_v03(new) == old`.
fn check(old: Value, new: Value, to_v1: fn(Value) -> Value, to_v03: fn(Value) -> Value) {
    assert_eq!(to_v1(old.clone()), new, "0.3 -> 1.0 of {old}");
    assert_eq!(to_v03(new.clone()), old, "1.0 -> 0.3 of {new}");
}

#[test]
fn parts_map_both_ways() {
    let cases = [
        (json!({"kind": "text", "text": "hi"}), json!({"text": "hi"})),
        (
            json!({"kind": "text", "text": "hi", "metadata": {"x": 1}}),
            json!({"text": "hi", "metadata": {"x": 1}}),
        ),
        (
            json!({"kind": "data", "data": {"a": [1]}}),
            json!({"data": {"a": [1]}}),
        ),
        (
            json!({"kind": "file", "file": {"bytes": "aGk=", "name": "a.txt", "mimeType": "text/plain"}}),
            json!({"raw": "aGk=", "filename": "a.txt", "mediaType": "text/plain"}),
        ),
        (
            json!({"kind": "file", "file": {"uri": "https://x/y"}}),
            json!({"url": "https://x/y"}),
        ),
    ];
    for (old, new) in cases {
        check(old, new, part_to_v1, part_to_v03);
    }
}

#[test]
fn every_task_state_maps_both_ways() {
    for state in TaskState::ALL {
        let old = json!({"kind": "task", "id": "t", "contextId": "c", "status": {"state": state.v03_name()}});
        let new = json!({"id": "t", "contextId": "c", "status": {"state": state.v1_name()}});
        check(old, new, task_to_v1, task_to_v03);
    }
}

#[test]
fn messages_map_roles_and_parts_and_keep_unknown_fields() {
    let cases = [
        (
            json!({"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "a"}], "futureField": 7}),
            json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a"}], "futureField": 7}),
        ),
        (
            json!({"kind": "message", "messageId": "m", "role": "agent", "parts": [], "taskId": "t", "contextId": "c"}),
            json!({"messageId": "m", "role": "ROLE_AGENT", "parts": [], "taskId": "t", "contextId": "c"}),
        ),
    ];
    for (old, new) in cases {
        check(old, new, message_to_v1, message_to_v03);
    }
}

#[test]
fn tasks_map_history_artifacts_and_status_message() {
    let old = json!({
        "kind": "task", "id": "t", "contextId": "c",
        "status": {"state": "working", "message": {"kind": "message", "messageId": "s", "role": "agent", "parts": [{"kind": "text", "text": "w"}]}, "timestamp": "2026-01-01T00:00:00Z"},
        "history": [{"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "q"}]}],
        "artifacts": [{"artifactId": "a", "parts": [{"kind": "data", "data": {"n": 1}}]}]
    });
    let new = json!({
        "id": "t", "contextId": "c",
        "status": {"state": "TASK_STATE_WORKING", "message": {"messageId": "s", "role": "ROLE_AGENT", "parts": [{"text": "w"}]}, "timestamp": "2026-01-01T00:00:00Z"},
        "history": [{"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "q"}]}],
        "artifacts": [{"artifactId": "a", "parts": [{"data": {"n": 1}}]}]
    });
    check(old, new, task_to_v1, task_to_v03);
}

#[test]
fn stream_events_map_kinds_to_wrappers_and_final_from_state() {
    let cases = [
        (
            json!({"kind": "task", "id": "t", "status": {"state": "submitted"}}),
            json!({"task": {"id": "t", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
        ),
        (
            json!({"kind": "message", "messageId": "m", "role": "agent", "parts": []}),
            json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": []}}),
        ),
        (
            json!({"kind": "status-update", "taskId": "t", "contextId": "c", "status": {"state": "working"}, "final": false}),
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}),
        ),
        (
            json!({"kind": "status-update", "taskId": "t", "contextId": "c", "status": {"state": "completed"}, "final": true}),
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}}),
        ),
        (
            json!({"kind": "status-update", "taskId": "t", "contextId": "c", "status": {"state": "input-required"}, "final": true}),
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED"}}}),
        ),
        (
            json!({"kind": "artifact-update", "taskId": "t", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "x"}]}, "lastChunk": true}),
            json!({"artifactUpdate": {"taskId": "t", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}, "lastChunk": true}}),
        ),
    ];
    for (old, new) in cases {
        check(old, new, event_to_v1, event_to_v03);
    }
}

#[test]
fn send_requests_map_blocking_and_push_config() {
    let old = json!({
        "message": {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "hi"}]},
        "configuration": {"blocking": true, "acceptedOutputModes": ["text/plain"],
            "pushNotificationConfig": {"url": "https://hook", "authentication": {"schemes": ["Bearer"], "credentials": "c"}}},
        "metadata": {"k": "v"}
    });
    let new = json!({
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"acceptedOutputModes": ["text/plain"], "returnImmediately": false,
            "taskPushNotificationConfig": {"url": "https://hook", "authentication": {"scheme": "Bearer", "credentials": "c"}}},
        "metadata": {"k": "v"}
    });
    for method in [Method::SendMessage, Method::SendStreamingMessage] {
        let lifted = request_to_v1(method, old.clone()).expect("lift");
        assert_eq!(lifted, new);
        let lowered = request_to_v03(method, new.clone()).expect("lower");
        assert_eq!(lowered["configuration"]["blocking"], json!(true));
        assert_eq!(lowered["message"], old["message"]);
        assert_eq!(
            lowered["configuration"]["pushNotificationConfig"],
            old["configuration"]["pushNotificationConfig"]
        );
    }
}

#[test]
fn task_requests_keep_their_shape() {
    for method in [Method::GetTask, Method::CancelTask, Method::SubscribeToTask] {
        let params = json!({"id": "t", "historyLength": 2});
        assert_eq!(request_to_v1(method, params.clone()).expect("lift"), params);
        assert_eq!(
            request_to_v03(method, params.clone()).expect("lower"),
            params
        );
    }
}

#[test]
fn push_config_requests_and_results_map_both_ways() {
    let cases = [
        (
            Method::GetTaskPushNotificationConfig,
            json!({"id": "t", "pushNotificationConfigId": "p"}),
            json!({"taskId": "t", "id": "p"}),
        ),
        (
            Method::DeleteTaskPushNotificationConfig,
            json!({"id": "t", "pushNotificationConfigId": "p"}),
            json!({"taskId": "t", "id": "p"}),
        ),
        (
            Method::ListTaskPushNotificationConfigs,
            json!({"id": "t"}),
            json!({"taskId": "t"}),
        ),
        (
            Method::CreateTaskPushNotificationConfig,
            json!({"taskId": "t", "pushNotificationConfig": {"id": "p", "url": "https://hook"}}),
            json!({"taskId": "t", "id": "p", "url": "https://hook"}),
        ),
    ];
    for (method, old, new) in cases {
        assert_eq!(
            request_to_v1(method, old.clone()).expect("lift"),
            new,
            "{method:?}"
        );
        assert_eq!(
            request_to_v03(method, new).expect("lower"),
            old,
            "{method:?}"
        );
    }
    let flat = json!({"taskId": "t", "id": "p", "url": "https://hook"});
    let nested =
        json!({"taskId": "t", "pushNotificationConfig": {"id": "p", "url": "https://hook"}});
    assert_eq!(
        result_to_v03(Method::GetTaskPushNotificationConfig, flat.clone()),
        nested
    );
    assert_eq!(
        result_to_v1(Method::GetTaskPushNotificationConfig, nested.clone()),
        flat
    );
    assert_eq!(
        result_to_v03(
            Method::ListTaskPushNotificationConfigs,
            json!({"configs": [flat.clone()], "nextPageToken": ""})
        ),
        json!([nested.clone()])
    );
    assert_eq!(
        result_to_v1(Method::ListTaskPushNotificationConfigs, json!([nested])),
        json!({"configs": [flat], "nextPageToken": ""})
    );
    assert_eq!(
        result_to_v03(Method::DeleteTaskPushNotificationConfig, json!({})),
        Value::Null
    );
}

#[test]
fn list_tasks_cannot_reach_a_0_3_agent() {
    let error = request_to_v03(Method::ListTasks, json!({})).expect_err("no 0.3 ListTasks");
    assert!(matches!(error, GatewayError::UnsupportedOperation { .. }));
}

#[test]
fn send_results_map_both_ways() {
    let old = json!({"kind": "task", "id": "t", "status": {"state": "completed"}});
    let new = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"}}});
    assert_eq!(result_to_v1(Method::SendMessage, old.clone()), new);
    assert_eq!(result_to_v03(Method::SendMessage, new), old);
    let old_task = json!({"kind": "task", "id": "t", "status": {"state": "canceled"}});
    let new_task = json!({"id": "t", "status": {"state": "TASK_STATE_CANCELED"}});
    assert_eq!(result_to_v1(Method::CancelTask, old_task.clone()), new_task);
    assert_eq!(result_to_v03(Method::CancelTask, new_task), old_task);
}
