//! Shared helpers for the agents' integration tests: start an agent on
//! 127.0.0.1:0, call it over JSON-RPC or HTTP+JSON, and read SSE streams.
//! Every network wait is bounded by [`TIMEOUT`].

#![allow(dead_code)]

use std::time::Duration;

use convergio_agents::{spawn, ExampleAgent, RunningAgent, ServeOptions};
use serde_json::{json, Value};

/// Upper bound on any single wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `agent` with `options` on a fresh loopback port.
pub async fn start_with(agent: ExampleAgent, options: ServeOptions) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    spawn(agent, listener, options).await.expect("agent starts")
}

/// Starts `agent` with default options.
pub async fn start(agent: ExampleAgent) -> RunningAgent {
    start_with(agent, ServeOptions::default()).await
}

/// A client without connection-pool surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client")
}

/// A 1.0 user message with text parts.
pub fn user_message(texts: &[&str]) -> Value {
    json!({
        "messageId": uuid(),
        "role": "ROLE_USER",
        "parts": texts.iter().map(|text| json!({"text": text})).collect::<Vec<_>>(),
    })
}

/// A fresh unique id.
pub fn uuid() -> String {
    format!(
        "m-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// POSTs a raw JSON-RPC body with optional version header; returns the JSON answer.
pub async fn rpc_raw(
    base_url: &str,
    version: Option<&str>,
    body: String,
) -> (reqwest::StatusCode, Value) {
    let mut request = client()
        .post(base_url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(version) = version {
        request = request.header("A2A-Version", version);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A 1.0 JSON-RPC call; returns the whole response object.
pub async fn rpc(base_url: &str, method: &str, params: Value) -> Value {
    rpc_raw(
        base_url,
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
    )
    .await
    .1
}

/// A 0.3 JSON-RPC call (no version header).
pub async fn rpc_v03(base_url: &str, method: &str, params: Value) -> Value {
    rpc_raw(
        base_url,
        None,
        json!({"jsonrpc": "2.0", "id": "a", "method": method, "params": params}).to_string(),
    )
    .await
    .1
}

/// The `result` of a 1.0 JSON-RPC call, failing the test on an error.
pub async fn rpc_ok(base_url: &str, method: &str, params: Value) -> Value {
    let response = rpc(base_url, method, params).await;
    assert!(
        response.get("error").is_none(),
        "unexpected error: {response}"
    );
    response["result"].clone()
}

/// The error code of a JSON-RPC response.
pub fn error_code(response: &Value) -> i64 {
    response["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {response}"))
}

/// Sends a blocking SendMessage with `texts` and returns the result.
pub async fn send_text(base_url: &str, texts: &[&str]) -> Value {
    rpc_ok(
        base_url,
        "SendMessage",
        json!({"message": user_message(texts)}),
    )
    .await
}

/// Sends `texts` with `returnImmediately` and returns the task.
pub async fn send_immediately(base_url: &str, texts: &[&str]) -> Value {
    let result = rpc_ok(
        base_url,
        "SendMessage",
        json!({"message": user_message(texts), "configuration": {"returnImmediately": true}}),
    )
    .await;
    result["task"].clone()
}

/// An open SSE stream, read event by event (the test kit's reader).
pub type SseReader = convergio_tests::sse::EventStream;

/// Opens a 1.0 JSON-RPC streaming call.
pub async fn rpc_stream(base_url: &str, method: &str, params: Value) -> SseReader {
    let response = client()
        .post(base_url)
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("stream request");
    SseReader::new(response)
}

/// The `result`s of a JSON-RPC stream's events.
pub fn results(events: &[Value]) -> Vec<Value> {
    events.iter().map(|event| event["result"].clone()).collect()
}

/// Which member a 1.0 StreamResponse carries.
pub fn kind(event: &Value) -> &'static str {
    ["task", "message", "statusUpdate", "artifactUpdate"]
        .into_iter()
        .find(|key| event.get(*key).is_some())
        .unwrap_or("?")
}

/// A task's state, from a Task object.
pub fn state(task: &Value) -> String {
    task["status"]["state"].as_str().unwrap_or("").to_owned()
}
