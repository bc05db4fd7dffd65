//! Issue 15 against the real binary: a cancelled checkpointed run stays
//! cancelled across a restart (defect 7), a run started by the anonymous
//! loopback caller survives a crash and completes (defect 8), and text
//! holding NUL is a 400 on SQLite and on PostgreSQL alike (defect 9).
//!
//! A test agent in this process (registered through the API) records every
//! call; while `hold` is set it never answers node `b`, so runs can be
//! caught with `a` committed and `b` in flight.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use convergio_agents::logic::text_parts;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use convergio_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use support::{admin_token, cli, start, start_with, Server};

const CHAIN: &str = r#"
name: hardening_chain
nodes:
  - {id: a, agent: holder, inputs: [topic]}
  - {id: b, agent: holder, inputs: [a.output]}
  - {id: c, agent: holder, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

/// One replica name across restarts, and short leases so a restarted
/// server's lease keeper takes its previous process's runs over quickly.
const DURABLE: [(&str, &str); 2] = [
    ("CONVERGIO_REPLICA_ID", "hardening-test"),
    ("CONVERGIO_RUN_LEASE_SECONDS", "1"),
];

/// Answers `node(inputs)`; holds every call for node `b` while `hold` is set.
#[derive(Default)]
struct Holder {
    /// Every call: (node id, message id — `{run}/{node}/{iteration}/{attempt}`).
    calls: Mutex<Vec<(String, String)>>,
    hold: AtomicBool,
    held: AtomicUsize,
}

impl Holder {
    fn calls_of_run(&self, run_id: &str) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(_, message_id)| message_id.starts_with(run_id))
            .map(|(node, _)| node.clone())
            .collect()
    }
}

#[async_trait]
impl AgentLogic for Holder {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let node = message["metadata"]["convergio.node_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let message_id = message["messageId"].as_str().unwrap_or_default().to_owned();
        self.calls
            .lock()
            .expect("calls")
            .push((node.clone(), message_id));
        if node == "b" && self.hold.load(Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        let text = format!("{node}({})", text_parts(message).join(","));
        Some(json!({"parts": [{"text": text}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "every call is answered directly".to_owned(),
        })
    }
}

fn card() -> Value {
    json!({
        "name": "holder",
        "description": "Holds node b while asked to (hardening test).",
        "version": "1.0.0",
        "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "hold", "name": "Hold", "description": "Answers node(inputs).", "tags": ["test"]}]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn start_agent(holder: Arc<Holder>) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    spawn_logic(holder, card(), listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

/// `method path` with `body`, as the administrator (`Some(data_dir)`) or
/// anonymously (`None`): (status, JSON body or null).
async fn call(
    server: &Server,
    admin: Option<&Path>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .header("A2A-Version", "1.0");
    if let Some(data_dir) = admin {
        request = request.bearer_auth(admin_token(data_dir));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(server: &Server, data_dir: &Path, agent: &RunningAgent) {
    let (status, body) = call(
        server,
        Some(data_dir),
        reqwest::Method::POST,
        "/v1/agents",
        Some(agent.card()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Polls until `done` holds on `GET path`; gives up after two minutes.
async fn wait_for(
    server: &Server,
    admin: Option<&Path>,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = call(server, admin, reqwest::Method::GET, path, None).await;
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `count` calls for node `b` are being held.
async fn wait_held(holder: &Holder, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while holder.held.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "node b was not called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_run(server: &Server, admin: Option<&Path>, topic: &str) -> String {
    let (status, accepted) = call(
        server,
        admin,
        reqwest::Method::POST,
        "/v1/runs",
        Some(json!({"graph_yaml": CHAIN, "mode": "async", "input": {"topic": topic}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    accepted["run_id"].as_str().expect("run id").to_owned()
}

// Regression: issue #15, defect 7
#[test]
fn a_cancelled_checkpointed_run_is_not_resumed_after_a_restart() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let admin = Some(data_dir.path());
    let runtime = runtime();
    let holder = Arc::new(Holder::default());
    let agent = runtime.block_on(start_agent(holder.clone()));
    let server = start_with(data_dir.path(), &DURABLE);
    holder.hold.store(true, Ordering::SeqCst);
    let (cancelled, kept) = runtime.block_on(async {
        register(&server, data_dir.path(), &agent).await;
        let cancelled = start_run(&server, admin, "cancelled").await;
        let kept = start_run(&server, admin, "kept").await;
        wait_held(&holder, 2).await;
        (cancelled, kept)
    });
    // Another principal gets the unknown-run answer.
    runtime.block_on(async {
        let path = format!("/v1/runs/{cancelled}:cancel");
        let (status, _) = call(&server, None, reqwest::Method::POST, &path, None).await;
        assert_eq!(status, 404);
    });
    let (ok, stdout, stderr) = cli(
        Some((&server, data_dir.path())),
        &["graph", "cancel", &cancelled],
    );
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    runtime.block_on(wait_for(
        &server,
        admin,
        &format!("/v1/runs/{cancelled}"),
        |summary| summary["status"] == "cancelled",
    ));
    server.kill();

    // After the restart the lease keeper takes over the run that was not
    // cancelled and finishes it; the cancelled one stays as it was.
    holder.hold.store(false, Ordering::SeqCst);
    let server = start_with(data_dir.path(), &DURABLE);
    runtime.block_on(async {
        let outcome = wait_for(&server, admin, &format!("/v1/runs/{kept}/result"), |body| {
            body["status"] == "succeeded"
        })
        .await;
        assert_eq!(outcome["output"], json!("c(b(a(kept)))"));
        let (status, summary) = call(
            &server,
            admin,
            reqwest::Method::GET,
            &format!("/v1/runs/{cancelled}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["status"], "cancelled");
        let (status, problem) = call(
            &server,
            admin,
            reqwest::Method::POST,
            &format!("/v1/runs/{cancelled}:resume"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 409, "{problem}");
    });
    assert_eq!(holder.calls_of_run(&cancelled), ["a", "b"]);
    drop(server);
    runtime.block_on(agent.shutdown());
}

// Regression: issue #15, defect 8
#[test]
fn an_anonymous_loopback_run_survives_a_crash_and_completes() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime();
    let holder = Arc::new(Holder::default());
    let agent = runtime.block_on(start_agent(holder.clone()));
    let server = start_with(data_dir.path(), &DURABLE);
    holder.hold.store(true, Ordering::SeqCst);
    let run_id = runtime.block_on(async {
        register(&server, data_dir.path(), &agent).await;
        // The README's anonymous caller may call this deployment's internal
        // agents from loopback (policy tour-loopback-anonymous).
        let (status, body) = call(
            &server,
            Some(data_dir.path()),
            reqwest::Method::PUT,
            "/v1/agents/holder/trust",
            Some(json!({"level": "internal", "reason": "run by this deployment"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let run_id = start_run(&server, None, "anon").await;
        wait_held(&holder, 1).await;
        run_id
    });
    server.kill();
    holder.hold.store(false, Ordering::SeqCst);
    let server = start_with(data_dir.path(), &DURABLE);
    let outcome = runtime.block_on(wait_for(
        &server,
        None,
        &format!("/v1/runs/{run_id}/result"),
        |body| {
            body["status"]
                .as_str()
                .is_some_and(|status| status != "running")
        },
    ));
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["output"], json!("c(b(a(anon)))"));
    assert_eq!(holder.calls_of_run(&run_id), ["a", "b", "b", "c"]);
    drop(server);
    runtime.block_on(agent.shutdown());
}

/// The four inputs that made PostgreSQL answer 500: each must be a 400
/// problem (or an A2A invalid-params error), whatever the backend.
fn nul_text_is_refused_at_the_edge(server: &Server, data_dir: &Path) {
    let admin = Some(data_dir);
    runtime().block_on(async {
        // Discovery parameters.
        for path in ["/v1/agents?q=a%00b", "/v1/agents?skill=x%00", "/v1/agents?tag=%00"] {
            let (status, problem) = call(server, admin, reqwest::Method::GET, path, None).await;
            assert_eq!(status, 400, "{path}: {problem}");
            assert_eq!(problem["kind"], "invalid_input", "{path}: {problem}");
        }
        // Card fields.
        let mut card = card();
        card["description"] = json!("holds\u{0}nothing");
        card["supportedInterfaces"] = json!([{"url": "http://127.0.0.1:9/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]);
        let (status, problem) =
            call(server, admin, reqwest::Method::POST, "/v1/agents", Some(card)).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["violations"][0]["pointer"], "/description", "{problem}");
        // API-key subjects.
        let (status, problem) = call(
            server,
            admin,
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(json!({"subject": "ci\u{0}bot", "scopes": []})),
        )
        .await;
        assert_eq!(status, 400, "{problem}");
        // Task ids, on both bindings of an example agent.
        let (status, answer) = call(
            server,
            admin,
            reqwest::Method::POST,
            "/agents/echo",
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t\u{0}1"}})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        let (status, answer) = call(
            server,
            admin,
            reqwest::Method::GET,
            "/agents/echo/tasks/t%001",
            None,
        )
        .await;
        assert_eq!(status, 400, "{answer}");
    });
}

// Regression: issue #15, defect 9
#[test]
fn nul_text_is_a_400_on_sqlite() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    nul_text_is_refused_at_the_edge(&server, data_dir.path());
}

// Regression: issue #15, defect 9
#[test]
fn nul_text_is_a_400_on_postgres() {
    // Dropped last (after the server), also when the test fails.
    let database = TestDatabase::create_blocking("convergio_h");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(
        data_dir.path(),
        &[("CONVERGIO_DATABASE_URL", database.url())],
    );
    nul_text_is_refused_at_the_edge(&server, data_dir.path());
}
