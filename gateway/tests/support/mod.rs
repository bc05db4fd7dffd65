//! Test support: a small in-process fake A2A upstream (1.0 JSON-RPC at `/`,
//! 1.0 HTTP+JSON under `/rest`, or 0.3 JSON-RPC only), the gateway on a
//! loopback port, and helpers to read SSE answers. The fake's behaviour is
//! chosen by the first text part: `message` answers a Message; `wait` leaves
//! the task working; `garbage` answers non-JSON; `hang` never answers; `cut`
//! streams two events and closes before a final state; `verbatim` answers a
//! completed task written by hand (odd spacing, key order, number and
//! escape spellings a re-encoder would change); anything else completes
//! with an echo artifact. Test-only `x-test-subject` sets the caller's principal.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use convergio_gateway::a2a::{a2a_router, A2aConfig, A2aState, InMemoryRoutes, RouteTarget};
use convergio_gateway::layers::LimitsConfig;
use convergio_gateway::{with_layers, AuthMethod, Principal};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub mod grpc_fake;
pub mod security;

/// Which dialect and bindings the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMode {
    /// 1.0 JSON-RPC and HTTP+JSON.
    V1,
    /// 1.0 JSON-RPC only.
    V1JsonRpcOnly,
    /// 0.3 JSON-RPC only (0.3 card).
    V03,
    /// 1.0 gRPC only (`grpc_fake.rs`; `base_url` is `host:port`).
    Grpc,
}

/// What the fake saw.
#[derive(Default)]
pub struct FakeState {
    pub tasks: Mutex<HashMap<String, Value>>,
    /// Task ids in creation order; ListTasks pages them newest first.
    pub task_order: Mutex<Vec<String>>,
    pub last_headers: Mutex<Option<HeaderMap>>,
    /// The last JSON-RPC request body, as it arrived.
    pub last_body: Mutex<Option<bytes::Bytes>>,
    pub requests: AtomicUsize,
    pub mode: Mutex<Option<FakeMode>>,
}

pub struct FakeAgent {
    pub base_url: String,
    pub state: Arc<FakeState>,
    pub mode: FakeMode,
}

impl FakeAgent {
    /// The card as a registry would hold it.
    pub fn card(&self) -> Value {
        match self.mode {
            FakeMode::V1 => json!({
                "name": "fake", "description": "fake upstream", "version": "1",
                "supportedInterfaces": [
                    {"url": format!("{}/", self.base_url), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                    {"url": format!("{}/rest", self.base_url), "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
                ],
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["echo"]}],
                "signatures": [{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "c2ln"}]
            }),
            FakeMode::V1JsonRpcOnly => json!({
                "name": "fake", "description": "fake upstream", "version": "1",
                "supportedInterfaces": [
                    {"url": format!("{}/", self.base_url), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
                ],
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["echo"]}]
            }),
            FakeMode::Grpc => json!({
                "name": "fake", "description": "fake gRPC upstream", "version": "1",
                "supportedInterfaces": [
                    {"url": self.base_url, "protocolBinding": "GRPC", "protocolVersion": "1.0"}
                ],
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["echo"]}]
            }),
            FakeMode::V03 => json!({
                "name": "fake03", "description": "fake 0.3 upstream", "version": "1",
                "url": format!("{}/", self.base_url), "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC",
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["echo"]}]
            }),
        }
    }
}

pub async fn spawn_fake(mode: FakeMode) -> FakeAgent {
    let (state, app) = fake_app(mode);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeAgent {
        base_url: format!("http://{address}"),
        state,
        mode,
    }
}

/// The fake behind a TLS listener (the product's accept loop) at
/// `https://localhost:{port}`, with `tls` deciding on client certificates.
#[allow(dead_code)]
pub async fn spawn_fake_tls(mode: FakeMode, tls: &convergio_gateway::tls::TlsConfig) -> FakeAgent {
    let (state, app) = fake_app(mode);
    let acceptor = convergio_gateway::tls::TlsAcceptor::from_config(tls).expect("fake tls");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let address = listener.local_addr().expect("address");
    tokio::spawn(convergio_gateway::server::serve_with(
        listener,
        app,
        convergio_gateway::server::ServerConfig::default(),
        Some(acceptor),
        std::future::pending(),
    ));
    FakeAgent {
        base_url: format!("https://localhost:{}", address.port()),
        state,
        mode,
    }
}

fn fake_app(mode: FakeMode) -> (Arc<FakeState>, Router) {
    let state = Arc::new(FakeState::default());
    *state.mode.lock().expect("lock") = Some(mode);
    let app = Router::new()
        .route("/", any(fake_jsonrpc))
        .route("/rest/{*rest}", any(fake_rest))
        .with_state(state.clone());
    (state, app)
}

fn is_v03(state: &FakeState) -> bool {
    *state.mode.lock().expect("lock") == Some(FakeMode::V03)
}

fn first_text(params: &Value) -> String {
    params["message"]["parts"]
        .as_array()
        .and_then(|parts| {
            parts
                .iter()
                .find_map(|part| part.get("text").and_then(Value::as_str))
        })
        .unwrap_or("")
        .to_owned()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs a 1.0 operation; `Err((code, message))` for A2A errors.
async fn operate(
    state: &FakeState,
    method: &str,
    params: &Value,
) -> Result<Outcome, (i64, &'static str)> {
    match method {
        "SendMessage" | "SendStreamingMessage" => {
            let text = first_text(params);
            let streaming = method == "SendStreamingMessage";
            let context_id = params["message"]["contextId"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(new_id);
            match text.as_str() {
                "garbage" => return Ok(Outcome::Garbage),
                "verbatim" if !streaming => {
                    let task_id = new_id();
                    let task = json!({"id": task_id, "contextId": context_id,
                        "status": {"state": "TASK_STATE_COMPLETED"}});
                    state
                        .tasks
                        .lock()
                        .expect("lock")
                        .insert(task_id.clone(), task);
                    return Ok(Outcome::Raw(verbatim_task(&task_id, &context_id)));
                }
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return Ok(Outcome::Garbage);
                }
                "message" => {
                    let message = json!({"messageId": new_id(), "role": "ROLE_AGENT", "contextId": context_id,
                        "parts": [{"text": "echo: message"}], "extraUpstreamField": {"kept": true}});
                    return Ok(if streaming {
                        Outcome::Events(vec![json!({"message": message})], false)
                    } else {
                        Outcome::Value(json!({"message": message}))
                    });
                }
                _ => {}
            }
            let task_id = new_id();
            let working = json!({"state": "TASK_STATE_WORKING"});
            let final_state = if text == "wait" {
                "TASK_STATE_WORKING"
            } else {
                "TASK_STATE_COMPLETED"
            };
            let artifact = json!({"artifactId": "a1", "name": "echo", "parts": [{"text": format!("echo: {text}")}]});
            let mut task = json!({"id": task_id, "contextId": context_id, "status": {"state": final_state},
                "history": [params["message"].clone()], "upstreamOnly": 7});
            if text != "wait" {
                task["artifacts"] = json!([artifact.clone()]);
            }
            state
                .tasks
                .lock()
                .expect("lock")
                .insert(task_id.clone(), task.clone());
            state.task_order.lock().expect("lock").push(task_id.clone());
            if !streaming {
                return Ok(Outcome::Value(json!({"task": task})));
            }
            let submitted = json!({"id": task_id, "contextId": context_id, "status": {"state": "TASK_STATE_SUBMITTED"}});
            let mut events = vec![
                json!({"task": submitted}),
                json!({"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": working}}),
            ];
            if text == "cut" {
                return Ok(Outcome::Events(events, false));
            }
            if text != "wait" {
                events.push(json!({"artifactUpdate": {"taskId": task_id, "contextId": context_id, "artifact": artifact}}));
                events.push(json!({"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": {"state": "TASK_STATE_COMPLETED"}}}));
            }
            Ok(Outcome::Events(events, false))
        }
        "GetTask" => {
            let id = params["id"].as_str().unwrap_or("");
            state
                .tasks
                .lock()
                .expect("lock")
                .get(id)
                .cloned()
                .map(Outcome::Value)
                .ok_or((-32001, "Task not found"))
        }
        "CancelTask" => {
            let id = params["id"].as_str().unwrap_or("");
            let mut tasks = state.tasks.lock().expect("lock");
            let task = tasks.get_mut(id).ok_or((-32001, "Task not found"))?;
            if task["status"]["state"] != json!("TASK_STATE_WORKING") {
                return Err((-32002, "Task cannot be canceled"));
            }
            task["status"]["state"] = json!("TASK_STATE_CANCELED");
            Ok(Outcome::Value(task.clone()))
        }
        "SubscribeToTask" => {
            let id = params["id"].as_str().unwrap_or("");
            let task = state
                .tasks
                .lock()
                .expect("lock")
                .get(id)
                .cloned()
                .ok_or((-32001, "Task not found"))?;
            let done = json!({"statusUpdate": {"taskId": id, "contextId": task["contextId"], "status": {"state": "TASK_STATE_COMPLETED"}}});
            Ok(Outcome::Events(vec![json!({"task": task}), done], false))
        }
        "ListTasks" => {
            // Every caller's tasks, newest first, paged by offset like a
            // real agent that knows nothing of the gateway's principals.
            let page_size = match &params["pageSize"] {
                Value::Number(number) => number.as_u64().unwrap_or(50),
                Value::String(text) => text.parse().unwrap_or(50),
                _ => 50,
            } as usize;
            let offset: usize = params["pageToken"]
                .as_str()
                .and_then(|token| token.parse().ok())
                .unwrap_or(0);
            let order = state.task_order.lock().expect("lock").clone();
            let all = state.tasks.lock().expect("lock").clone();
            let newest_first: Vec<Value> = order
                .iter()
                .rev()
                .filter_map(|id| all.get(id).cloned())
                .collect();
            let tasks: Vec<Value> = newest_first
                .iter()
                .skip(offset)
                .take(page_size)
                .cloned()
                .collect();
            let next = offset + tasks.len();
            let next_page_token = if next < newest_first.len() {
                next.to_string()
            } else {
                String::new()
            };
            Ok(Outcome::Value(
                json!({"tasks": tasks, "nextPageToken": next_page_token,
                "pageSize": page_size, "totalSize": newest_first.len()}),
            ))
        }
        _ => Err((-32601, "Method not found")),
    }
}

/// The `verbatim` hook's result, exactly as the fake writes it.
pub fn verbatim_task(task_id: &str, context_id: &str) -> String {
    format!(
        r#"{{ "task" : {{"zLast": 1.50, "id":"{task_id}", "contextId":"{context_id}","status":{{"state":"TASK_STATE_COMPLETED"}}, "artifacts":[{{"artifactId":"a1","parts":[{{"text":"caf\u00e9 \/ 1e2"}}]}}], "aFirst" :[ ] }} }}"#
    )
}

enum Outcome {
    Value(Value),
    /// A result's JSON text, sent as it is.
    Raw(String),
    /// Events, and whether to break the connection after them.
    Events(Vec<Value>, bool),
    Garbage,
}

fn sse(events: Vec<String>, cut: bool) -> Response {
    let stream = async_stream::stream! {
        for event in events {
            yield Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: {event}\n\n")));
        }
        if cut {
            yield Err(std::io::Error::other("cut"));
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("static"));
    response
}

fn garbage() -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        "<html>definitely not json",
    )
        .into_response()
}

async fn fake_jsonrpc(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock().expect("lock") = Some(headers);
    *state.last_body.lock().expect("lock") = Some(body.clone());
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    let v03 = is_v03(&state);
    let mut method = request["method"].as_str().unwrap_or("").to_owned();
    let mut params = request["params"].clone();
    if v03 {
        // A 0.3-only agent: refuse 1.0 names, speak `kind` on the wire.
        method = match method.as_str() {
            "message/send" => "SendMessage",
            "message/stream" => "SendStreamingMessage",
            "tasks/get" => "GetTask",
            "tasks/cancel" => "CancelTask",
            "tasks/resubscribe" => "SubscribeToTask",
            _ => "unknown",
        }
        .to_owned();
        params = convergio_gateway::a2a::translate::request_to_v1(
            convergio_schemas::a2a::Method::SendMessage,
            params,
        )
        .unwrap_or(Value::Null);
    }
    let wrap = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    match operate(&state, &method, &params).await {
        Ok(Outcome::Garbage) => garbage(),
        Ok(Outcome::Raw(result)) => (
            [("content-type", "application/json")],
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#),
        )
            .into_response(),
        Ok(Outcome::Value(value)) => {
            let value = if v03 { lower(&method, value) } else { value };
            ([("content-type", "application/json")], wrap(value)).into_response()
        }
        Ok(Outcome::Events(events, cut)) => {
            let events = events
                .into_iter()
                .map(|event| {
                    wrap(if v03 {
                        convergio_gateway::a2a::translate::event_to_v03(event)
                    } else {
                        event
                    })
                })
                .collect();
            sse(events, cut)
        }
        Err((code, message)) => (
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                .to_string(),
        )
            .into_response(),
    }
}

fn lower(method: &str, value: Value) -> Value {
    use convergio_gateway::a2a::translate;
    match method {
        "GetTask" | "CancelTask" => translate::task_to_v03(value),
        _ => translate::event_to_v03(value),
    }
}

async fn fake_rest(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    *state.last_headers.lock().expect("lock") = Some(parts.headers.clone());
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().trim_start_matches("/rest").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let (method, params) = match (&parts.method, path.as_str()) {
        (&HttpMethod::POST, "/message:send") => ("SendMessage", body),
        (&HttpMethod::POST, "/message:stream") => ("SendStreamingMessage", body),
        (&HttpMethod::GET, "/tasks") => {
            let mut params = serde_json::Map::new();
            for pair in parts.uri.query().unwrap_or("").split('&') {
                if let Some((key, value)) = pair.split_once('=') {
                    params.insert(key.to_owned(), Value::from(value));
                }
            }
            ("ListTasks", Value::Object(params))
        }
        (&HttpMethod::GET, path) if path.starts_with("/tasks/") && path.ends_with(":subscribe") => {
            (
                "SubscribeToTask",
                json!({"id": path["/tasks/".len()..path.len() - ":subscribe".len()]}),
            )
        }
        (&HttpMethod::POST, path) if path.starts_with("/tasks/") && path.ends_with(":cancel") => (
            "CancelTask",
            json!({"id": path["/tasks/".len()..path.len() - ":cancel".len()]}),
        ),
        (&HttpMethod::GET, path) if path.starts_with("/tasks/") => {
            ("GetTask", json!({"id": &path["/tasks/".len()..]}))
        }
        _ => return (StatusCode::NOT_FOUND, "no such route").into_response(),
    };
    match operate(&state, method, &params).await {
        Ok(Outcome::Garbage) => garbage(),
        Ok(Outcome::Raw(result)) => {
            ([("content-type", "application/a2a+json")], result).into_response()
        }
        Ok(Outcome::Value(value)) => (
            [("content-type", "application/a2a+json")],
            value.to_string(),
        )
            .into_response(),
        Ok(Outcome::Events(events, cut)) => sse(
            events.into_iter().map(|event| event.to_string()).collect(),
            cut,
        ),
        Err((code, message)) => {
            let (status, reason, grpc) = match code {
                -32001 => (404, "TASK_NOT_FOUND", "NOT_FOUND"),
                -32002 => (400, "TASK_NOT_CANCELABLE", "FAILED_PRECONDITION"),
                _ => (400, "UNSUPPORTED_OPERATION", "FAILED_PRECONDITION"),
            };
            let body = json!({"error": {"code": status, "status": grpc, "message": message,
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "a2a-protocol.org"}]}});
            (
                StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// The gateway under test.
pub struct Gateway {
    pub base_url: String,
    pub routes: Arc<InMemoryRoutes>,
    pub http: reqwest::Client,
}

async fn test_principal(mut request: Request, next: Next) -> Response {
    if let Some(subject) = request
        .headers()
        .get("x-test-subject")
        .and_then(|value| value.to_str().ok())
    {
        let principal = Principal {
            subject: subject.to_owned(),
            org: None,
            scopes: Vec::new(),
            method: AuthMethod::ApiKey,
        };
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

pub async fn spawn_gateway_with(config: A2aConfig, limits: LimitsConfig) -> Gateway {
    spawn_gateway_gated(
        config,
        limits,
        Arc::new(convergio_gateway::authorize::OpenGate),
    )
    .await
}

/// The gateway under test, deciding calls with `gatekeeper`.
pub async fn spawn_gateway_gated(
    config: A2aConfig,
    limits: LimitsConfig,
    gatekeeper: Arc<dyn convergio_gateway::authorize::Gatekeeper>,
) -> Gateway {
    spawn_gateway_from(config, limits, |state| state.with_gatekeeper(gatekeeper)).await
}

/// The gateway under test, recording streams in `log` (resumable streams).
pub async fn spawn_gateway_recording(
    config: A2aConfig,
    log: Arc<dyn convergio_gateway::a2a::StreamEventStore>,
) -> Gateway {
    spawn_gateway_from(config, LimitsConfig::default(), |state| {
        state.with_stream_log(log)
    })
    .await
}

/// The gateway under test, its A2A state finished by `finish`.
async fn spawn_gateway_from(
    config: A2aConfig,
    limits: LimitsConfig,
    finish: impl FnOnce(A2aState) -> A2aState,
) -> Gateway {
    let routes = Arc::new(InMemoryRoutes::new());
    let state = finish(A2aState::new(routes.clone(), config));
    let router = a2a_router(state)
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn(test_principal));
    let app = with_layers(router, &limits);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    Gateway {
        base_url: format!("http://{address}"),
        routes,
        http,
    }
}

/// The gateway under test on the product's accept loop (`server.rs`, which
/// speaks HTTP/2 cleartext as well: gRPC needs it), admitting every call.
pub async fn spawn_gateway_h2c() -> Gateway {
    let config = A2aConfig {
        upstream_timeout: Duration::from_millis(1500),
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    spawn_gateway_h2c_with(config).await
}

/// [`spawn_gateway_h2c`] with `config`.
pub async fn spawn_gateway_h2c_with(config: A2aConfig) -> Gateway {
    spawn_gateway_h2c_gated(config, Arc::new(convergio_gateway::authorize::OpenGate)).await
}

/// [`spawn_gateway_h2c`] with `config`, deciding calls with `gatekeeper`.
pub async fn spawn_gateway_h2c_gated(
    config: A2aConfig,
    gatekeeper: Arc<dyn convergio_gateway::authorize::Gatekeeper>,
) -> Gateway {
    spawn_gateway_h2c_observed(config, gatekeeper, Arc::default()).await
}

/// [`spawn_gateway_h2c_gated`], recording every request into `metrics`.
pub async fn spawn_gateway_h2c_observed(
    config: A2aConfig,
    gatekeeper: Arc<dyn convergio_gateway::authorize::Gatekeeper>,
    metrics: Arc<convergio_gateway::metrics::GatewayMetrics>,
) -> Gateway {
    let routes = Arc::new(InMemoryRoutes::new());
    let state = A2aState::new(routes.clone(), config).with_gatekeeper(gatekeeper);
    let router = a2a_router(state).layer(middleware::from_fn(test_principal));
    let app = convergio_gateway::layers::with_layers_observed(
        router,
        &LimitsConfig::default(),
        Arc::new(convergio_gateway::layers::Authenticator::off()),
        metrics,
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(convergio_gateway::server::serve_with(
        listener,
        app,
        convergio_gateway::server::ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    Gateway {
        base_url: format!("http://{address}"),
        routes,
        http,
    }
}

pub async fn spawn_gateway() -> Gateway {
    let config = A2aConfig {
        upstream_timeout: Duration::from_millis(1500),
        // Every fake upstream runs on 127.0.0.1: allow-listed explicitly.
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    spawn_gateway_with(config, LimitsConfig::default()).await
}

impl Gateway {
    pub fn register(&self, name: &str, card: Value) {
        self.routes.insert(RouteTarget::from_card(name, card));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs a JSON-RPC request with `A2A-Version: 1.0` as `subject`.
    pub async fn rpc(&self, agent: &str, subject: &str, method: &str, params: Value) -> Value {
        let response = self
            .http
            .post(self.url(&format!("/agents/{agent}")))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", subject)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .expect("rpc");
        response.json().await.expect("rpc json")
    }
}

pub fn send_params(text: &str) -> Value {
    json!({"message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]}})
}

/// Reads a whole SSE response into its event payloads (the test kit's reader).
pub async fn sse_events(response: reqwest::Response) -> Vec<Value> {
    convergio_tests::sse::events(response).await
}

/// Polls `condition` every 10 ms for at most 10 s.
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
