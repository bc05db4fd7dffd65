//! Graphs through the real gateway: the application `convergio serve` builds
//! (SQLite registry in a temp dir, the example agents on loopback ports,
//! registered as internal agents), served on 127.0.0.1:0 and driven over
//! HTTP: the four run modes, stored graphs, problem documents, the trace
//! context reaching an agent, budgets fed by reported usage, failing and
//! hanging agents under their node's strategy, `external://` nodes, and
//! `/metrics`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use convergio_agents::{ExampleAgent, RunningAgent, ServeOptions};
use convergio_gateway::app::{build_app, serve, AppConfig};
use convergio_gateway::runs_api::GraphsConfig;
use convergio_gateway::Principal;
use convergio_orchestrator::Limits;
use convergio_registry::{Registration, Registry, RegistryConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower::ServiceExt;

const PIPELINE: &str = include_str!("../../examples/graphs/code_review_pipeline.yaml");

const SOURCE: &str = "import os\n\ndef run(cmd):\n    password = \"hunter2\"\n    os.system(cmd)\n    for i in range(10):\n        for j in range(10):\n            print(i, j)\n";

/// What the recording agent saw.
#[derive(Default)]
struct Seen {
    traceparents: Mutex<Vec<String>>,
}

/// The server under test.
struct Server {
    base: String,
    http: reqwest::Client,
    router: Router,
    seen: Arc<Seen>,
    _agents: Vec<RunningAgent>,
    _dir: tempfile::TempDir,
}

/// A minimal A2A agent that records the `traceparent` it receives and
/// reports 3 tool calls per answer.
async fn recorder(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Json<Value> {
    if let Some(value) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        seen.traceparents
            .lock()
            .expect("recorder lock")
            .push(value.to_owned());
    }
    Json(json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"message": {
            "messageId": "recorded-1",
            "role": "ROLE_AGENT",
            "parts": [{"text": "recorded"}],
            "metadata": {"usage": {"tokens_in": 5, "tokens_out": 1, "tool_calls": 3}}
        }}
    }))
}

async fn start(graphs: GraphsConfig) -> Server {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("registry.db").display()
    );
    let db = convergio_store::Db::open(&url, &convergio_store::DbConfig::default())
        .await
        .expect("the database opens");
    let store = convergio_store::registry::AgentStore::open(&db)
        .await
        .expect("the registry opens");
    let registry = Registry::new(
        Arc::new(store),
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let mut agents = Vec::new();
    for agent in ExampleAgent::ALL {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let running = convergio_agents::spawn(agent, listener, ServeOptions::default())
            .await
            .expect("the example agent starts");
        register(&registry, agent.name(), running.card()).await;
        agents.push(running);
    }
    let seen = Arc::new(Seen::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let recorder_url = format!("http://{}/", listener.local_addr().expect("an address"));
    let app = Router::new()
        .route("/", post(recorder))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let card = json!({
        "name": "recorder", "description": "records trace context", "version": "1",
        "supportedInterfaces": [{"url": recorder_url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "record", "name": "record", "description": "records", "tags": ["test"]}]
    });
    register(&registry, "recorder", card).await;

    let (router, _runs) = build_app(
        registry,
        AppConfig {
            graphs,
            a2a: convergio_gateway::a2a::A2aConfig {
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..Default::default()
            },
            ..AppConfig::default()
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let served = router.clone();
    tokio::spawn(async move { serve(listener, served, std::future::pending()).await });
    Server {
        base,
        http: reqwest::Client::new(),
        router,
        seen,
        _agents: agents,
        _dir: dir,
    }
}

async fn register(registry: &Registry, name: &str, card: Value) {
    registry
        .upsert_system(Registration {
            name: Some(name.to_owned()),
            org: None,
            role: None,
            card,
            upstreams: None,
            trust: None,
        })
        .await
        .expect("the agent registers");
}

// === impl Server ===

impl Server {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_text(&self, path: &str, text: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/yaml")
            .body(text.to_owned())
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Reads a whole SSE answer (the server ends it after `run_finished`).
    async fn events(&self, response: reqwest::Response) -> Vec<Value> {
        assert_eq!(response.status().as_u16(), 200);
        convergio_tests::sse::events(response).await
    }

    async fn run(&self, yaml: &str, input: Value) -> Value {
        let (status, outcome) = self
            .post("/v1/runs", &json!({"graph_yaml": yaml, "input": input}))
            .await;
        assert_eq!(status, 200, "{outcome}");
        outcome
    }
}

/// A caller of another organisation with an API key.
fn api_key_caller(org: &str, scopes: &[&str]) -> Principal {
    Principal {
        subject: format!("bot@{org}"),
        org: Some(org.to_owned()),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        method: convergio_gateway::AuthMethod::ApiKey,
    }
}

fn admin() -> Principal {
    convergio_gateway::layers::admin_principal()
}

impl Server {
    /// `method path` in-process as `principal` (set as the authentication
    /// layer would; no connection, so not loopback): status and body (JSON,
    /// else the text as a JSON string).
    async fn as_principal(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        principal: Principal,
    ) -> (u16, Value) {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body.unwrap_or_default()))
            .expect("a request");
        request.extensions_mut().insert(principal);
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }
}

fn node_statuses(outcome: &Value) -> Vec<(String, String)> {
    outcome["trace"]["nodes"]
        .as_array()
        .expect("trace nodes")
        .iter()
        .map(|node| {
            (
                node["node_id"].as_str().unwrap_or_default().to_owned(),
                node["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn code_review_pipeline_runs_through_the_gateway_in_sync_mode() {
    let server = start(GraphsConfig::default()).await;
    let outcome = server.run(PIPELINE, json!({"source_code": SOURCE})).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let report = outcome["output"][0].as_str().expect("a markdown report");
    assert!(report.contains('#'), "{report}");
    assert_eq!(outcome["output"][1]["agent"], "report_generator");
    let nodes = node_statuses(&outcome);
    assert_eq!(nodes.len(), 6);
    assert!(nodes.iter().all(|(_, status)| status == "success"));
    // Usage the agents reported reached the trace.
    assert!(outcome["trace"]["total_tokens"].as_u64().unwrap_or(0) > 0);
}

#[tokio::test]
async fn async_runs_answer_at_once_and_are_reachable_by_id() {
    let server = start(GraphsConfig::default()).await;
    let (status, accepted) = server
        .post(
            "/v1/runs",
            &json!({"graph_yaml": PIPELINE, "mode": "async", "input": {"source_code": SOURCE}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("a run id").to_owned();
    assert_eq!(accepted["status"], "running");
    // Following the events is the synchronisation: they end with the run.
    let response = server
        .http
        .get(format!("{}/v1/runs/{run_id}/events", server.base))
        .send()
        .await
        .expect("the events answer");
    let events = server.events(response).await;
    assert_eq!(events.last().expect("events")["type"], "run_finished");
    let (status, summary) = server.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(
        (status, summary["status"].clone()),
        (200, json!("succeeded"))
    );
    let (status, result) = server.get(&format!("/v1/runs/{run_id}/result")).await;
    assert_eq!(status, 200);
    assert_eq!(result["output"][1]["agent"], "report_generator");
    let (status, trace) = server.get(&format!("/v1/runs/{run_id}/trace")).await;
    assert_eq!(status, 200);
    assert_eq!(trace["graph_id"], "code_review_pipeline");
    assert_eq!(trace["nodes"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn stream_mode_sends_every_node_event_then_the_end() {
    let server = start(GraphsConfig::default()).await;
    let response = server
        .http
        .post(format!("{}/v1/runs", server.base))
        .json(&json!({"graph_yaml": PIPELINE, "mode": "stream", "input": {"source_code": SOURCE}}))
        .send()
        .await
        .expect("the stream answers");
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let events = server.events(response).await;
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("node_started"), 6);
    assert_eq!(count("node_output"), 6);
    assert_eq!(count("node_finished"), 6);
    assert_eq!(count("run_finished"), 1);
    let last = events.last().expect("events");
    assert_eq!(
        (last["type"].clone(), last["status"].clone()),
        (json!("run_finished"), json!("succeeded"))
    );
    let first = events.first().expect("events");
    assert_eq!(
        (first["type"].clone(), first["node_id"].clone()),
        (json!("node_started"), json!("analyzer"))
    );
}

#[tokio::test]
async fn a_streaming_node_passes_its_agents_events_on_in_order() {
    let server = start(GraphsConfig::default()).await;
    // `echo` streams a task; `recorder` answers the stream request with one
    // JSON result, which reaches the run as a one-event stream.
    let graph = "name: streamed\nnodes:\n  - {id: echo, agent: echo, inputs: [text], stream: true}\n  - {id: rec, agent: recorder, inputs: [echo.output], stream: true}\nedges:\n  - {from: echo, to: rec}\n";
    let response = server
        .http
        .post(format!("{}/v1/runs", server.base))
        .json(&json!({"graph_yaml": graph, "mode": "stream", "input": {"text": "hello"}}))
        .send()
        .await
        .expect("the stream answers");
    let events = server.events(response).await;
    let kinds: Vec<String> = events
        .iter()
        .map(|event| match event["type"].as_str() {
            Some("node_update") => {
                let kind = event["event"]
                    .as_object()
                    .and_then(|event| event.keys().next().cloned())
                    .unwrap_or_default();
                format!("{}:{kind}", event["node_id"].as_str().unwrap_or_default())
            }
            Some(kind) => format!("{}:{kind}", event["node_id"].as_str().unwrap_or("run")),
            None => "?".to_owned(),
        })
        .collect();
    // Each node's agent events come between its start and its end, in the
    // order the agent made them.
    let echo: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|kind| *kind != "echo:node_started")
        .take_while(|kind| *kind != "echo:node_finished")
        .filter(|kind| !kind.ends_with("node_output"))
        .collect();
    assert_eq!(echo.first(), Some(&"echo:node_started"), "{kinds:?}");
    assert_eq!(echo.get(1), Some(&"echo:task"), "{kinds:?}");
    assert!(echo.contains(&"echo:artifactUpdate"), "{kinds:?}");
    assert_eq!(echo.last(), Some(&"echo:statusUpdate"), "{kinds:?}");
    let rec: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|kind| kind.starts_with("rec:") && !kind.contains("node_"))
        .collect();
    assert_eq!(rec, ["rec:message"], "{kinds:?}");
    let echoed = events
        .iter()
        .find_map(|event| event.pointer("/event/artifactUpdate/artifact/parts/0/text"))
        .expect("echo's artifact");
    assert_eq!(echoed, "echo: hello");
    let outputs: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "node_output")
        .map(|event| &event["output"])
        .collect();
    assert_eq!(outputs, [&json!("echo: hello"), &json!("recorded")]);
    let last = events.last().expect("events");
    assert_eq!(last["status"], "succeeded", "{events:#?}");
}

#[tokio::test]
async fn batch_mode_isolates_a_bad_input() {
    let server = start(GraphsConfig::default()).await;
    let (status, batch) = server
        .post(
            "/v1/runs",
            &json!({
                "graph_yaml": PIPELINE, "mode": "batch", "concurrency": 2,
                "inputs": [{"source_code": SOURCE}, {"wrong": 1}, {"source_code": "x = 1\n"}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        (batch["succeeded"].clone(), batch["failed"].clone()),
        (json!(2), json!(1))
    );
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["run"]["status"], "succeeded");
    assert!(results[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("source_code")));
    assert_eq!(results[2]["run"]["status"], "succeeded");
}

#[tokio::test]
async fn stored_graphs_are_listed_fetched_and_run_by_name() {
    let server = start(GraphsConfig::default()).await;
    let (status, summary) = server.post_text("/v1/graphs", PIPELINE).await;
    assert_eq!(status, 201, "{summary}");
    assert_eq!(
        (
            summary["name"].clone(),
            summary["nodes"].clone(),
            summary["version"].clone()
        ),
        (json!("code_review_pipeline"), json!(6), json!(1))
    );
    let (status, again) = server.post_text("/v1/graphs", PIPELINE).await;
    assert_eq!((status, again["version"].clone()), (200, json!(2)));
    let (_, list) = server.get("/v1/graphs").await;
    assert_eq!(list["graphs"].as_array().map(Vec::len), Some(1));
    let (status, document) = server.get("/v1/graphs/code_review_pipeline").await;
    assert_eq!(status, 200);
    assert_eq!(document["source"], PIPELINE);
    // The source parsed, for clients that draw the graph (the console).
    assert_eq!(document["spec"]["nodes"].as_array().map(Vec::len), Some(6));
    assert_eq!(document["spec"]["edges"][0]["from"], "analyzer");
    let (status, outcome) = server
        .post(
            "/v1/runs",
            &json!({"graph": "code_review_pipeline", "input": {"source_code": SOURCE}}),
        )
        .await;
    assert_eq!(
        (status, outcome["status"].clone()),
        (200, json!("succeeded"))
    );
    let (status, valid) = server.post_text("/v1/graphs:validate", PIPELINE).await;
    assert_eq!((status, valid["edges"].clone()), (200, json!(7)));
}

#[tokio::test]
async fn bad_graphs_get_problem_documents_and_change_nothing() {
    let server = start(GraphsConfig {
        limits: Limits {
            max_nodes: 3,
            ..Limits::default()
        },
        ..GraphsConfig::default()
    })
    .await;
    let small = "name: small\nnodes:\n  - id: a\n    agent: echo\n";
    assert_eq!(server.post_text("/v1/graphs", small).await.0, 201);

    // Invalid YAML names its line.
    let (status, problem) = server
        .post_text("/v1/graphs", "name: broken\nnodes:\n  - id: [a\n")
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("line")),
        "{problem}"
    );

    // An agent the registry does not know, pointed at by line.
    let unknown =
        "name: unknown\nnodes:\n  - id: a\n    agent: echo\n  - id: b\n    agent: nobody_here\n";
    let (status, problem) = server.post_text("/v1/graphs", unknown).await;
    assert_eq!(status, 400, "{problem}");
    let violations = problem["violations"].as_array().expect("violations");
    assert!(
        violations.iter().any(|v| {
            let message = v["message"].as_str().unwrap_or_default();
            message.contains("nobody_here") && message.contains("line 6")
        }),
        "{problem:#}"
    );

    // Schema violations (a node without an id).
    let (status, problem) = server
        .post_text("/v1/graphs", "name: bad\nnodes:\n  - agent: echo\n")
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(!problem["violations"]
        .as_array()
        .map(Vec::is_empty)
        .unwrap_or(true));

    // Over the configured size.
    let big = "name: big\nnodes:\n  - {id: a, agent: echo}\n  - {id: b, agent: echo}\n  - {id: c, agent: echo}\n  - {id: d, agent: echo}\nedges:\n  - {from: a, to: [b, c, d]}\n";
    let (status, problem) = server.post_text("/v1/graphs", big).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("4 nodes, more than the limit of 3")),
        "{problem}"
    );

    // Nothing but the first graph was stored.
    let (_, list) = server.get("/v1/graphs").await;
    let names: Vec<&str> = list["graphs"]
        .as_array()
        .expect("graphs")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["small"]);

    // Unknown runs and graphs.
    let (status, problem) = server
        .get(&format!("/v1/runs/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!((status, problem["kind"].clone()), (404, json!("not_found")));
    assert_eq!(server.get("/v1/runs/not-a-uuid/trace").await.0, 404);
    let (status, _) = server
        .post("/v1/runs", &json!({"graph": "missing", "input": {}}))
        .await;
    assert_eq!(status, 404);

    // A run input that lacks what a node expects.
    let needs = "name: needs\nnodes:\n  - id: a\n    agent: echo\n    inputs: [text]\n";
    let (status, problem) = server
        .post(
            "/v1/runs",
            &json!({"graph_yaml": needs, "input": {"other": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .is_some_and(|d| d.contains("text")));

    // A malformed run request.
    let (status, _) = server.post("/v1/runs", &json!({"mode": "sometimes"})).await;
    assert_eq!(status, 400);
}

// Regression: issue #15, defect 1: a 200 KB document of 100,000 nested flow
// sequences took 34 s of CPU on an async worker before its 400, and two of
// them stalled `/healthz` for over a minute.
#[tokio::test]
async fn deeply_nested_documents_get_400_while_health_keeps_answering() {
    let server = start(GraphsConfig::default()).await;
    let deep = |open: &str, close: &str| {
        format!(
            "name: deep\nnodes: {}{}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    let flow = deep("[", "]");
    let json_like = format!(
        "{{\"name\": \"deep\", \"nodes\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let run = json!({"graph_yaml": deep("{a: ", "}"), "mode": "sync"});
    let health = async {
        let response = server
            .http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("the server answers");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };
    let (validated, stored, started, health) = tokio::join!(
        server.post_text("/v1/graphs:validate", &flow),
        server.post_text("/v1/graphs", &json_like),
        server.post("/v1/runs", &run),
        health,
    );
    assert_eq!(health, (200, "ok".to_owned()));
    for (what, (status, problem)) in [("validate", validated), ("store", stored), ("run", started)]
    {
        assert_eq!(status, 400, "{what}: {problem}");
        let detail = problem.to_string();
        assert!(detail.contains("deeper than 64"), "{what}: {detail}");
    }
    // Nothing was stored, and an ordinary graph still validates.
    assert_eq!(server.get("/v1/graphs").await.1["graphs"], json!([]));
    let (status, valid) = server.post_text("/v1/graphs:validate", PIPELINE).await;
    assert_eq!(status, 200, "{valid}");
}

#[tokio::test]
async fn trace_context_reaches_the_agent() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: traced\nnodes:\n  - id: a\n    agent: recorder\n";
    let outcome = server.run(graph, json!("hello")).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    assert_eq!(outcome["output"], "recorded");
    let trace_id = outcome["trace"]["trace_id"].as_str().expect("a trace id");
    let seen = server
        .seen
        .traceparents
        .lock()
        .expect("recorder lock")
        .clone();
    assert_eq!(seen.len(), 1);
    let parts: Vec<&str> = seen[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", seen[0]);
    assert_eq!((parts[0], parts[1]), ("00", trace_id));
}

#[tokio::test]
async fn reported_usage_feeds_the_run_budget() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: budget\nnodes:\n  - id: a\n    agent: recorder\n    on_error: abort\nexecution:\n  max_tool_calls_per_agent: 2\n";
    let outcome = server.run(graph, json!("hello")).await;
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert!(outcome["error"]
        .as_str()
        .is_some_and(|e| e.contains("budget exceeded") && e.contains("3 tool calls")));
}

#[tokio::test]
async fn a_failing_agent_is_handled_by_its_node_strategy() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: failing\nnodes:\n  - id: flaky\n    agent: echo\n    inputs: [text]\n    on_error: skip\n  - id: after\n    agent: echo\n    inputs: [note]\nedges:\n  - {from: flaky, to: after}\n";
    let outcome = server
        .run(graph, json!({"text": "fail", "note": "still here"}))
        .await;
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    assert_eq!(outcome["output"], "echo: still here");
    assert!(node_statuses(&outcome).contains(&("flaky".to_owned(), "skipped".to_owned())));
}

#[tokio::test]
async fn a_hanging_agent_times_out_into_its_fallback() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: hanging\nnodes:\n  - id: slow\n    agent: echo\n    timeout_seconds: 0.3\n    on_error: {fallback: code_analyzer}\n";
    let outcome = server.run(graph, json!("sleep:600000")).await;
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let nodes = outcome["trace"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{outcome:#}");
    assert_eq!(
        (nodes[0]["agent"].clone(), nodes[0]["status"].clone()),
        (json!("echo"), json!("failed"))
    );
    assert_eq!(
        (nodes[1]["agent"].clone(), nodes[1]["status"].clone()),
        (json!("code_analyzer"), json!("success"))
    );

    let abort = "name: hanging_abort\nnodes:\n  - id: slow\n    agent: echo\n    timeout_seconds: 0.3\n    on_error: abort\n";
    let outcome = server.run(abort, json!("sleep:600000")).await;
    assert_eq!(outcome["status"], "failed");
    assert!(outcome["error"]
        .as_str()
        .is_some_and(|e| e.contains("timed out")));
}

#[tokio::test]
async fn external_agents_validate_but_are_not_routable_without_federation() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: partner\nnodes:\n  - id: remote\n    agent: external://partner.example/agents/reviewer\n    on_error: abort\n";
    assert_eq!(server.post_text("/v1/graphs:validate", graph).await.0, 200);
    let outcome = server.run(graph, json!("hello")).await;
    assert_eq!(outcome["status"], "failed");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not routable") && error.contains("federation"),
        "{error}"
    );
}

#[tokio::test]
async fn runs_are_visible_only_to_their_caller() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: mine\nnodes:\n  - id: a\n    agent: echo\n";
    let outcome = server.run(graph, json!("hi")).await;
    let run_id = outcome["run_id"].as_str().expect("a run id");
    assert_eq!(server.get(&format!("/v1/runs/{run_id}")).await.0, 200);
    // Another principal, set in-process as an authentication layer would.
    let mut request = axum::http::Request::builder()
        .uri(format!("/v1/runs/{run_id}"))
        .body(axum::body::Body::empty())
        .expect("a request");
    request.extensions_mut().insert(Principal {
        subject: "mallory".into(),
        ..Principal::anonymous()
    });
    let response = server
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn metrics_count_runs_in_prometheus_format() {
    let server = start(GraphsConfig::default()).await;
    server
        .run(
            "name: counted\nnodes:\n  - id: a\n    agent: echo\n",
            json!("hi"),
        )
        .await;
    let (status, text) = server.as_principal("GET", "/metrics", None, admin()).await;
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("convergio_graph_runs_total{graph=\"counted\",status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(text.contains("convergio_node_executions_total{agent=\"echo\",status=\"success\"} 1"));
}

// Regression: issue #15, defect 7
#[tokio::test]
async fn a_run_is_cancelled_by_its_owner_only() {
    let server = start(GraphsConfig::default()).await;
    let graph = "name: stuck\nnodes:\n  - id: wait\n    agent: echo\n";
    let (status, accepted) = server
        .post(
            "/v1/runs",
            &json!({"graph_yaml": graph, "mode": "async", "input": "sleep:600000"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("a run id").to_owned();

    // Another principal gets the unknown-run answer, and the run goes on.
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/runs/{run_id}:cancel"))
        .body(axum::body::Body::empty())
        .expect("a request");
    request.extensions_mut().insert(Principal {
        subject: "mallory".into(),
        ..Principal::anonymous()
    });
    let response = server
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status().as_u16(), 404);
    let (_, summary) = server.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(summary["status"], "running", "{summary}");

    let (status, cancelled) = server
        .post(&format!("/v1/runs/{run_id}:cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, summary) = server.get(&format!("/v1/runs/{run_id}")).await;
        if summary["status"] == "cancelled" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never stopped: {summary}"
        );
        tokio::task::yield_now().await;
    }
    let (status, result) = server.get(&format!("/v1/runs/{run_id}/result")).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "cancelled");
    // Cancelling again changes nothing; an unknown run is 404.
    let (status, _) = server
        .post(&format!("/v1/runs/{run_id}:cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            "/v1/runs/01936f5e-0000-7000-8000-000000000000:cancel",
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

/// Issue 14: `/metrics` is for operators and administrators, not for any
/// authenticated caller, and never for a federation peer.
#[tokio::test]
async fn metrics_are_for_operators_and_administrators_only() {
    let server = start(GraphsConfig::default()).await;
    let peer = Principal {
        method: convergio_gateway::AuthMethod::Peer,
        ..api_key_caller("partner.example", &["metrics:read"])
    };
    for (who, principal) in [
        ("anonymous", Principal::anonymous()),
        (
            "a plain API key",
            api_key_caller("acme.example", &["agents:call"]),
        ),
        ("a peer", peer),
    ] {
        let (status, body) = server
            .as_principal("GET", "/metrics", None, principal)
            .await;
        assert_eq!(status, 403, "{who}: {body}");
        assert!(
            body["type"]
                .as_str()
                .unwrap_or_default()
                .ends_with("forbidden"),
            "{body}"
        );
    }
    for principal in [admin(), api_key_caller("acme.example", &["metrics:read"])] {
        let (status, body) = server
            .as_principal("GET", "/metrics", None, principal)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.as_str().unwrap_or_default().contains("convergio_"),
            "{body}"
        );
    }
}

/// Issue 14: validating a graph does not tell a caller whether an agent it
/// may not discover exists: the answer is exactly the unknown agent's.
#[tokio::test]
async fn validation_answers_an_undiscoverable_agent_as_an_unknown_one() {
    let server = start(GraphsConfig::default()).await;
    let graph = |agent: &str| format!("name: probe\nnodes:\n  - id: a\n    agent: {agent}\n");
    // echo exists, and the tour's local caller may see it.
    assert_eq!(
        server
            .post_text("/v1/graphs:validate", &graph("echo"))
            .await
            .0,
        200
    );
    let outsider = api_key_caller("other.example", &["graphs:run", "graphs:write"]);
    let mut answers = Vec::new();
    for agent in ["echo", "no_such_agent"] {
        let (status, mut body) = server
            .as_principal(
                "POST",
                "/v1/graphs:validate",
                Some(graph(agent)),
                outsider.clone(),
            )
            .await;
        body.as_object_mut()
            .map(|object| object.remove("request_id"));
        let text = body.to_string().replace(agent, "AGENT");
        answers.push((status, text));
    }
    assert_eq!(answers[0].0, 400, "{}", answers[0].1);
    assert_eq!(answers[0], answers[1], "the existing agent must not show");
    // Storing and running an inline document validate the same way.
    let (status, body) = server
        .as_principal("POST", "/v1/graphs", Some(graph("echo")), outsider.clone())
        .await;
    assert_eq!(status, 400, "{body}");
    let run = json!({"graph_yaml": graph("echo"), "input": "hi"}).to_string();
    let (status, body) = server
        .as_principal("POST", "/v1/runs", Some(run), outsider)
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Issue 14: `GET /v1/runs` lists the caller's runs, newest first, with
/// filters and paging; nobody else's.
#[tokio::test]
async fn runs_are_listed_for_their_caller_with_filters_and_paging() {
    let server = start(GraphsConfig::default()).await;
    let mut started = Vec::new();
    for name in ["first", "second", "third"] {
        let outcome = server
            .run(
                &format!("name: {name}\nnodes:\n  - id: a\n    agent: echo\n"),
                json!("hi"),
            )
            .await;
        started.push(outcome["run_id"].as_str().expect("a run id").to_owned());
    }
    let ids = |list: &Value| -> Vec<String> {
        list["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|run| run["run_id"].as_str().map(str::to_owned))
            .collect()
    };
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    let (status, list) = server.get("/v1/runs").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), newest_first);
    assert_eq!(list["runs"][0]["graph_id"], "third");
    assert_eq!(list["runs"][0]["status"], "succeeded");
    assert!(list.get("next_page_token").is_none(), "{list}");

    let (_, list) = server.get("/v1/runs?graph=second").await;
    assert_eq!(ids(&list), [started[1].clone()]);
    let (_, list) = server.get("/v1/runs?status=failed").await;
    assert_eq!(ids(&list), Vec::<String>::new());
    let (_, list) = server
        .get("/v1/runs?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(ids(&list).len(), 3);
    let (_, list) = server.get("/v1/runs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(ids(&list).len(), 0);

    let (_, page) = server.get("/v1/runs?page_size=2").await;
    assert_eq!(ids(&page), newest_first[..2]);
    let token = page["next_page_token"].as_str().expect("a next page");
    let (_, rest) = server
        .get(&format!("/v1/runs?page_size=2&page_token={token}"))
        .await;
    assert_eq!(ids(&rest), newest_first[2..]);
    assert!(rest.get("next_page_token").is_none(), "{rest}");

    // Another principal sees none of them.
    let (status, theirs) = server
        .as_principal("GET", "/v1/runs", None, api_key_caller("acme.example", &[]))
        .await;
    assert_eq!((status, ids(&theirs)), (200, Vec::new()));

    for bad in [
        "/v1/runs?status=sideways",
        "/v1/runs?since=yesterday",
        "/v1/runs?page_size=0",
        "/v1/runs?page_token=nope",
        "/v1/runs?colour=blue",
    ] {
        let (status, problem) = server.get(bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert!(problem["detail"].is_string(), "{problem}");
    }
}

/// Issue 14: a stored graph belongs to its organisation: another one can
/// neither read nor overwrite it (it is answered as an unknown graph) and
/// stores its own graph of the same name beside it; administrators read
/// any organisation's graph.
#[tokio::test]
async fn stored_graphs_belong_to_their_organisation() {
    let server = start(GraphsConfig::default()).await;
    let acme = api_key_caller("acme.example", &["graphs:write", "graphs:run"]);
    let other = api_key_caller("other.example", &["graphs:write", "graphs:run"]);
    let graph = |text: &str| {
        format!("name: shared\ndescription: {text}\nnodes:\n  - id: a\n    agent: echo\n")
    };
    // The outsiders may not discover echo either, so graphs use an
    // external agent id, which validates for everyone.
    let graph = |text: &str| {
        graph(text).replace("agent: echo", "agent: external://partner.example/agents/x")
    };
    let (status, stored) = server
        .as_principal("POST", "/v1/graphs", Some(graph("acme's")), acme.clone())
        .await;
    assert_eq!(
        (status, stored["version"].clone(), stored["org"].clone()),
        (201, json!(1), json!("acme.example")),
        "{stored}"
    );

    let unknown = |body: &Value| body["detail"].as_str().unwrap_or_default().to_owned();
    let (status, missing) = server
        .as_principal(
            "GET",
            "/v1/graphs/nothing_here?org=acme.example",
            None,
            other.clone(),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    for path in [
        "/v1/graphs/shared",
        "/v1/graphs/shared?org=acme.example",
        "/v1/graphs/shared?org=acme.example&version=1",
    ] {
        let (status, body) = server.as_principal("GET", path, None, other.clone()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(
            unknown(&body),
            unknown(&missing).replace("nothing_here", "shared")
        );
    }
    let (_, listed) = server
        .as_principal("GET", "/v1/graphs?org=acme.example", None, other.clone())
        .await;
    assert_eq!(listed["graphs"], json!([]), "{listed}");
    // Overwriting acme's graph is refused as for an unknown graph.
    let (status, body) = server
        .as_principal(
            "POST",
            "/v1/graphs?org=acme.example",
            Some(graph("hijack")),
            other.clone(),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Running it by name too.
    let run = json!({"graph": "shared", "graph_org": "acme.example", "input": "hi"}).to_string();
    let (status, body) = server
        .as_principal("POST", "/v1/runs", Some(run), other.clone())
        .await;
    assert_eq!(status, 404, "{body}");
    // Its own graph of the same name lives beside acme's.
    let (status, theirs) = server
        .as_principal("POST", "/v1/graphs", Some(graph("other's")), other.clone())
        .await;
    assert_eq!(
        (status, theirs["version"].clone(), theirs["org"].clone()),
        (201, json!(1), json!("other.example")),
        "{theirs}"
    );

    let (status, mine) = server
        .as_principal("GET", "/v1/graphs/shared", None, acme.clone())
        .await;
    assert_eq!((status, mine["version"].clone()), (200, json!(1)), "{mine}");
    assert_eq!(mine["source"], graph("acme's"));
    // A new store is a new version; the old one stays readable.
    let (status, second) = server
        .as_principal("POST", "/v1/graphs", Some(graph("acme's v2")), acme.clone())
        .await;
    assert_eq!((status, second["version"].clone()), (200, json!(2)));
    let (_, first) = server
        .as_principal("GET", "/v1/graphs/shared?version=1", None, acme.clone())
        .await;
    assert_eq!(first["source"], graph("acme's"));
    let (_, list) = server.as_principal("GET", "/v1/graphs", None, acme).await;
    assert_eq!(list["graphs"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["graphs"][0]["version"], 2);

    let (status, read) = server
        .as_principal("GET", "/v1/graphs/shared?org=other.example", None, admin())
        .await;
    assert_eq!(
        (status, read["source"].clone()),
        (200, json!(graph("other's")))
    );
}
