//! Decoding tests: JSON-RPC shapes and errors, every HTTP+JSON route with and
//! without a tenant, percent-encoded colons and bad encodings.

use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod};
use convergio_schemas::a2a::{Method, ProtocolVersion};
use serde_json::{json, Value};

use super::*;

/// (HTTP method, path, query, body, expected method, expected params).
type RouteCase = (
    HttpMethod,
    &'static str,
    Option<&'static str>,
    &'static str,
    Method,
    Value,
);
/// (HTTP method, path, body, expected error).
type RefusalCase = (
    HttpMethod,
    &'static str,
    &'static str,
    fn(&GatewayError) -> bool,
);

fn segments(path: &str) -> Vec<String> {
    decode_segments(path).expect("valid path")
}

#[test]
fn every_rest_route_decodes_with_and_without_tenant() {
    let cases: Vec<RouteCase> = vec![
        (
            HttpMethod::POST,
            "message:send",
            None,
            r#"{"message":{"messageId":"m","parts":[]}}"#,
            Method::SendMessage,
            json!({"message":{"messageId":"m","parts":[]}}),
        ),
        (
            HttpMethod::POST,
            "message%3Astream",
            None,
            r#"{"message":{"messageId":"m","parts":[]}}"#,
            Method::SendStreamingMessage,
            json!({"message":{"messageId":"m","parts":[]}}),
        ),
        (
            HttpMethod::GET,
            "tasks/t1",
            Some("historyLength=2"),
            "",
            Method::GetTask,
            json!({"id":"t1","historyLength":2}),
        ),
        (
            HttpMethod::GET,
            "tasks",
            Some("contextId=c&pageSize=5&includeArtifacts=true&status=TASK_STATE_WORKING"),
            "",
            Method::ListTasks,
            json!({"contextId":"c","pageSize":5,"includeArtifacts":true,"status":"TASK_STATE_WORKING"}),
        ),
        (
            HttpMethod::POST,
            "tasks/t1:cancel",
            None,
            "",
            Method::CancelTask,
            json!({"id":"t1"}),
        ),
        (
            HttpMethod::POST,
            "tasks/t1%3Acancel",
            None,
            r#"{"metadata":{"a":1}}"#,
            Method::CancelTask,
            json!({"metadata":{"a":1},"id":"t1"}),
        ),
        (
            HttpMethod::GET,
            "tasks/t1:subscribe",
            None,
            "",
            Method::SubscribeToTask,
            json!({"id":"t1"}),
        ),
        (
            HttpMethod::POST,
            "tasks/t1:subscribe",
            None,
            "",
            Method::SubscribeToTask,
            json!({"id":"t1"}),
        ),
        (
            HttpMethod::POST,
            "tasks/t1/pushNotificationConfigs",
            None,
            r#"{"url":"https://h"}"#,
            Method::CreateTaskPushNotificationConfig,
            json!({"url":"https://h","taskId":"t1"}),
        ),
        (
            HttpMethod::GET,
            "tasks/t1/pushNotificationConfigs",
            Some("pageSize=3"),
            "",
            Method::ListTaskPushNotificationConfigs,
            json!({"pageSize":3,"taskId":"t1"}),
        ),
        (
            HttpMethod::GET,
            "tasks/t1/pushNotificationConfigs/p1",
            None,
            "",
            Method::GetTaskPushNotificationConfig,
            json!({"taskId":"t1","id":"p1"}),
        ),
        (
            HttpMethod::DELETE,
            "tasks/t1/pushNotificationConfigs/p1",
            None,
            "",
            Method::DeleteTaskPushNotificationConfig,
            json!({"taskId":"t1","id":"p1"}),
        ),
        (
            HttpMethod::GET,
            "extendedAgentCard",
            None,
            "",
            Method::GetExtendedAgentCard,
            json!({}),
        ),
    ];
    for (http_method, path, query, body, method, params) in cases {
        let call = parse_rest(
            &http_method,
            &segments(path),
            query,
            body.as_bytes(),
            ProtocolVersion::V1_0,
        )
        .unwrap_or_else(|error| panic!("{http_method} {path}: {error}"));
        assert_eq!(call.method, method, "{path}");
        assert_eq!(call.params(), &params, "{path}");
        let tenanted = format!("acme/{path}");
        let call = parse_rest(
            &http_method,
            &segments(&tenanted),
            query,
            body.as_bytes(),
            ProtocolVersion::V1_0,
        )
        .unwrap_or_else(|error| panic!("{http_method} {tenanted}: {error}"));
        let mut expected = params.clone();
        expected["tenant"] = json!("acme");
        assert_eq!(call.params(), &expected, "{tenanted}");
    }
}

#[test]
fn rest_refusals_are_typed() {
    let cases: Vec<RefusalCase> = vec![
        (HttpMethod::DELETE, "tasks/t1", "", |e| {
            matches!(e, GatewayError::RouteNotFound { .. })
        }),
        (HttpMethod::GET, "nothing/here/at/all", "", |e| {
            matches!(e, GatewayError::RouteNotFound { .. })
        }),
        (HttpMethod::POST, "message:send", "{not json", |e| {
            matches!(e, GatewayError::MalformedJson { .. })
        }),
        (HttpMethod::POST, "message:send", "[1]", |e| {
            matches!(e, GatewayError::InvalidParams { .. })
        }),
        (HttpMethod::POST, "message:send", "{}", |e| {
            matches!(e, GatewayError::InvalidParams { .. })
        }),
    ];
    for (http_method, path, body, expected) in cases {
        let error = parse_rest(
            &http_method,
            &segments(path),
            None,
            body.as_bytes(),
            ProtocolVersion::V1_0,
        )
        .expect_err(path);
        assert!(expected(&error), "{path}: {error}");
    }
    let error = parse_rest(
        &HttpMethod::GET,
        &segments("tasks"),
        Some("pageSize=x"),
        b"",
        ProtocolVersion::V1_0,
    )
    .expect_err("bad integer");
    assert!(matches!(error, GatewayError::InvalidParams { .. }));
    let error = parse_rest(
        &HttpMethod::GET,
        &segments("tasks/t"),
        None,
        b"",
        ProtocolVersion::V0_3,
    )
    .expect_err("0.3 on 1.0 route");
    assert!(matches!(error, GatewayError::VersionNotSupported { .. }));
}

#[test]
fn bad_percent_encoding_is_a_bad_path() {
    for raw in ["tasks/%ZZ", "tasks/%4", "tasks/%C3%28"] {
        assert!(
            matches!(decode_segments(raw), Err(GatewayError::BadPath { .. })),
            "{raw}"
        );
    }
}

#[test]
fn jsonrpc_shapes_are_checked_in_order() {
    let v1 = ProtocolVersion::V1_0;
    let cases: Vec<(&str, i64, Value)> = vec![
        ("{bad", -32700, Value::Null),
        ("[]", -32600, Value::Null),
        ("7", -32600, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"GetTask"}"#,
            -32600,
            Value::Null,
        ),
        (
            r#"{"id":3,"method":"GetTask","params":{"id":"t"}}"#,
            -32600,
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"a","method":5}"#,
            -32600,
            json!("a"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"Nope"}"#,
            -32601,
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"message/send","params":{}}"#,
            -32601,
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"GetTask","params":[1]}"#,
            -32602,
            json!(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"GetTask","params":{}}"#,
            -32602,
            json!(6),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"parts":[]}}}"#,
            -32602,
            json!(7),
        ),
    ];
    for (body, code, id) in cases {
        let (error, echoed) =
            *parse_jsonrpc(&Bytes::copy_from_slice(body.as_bytes()), v1).expect_err(body);
        assert_eq!(error.jsonrpc_code(), code, "{body}: {error}");
        assert_eq!(echoed, id, "{body}");
    }
}

#[test]
fn jsonrpc_dialects_follow_the_version() {
    let v03 = r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m","role":"user","parts":[{"kind":"text","text":"hi"}]}}}"#;
    let call = parse_jsonrpc(
        &Bytes::copy_from_slice(v03.as_bytes()),
        ProtocolVersion::V0_3,
    )
    .expect("0.3 call");
    assert_eq!(call.method, Method::SendMessage);
    assert_eq!(call.params()["message"]["parts"][0], json!({"text": "hi"}));
    assert_eq!(call.params()["message"]["role"], json!("ROLE_USER"));

    let v1_without_header = r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t"}}"#;
    let (error, _) = *parse_jsonrpc(
        &Bytes::copy_from_slice(v1_without_header.as_bytes()),
        ProtocolVersion::V0_3,
    )
    .expect_err("needs 1.0");
    assert_eq!(error.jsonrpc_code(), -32009);
}

#[test]
fn version_comes_from_header_or_query() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        client_version(&headers, None).expect("none"),
        ProtocolVersion::V0_3
    );
    assert_eq!(
        client_version(&headers, Some("A2A-Version=1.0")).expect("query"),
        ProtocolVersion::V1_0
    );
    headers.insert("A2A-Version", HeaderValue::from_static("1.0"));
    assert_eq!(
        client_version(&headers, None).expect("header"),
        ProtocolVersion::V1_0
    );
    headers.insert("A2A-Version", HeaderValue::from_static("0.5"));
    assert!(matches!(
        client_version(&headers, None),
        Err(GatewayError::VersionNotSupported { .. })
    ));
}

#[test]
fn follow_ups_name_their_task() {
    assert_eq!(task_id_of(Method::GetTask, &json!({"id": "t"})), Some("t"));
    assert_eq!(
        task_id_of(
            Method::GetTaskPushNotificationConfig,
            &json!({"taskId": "t", "id": "p"})
        ),
        Some("t")
    );
    assert_eq!(
        task_id_of(Method::SendMessage, &json!({"message": {"taskId": "t"}})),
        Some("t")
    );
    assert_eq!(
        task_id_of(Method::SendMessage, &json!({"message": {}})),
        None
    );
    assert_eq!(task_id_of(Method::ListTasks, &json!({})), None);
}

#[test]
fn messages_name_their_context_and_follow_ups_none() {
    let send = json!({"message": {"taskId": "t1", "contextId": "c1"}});
    assert_eq!(task_id_of(Method::SendMessage, &send), Some("t1"));
    assert_eq!(context_id_of(Method::SendMessage, &send), Some("c1"));
    let get = json!({"id": "t2"});
    assert_eq!(task_id_of(Method::GetTask, &get), Some("t2"));
    assert_eq!(context_id_of(Method::GetTask, &get), None);
}

/// Issue #25: the client's bytes of 1.0 params are kept while they say what
/// the params hold, and dropped by any change.
#[test]
fn jsonrpc_params_keep_the_clients_bytes_until_changed() {
    let v1 = ProtocolVersion::V1_0;
    let params =
        r#"{ "message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"caf\u00e9"}]} }"#;
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{params}}}"#);
    let mut call = parse_jsonrpc(&Bytes::copy_from_slice(body.as_bytes()), v1).expect("call");
    assert_eq!(call.params()["message"]["parts"][0]["text"], json!("café"));
    let (_, verbatim) = call.clone().take_params();
    assert_eq!(verbatim.as_deref(), Some(params.as_bytes()));
    call.params_mut()["metadata"] = json!({"changed": true});
    assert_eq!(call.take_params().1, None);

    // Renamed (a proto field name) or translated (0.3): encoded again.
    let snake = r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"message_id":"m","role":"ROLE_USER","parts":[]}}}"#;
    let mut call = parse_jsonrpc(&Bytes::copy_from_slice(snake.as_bytes()), v1).expect("call");
    assert_eq!(call.params()["message"]["messageId"], json!("m"));
    assert_eq!(call.take_params().1, None);
    let v03 = r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m","role":"user","parts":[]}}}"#;
    let mut call = parse_jsonrpc(
        &Bytes::copy_from_slice(v03.as_bytes()),
        ProtocolVersion::V0_3,
    )
    .expect("call");
    assert_eq!(call.take_params().1, None);
}

/// A key given twice is refused, at any depth: the gateway and the agent
/// could read different copies. A request member twice is not a request
/// (-32600, id unknown); a key twice in params is invalid params (-32602,
/// id echoed).
#[test]
fn jsonrpc_keys_given_twice_are_refused() {
    let v1 = ProtocolVersion::V1_0;
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","method":"CancelTask","params":{"id":"t"}}"#,
            -32600,
            "duplicate field",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":"t","id":"u"}}"#,
            -32602,
            "twice",
            json!(2),
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"a","text":"b"}]}}}"#,
            -32602,
            "twice",
            json!(3),
        ),
    ];
    for (body, code, says, id) in cases {
        let (error, echoed) =
            *parse_jsonrpc(&Bytes::copy_from_slice(body.as_bytes()), v1).expect_err(body);
        assert_eq!(error.jsonrpc_code(), code, "{body}: {error}");
        assert!(error.to_string().contains(says), "{body}: {error}");
        assert_eq!(echoed, id, "{body}");
    }
    assert_eq!(
        strict_value(r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#).expect("json"),
        json!({"a": [1, -2, 3.5, "x", null, true, {"b": {}}]})
    );
}
