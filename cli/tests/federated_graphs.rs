//! Federated graph execution (issue 18), end to end: two real `convergio
//! serve` processes on loopback, `a.example` and `b.example`, each with its
//! own database and signing key. A graph in A has nodes whose agents live
//! in B (`external://b.example/agents/…`); B's agent is a recorder in this
//! process that keeps every message it receives, so the tests see exactly
//! what crossed.
//!
//! - The node's message crosses whole (parts, `convergio.*` metadata, the
//!   organisation path, the idempotency key), in sync and stream modes,
//!   with the run's trace id, which B's request log lines carry.
//! - A's policy refusing the call out, and B's refusing A, each fail the
//!   node that made the call.
//! - Loops and the hop limit are refused by the sender and the receiver.
//! - A run's token budget, spent by what B's agent reports using, stops
//!   the next remote node before it is called.
//! - B's timing of a call is in A's trace only when B's policy shares it.
//! - A streaming node's remote agent streams: its events reach the run's
//!   event stream in order, and the folded answer is the node's output.
//! - A repeated idempotency key gets the stored answer; SIGKILL of A while
//!   B runs a remote node, restart, resume: B's agent ran once.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use convergio_agents::logic::text_parts;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use convergio_auth::peer_call::{sign_call, PeerCallClaims, SIGNATURE_HEADER};
use convergio_auth::OrgSigningKey;
use convergio_schemas::a2a::TaskState;
use serde_json::{json, Value};
use support::{admin_token, start_logged, start_with, Server};

/// B's agent: keeps every message, answers with every part it got (so a
/// lossy crossing shows in the run's output too), after `sleep:<ms>` when
/// a text part asks for it.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<Value>>,
    finished: AtomicUsize,
}

impl Recorder {
    fn messages(&self) -> Vec<Value> {
        self.messages.lock().expect("messages").clone()
    }

    fn calls(&self) -> usize {
        self.messages.lock().expect("messages").len()
    }
}

/// The `<name>:<n>` word of a message's text parts.
fn hook(message: &Value, name: &str) -> Option<u64> {
    text_parts(message)
        .iter()
        .flat_map(|text| text.split_whitespace())
        .find_map(|word| word.strip_prefix(name)?.strip_prefix(':')?.parse().ok())
}

#[async_trait]
impl AgentLogic for Recorder {
    async fn reply(&self, message: &Value) -> Option<Value> {
        self.messages
            .lock()
            .expect("messages")
            .push(message.clone());
        // `sleep:<ms>` holds the answer (or a stream's first event) back.
        if let Some(ms) = hook(message, "sleep") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        // `chunks:<n>` asks for a task that streams n artifact chunks.
        if hook(message, "chunks").is_some() {
            return None;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        // `tokens:<n>` asks it to report using n tokens, as a model would.
        let tokens = text_parts(message)
            .iter()
            .flat_map(|text| text.split_whitespace())
            .find_map(|word| word.strip_prefix("tokens:")?.parse::<u64>().ok());
        match tokens {
            Some(tokens) => Some(json!({
                "parts": message["parts"].clone(),
                "metadata": {"usage": {"tokens_in": tokens, "tokens_out": 0}},
            })),
            None => Some(json!({"parts": message["parts"].clone()})),
        }
    }

    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let chunks = hook(&message, "chunks").unwrap_or(1);
        context.working()?;
        for chunk in 1..=chunks {
            context.sleep(Duration::from_millis(20)).await?;
            context.artifact(
                json!({"artifactId": "chunks", "parts": [{"text": format!("chunk {chunk}")}]}),
                chunk > 1,
                chunk == chunks,
            )?;
        }
        context.set_metadata("usage", json!({"tokens_in": 5, "tokens_out": chunks}))?;
        self.finished.fetch_add(1, Ordering::SeqCst);
        context.status(TaskState::Completed, None)
    }
}

fn card(name: &str, tags: &[&str]) -> Value {
    json!({
        "name": name,
        "description": "Records what reaches it (federated graphs test).",
        "version": "1.0.0",
        "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "record", "name": "Record", "description": "Answers its input.", "tags": tags}]
    })
}

/// Two federated organisations; B serves `recorder` (opted in, trusted)
/// and `private` (not opted in).
struct Federated {
    a: Option<Server>,
    b: Server,
    a_dir: tempfile::TempDir,
    _b_dir: tempfile::TempDir,
    b_log: PathBuf,
    a_token: String,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
    _agents: Vec<RunningAgent>,
    a_environment: Vec<(String, String)>,
}

impl Federated {
    fn a(&self) -> &Server {
        self.a.as_ref().expect("a.example runs")
    }

    /// Starts A again on its data dir (after a kill).
    fn restart_a(&mut self) {
        let environment: Vec<(&str, &str)> = self
            .a_environment
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        self.a = Some(start_with(self.a_dir.path(), &environment));
    }
}

const A_REPLICA: (&str, &str) = ("CONVERGIO_REPLICA_ID", "a-replica");

async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let response = http
        .post(url)
        .bearer_auth(bearer)
        .header("A2A-Version", "1.0")
        .json(body)
        .send()
        .await
        .expect("request answered");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get(http: &reqwest::Client, url: &str, bearer: &str) -> (reqwest::StatusCode, Value) {
    let response = http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    agent: &RunningAgent,
    trust: &str,
) {
    let (status, registered) = post(
        http,
        &format!("{}/v1/agents", server.base),
        token,
        &agent.card(),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let id = registered["id"].as_str().expect("agent id").to_owned();
    let response = http
        .put(format!(
            "{}/v1/agents/{}/trust",
            server.base,
            percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
        ))
        .bearer_auth(token)
        .json(&json!({"level": trust, "reason": "federated graphs test"}))
        .send()
        .await
        .expect("trust set");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn spawn_recorder(recorder: Arc<Recorder>, name: &str, tags: &[&str]) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    spawn_logic(
        recorder,
        card(name, tags),
        listener,
        ServeOptions::default(),
    )
    .await
    .expect("agent starts")
}

/// Starts both organisations, peered both ways with approved keys; A
/// gives B's agents `b_trust` (the peer default when `None`).
async fn federate(b_trust: Option<&str>) -> Federated {
    let a_dir = tempfile::tempdir().expect("temp dir");
    let b_dir = tempfile::tempdir().expect("temp dir");
    let a_environment = vec![
        ("CONVERGIO_ORG_DOMAIN".to_owned(), "a.example".to_owned()),
        ("CONVERGIO_EXAMPLES".to_owned(), "false".to_owned()),
        (A_REPLICA.0.to_owned(), A_REPLICA.1.to_owned()),
    ];
    let a_env: Vec<(&str, &str)> = a_environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let a = start_with(a_dir.path(), &a_env);
    // B logs its requests' spans, so the test can find the trace id in them.
    let b_log = b_dir.path().join("stderr.log");
    let b = start_logged(
        b_dir.path(),
        &[],
        &[
            ("CONVERGIO_ORG_DOMAIN", "b.example"),
            ("CONVERGIO_EXAMPLES", "false"),
            (
                "CONVERGIO_LOG",
                "warn,convergio_gateway::layers::trace=debug,convergio_gateway::a2a=info,convergio_gateway::federation::idempotency=debug",
            ),
        ],
        &b_log,
    );
    let (a_token, b_token) = (admin_token(a_dir.path()), admin_token(b_dir.path()));
    let http = reqwest::Client::new();

    let recorder = Arc::new(Recorder::default());
    let opted_in = spawn_recorder(recorder.clone(), "recorder", &["external"]).await;
    let private = spawn_recorder(recorder.clone(), "private", &["test"]).await;
    register(&http, &b, &b_token, &opted_in, "trusted").await;
    register(&http, &b, &b_token, &private, "trusted").await;

    let (status, peer) = post(
        &http,
        &format!("{}/v1/peers", b.base),
        &b_token,
        &json!({"domain": "a.example", "url": a.base,
                "jwks_url": format!("{}/.well-known/jwks.json", a.base)}),
    )
    .await;
    assert_eq!(status, 201, "{peer}");
    let (status, peer) = post(
        &http,
        &format!("{}/v1/peers/a.example/approve", b.base),
        &b_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{peer}");
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", b.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let (status, peer) = post(
        &http,
        &format!("{}/v1/peers", a.base),
        &a_token,
        &json!({"domain": "b.example", "url": b.base, "keys": jwks["keys"], "trust": b_trust}),
    )
    .await;
    assert_eq!(status, 201, "{peer}");

    Federated {
        a: Some(a),
        b,
        a_dir,
        _b_dir: b_dir,
        b_log,
        a_token,
        http,
        recorder,
        _agents: vec![opted_in, private],
        a_environment,
    }
}

/// Starts a run at A as its administrator.
async fn run(fed: &Federated, graph: &str, mode: &str, input: Value) -> (u16, Value) {
    let (status, body) = post(
        &fed.http,
        &format!("{}/v1/runs", fed.a().base),
        &fed.a_token,
        &json!({"graph_yaml": graph, "mode": mode, "input": input}),
    )
    .await;
    (status.as_u16(), body)
}

const ONE_REMOTE: &str =
    "name: federated\nnodes:\n  - id: remote\n    agent: external://b.example/agents/recorder\n";

#[tokio::test]
async fn a_remote_node_gets_the_whole_message_with_path_key_and_trace() {
    let fed = federate(None).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let input = json!({"topic": "rust", "depth": 2});
    let response = fed
        .http
        .post(format!("{}/v1/runs", fed.a().base))
        .bearer_auth(&fed.a_token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"graph_yaml": ONE_REMOTE, "mode": "sync", "input": input}))
        .send()
        .await
        .expect("run answered");
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.expect("json");
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let run_id = outcome["run_id"].as_str().expect("run id").to_owned();

    // What crossed: the structured input as a data part (not a string),
    // the node's own metadata, the path, the hop count and the key.
    let messages = fed.recorder.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert!(
        message["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .any(|part| part["data"] == input),
        "{message:#}"
    );
    let metadata = &message["metadata"];
    assert_eq!(metadata["convergio.run_id"], run_id.as_str(), "{message:#}");
    assert_eq!(metadata["convergio.node_id"], "remote");
    assert_eq!(metadata["convergio.graph_id"], "federated");
    assert_eq!(metadata["convergio.federation.path"], json!(["a.example"]));
    assert_eq!(metadata["convergio.federation.hops"], 1);
    assert_eq!(
        metadata["convergio.federation.idempotency_key"],
        message["messageId"]
    );
    // The answer's parts came back whole: the output holds the data.
    assert!(
        outcome["output"].to_string().contains("rust"),
        "{outcome:#}"
    );

    // One trace: the run kept the caller's trace id, and B's request log
    // lines carry it.
    let (status, trace) = get(
        &fed.http,
        &format!("{}/v1/runs/{run_id}/trace", fed.a().base),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace_id"], trace_id, "{trace:#}");
    let b_log = std::fs::read_to_string(&fed.b_log).expect("b's log");
    assert!(
        b_log
            .lines()
            .any(|line| line.contains(trace_id) && line.contains("/agents/recorder")),
        "{b_log}"
    );

    // Stream mode: the node's output arrives as an event.
    let response = fed
        .http
        .post(format!("{}/v1/runs", fed.a().base))
        .bearer_auth(&fed.a_token)
        .json(&json!({"graph_yaml": ONE_REMOTE, "mode": "stream", "input": {"text": "streamed"}}))
        .send()
        .await
        .expect("run answered");
    assert_eq!(response.status(), 200);
    let events = response.text().await.expect("events");
    assert!(events.contains("node_output"), "{events}");
    assert!(events.contains("streamed"), "{events}");
    assert_eq!(fed.recorder.calls(), 2);
}

/// The `data` of each SSE event of `body`, by event name.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = serde_json::from_str(value.trim()).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

#[tokio::test]
async fn a_streaming_remote_nodes_events_reach_the_runs_stream_in_order() {
    let fed = federate(None).await;
    // `remote` streams three chunks from B; `after` gets them whole.
    let graph = "name: streamed\nnodes:\n  - id: remote\n    agent: external://b.example/agents/recorder\n    inputs: [text]\n    stream: true\n  - id: after\n    agent: external://b.example/agents/recorder\n    inputs: [remote.output]\nedges:\n  - {from: remote, to: after}\n";
    let input = json!({"text": "chunks:3"});

    let response = fed
        .http
        .post(format!("{}/v1/runs", fed.a().base))
        .bearer_auth(&fed.a_token)
        .json(&json!({"graph_yaml": graph, "mode": "stream", "input": input}))
        .send()
        .await
        .expect("run answered");
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.expect("events"));
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    // B's events, in the order B's agent made them, all before the node
    // finished: the task, working, each chunk, completed.
    let updates: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "node_update")
        .map(|(_, event)| event)
        .collect();
    assert!(
        updates.iter().all(|update| update["node_id"] == "remote"),
        "{updates:#?}"
    );
    let chunks: Vec<&str> = updates
        .iter()
        .filter_map(|update| update.pointer("/event/artifactUpdate/artifact/parts/0/text"))
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(chunks, ["chunk 1", "chunk 2", "chunk 3"], "{updates:#?}");
    let appended: Vec<bool> = updates
        .iter()
        .filter_map(|update| update.pointer("/event/artifactUpdate"))
        .map(|update| update["append"] == true)
        .collect();
    assert_eq!(appended, [false, true, true]);
    assert_eq!(
        updates
            .last()
            .and_then(|update| update.pointer("/event/statusUpdate/status/state")),
        Some(&json!("TASK_STATE_COMPLETED")),
        "{updates:#?}"
    );
    let position = |wanted: &dyn Fn(&(String, Value)) -> bool| {
        events.iter().position(wanted).expect("the event is there")
    };
    let last_update = position(&|(name, _)| name == "node_update") + updates.len() - 1;
    let remote_finished =
        position(&|(name, event)| name == "node_finished" && event["node_id"] == "remote");
    assert!(last_update < remote_finished, "{names:?}");
    assert_eq!(names.last(), Some(&"run_finished"), "{names:?}");
    let finished = &events.last().expect("run_finished").1;
    assert_eq!(finished["status"], "succeeded", "{events:#?}");

    // Sync and async modes stream the call too; the folded answer is the
    // node's output (the next node got the three chunks), and the usage B
    // reported on its last status update is in the trace.
    for mode in ["sync", "async"] {
        let (status, outcome) = run(&fed, graph, mode, input.clone()).await;
        assert!(status == 200 || status == 202, "{outcome}");
        let run_id = outcome["run_id"].as_str().expect("run id").to_owned();
        let mut outcome = outcome;
        for _ in 0..200 {
            if outcome["status"] == "succeeded" || outcome["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            outcome = run_status(&fed, &run_id).await;
        }
        assert_eq!(outcome["status"], "succeeded", "{mode}: {outcome:#}");
        let (status, trace) = get(
            &fed.http,
            &format!("{}/v1/runs/{run_id}/trace", fed.a().base),
            &fed.a_token,
        )
        .await;
        assert_eq!(status, 200, "{trace}");
        let remote = trace["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|node| node["node_id"] == "remote"))
            .expect("the remote node's trace");
        assert_eq!(remote["tokens_in"], 5, "{remote:#}");
        assert_eq!(remote["tokens_out"], 3, "{remote:#}");
        let after = fed
            .recorder
            .messages()
            .last()
            .cloned()
            .expect("after's call");
        assert_eq!(
            text_parts(&after),
            ["chunk 1\nchunk 2\nchunk 3"],
            "{mode}: {after:#}"
        );
    }
    assert_eq!(fed.recorder.calls(), 6);

    // B refusing a streaming node fails that node, as for a blocking one.
    let refused = "name: refused_stream\nnodes:\n  - id: remote\n    agent: external://b.example/agents/private\n    inputs: [text]\n    stream: true\n";
    let (status, outcome) = run(&fed, refused, "sync", input).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("external://b.example/agents/private"),
        "{error}"
    );
    assert_eq!(fed.recorder.calls(), 6);
}

#[tokio::test]
async fn each_side_policy_refusal_fails_the_node_that_called() {
    // B's policy: `private` did not opt in, so A's call is refused by B.
    let fed = federate(None).await;
    let graph = "name: refused_by_b\nnodes:\n  - id: first\n    agent: external://b.example/agents/recorder\n  - id: second\n    agent: external://b.example/agents/private\n    inputs: [first.output]\nedges:\n  - {from: first, to: second}\n";
    let (status, outcome) = run(&fed, graph, "sync", json!({"text": "hi"})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    let nodes = outcome["trace"]["nodes"].as_array().expect("nodes");
    let status_of = |id: &str| {
        nodes
            .iter()
            .find(|node| node["node_id"] == id)
            .map(|node| node["status"].clone())
    };
    assert_eq!(status_of("first"), Some(json!("success")), "{outcome:#}");
    assert_eq!(status_of("second"), Some(json!("failed")), "{outcome:#}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("external://b.example/agents/private"),
        "{error}"
    );
    // Only `first` reached B's agents.
    assert_eq!(fed.recorder.calls(), 1);

    // A's policy: A gives B's agents no trust, and graph nodes may not send
    // to untrusted agents (graph-min-trust), so nothing leaves A.
    let fed = federate(Some("untrusted")).await;
    let (status, outcome) = run(&fed, ONE_REMOTE, "sync", json!({"text": "hi"})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("external://b.example/agents/recorder") && error.contains("forbidden"),
        "{error}"
    );
    assert_eq!(fed.recorder.calls(), 0);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn send_message(text: &str, metadata: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
        "messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
        "parts": [{"text": text}], "metadata": metadata}}})
}

fn a_key(fed: &Federated) -> OrgSigningKey {
    let pem = std::fs::read_to_string(fed.a_dir.path().join("federation-key.pem"))
        .expect("a's generated key");
    OrgSigningKey::from_pem(&pem).expect("a's key parses")
}

/// Sends `body` to B's `recorder` as a call A signed.
async fn signed_to_b(fed: &Federated, key: &OrgSigningKey, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let claims = PeerCallClaims::new(
        "a.example",
        "b.example",
        "alice",
        "POST",
        "/agents/recorder",
        &bytes,
        now(),
    );
    let response = fed
        .http
        .post(format!("{}/agents/recorder", fed.b.base))
        .header(SIGNATURE_HEADER, sign_call(key, &claims))
        .header("content-type", "application/json")
        .header("A2A-Version", "1.0")
        .body(bytes)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn error_text(answer: &Value) -> String {
    answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn loops_and_the_hop_limit_are_refused_by_sender_and_receiver() {
    let fed = federate(None).await;
    let to_b = format!("{}/external/b.example/agents/recorder", fed.a().base);

    // Sender: a message that already passed through b.example.
    let looped = send_message("x", json!({"convergio.federation.path": ["b.example"]}));
    let (_, answer) = post(&fed.http, &to_b, &fed.a_token, &looped).await;
    assert!(answer.get("result").is_none(), "{answer}");
    assert!(error_text(&answer).contains("federation loop"), "{answer}");
    // Sender: four organisations already, and a.example makes five.
    let long = send_message(
        "x",
        json!({"convergio.federation.path": ["w.example", "x.example", "y.example", "z.example"]}),
    );
    let (_, answer) = post(&fed.http, &to_b, &fed.a_token, &long).await;
    assert!(
        error_text(&answer).contains("federation hop limit"),
        "{answer}"
    );

    // Receiver: a path that does not end with the signer gets a.example
    // appended, and one that holds b.example is a loop there.
    let key = a_key(&fed);
    let looped = send_message(
        "x",
        json!({"convergio.federation.path": ["b.example", "c.example"]}),
    );
    let (_, answer) = signed_to_b(&fed, &key, &looped).await;
    assert!(error_text(&answer).contains("federation loop"), "{answer}");
    let long = send_message(
        "x",
        json!({"convergio.federation.path": ["w.example", "x.example", "y.example", "z.example"]}),
    );
    let (_, answer) = signed_to_b(&fed, &key, &long).await;
    assert!(
        error_text(&answer).contains("federation hop limit"),
        "{answer}"
    );
    assert_eq!(fed.recorder.calls(), 0, "nothing looped reached the agent");

    // An honest path is extended by the verified signer.
    let honest = send_message("x", json!({"convergio.federation.path": ["c.example"]}));
    let (status, answer) = signed_to_b(&fed, &key, &honest).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        fed.recorder.messages()[0]["metadata"]["convergio.federation.path"],
        json!(["c.example", "a.example"])
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_stored_answer() {
    let fed = federate(None).await;
    let key = a_key(&fed);
    let first = send_message(
        "once",
        json!({"convergio.federation.idempotency_key": "run-1/node/1/0"}),
    );
    let (status, answer) = signed_to_b(&fed, &key, &first).await;
    assert_eq!(status, 200, "{answer}");
    // The same key again (a new signed call, new nonce, new message id).
    let again = send_message(
        "twice",
        json!({"convergio.federation.idempotency_key": "run-1/node/1/0"}),
    );
    let (status, repeated) = signed_to_b(&fed, &key, &again).await;
    assert_eq!(status, 200, "{repeated}");
    assert_eq!(repeated["result"], answer["result"]);
    assert!(repeated.to_string().contains("once"), "{repeated}");
    assert_eq!(fed.recorder.calls(), 1, "the agent ran once");
    // Another key runs.
    let other = send_message(
        "other",
        json!({"convergio.federation.idempotency_key": "run-1/node/2/0"}),
    );
    let (status, _) = signed_to_b(&fed, &key, &other).await;
    assert_eq!(status, 200);
    assert_eq!(fed.recorder.calls(), 2);
}

const CHECKPOINTED: &str = "name: durable_federated\nnodes:\n  - id: remote\n    agent: external://b.example/agents/recorder\nconfig: {checkpoint_enabled: true}\n";

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_status(fed: &Federated, run_id: &str) -> Value {
    let (status, summary) = get(
        &fed.http,
        &format!("{}/v1/runs/{run_id}", fed.a().base),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    summary
}

#[tokio::test]
async fn sigkill_of_a_during_a_remote_node_then_resume_runs_it_once() {
    kill_a_mid_call_then_resume(CHECKPOINTED, json!("sleep:1500 durable"), "durable").await;
}

#[tokio::test]
async fn sigkill_of_a_during_a_streaming_remote_node_then_resume_runs_it_once() {
    let graph = CHECKPOINTED.replace("agents/recorder\n", "agents/recorder\n    stream: true\n");
    // A is killed before B's gateway sees the stream's first event.
    kill_a_mid_call_then_resume(&graph, json!("chunks:60 sleep:1000 durable"), "chunk 60").await;
}

/// Starts `graph` at A, kills A while B's agent runs its remote node,
/// restarts and resumes A: the run succeeds with `expected` in its result,
/// and B's agent ran once (B answered the repeat from its stored outcome).
async fn kill_a_mid_call_then_resume(graph: &str, input: Value, expected: &str) {
    let mut fed = federate(None).await;
    let (status, accepted) = run(&fed, graph, "async", input).await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("run id").to_owned();

    // B's agent has the call: A dies before it can hear the answer.
    let recorder = fed.recorder.clone();
    wait_for("the remote call", || recorder.calls() == 1).await;
    if let Some(a) = fed.a.take() {
        a.kill();
    }
    // B finishes the call although its caller went away, and keeps the answer.
    wait_for("the remote agent to finish", || {
        recorder.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    let b_log = fed.b_log.clone();
    wait_for("B to keep the outcome", || {
        std::fs::read_to_string(&b_log).is_ok_and(|log| log.contains("kept a peer call's outcome"))
    })
    .await;

    fed.restart_a();
    assert_eq!(run_status(&fed, &run_id).await["status"], "running");
    let (status, resumed) = post(
        &fed.http,
        &format!("{}/v1/runs/{run_id}:resume", fed.a().base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert!(status.is_success(), "{resumed}");
    let mut summary = run_status(&fed, &run_id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while summary["status"] == "running" {
        assert!(tokio::time::Instant::now() < deadline, "{summary}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        summary = run_status(&fed, &run_id).await;
    }
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let (_, result) = get(
        &fed.http,
        &format!("{}/v1/runs/{run_id}/result", fed.a().base),
        &fed.a_token,
    )
    .await;
    assert!(result.to_string().contains(expected), "{result}");
    // The resumed run repeated the call with the same key; B answered it
    // from the stored outcome: its agent ran once.
    assert_eq!(recorder.calls(), 1, "{:#?}", recorder.messages());
    let b_log = std::fs::read_to_string(&fed.b_log).expect("b's log");
    assert!(
        b_log.contains("repeated idempotency key answered from its stored outcome"),
        "{b_log}"
    );
}

/// A run's token budget caps what it spends through another organisation:
/// B's agent reports its usage in its answer, A counts it, and once the
/// budget is spent the next remote node is not called at all.
#[tokio::test]
async fn a_budget_spent_through_another_organisation_stops_the_next_remote_call() {
    let fed = federate(None).await;
    let graph = "name: budgeted\nnodes:\n  - {id: first, agent: external://b.example/agents/recorder, inputs: [text]}\n  - {id: second, agent: external://b.example/agents/recorder, inputs: [text]}\nedges:\n  - {from: first, to: second}\nexecution: {max_tokens_per_run: 50}\n";
    let (status, outcome) = run(&fed, graph, "sync", json!({"text": "tokens:50"})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert!(
        outcome["error"].to_string().contains("no tokens left"),
        "{outcome:#}"
    );
    assert_eq!(
        fed.recorder.calls(),
        1,
        "the second remote node was not called"
    );
    assert_eq!(outcome["trace"]["nodes"][0]["tokens_in"], 50, "{outcome:#}");
    // The first call carried what the budget left: all of it.
    assert_eq!(
        fed.recorder.messages()[0]["metadata"]["convergio.maxTokens"],
        50
    );
}

/// B tells A how long it took to answer a call only when B's policy lets
/// A see it (`share_timings`): A's run trace then shows the remote side's
/// time on the node.
#[tokio::test]
async fn the_remote_sides_timing_is_in_the_trace_when_its_policy_shares_it() {
    let fed = federate(None).await;
    let graph = "name: timed\nnodes:\n  - {id: remote, agent: external://b.example/agents/recorder, inputs: [text]}\n";
    // B's shipped policy shares no timing.
    let (status, outcome) = run(&fed, graph, "sync", json!({"text": "sleep:150"})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    assert!(
        outcome["trace"]["nodes"][0].get("remote").is_none(),
        "{outcome:#}"
    );

    let b_token = admin_token(fed._b_dir.path());
    let example = include_str!("../../policies/example.cedar");
    let policies = format!(
        "{example}\n@id(\"share-timings-with-a\")\npermit (principal, action == Action::\"share_timings\", resource is Agent)\nwhen {{ context.caller_org == \"a.example\" }};\n"
    );
    let response = fed
        .http
        .put(format!("{}/v1/policies", fed.b.base))
        .bearer_auth(&b_token)
        .json(&json!({"policies": policies, "reason": "a.example may see our timings"}))
        .send()
        .await
        .expect("answers");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let (status, outcome) = run(&fed, graph, "sync", json!({"text": "sleep:150"})).await;
    assert_eq!(status, 200, "{outcome}");
    let node = &outcome["trace"]["nodes"][0];
    assert_eq!(node["remote"]["org"], "b.example", "{outcome:#}");
    let remote_ms = node["remote"]["duration_ms"].as_u64().expect("a duration");
    assert!(
        remote_ms >= 150,
        "B's time holds its agent's 150 ms: {remote_ms}"
    );
    let node_ms = chrono::DateTime::parse_from_rfc3339(node["end_time"].as_str().expect("end"))
        .expect("a time")
        - chrono::DateTime::parse_from_rfc3339(node["start_time"].as_str().expect("start"))
            .expect("a time");
    assert!(
        node_ms.num_milliseconds() as u64 >= remote_ms,
        "the node's own time includes B's: {node_ms} {remote_ms}"
    );
}
