//! One trace across organisations, exported with OpenTelemetry (issue 18),
//! end to end: real `convergio serve` processes export their spans over
//! OTLP/HTTP (protobuf) to a receiver written here, on loopback, which
//! decodes each `ExportTraceServiceRequest` with `opentelemetry-proto`.
//!
//! - Three organisations: a graph in `a.example` calls an agent in
//!   `b.example` and one in `c.example`. Every span of the run, in all three
//!   processes, has the caller's trace id; the GenAI names are there
//!   (`invoke_workflow`, `invoke_agent`, `gen_ai.*`, `a2a.*`), and each
//!   peer's server span is a child of a span A exported (the context of the
//!   calling span crossed, not only the trace id).
//! - A run started with a `traceparent` keeps its trace id (the §8.1 trace
//!   and the exported spans); one started without gets the exported trace's
//!   id in its §8.1 trace.
//! - A model agent's provider call is a `chat {model}` span of the caller's
//!   trace (model, provider, token usage), and the fake provider receives
//!   that span's `traceparent`.
//!
//! The servers are stopped with SIGTERM before the spans are read: the
//! exporter flushes on shutdown, so no waiting for a batch is needed. The
//! tests run on a multi-threaded runtime, so the receiver answers while a
//! test thread waits for a server to exit.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use serde_json::{json, Value};
use support::{admin_token, start_logged, Server};

/// One exported span, as the receiver decoded it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

/// The project's OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered 200 with an empty response.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Receiver {
    /// Serves on a loopback port; the traces URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{address}/v1/traces")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }
}

async fn receive(State(receiver): State<Receiver>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .map(|resource| attributes(&resource.attributes))
            .and_then(|attributes| attributes.get("service.name").cloned())
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    receiver.spans.lock().expect("spans").extend(received);
    (StatusCode::OK, Vec::new())
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                Some(any_value::Value::IntValue(number)) => number.to_string(),
                Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
                Some(any_value::Value::DoubleValue(number)) => number.to_string(),
                _ => String::new(),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An agent answering its message's parts.
struct Echo;

#[async_trait]
impl AgentLogic for Echo {
    async fn reply(&self, message: &Value) -> Option<Value> {
        Some(json!({"parts": message["parts"].clone()}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "the echo answers directly".to_owned(),
        })
    }
}

async fn spawn_echo(name: &str) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let card = json!({
        "name": name,
        "description": "Answers its input (telemetry test).",
        "version": "1.0.0",
        "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "Echoes.", "tags": ["external"]}]
    });
    spawn_logic(Arc::new(Echo), card, listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

async fn post_json(http: &reqwest::Client, url: &str, bearer: &str, body: &Value) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .expect("request answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers `agent` at `server` as trusted.
async fn register(http: &reqwest::Client, server: &Server, token: &str, agent: &RunningAgent) {
    let (status, registered) = post_json(
        http,
        &format!("{}/v1/agents", server.base),
        token,
        &agent.card(),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let id = registered["id"].as_str().expect("agent id");
    let response = http
        .put(format!(
            "{}/v1/agents/{}/trust",
            server.base,
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        ))
        .bearer_auth(token)
        .json(&json!({"level": "trusted", "reason": "telemetry test"}))
        .send()
        .await
        .expect("trust set");
    assert!(response.status().is_success(), "{}", response.status());
}

/// One organisation's `convergio serve`, exporting to `traces_url` as
/// service `domain`.
struct Org {
    server: Server,
    dir: tempfile::TempDir,
    token: String,
}

fn start_org(domain: &str, traces_url: &str) -> Org {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr.log");
    let server = start_logged(
        dir.path(),
        &[],
        &[
            ("CONVERGIO_ORG_DOMAIN", domain),
            ("CONVERGIO_EXAMPLES", "false"),
            ("CONVERGIO_SHUTDOWN_DELAY_SECONDS", "0"),
            ("CONVERGIO_OTLP_ENDPOINT", traces_url),
            ("CONVERGIO_OTLP_SERVICE_NAME", domain),
            ("CONVERGIO_LOG_FORMAT", "json"),
            (
                "CONVERGIO_LOG",
                "warn,convergio_gateway::layers::trace=debug",
            ),
        ],
        &log,
    );
    let token = admin_token(dir.path());
    Org { server, dir, token }
}

impl Org {
    /// Stops the server with SIGTERM: its spans are flushed before it exits.
    fn stop(&mut self) {
        let stopped = self
            .server
            .terminate(Duration::from_secs(60))
            .expect("the server stops on SIGTERM");
        assert!(stopped.success, "the server exited with a failure");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// Peers `caller` with `callee`: the callee approves the caller's keys
/// fetched from its JWKS, the caller pins the callee's.
async fn peer(http: &reqwest::Client, caller: (&str, &Org), callee: (&str, &Org)) {
    let (caller_domain, caller_org) = caller;
    let (callee_domain, callee_org) = callee;
    let (status, body) = post_json(
        http,
        &format!("{}/v1/peers", callee_org.server.base),
        &callee_org.token,
        &json!({"domain": caller_domain, "url": caller_org.server.base,
                "jwks_url": format!("{}/.well-known/jwks.json", caller_org.server.base)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        http,
        &format!(
            "{}/v1/peers/{caller_domain}/approve",
            callee_org.server.base
        ),
        &callee_org.token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", callee_org.server.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let (status, body) = post_json(
        http,
        &format!("{}/v1/peers", caller_org.server.base),
        &caller_org.token,
        &json!({"domain": callee_domain, "url": callee_org.server.base, "keys": jwks["keys"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Starts a sync run at `org`, with `traceparent` when given: its outcome.
async fn run_sync(
    http: &reqwest::Client,
    org: &Org,
    graph: &str,
    traceparent: Option<&str>,
) -> Value {
    let mut request = http
        .post(format!("{}/v1/runs", org.server.base))
        .bearer_auth(&org.token)
        .json(&json!({"graph_yaml": graph, "mode": "sync", "input": {"text": "hello"}}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("run answered");
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.expect("json");
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    outcome
}

/// The run's §8.1 trace id.
async fn run_trace_id(http: &reqwest::Client, org: &Org, run_id: &str) -> String {
    let trace: Value = http
        .get(format!("{}/v1/runs/{run_id}/trace", org.server.base))
        .bearer_auth(&org.token)
        .send()
        .await
        .expect("trace answered")
        .json()
        .await
        .expect("json");
    trace["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace id: {trace}"))
        .to_owned()
}

const TWO_PEERS: &str = "name: across\nnodes:\n  - id: at_b\n    agent: external://b.example/agents/echo_b\n  - id: at_c\n    agent: external://c.example/agents/echo_c\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_crosses_three_organisations_with_genai_names() {
    let receiver = Receiver::default();
    let traces_url = receiver.start().await;
    let http = reqwest::Client::new();
    let mut a = start_org("a.example", &traces_url);
    let mut b = start_org("b.example", &traces_url);
    let mut c = start_org("c.example", &traces_url);
    let echo_b = spawn_echo("echo_b").await;
    let echo_c = spawn_echo("echo_c").await;
    register(&http, &b.server, &b.token, &echo_b).await;
    register(&http, &c.server, &c.token, &echo_c).await;
    peer(&http, ("a.example", &a), ("b.example", &b)).await;
    peer(&http, ("a.example", &a), ("c.example", &c)).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let outcome = run_sync(
        &http,
        &a,
        TWO_PEERS,
        Some(&format!("00-{trace_id}-00f067aa0ba902b7-01")),
    )
    .await;
    let run_id = outcome["run_id"].as_str().expect("run id").to_owned();
    assert_eq!(run_trace_id(&http, &a, &run_id).await, trace_id);
    let b_log = b.log();
    for org in [&mut a, &mut b, &mut c] {
        org.stop();
    }

    let spans: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|span| span.trace_id == trace_id)
        .collect();
    for service in ["a.example", "b.example", "c.example"] {
        assert!(
            spans.iter().any(|span| span.service == service),
            "no span of {service} in the trace: {spans:#?}"
        );
    }
    let named = |service: &str, name: &str| -> Vec<&ReceivedSpan> {
        spans
            .iter()
            .filter(|span| span.service == service && span.name == name)
            .collect()
    };
    // A: the run and its two calls out, with GenAI and A2A attributes.
    let workflow = named("a.example", "invoke_workflow across");
    assert_eq!(workflow.len(), 1, "{spans:#?}");
    assert_eq!(
        workflow[0].attributes["gen_ai.operation.name"],
        "invoke_workflow"
    );
    assert_eq!(workflow[0].attributes["gen_ai.agent.name"], "across");
    assert_eq!(workflow[0].attributes["convergio.run_id"], run_id);
    for (peer, agent) in [("b.example", "echo_b"), ("c.example", "echo_c")] {
        let call = named(
            "a.example",
            &format!("invoke_agent external://{peer}/agents/{agent}"),
        );
        assert_eq!(call.len(), 1, "{spans:#?}");
        let attributes = &call[0].attributes;
        assert_eq!(attributes["gen_ai.operation.name"], "invoke_agent");
        assert_eq!(attributes["a2a.method"], "SendMessage");
        assert_eq!(attributes["convergio.org"], peer);
        // The peer's server span is a child of A's call span: the span
        // context crossed, not only the trace id.
        let served = named(peer, "POST a2a");
        assert!(
            served
                .iter()
                .any(|span| span.parent_span_id == call[0].span_id),
            "{peer}'s request span is not a child of A's call: {spans:#?}"
        );
        // The peer's own call to its agent.
        let at_peer = named(peer, &format!("invoke_agent {agent}"));
        assert_eq!(at_peer.len(), 1, "{spans:#?}");
        let attributes = &at_peer[0].attributes;
        assert_eq!(attributes["gen_ai.agent.name"], agent);
        assert_eq!(attributes["convergio.org"], peer);
        for name in ["a2a.task_id", "a2a.context_id", "gen_ai.conversation.id"] {
            assert!(
                attributes.contains_key(name),
                "{name} missing: {attributes:?}"
            );
        }
    }
    // B's JSON log lines carry the trace id.
    assert!(
        b_log
            .lines()
            .any(|line| line.contains(&format!("\"trace_id\":\"{trace_id}\""))),
        "no log line of b.example carries the trace id"
    );
    drop((echo_b, echo_c));
}

const LOCAL: &str = "name: local\nnodes:\n  - id: first\n    agent: echo_a\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_its_callers_trace_id_and_exports_its_own_otherwise() {
    let receiver = Receiver::default();
    let traces_url = receiver.start().await;
    let http = reqwest::Client::new();
    let mut a = start_org("a.example", &traces_url);
    let echo = spawn_echo("echo_a").await;
    register(&http, &a.server, &a.token, &echo).await;

    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let kept = run_sync(
        &http,
        &a,
        LOCAL,
        Some(&format!("00-{caller_trace}-b7ad6b7169203331-01")),
    )
    .await;
    let kept_run = kept["run_id"].as_str().expect("run id").to_owned();
    assert_eq!(run_trace_id(&http, &a, &kept_run).await, caller_trace);
    let own = run_sync(&http, &a, LOCAL, None).await;
    let own_run = own["run_id"].as_str().expect("run id").to_owned();
    let own_trace = run_trace_id(&http, &a, &own_run).await;
    assert_ne!(own_trace, caller_trace);
    a.stop();

    let spans = receiver.spans();
    let workflow_trace = |run_id: &str| -> HashSet<String> {
        spans
            .iter()
            .filter(|span| {
                span.name == "invoke_workflow local"
                    && span.attributes.get("convergio.run_id").map(String::as_str) == Some(run_id)
            })
            .map(|span| span.trace_id.clone())
            .collect()
    };
    assert_eq!(
        workflow_trace(&kept_run),
        HashSet::from([caller_trace.to_owned()])
    );
    assert_eq!(workflow_trace(&own_run), HashSet::from([own_trace.clone()]));
    // Every span of each run's trace includes its agent call.
    for trace in [caller_trace, own_trace.as_str()] {
        assert!(
            spans
                .iter()
                .any(|span| span.trace_id == trace && span.name == "invoke_agent echo_a"),
            "no agent call in trace {trace}: {spans:#?}"
        );
    }
    drop(echo);
}

/// A model agent's provider call is a `chat {model}` span of the caller's
/// trace, with the GenAI model, provider and usage attributes, and the
/// provider request carries that span's `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_is_a_chat_span_of_the_callers_trace() {
    use convergio_models::fake::{FakeOpenAi, FakeReply};
    use convergio_models::Usage;

    let receiver = Receiver::default();
    let traces_url = receiver.start().await;
    let fake = FakeOpenAi::start().await.expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "Bonjour",
        1,
        Usage {
            input_tokens: 12,
            output_tokens: 5,
        },
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr.log");
    let mut server = start_logged(
        dir.path(),
        &[],
        &[
            ("CONVERGIO_EXAMPLES", "false"),
            ("CONVERGIO_SHUTDOWN_DELAY_SECONDS", "0"),
            ("CONVERGIO_OTLP_ENDPOINT", &traces_url),
            ("CONVERGIO_TEST_MODEL_KEY", "sk-telemetry-test"),
        ],
        &log,
    );
    let file = dir.path().join("french.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: french\n\
             description: Translates text\nprovider: openai\nmodel: fake-model\n\
             base_url: {}\napi_key: env:CONVERGIO_TEST_MODEL_KEY\nmax_tokens: 64\n",
            fake.base_url()
        ),
    )
    .expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((&server, dir.path())),
        &["agents", "apply", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "{stdout}\n{stderr}");

    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let response = reqwest::Client::new()
        .post(format!("{}/agents/french", server.base))
        .bearer_auth(admin_token(dir.path()))
        .header("A2A-Version", "1.0")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER",
                                   "parts": [{"text": "Hello"}]},
                       "configuration": {"returnImmediately": false}},
        }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.to_string().contains("Bonjour"), "{body}");
    let stopped = server
        .terminate(Duration::from_secs(60))
        .expect("the server stops on SIGTERM");
    assert!(stopped.success);

    let spans = receiver.spans();
    let chat: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.name == "chat fake-model")
        .collect();
    assert_eq!(chat.len(), 1, "{spans:#?}");
    let chat = chat[0];
    assert_eq!(chat.trace_id, trace_id, "{spans:#?}");
    for (name, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "fake-model"),
        ("gen_ai.usage.input_tokens", "12"),
        ("gen_ai.usage.output_tokens", "5"),
    ] {
        assert_eq!(
            chat.attributes.get(name).map(String::as_str),
            Some(value),
            "{name}: {chat:#?}"
        );
    }
    // The provider was called with the chat span's context.
    let requests = fake.requests();
    let traceparent = requests[0].header("traceparent").expect("a traceparent");
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", chat.span_id),
        "{requests:#?}"
    );
}
