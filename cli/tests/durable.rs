//! Durable runs for real (issue #8): the `convergio` binary is killed with
//! SIGKILL in the middle of a checkpointed run, started again on the same
//! data dir, and the run is resumed with `convergio graph resume`. A test
//! agent in this process (registered through the API) counts every call, so
//! the test proves that nodes finished before the crash are not called
//! again, that the node in flight is re-sent with the same A2A `messageId`,
//! and that the result equals an uninterrupted run's, and that nodes writing
//! to memory wrote each output once (issue 20). A second case pauses a
//! run for a human, restarts the server, and approves it with the CLI.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use convergio_agents::logic::text_parts;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use convergio_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use support::{admin_token, cli, start_with, Server};

const REPLICA: [(&str, &str); 1] = [("CONVERGIO_REPLICA_ID", "durable-test")];

const CHAIN: &str = r#"
name: durable_chain
nodes:
  - {id: a, agent: counter, inputs: [topic]}
  - {id: b, agent: counter, inputs: [a.output]}
  - {id: c, agent: counter, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

/// [`CHAIN`] whose nodes `a` and `b` write their outputs to memory.
const REMEMBERING_CHAIN: &str = r#"
name: durable_chain
nodes:
  - {id: a, agent: counter, inputs: [topic], memory: {write: [{namespace: notes}]}}
  - {id: b, agent: counter, inputs: [a.output], memory: {write: [{namespace: notes}]}}
  - {id: c, agent: counter, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

const REVIEWED: &str = r#"
name: durable_review
nodes:
  - {id: a, agent: counter, inputs: [topic]}
  - {id: gate, agent: counter, inputs: [a.output], on_error: human}
  - {id: c, agent: counter, inputs: [gate.output]}
edges:
  - {from: a, to: gate}
  - {from: gate, to: c}
config: {checkpoint_enabled: true}
"#;

/// The test agent: answers `node(inputs)`; when armed, hangs on its first
/// call for node `b` (and says so); fails node `gate` while `refuse` is set.
#[derive(Default)]
struct Counter {
    /// Every call: (node id, message id).
    calls: Mutex<Vec<(String, String)>>,
    armed: AtomicBool,
    refuse: AtomicBool,
    hung: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Counter {
    fn count(&self, node: &str) -> usize {
        self.calls().iter().filter(|(id, _)| id == node).count()
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().expect("calls").clone()
    }
}

fn node_of(message: &Value) -> String {
    message["metadata"]["convergio.node_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[async_trait]
impl AgentLogic for Counter {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let node = node_of(message);
        let message_id = message["messageId"].as_str().unwrap_or_default().to_owned();
        self.calls
            .lock()
            .expect("calls")
            .push((node.clone(), message_id));
        if node == "b" && self.armed.swap(false, Ordering::SeqCst) {
            if let Some(hung) = self.hung.lock().expect("hung").take() {
                let _ = hung.send(());
            }
            std::future::pending::<()>().await;
        }
        if node == "gate" && self.refuse.load(Ordering::SeqCst) {
            // No direct reply: `execute` fails the task.
            return None;
        }
        let text = format!("{node}({})", text_parts(message).join(","));
        Some(json!({"parts": [{"text": text}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "refused until a human looks".to_owned(),
        })
    }
}

fn card() -> Value {
    json!({
        "name": "counter",
        "description": "Counts its calls (durable runs test).",
        "version": "1.0.0",
        "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "count", "name": "Count", "description": "Answers node(inputs).", "tags": ["test"]}]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn start_agent(counter: Arc<Counter>) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    spawn_logic(counter, card(), listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

async fn register(server: &Server, data_dir: &Path, agent: &RunningAgent) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/agents", server.base))
        .bearer_auth(admin_token(data_dir))
        .json(&agent.card())
        .send()
        .await
        .expect("registers");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

async fn post(server: &Server, data_dir: &Path, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(admin_token(data_dir))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, data_dir: &Path, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(admin_token(data_dir))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs `convergio graph ARGS…` as the administrator: (success, stdout, stderr).
fn graph_cli(server: &Server, data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("graph")
        .chain(args.iter().copied())
        .collect();
    cli(Some((server, data_dir)), &args)
}

#[test]
fn sigkill_mid_run_then_resume_does_not_redo_finished_nodes() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime();
    let counter = Arc::new(Counter::default());
    let agent = runtime.block_on(start_agent(counter.clone()));
    let server = start_with(data_dir.path(), &REPLICA);
    let input = json!({"topic": "rust"});

    // The reference: the same graph, uninterrupted.
    let expected = runtime.block_on(async {
        register(&server, data_dir.path(), &agent).await;
        let (status, outcome) = post(
            &server,
            data_dir.path(),
            "/v1/runs",
            json!({"graph_yaml": CHAIN, "mode": "sync", "input": input}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        outcome["output"].clone()
    });
    assert_eq!(expected, json!("c(b(a(rust)))"));
    counter.calls.lock().expect("calls").clear();

    // The run to crash: `b` hangs, so `a` is finished and committed. Its
    // nodes write to memory (issue 20).
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .put(format!("{}/v1/memory/notes", server.base))
            .bearer_auth(admin_token(data_dir.path()))
            .json(&json!({"kind": "structured"}))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 201);
    });
    let (hung_sender, hung) = std::sync::mpsc::channel();
    *counter.hung.lock().expect("hung") = Some(hung_sender);
    counter.armed.store(true, Ordering::SeqCst);
    let run_id = runtime.block_on(async {
        let (status, accepted) = post(
            &server,
            data_dir.path(),
            "/v1/runs",
            json!({"graph_yaml": REMEMBERING_CHAIN, "mode": "async", "input": input}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        accepted["run_id"].as_str().expect("run id").to_owned()
    });
    hung.recv_timeout(Duration::from_secs(120))
        .expect("node b was called");
    server.kill();
    let before = counter.calls();
    assert_eq!(
        before
            .iter()
            .map(|(node, _)| node.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    // Same data dir, same replica name: the run is there, still running.
    let server = start_with(data_dir.path(), &REPLICA);
    runtime.block_on(async {
        let (status, summary) = get(&server, data_dir.path(), &format!("/v1/runs/{run_id}")).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["status"], "running");
    });
    let (ok, stdout, stderr) = graph_cli(&server, data_dir.path(), &["resume", &run_id]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "c(b(a(rust)))", "{stderr}");

    // `a` was not called again; `b` was re-sent with the same messageId;
    // `c` ran once.
    let calls = counter.calls();
    assert_eq!(counter.count("a"), 1, "{calls:?}");
    assert_eq!(counter.count("c"), 1, "{calls:?}");
    let b_ids: Vec<&String> = calls
        .iter()
        .filter(|(node, _)| node == "b")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(b_ids.len(), 2, "{calls:?}");
    assert_eq!(b_ids[0], b_ids[1], "the in-flight node keeps its messageId");

    // Each writing node's output is in memory once, under its run, node and
    // iteration: `a`, finished before the crash, was not written again
    // (version 1), and `b` was written when it finished after the resume.
    runtime.block_on(async {
        let (status, listed) = get(&server, data_dir.path(), "/v1/memory/notes/items").await;
        assert_eq!(status, 200, "{listed}");
        let items: Vec<(String, i64, Value)> = listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                let key = item["key"].as_str().unwrap_or_default().to_owned();
                (
                    key,
                    item["version"].as_i64().unwrap_or(0),
                    item["value"].clone(),
                )
            })
            .collect();
        assert_eq!(
            items,
            [
                (format!("{run_id}.a.1"), 1, json!("a(rust)")),
                (format!("{run_id}.b.1"), 1, json!("b(a(rust))")),
            ],
            "{listed}"
        );
    });

    runtime.block_on(async {
        let (status, outcome) = get(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{run_id}/result"),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["output"], expected);
        // Resuming a finished run, or an unknown one, is refused.
        let (status, problem) = post(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{run_id}:resume"),
            json!({}),
        )
        .await;
        assert_eq!(status, 409, "{problem}");
        let unknown = uuid_like();
        let (status, _) = post(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{unknown}:resume"),
            json!({}),
        )
        .await;
        assert_eq!(status, 404);
    });

    // Named checkpoints through the CLI, and a resume from one.
    let (ok, stdout, stderr) = graph_cli(
        &server,
        data_dir.path(),
        &["checkpoints", &run_id, "--name", "done"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("checkpoint done"), "{stdout}");
    let (ok, stdout, stderr) = graph_cli(&server, data_dir.path(), &["checkpoints", &run_id]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("done  step"), "{stdout}");
    let (ok, _, stderr) = graph_cli(
        &server,
        data_dir.path(),
        &["resume", &run_id, "--checkpoint", "missing"],
    );
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    // Bad requests get problem documents and change nothing.
    runtime.block_on(async {
        for (path, body, expected) in [
            (format!("/v1/runs/{run_id}:frobnicate"), json!({}), 404),
            (format!("/v1/runs/{run_id}:input"), json!({}), 400),
            (format!("/v1/runs/{run_id}:approve"), json!({}), 409),
            (
                format!("/v1/runs/{run_id}:resume"),
                json!({"input": {"topic": "x"}}),
                400,
            ),
            (
                format!("/v1/runs/{run_id}:resume"),
                json!({"bogus": 1}),
                400,
            ),
            (
                format!("/v1/runs/{run_id}/checkpoints"),
                json!({"name": ""}),
                400,
            ),
            (
                format!("/v1/runs/{run_id}/checkpoints"),
                json!({"name": "done"}),
                409,
            ),
        ] {
            let (status, problem) = post(&server, data_dir.path(), &path, body).await;
            assert_eq!(status, expected, "{path}: {problem}");
            assert!(problem["detail"].is_string(), "{path}: {problem}");
        }
        let (_, outcome) = get(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{run_id}/result"),
        )
        .await;
        assert_eq!(outcome["output"], expected);
        let (_, listed) = get(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{run_id}/checkpoints"),
        )
        .await;
        assert_eq!(listed["checkpoints"].as_array().map(Vec::len), Some(1));
    });
    drop(server);
    runtime.block_on(agent.shutdown());
}

fn uuid_like() -> String {
    "01936f5e-0000-7000-8000-000000000000".to_owned()
}

#[test]
fn a_run_waiting_for_a_human_survives_a_restart_and_is_approved() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime();
    let counter = Arc::new(Counter::default());
    counter.refuse.store(true, Ordering::SeqCst);
    let agent = runtime.block_on(start_agent(counter.clone()));
    let server = start_with(data_dir.path(), &REPLICA);
    let run_id = runtime.block_on(async {
        register(&server, data_dir.path(), &agent).await;
        let (status, outcome) = post(
            &server,
            data_dir.path(),
            "/v1/runs",
            json!({"graph_yaml": REVIEWED, "mode": "sync", "input": {"topic": "go"}}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "waiting_for_human", "{outcome}");
        outcome["run_id"].as_str().expect("run id").to_owned()
    });
    drop(server);

    let server = start_with(data_dir.path(), &REPLICA);
    runtime.block_on(async {
        let (status, summary) = get(&server, data_dir.path(), &format!("/v1/runs/{run_id}")).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["status"], "waiting_for_human");
        // Resuming is not approving.
        let (status, problem) = post(
            &server,
            data_dir.path(),
            &format!("/v1/runs/{run_id}:resume"),
            json!({}),
        )
        .await;
        assert_eq!(status, 409, "{problem}");
    });
    counter.refuse.store(false, Ordering::SeqCst);
    let (ok, stdout, stderr) = graph_cli(&server, data_dir.path(), &["approve", &run_id]);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "c(gate(a(go)))", "{stderr}");
    assert_eq!(counter.count("a"), 1);
    // Approving again: the run is not waiting any more.
    let (ok, _, stderr) = graph_cli(&server, data_dir.path(), &["approve", &run_id]);
    assert!(!ok);
    assert!(stderr.contains("409"), "{stderr}");
    drop(server);
    runtime.block_on(agent.shutdown());
}

/// Polls `GET path` on `server` until `done` holds (the run is driven by a
/// replica the test has no stream from); gives up after two minutes.
async fn wait_for(
    server: &Server,
    data_dir: &Path,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..2400 {
        let (_, body) = get(server, data_dir, path).await;
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never reached the expected state");
}

#[test]
fn another_replica_on_postgres_finishes_a_run_whose_replica_was_killed() {
    // Dropped when the test ends, also when it fails.
    let database = TestDatabase::create_blocking("convergio_d");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime();
    let counter = Arc::new(Counter::default());
    let agent = runtime.block_on(start_agent(counter.clone()));
    let replica = |name: &'static str| {
        start_with(
            data_dir.path(),
            &[
                ("CONVERGIO_DATABASE_URL", database.url()),
                ("CONVERGIO_REPLICA_ID", name),
                ("CONVERGIO_RUN_LEASE_SECONDS", "1"),
            ],
        )
    };
    let first = replica("replica-one");
    let second = replica("replica-two");
    let (hung_sender, hung) = std::sync::mpsc::channel();
    *counter.hung.lock().expect("hung") = Some(hung_sender);
    counter.armed.store(true, Ordering::SeqCst);
    let run_id = runtime.block_on(async {
        register(&first, data_dir.path(), &agent).await;
        let (status, accepted) = post(
            &first,
            data_dir.path(),
            "/v1/runs",
            json!({"graph_yaml": CHAIN, "mode": "async", "input": {"topic": "pg"}}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        accepted["run_id"].as_str().expect("run id").to_owned()
    });
    hung.recv_timeout(Duration::from_secs(120))
        .expect("node b was called");
    runtime.block_on(async {
        // Any replica reads any run from the store.
        let (status, summary) = get(&second, data_dir.path(), &format!("/v1/runs/{run_id}")).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["status"], "running");
    });
    first.kill();
    // The first replica's lease expires; the second claims the run and
    // finishes it from its last checkpoint.
    let outcome = runtime.block_on(wait_for(
        &second,
        data_dir.path(),
        &format!("/v1/runs/{run_id}/result"),
        |body| body["status"] == "succeeded",
    ));
    assert_eq!(outcome["output"], json!("c(b(a(pg)))"));
    let calls = counter.calls();
    assert_eq!(counter.count("a"), 1, "{calls:?}");
    assert_eq!(counter.count("c"), 1, "{calls:?}");
    let b_ids: Vec<&String> = calls
        .iter()
        .filter(|(node, _)| node == "b")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(b_ids.len(), 2, "{calls:?}");
    assert_eq!(b_ids[0], b_ids[1], "re-sent with the same messageId");
    drop(second);
    runtime.block_on(agent.shutdown());
}
