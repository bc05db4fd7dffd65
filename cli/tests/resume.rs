//! Resumable streams (issue 24) end to end: two `convergio serve` replicas
//! on one PostgreSQL database and a slow streaming agent on loopback. A
//! caller's stream is cut mid-task on the first replica; it reconnects to
//! the second with `Last-Event-ID` and receives every event it missed,
//! once, in order, including those the agent sent while nobody listened;
//! the agent is asked nothing again. JSON-RPC, HTTP+JSON (the SSE
//! `Last-Event-ID` header) and gRPC (`last-event-id` metadata) resume
//! alike. Bad ids are typed errors.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use convergio_gateway::a2a::grpc::proto::a2a_service_client::A2aServiceClient;
use convergio_gateway::a2a::grpc::proto::SubscribeToTaskRequest;
use convergio_tests::sse::EventStream;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use support::{cli, issue_key, start_with, Server};

const TASK: &str = "task-resume-1";
const CONTEXT: &str = "ctx-resume-1";

/// A JSON-RPC agent whose one streamed task sends its first two events at
/// once and each later one when the test releases it.
#[derive(Clone)]
struct SlowAgent {
    releases: Arc<Semaphore>,
    /// How many times each method was called.
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl SlowAgent {
    fn new() -> Self {
        Self {
            releases: Arc::new(Semaphore::new(0)),
            calls: Arc::default(),
        }
    }

    fn release(&self, events: usize) {
        self.releases.add_permits(events);
    }

    fn calls(&self, method: &str) -> usize {
        self.calls
            .lock()
            .expect("calls")
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}

fn status(state: &str, text: &str) -> Value {
    json!({"statusUpdate": {"taskId": TASK, "contextId": CONTEXT, "status": {
        "state": state,
        "message": {"role": "ROLE_AGENT", "messageId": format!("m-{text}"), "parts": [{"text": text}]}
    }}})
}

/// The events the agent streams, in order.
fn script() -> Vec<Value> {
    let mut events = vec![json!({"task": {"id": TASK, "contextId": CONTEXT,
        "status": {"state": "TASK_STATE_SUBMITTED"}}})];
    for step in 1..=4 {
        events.push(status("TASK_STATE_WORKING", &format!("step {step}")));
    }
    events.push(status("TASK_STATE_COMPLETED", "done"));
    events
}

async fn handle(State(agent): State<SlowAgent>, Json(request): Json<Value>) -> Response {
    let method = request["method"].as_str().unwrap_or("").to_owned();
    *agent
        .calls
        .lock()
        .expect("calls")
        .entry(method.clone())
        .or_default() += 1;
    let id = request["id"].clone();
    if method != "SendStreamingMessage" {
        return Json(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": "only streams here"}}))
        .into_response();
    }
    let events = async_stream::stream! {
        for (index, event) in script().into_iter().enumerate() {
            if index >= 2 {
                agent.releases.acquire().await.expect("open").forget();
            }
            let line = json!({"jsonrpc": "2.0", "id": id, "result": event});
            yield Ok::<_, std::io::Error>(format!("data: {line}\n\n"));
        }
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(events))
        .expect("response")
}

async fn spawn_agent(agent: SlowAgent) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new().route("/", post(handle)).with_state(agent);
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn card(address: SocketAddr) -> Value {
    json!({
        "name": "slow", "description": "streams a task slowly", "version": "1",
        "supportedInterfaces": [{"url": format!("http://{address}/"),
            "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "slow", "name": "slow", "description": "slow", "tags": ["slow"]}]
    })
}

/// A JSON-RPC request of `method` to the agent through `server`, as the
/// holder of `key`.
async fn call(
    (server, key): (&Server, &str),
    method: &str,
    params: Value,
    last: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/agents/slow", server.base))
        .header("A2A-Version", "1.0")
        .header("X-API-Key", key)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    request.send().await.expect("the gateway answers")
}

/// A stream's events.
async fn stream(
    server: (&Server, &str),
    method: &str,
    params: Value,
    last: Option<&str>,
) -> EventStream {
    let response = call(server, method, params, last).await;
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if !sse {
        let body = response.text().await.unwrap_or_default();
        panic!("{method} did not answer a stream: {body}");
    }
    EventStream::new(response)
}

/// A refused call's JSON-RPC error code.
async fn error_code(
    server: (&Server, &str),
    method: &str,
    params: Value,
    last: Option<&str>,
) -> i64 {
    let answer: Value = call(server, method, params, last)
        .await
        .json()
        .await
        .expect("a JSON answer");
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {answer}"))
}

fn subscribe() -> Value {
    json!({"id": TASK})
}

/// What a caller reads: each event's id and its text (or state).
fn summary(id: Option<String>, event: &Value) -> (String, String) {
    let result = &event["result"];
    let text = result["statusUpdate"]["status"]["message"]["parts"][0]["text"]
        .as_str()
        .or_else(|| result["task"]["status"]["state"].as_str())
        .unwrap_or("?")
        .to_owned();
    (id.unwrap_or_default(), text)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Registers the slow agent at `address` through `server` and issues a
/// key to a member of the organisation: the key.
fn register_slow(server: &Server, data_dir: &Path, address: SocketAddr) -> String {
    let card_file = data_dir.join("slow.json");
    std::fs::write(&card_file, card(address).to_string()).expect("card written");
    let card_path = card_file.to_str().expect("utf-8 path");
    let (ok, _, stderr) = cli(Some((server, data_dir)), &["agents", "register", card_path]);
    assert!(ok, "register: {stderr}");
    issue_key(server, data_dir, "ann", "convergio.local", &[])
}

#[test]
fn a_stream_cut_on_one_replica_resumes_on_another_with_every_missed_event_once() {
    let database = convergio_tests::postgres::TestDatabase::create_blocking("convergio_resume");
    let runtime = runtime();
    let agent = SlowAgent::new();
    let address = runtime.block_on(spawn_agent(agent.clone()));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let replica = || {
        start_with(
            data_dir.path(),
            &[("CONVERGIO_DATABASE_URL", database.url())],
        )
    };
    let first = replica();
    let second = replica();
    // A member of the organisation; the key works on both replicas.
    let key = register_slow(&first, data_dir.path(), address);
    let (first, second) = ((&first, key.as_str()), (&second, key.as_str()));

    runtime.block_on(async {
        // The caller reads the first two events on the first replica and
        // its connection drops.
        let params = json!({"message": {"role": "ROLE_USER", "messageId": "m1",
            "contextId": CONTEXT, "parts": [{"text": "go"}]}});
        let mut cut = stream(first, "SendStreamingMessage", params, None).await;
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (id, event) = cut.next_with_id().await.expect("an event");
            seen.push(summary(id, &event));
        }
        assert_eq!(
            seen,
            [
                ("1".into(), "TASK_STATE_SUBMITTED".into()),
                ("2".into(), "step 1".into())
            ]
        );
        drop(cut);
        // While nobody listens the agent says two more things.
        agent.release(2);

        // Bad ids are typed errors, on the second replica.
        for bad in ["two", "99"] {
            let code = error_code(second, "SubscribeToTask", subscribe(), Some(bad)).await;
            assert_eq!(code, -32602, "{bad}");
        }

        // The caller resumes on the second replica after event 2: it gets
        // steps 2 and 3 (sent while it was away), then, as the agent goes
        // on, step 4 and the end; each once, in order, with their ids.
        let mut resumed = stream(second, "SubscribeToTask", subscribe(), Some("2")).await;
        let mut got = Vec::new();
        for _ in 0..2 {
            let (id, event) = resumed.next_with_id().await.expect("a missed event");
            got.push(summary(id, &event));
        }
        agent.release(2);
        while let Some((id, event)) = resumed.next_with_id().await {
            got.push(summary(id, &event));
        }
        assert_eq!(
            got,
            [
                ("3".into(), "step 2".into()),
                ("4".into(), "step 3".into()),
                ("5".into(), "step 4".into()),
                ("6".into(), "done".into()),
            ]
        );

        // The whole record from the start, on the first replica.
        let replayed = stream(first, "SubscribeToTask", subscribe(), Some("0"))
            .await
            .collect()
            .await;
        assert_eq!(replayed.len(), 6);
        // An HTTP+JSON client resumes the same way (the SSE header), and
        // reads the events in its own binding's shape.
        let response = reqwest::Client::new()
            .get(format!(
                "{}/agents/slow/tasks/{TASK}:subscribe",
                second.0.base
            ))
            .header("A2A-Version", "1.0")
            .header("X-API-Key", second.1)
            .header("Last-Event-ID", "4")
            .send()
            .await
            .expect("the gateway answers");
        let mut rest = EventStream::new(response);
        let mut tail = Vec::new();
        while let Some((id, event)) = rest.next_with_id().await {
            tail.push(summary(id, &json!({ "result": event })));
        }
        assert_eq!(
            tail,
            [("5".into(), "step 4".into()), ("6".into(), "done".into())]
        );
        // A gRPC client resumes with the same key as metadata, and reads
        // the events as StreamResponse messages.
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        let mut grpc = A2aServiceClient::with_origin(http, second.0.base.parse().expect("uri"));
        let mut request = tonic::Request::new(SubscribeToTaskRequest {
            tenant: "slow".into(),
            id: TASK.into(),
        });
        request
            .metadata_mut()
            .insert("last-event-id", "4".parse().expect("metadata"));
        request
            .metadata_mut()
            .insert("x-api-key", second.1.parse().expect("metadata"));
        let mut messages = grpc
            .subscribe_to_task(request)
            .await
            .expect("the gRPC subscription opens")
            .into_inner();
        let mut texts = Vec::new();
        while let Some(message) = messages.message().await.expect("a message") {
            texts.push(serde_json::to_string(&message).expect("json"));
        }
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(
            texts[0].contains("step 4") && texts[1].contains("done"),
            "{texts:?}"
        );
        // After the final event there is nothing to resume: the
        // unsupported-operation answer A2A gives for a finished task.
        let code = error_code(first, "SubscribeToTask", subscribe(), Some("6")).await;
        assert_eq!(code, -32004);
    });
    assert_eq!(agent.calls("SendStreamingMessage"), 1);
    assert_eq!(
        agent.calls("SubscribeToTask"),
        0,
        "resumed streams come from the record, not the agent"
    );
    // Every replica still lets the caller follow a task live, as A2A does,
    // without Last-Event-ID: that call reaches the agent.
    runtime.block_on(async {
        error_code(second, "SubscribeToTask", subscribe(), None).await;
    });
    assert_eq!(agent.calls("SubscribeToTask"), 1);
}

#[test]
fn with_resumable_streams_off_nothing_is_recorded_and_the_agent_is_asked() {
    let runtime = runtime();
    let agent = SlowAgent::new();
    agent.release(4);
    let address = runtime.block_on(spawn_agent(agent.clone()));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(&config, "upstream:\n  resumable_streams: false\n").expect("config");
    let server = start_with(
        data_dir.path(),
        &[("CONVERGIO_CONFIG", config.to_str().expect("utf-8 path"))],
    );
    let key = register_slow(&server, data_dir.path(), address);
    let caller = (&server, key.as_str());
    runtime.block_on(async {
        let params = json!({"message": {"role": "ROLE_USER", "messageId": "m1",
            "contextId": CONTEXT, "parts": [{"text": "go"}]}});
        let mut events = stream(caller, "SendStreamingMessage", params, None).await;
        let mut count = 0;
        while let Some((id, _)) = events.next_with_id().await {
            assert_eq!(id, None, "no ids when nothing is recorded");
            count += 1;
        }
        assert_eq!(count, 6);
        error_code(caller, "SubscribeToTask", subscribe(), Some("1")).await;
    });
    assert_eq!(
        agent.calls("SubscribeToTask"),
        1,
        "without a record the agent answers"
    );
}
