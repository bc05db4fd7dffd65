//! End-to-end tests of A2A routing over real loopback sockets: the gateway
//! in front of an in-process fake upstream (tests/support). Covers both
//! bindings, streaming relay, 0.3 ↔ 1.0 translation, cards, the envelope,
//! task isolation between principals, and every error the gateway produces.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use convergio_gateway::a2a::A2aConfig;
use convergio_gateway::layers::LimitsConfig;
use serde_json::{json, Value};
use support::*;

async fn gateway_with_fake(mode: FakeMode) -> (Gateway, FakeAgent) {
    let gateway = spawn_gateway().await;
    let fake = spawn_fake(mode).await;
    gateway.register("echo", fake.card());
    (gateway, fake)
}

fn error_code(body: &Value) -> i64 {
    body["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[tokio::test]
async fn jsonrpc_send_passes_through_and_keeps_unknown_fields() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let mut params = send_params("hello");
    params["clientExtra"] = json!({"x": 1});
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": "req-7", "method": "SendMessage", "params": params}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], json!("req-7"));
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], json!("TASK_STATE_COMPLETED"));
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        json!("echo: hello")
    );
    assert_eq!(
        task["upstreamOnly"],
        json!(7),
        "unknown upstream fields pass through"
    );

    let message = gateway
        .rpc("echo", "anonymous", "SendMessage", send_params("message"))
        .await;
    assert_eq!(
        message["result"]["message"]["extraUpstreamField"],
        json!({"kept": true})
    );
}

/// Issue #25: a 1.0 result nothing changes reaches a 1.0 client as the
/// agent's bytes (key order, spacing, number and escape spellings kept),
/// while the gateway still reads its ids: the task is the caller's alone.
#[tokio::test]
async fn a_result_nothing_changes_reaches_the_client_as_the_agents_bytes() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let mut params = send_params("verbatim");
    params["message"]["contextId"] = json!("ctx-verbatim");
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .json(&json!({"jsonrpc": "2.0", "id": "r-9", "method": "SendMessage", "params": params}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("json");
    let task_id = body["result"]["task"]["id"].as_str().expect("task id");
    let result = verbatim_task(task_id, "ctx-verbatim");
    assert_eq!(
        text,
        format!(r#"{{"jsonrpc":"2.0","id":"r-9","result":{result}}}"#)
    );
    // The gateway read the ids it passed: the task and its context are
    // alice's, and bob gets the unknown-task answer for both.
    let mine = gateway
        .rpc("echo", "alice", "GetTask", json!({"id": task_id}))
        .await;
    assert_eq!(mine["result"]["id"], json!(task_id), "{mine}");
    let theirs = gateway
        .rpc("echo", "bob", "GetTask", json!({"id": task_id}))
        .await;
    assert_eq!(error_code(&theirs), -32001, "{theirs}");
    let mut in_context = send_params("more");
    in_context["message"]["contextId"] = json!("ctx-verbatim");
    let theirs = gateway.rpc("echo", "bob", "SendMessage", in_context).await;
    assert!(theirs.get("error").is_some(), "{theirs}");

    // HTTP+JSON 1.0 clients get the result's bytes as the whole body.
    let response = gateway
        .http
        .post(gateway.url("/agents/echo/message:send"))
        .header("A2A-Version", "1.0")
        .json(&send_params("verbatim"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/a2a+json");
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).expect("json");
    let task = &body["task"];
    let (task_id, context_id) = (task["id"].as_str(), task["contextId"].as_str());
    assert_eq!(
        text,
        verbatim_task(task_id.expect("id"), context_id.expect("context"))
    );
}

/// Issue #25: a 1.0 JSON-RPC request nothing changes reaches the agent with
/// the client's own bytes of its params (spacing, key order, escape and
/// number spellings kept); one the gateway changes (a field given by its
/// proto name) is encoded again; and params naming a key twice are refused
/// before anything reaches the agent, which might read the other copy than
/// the gateway's checks did.
#[tokio::test]
async fn a_request_nothing_changes_reaches_the_agent_as_the_clients_bytes() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V1).await;
    let post = |params: &str| {
        let sent = gateway
            .http
            .post(gateway.url("/agents/echo"))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", "alice")
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"jsonrpc":"2.0", "id":"r-1", "method":"SendMessage", "params":{params}}}"#
            ))
            .send();
        async move {
            let answer = sent.await.expect("send");
            answer.json::<Value>().await.expect("json")
        }
    };
    let last_body = || {
        let body = fake.state.last_body.lock().expect("lock").clone();
        String::from_utf8(body.expect("a request reached the agent").to_vec()).expect("utf-8")
    };

    let params = r#"{ "message" : {"zLast": 1.50, "role":"ROLE_USER", "messageId":"m-raw", "parts":[{"text":"caf\u00e9 \/ 1e2"}]}, "aFirst": [ ] }"#;
    let answer = post(params).await;
    assert!(answer["result"]["task"]["id"].is_string(), "{answer}");
    let seen = last_body();
    assert!(
        seen.ends_with(&format!(r#","params":{params}}}"#)),
        "{seen}"
    );

    let renamed =
        r#"{"message":{"message_id":"m-snake","role":"ROLE_USER","parts":[{"text":"x"}]}}"#;
    let answer = post(renamed).await;
    assert!(answer["result"]["task"]["id"].is_string(), "{answer}");
    let seen: Value = serde_json::from_str(&last_body()).expect("json");
    assert_eq!(
        seen["params"],
        json!({"message": {"messageId": "m-snake", "role": "ROLE_USER", "parts": [{"text": "x"}]}})
    );

    let before = fake.state.requests.load(Ordering::SeqCst);
    for twice in [
        r#"{"message":{"messageId":"m","taskId":"t-theirs","taskId":"t-mine","role":"ROLE_USER","parts":[]}}"#,
        r#"{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"a","text":"b"}]}}"#,
    ] {
        let answer = post(twice).await;
        assert_eq!(error_code(&answer), -32602, "{answer}");
        assert_eq!(answer["id"], json!("r-1"), "{answer}");
    }
    assert_eq!(fake.state.requests.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn rest_routes_with_tenant_and_encoded_colon_reach_a_jsonrpc_only_agent() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V1JsonRpcOnly).await;
    for path in [
        "/agents/echo/message:send",
        "/agents/echo/message%3Asend",
        "/agents/echo/acme/message%3Asend",
    ] {
        let response = gateway
            .http
            .post(gateway.url(path))
            .header("A2A-Version", "1.0")
            .json(&send_params("hi"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/a2a+json");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["task"]["status"]["state"],
            json!("TASK_STATE_COMPLETED"),
            "{path}"
        );
    }
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert_eq!(headers["a2a-version"], "1.0");
    assert_eq!(
        headers["content-type"], "application/json",
        "translated to the JSON-RPC binding"
    );

    let task_id = {
        let body = gateway
            .rpc("echo", "anonymous", "SendMessage", send_params("again"))
            .await;
        body["result"]["task"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let response = gateway
        .http
        .get(gateway.url(&format!("/agents/echo/tasks/{task_id}?historyLength=1")))
        .header("A2A-Version", "1.0")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("json");
    assert_eq!(task["id"], json!(task_id));
}

#[tokio::test]
async fn streams_are_relayed_event_by_event_on_both_bindings() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "SendStreamingMessage", "params": send_params("s")}))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(response).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| {
            assert_eq!(event["id"], json!(9));
            let result = event["result"].as_object().expect("result");
            result.keys().next().map(String::as_str).unwrap_or("")
        })
        .collect();
    assert_eq!(
        kinds,
        ["task", "statusUpdate", "artifactUpdate", "statusUpdate"]
    );

    let response = gateway
        .http
        .post(gateway.url("/agents/echo/message:stream"))
        .header("A2A-Version", "1.0")
        .json(&send_params("s"))
        .send()
        .await
        .expect("stream");
    let events = sse_events(response).await;
    assert_eq!(events.len(), 4);
    assert!(events[0].get("task").is_some());
    assert_eq!(
        events[3]["statusUpdate"]["status"]["state"],
        json!("TASK_STATE_COMPLETED")
    );
    let task_id = events[0]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_owned();

    // Subscribe over GET and POST; both see the same sequence.
    let mut sequences = Vec::new();
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = gateway
            .http
            .request(
                method,
                gateway.url(&format!("/agents/echo/tasks/{task_id}%3Asubscribe")),
            )
            .header("A2A-Version", "1.0")
            .send()
            .await
            .expect("subscribe");
        sequences.push(sse_events(response).await);
    }
    assert_eq!(sequences[0], sequences[1]);
    assert_eq!(sequences[0][0]["task"]["id"], json!(task_id));
}

#[tokio::test]
async fn a_0_3_client_reaches_a_1_0_agent() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V1).await;
    let request = json!({"jsonrpc": "2.0", "id": 3, "method": "message/send", "params": {
        "message": {"kind": "message", "messageId": "m1", "role": "user", "parts": [{"kind": "text", "text": "old"}]},
        "configuration": {"blocking": true}}});
    let body: Value = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .json(&request)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let result = &body["result"];
    assert_eq!(result["kind"], json!("task"));
    assert_eq!(result["status"]["state"], json!("completed"));
    assert_eq!(
        result["artifacts"][0]["parts"][0],
        json!({"kind": "text", "text": "echo: old"})
    );
    assert_eq!(result["history"][0]["role"], json!("user"));
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert_eq!(
        headers["a2a-version"], "1.0",
        "the upstream gets a 1.0 request"
    );

    let request = json!({"jsonrpc": "2.0", "id": 4, "method": "message/stream", "params": {
        "message": {"kind": "message", "messageId": "m2", "role": "user", "parts": [{"kind": "text", "text": "old"}]}}});
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .json(&request)
        .send()
        .await
        .expect("stream");
    let events = sse_events(response).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["result"]["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["task", "status-update", "artifact-update", "status-update"]
    );
    assert_eq!(events[1]["result"]["final"], json!(false));
    assert_eq!(events[3]["result"]["final"], json!(true));
    assert_eq!(events[3]["result"]["status"]["state"], json!("completed"));

    let task_id = events[0]["result"]["id"].as_str().expect("id");
    let request =
        json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/get", "params": {"id": task_id}});
    let body: Value = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .json(&request)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["result"]["kind"], json!("task"));
}

#[tokio::test]
async fn a_1_0_client_reaches_a_0_3_agent() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V03).await;
    let body = gateway
        .rpc("echo", "anonymous", "SendMessage", send_params("new"))
        .await;
    let task = &body["result"]["task"];
    assert_eq!(
        task["status"]["state"],
        json!("TASK_STATE_COMPLETED"),
        "{body}"
    );
    assert_eq!(
        task["artifacts"][0]["parts"][0],
        json!({"text": "echo: new"})
    );
    assert!(task.get("kind").is_none());
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert!(
        headers.get("a2a-version").is_none(),
        "a 0.3 upstream gets no version header"
    );

    let response = gateway
        .http
        .post(gateway.url("/agents/echo/message:stream"))
        .header("A2A-Version", "1.0")
        .json(&send_params("new"))
        .send()
        .await
        .expect("stream");
    let events = sse_events(response).await;
    assert!(events[0].get("task").is_some(), "{events:?}");
    assert_eq!(
        events[3]["statusUpdate"]["status"]["state"],
        json!("TASK_STATE_COMPLETED")
    );
    assert!(events[3]["statusUpdate"].get("final").is_none());

    let listed = gateway
        .rpc("echo", "anonymous", "ListTasks", json!({}))
        .await;
    assert_eq!(
        error_code(&listed),
        -32004,
        "ListTasks has no 0.3 equivalent"
    );
}

#[tokio::test]
async fn unsupported_versions_are_refused_on_every_binding() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V1).await;
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "0.5")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("x")}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), -32009);
    assert_eq!(
        body["error"]["data"][0]["reason"],
        json!("VERSION_NOT_SUPPORTED")
    );
    assert_eq!(
        body["error"]["data"][0]["domain"],
        json!("a2a-protocol.org")
    );

    let response = gateway
        .http
        .post(gateway.url("/agents/echo/message:send"))
        .header("A2A-Version", "0.5")
        .json(&send_params("x"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["status"], json!("FAILED_PRECONDITION"));
    assert_eq!(
        body["error"]["details"][0]["reason"],
        json!("VERSION_NOT_SUPPORTED")
    );
    assert_eq!(
        fake.state.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn protocol_errors_are_typed_on_both_bindings() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let rpc_cases: Vec<(&str, &str, i64, Value)> = vec![
        ("/agents/echo", "{oops", -32700, Value::Null),
        (
            "/agents/echo",
            r#"{"id":2,"method":"GetTask","params":{"id":"t"}}"#,
            -32600,
            json!(2),
        ),
        (
            "/agents/echo",
            r#"{"jsonrpc":"2.0","id":3,"method":"Bogus"}"#,
            -32601,
            json!(3),
        ),
        (
            "/agents/echo",
            r#"{"jsonrpc":"2.0","id":4,"method":"GetTask","params":{"id":5}}"#,
            -32602,
            json!(4),
        ),
        (
            "/agents/echo",
            r#"{"jsonrpc":"2.0","id":5,"method":"GetTask","params":{"id":"unknown"}}"#,
            -32001,
            json!(5),
        ),
        (
            "/agents/%ZZ",
            r#"{"jsonrpc":"2.0","id":6,"method":"GetTask","params":{"id":"t"}}"#,
            -32602,
            Value::Null,
        ),
    ];
    for (path, body, code, id) in rpc_cases {
        let response = gateway
            .http
            .post(gateway.url(path))
            .header("A2A-Version", "1.0")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(error_code(&answer), code, "{body}: {answer}");
        assert_eq!(answer["id"], id, "{body}");
        assert!(answer["error"]["data"].is_array(), "{answer}");
    }

    let rest_cases: Vec<(reqwest::Method, &str, &str, u16)> = vec![
        (
            reqwest::Method::POST,
            "/agents/echo/message:send",
            "{oops",
            400,
        ),
        (
            reqwest::Method::POST,
            "/agents/echo/message:send",
            r#"{"message":{}}"#,
            400,
        ),
        (reqwest::Method::GET, "/agents/echo/tasks/%ZZ", "", 400),
        (reqwest::Method::GET, "/agents/echo/tasks/unknown", "", 404),
        (reqwest::Method::DELETE, "/agents/echo/tasks/x", "", 404),
        (reqwest::Method::GET, "/agents/nobody/tasks/x", "", 404),
    ];
    for (method, path, body, status) in rest_cases {
        let response = gateway
            .http
            .request(method.clone(), gateway.url(path))
            .header("A2A-Version", "1.0")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["error"]["code"], json!(status), "{path}: {answer}");
        assert!(
            answer["error"]["details"][0]["reason"].is_string(),
            "{answer}"
        );
    }

    let response = gateway
        .http
        .post(gateway.url("/agents/nobody"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 8, "method": "GetTask", "params": {"id": "t"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["id"], json!(8));
    assert_eq!(
        answer["error"]["data"][0]["reason"],
        json!("AGENT_NOT_FOUND")
    );
}

#[tokio::test]
async fn broken_upstreams_answer_invalid_agent_response_and_others_are_unaffected() {
    let gateway = spawn_gateway().await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("echo", fake.card());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    gateway.register(
        "gone",
        json!({"name": "gone", "description": "d", "version": "1", "supportedInterfaces": [
            {"url": format!("http://127.0.0.1:{closed_port}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}),
    );

    // A hanging request is in flight while a well-behaved one completes.
    let hanging = {
        let gateway_http = gateway.http.clone();
        let url = gateway.url("/agents/echo");
        tokio::spawn(async move {
            gateway_http
                .post(url)
                .header("A2A-Version", "1.0")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("hang")}))
                .send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    eventually(|| fake.state.requests.load(Ordering::SeqCst) >= 1).await;
    let fine = gateway
        .rpc("echo", "anonymous", "SendMessage", send_params("fine"))
        .await;
    assert_eq!(
        fine["result"]["task"]["status"]["state"],
        json!("TASK_STATE_COMPLETED")
    );
    let hung = hanging.await.expect("join");
    assert_eq!(error_code(&hung), -32006, "{hung}");

    for (agent, text) in [("echo", "garbage"), ("gone", "x")] {
        let body = gateway
            .rpc(agent, "anonymous", "SendMessage", send_params(text))
            .await;
        assert_eq!(error_code(&body), -32006, "{agent}: {body}");
        assert_eq!(
            body["error"]["data"][0]["reason"],
            json!("INVALID_AGENT_RESPONSE")
        );
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no upstream address leaks: {body}"
        );
        let response = gateway
            .http
            .post(gateway.url(&format!("/agents/{agent}/message:send")))
            .header("A2A-Version", "1.0")
            .json(&send_params(text))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 500, "{agent}");
    }

    // A stream cut mid-way ends with an InvalidAgentResponse event.
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "SendStreamingMessage", "params": send_params("cut")}))
        .send()
        .await
        .expect("stream");
    let events = sse_events(response).await;
    assert!(events[0]["result"].get("task").is_some());
    assert_eq!(error_code(events.last().expect("last")), -32006);

    let health = gateway
        .http
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "the gateway stays up");
}

#[tokio::test]
async fn tasks_are_isolated_between_principals() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let created = gateway
        .rpc("echo", "alice", "SendMessage", send_params("wait"))
        .await;
    let task_id = created["result"]["task"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let other = gateway
        .rpc("echo", "bob", "SendMessage", send_params("bobs"))
        .await;
    let bob_task = other["result"]["task"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    for method in ["GetTask", "CancelTask", "SubscribeToTask"] {
        let body = gateway
            .rpc("echo", "bob", method, json!({"id": task_id}))
            .await;
        assert_eq!(error_code(&body), -32001, "{method}: {body}");
        let unknown = gateway
            .rpc("echo", "bob", method, json!({"id": "never-existed"}))
            .await;
        assert_eq!(
            body["error"]["message"]
                .as_str()
                .map(|m| m.replace(&task_id, "ID")),
            unknown["error"]["message"]
                .as_str()
                .map(|m| m.replace("never-existed", "ID")),
            "another's task looks exactly unknown"
        );
    }
    let follow_up = json!({"message": {"messageId": "m", "role": "ROLE_USER", "taskId": task_id, "parts": [{"text": "more"}]}});
    assert_eq!(
        error_code(&gateway.rpc("echo", "bob", "SendMessage", follow_up).await),
        -32001
    );
    for path in [
        format!("/agents/echo/tasks/{task_id}"),
        format!("/agents/echo/tasks/{task_id}:subscribe"),
    ] {
        let response = gateway
            .http
            .get(gateway.url(&path))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", "bob")
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }

    let listed = gateway.rpc("echo", "bob", "ListTasks", json!({})).await;
    let ids: Vec<&str> = listed["result"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [bob_task.as_str()]);
    let response = gateway
        .http
        .get(gateway.url("/agents/echo/tasks"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .send()
        .await
        .expect("list");
    let listed: Value = response.json().await.expect("json");
    let ids: Vec<&str> = listed["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [task_id.as_str()]);

    let fetched = gateway
        .rpc("echo", "alice", "GetTask", json!({"id": task_id}))
        .await;
    assert_eq!(fetched["result"]["id"], json!(task_id));
    let canceled = gateway
        .rpc("echo", "alice", "CancelTask", json!({"id": task_id}))
        .await;
    assert_eq!(
        canceled["result"]["status"]["state"],
        json!("TASK_STATE_CANCELED")
    );
    let again = gateway
        .rpc("echo", "alice", "CancelTask", json!({"id": task_id}))
        .await;
    assert_eq!(
        error_code(&again),
        -32002,
        "upstream A2A errors are relayed"
    );
}

#[tokio::test]
async fn agent_cards_are_rewritten_cached_and_revalidated() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let response = gateway
        .http
        .get(gateway.url("/agents/echo/.well-known/agent-card.json"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "a2a.example.com")
        .header("X-Forwarded-Prefix", "/gw")
        .send()
        .await
        .expect("card");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age"));
    let etag = response.headers()["etag"].clone();
    let card: Value = response.json().await.expect("json");
    assert!(card.get("signatures").is_none());
    for interface in card["supportedInterfaces"].as_array().expect("interfaces") {
        // gRPC is dialled at host:port, with the agent as its tenant.
        let (url, tenant) = match interface["protocolBinding"].as_str() {
            Some("GRPC") => (json!("a2a.example.com"), json!("echo")),
            _ => (
                json!("https://a2a.example.com/gw/agents/echo/"),
                Value::Null,
            ),
        };
        assert_eq!(interface["url"], url);
        assert_eq!(
            interface.get("tenant").cloned().unwrap_or(Value::Null),
            tenant
        );
    }
    assert!(
        convergio_schemas::validate(convergio_schemas::SchemaId::AgentCard, &card).is_ok(),
        "{card}"
    );

    let revalidated = gateway
        .http
        .get(gateway.url("/agents/echo/.well-known/agent-card.json"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "a2a.example.com")
        .header("X-Forwarded-Prefix", "/gw")
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("card");
    assert_eq!(revalidated.status(), 304);

    let own: Value = gateway
        .http
        .get(gateway.url("/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    assert_eq!(own["name"], json!("Convergio"));
    assert_eq!(own["skills"][0]["id"], json!("echo"));
    assert!(
        convergio_schemas::validate(convergio_schemas::SchemaId::AgentCard, &own).is_ok(),
        "{own}"
    );

    // The gateway's own interface routes by tenant.
    let body: Value = gateway
        .http
        .post(gateway.url("/a2a"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"tenant": "echo", "message": send_params("t")["message"]}}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["result"]["task"]["status"]["state"],
        json!("TASK_STATE_COMPLETED"),
        "{body}"
    );
    let response = gateway
        .http
        .post(gateway.url("/a2a/echo/message:send"))
        .header("A2A-Version", "1.0")
        .json(&send_params("t"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn envelopes_map_onto_send_message() {
    let (gateway, _fake) = gateway_with_fake(FakeMode::V1).await;
    let envelope = json!({"protocol": "a2a/1.0", "from": "convergio://agents/planner", "to": "convergio://agents/echo",
        "action": "review", "payload": {"code": "x"}, "auth": {"type": "bearer", "token": "secret"}});
    let response = gateway
        .http
        .post(gateway.url("/v1/envelope"))
        .json(&envelope)
        .send()
        .await
        .expect("envelope");
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("json");
    assert_eq!(reply["from"], json!("convergio://agents/echo"));
    assert_eq!(reply["to"], json!("convergio://agents/planner"));
    assert_eq!(reply["action"], json!("review.result"));
    let history = &reply["payload"]["task"]["history"][0];
    assert_eq!(history["parts"][0]["data"], json!({"code": "x"}));
    assert_eq!(history["metadata"]["convergio.action"], json!("review"));

    let external = json!({"protocol": "a2a/1.0", "from": "convergio://agents/planner", "to": "external://acme.example/agents/x", "action": "a", "payload": 1});
    let response = gateway
        .http
        .post(gateway.url("/v1/envelope"))
        .json(&external)
        .send()
        .await
        .expect("envelope");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("federation not configured"),
        "{problem}"
    );

    let invalid = json!({"protocol": "a2a/2.0", "to": "nowhere"});
    let response = gateway
        .http
        .post(gateway.url("/v1/envelope"))
        .json(&invalid)
        .send()
        .await
        .expect("envelope");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert!(!problem["violations"]
        .as_array()
        .expect("violations")
        .is_empty());
}

#[tokio::test]
async fn caller_credentials_stay_home_and_extensions_travel() {
    let (gateway, fake) = gateway_with_fake(FakeMode::V1).await;
    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .header("A2A-Extensions", "https://ext.example/a")
        .header("Authorization", "Bearer caller-secret")
        .header("x-request-id", "trace-me-1")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("h")}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["a2a-extensions"], "https://ext.example/a");
    assert_eq!(headers["x-request-id"], "trace-me-1");
}

#[tokio::test]
async fn limits_refuse_large_bodies_and_shed_load() {
    let config = A2aConfig {
        upstream_timeout: Duration::from_secs(5),
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    let limits = LimitsConfig {
        max_body_bytes: 1024,
        max_concurrency: 1,
        ..LimitsConfig::default()
    };
    let gateway = spawn_gateway_with(config, limits).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("echo", fake.card());

    let response = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params(&"x".repeat(4096))}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);

    let hanging = {
        let http = gateway.http.clone();
        let url = gateway.url("/agents/echo");
        tokio::spawn(async move {
            http.post(url)
                .header("A2A-Version", "1.0")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("hang")}))
                .send()
                .await
        })
    };
    eventually(|| fake.state.requests.load(Ordering::SeqCst) >= 1).await;
    let shed = gateway
        .http
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    hanging.abort();
}
