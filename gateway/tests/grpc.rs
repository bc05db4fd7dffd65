//! The A2A gRPC binding at the gateway (issue 24): a tonic client of the
//! generated `A2AService` talks HTTP/2 cleartext to a real gateway on
//! loopback, which forwards to a JSON-RPC/HTTP+JSON fake agent. Each
//! operation gives what the JSON bindings give, errors carry the same
//! ErrorInfo, ownership holds, and bad input is a typed status.

mod support;

use std::collections::HashMap;

use convergio_gateway::a2a::grpc::proto::a2a_service_client::A2aServiceClient;
use convergio_gateway::a2a::grpc::proto::{
    self as pb, part, send_message_response, stream_response, Message, Part, Role, TaskState,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{spawn_fake, spawn_gateway_h2c, FakeMode, Gateway};
use tonic::{Code, Request};
use tonic_types::StatusExt;

type GrpcClient = A2aServiceClient<Client<HttpConnector, tonic::body::Body>>;

fn client(gateway: &Gateway) -> GrpcClient {
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = gateway.base_url.parse().expect("gateway uri");
    A2aServiceClient::with_origin(http, origin)
}

/// `message` as `subject`, with the A2A version metadata a client sends.
fn request<T>(message: T, subject: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-test-subject", subject.parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("a2a-version", "1.0".parse().expect("ascii"));
    request
}

fn send_request(tenant: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        tenant: tenant.into(),
        message: Some(Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::User.into(),
            parts: vec![Part {
                content: Some(part::Content::Text(text.into())),
                ..Part::default()
            }],
            ..Message::default()
        }),
        ..pb::SendMessageRequest::default()
    }
}

async fn setup() -> (Gateway, GrpcClient) {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway_h2c().await;
    gateway.register("fake", fake.card());
    let client = client(&gateway);
    (gateway, client)
}

async fn send_task(client: &mut GrpcClient, text: &str, subject: &str) -> pb::Task {
    let response = client
        .send_message(request(send_request("fake", text), subject))
        .await
        .expect("send")
        .into_inner();
    match response.payload {
        Some(send_message_response::Payload::Task(task)) => task,
        other => panic!("expected a task, got {other:?}"),
    }
}

fn state_of(task: &pb::Task) -> TaskState {
    task.status
        .as_ref()
        .map(|status| status.state())
        .unwrap_or(TaskState::Unspecified)
}

#[tokio::test]
async fn send_get_list_and_cancel_over_grpc_reach_a_json_rpc_agent() {
    let (_gateway, mut client) = setup().await;
    let task = send_task(&mut client, "hello", "alice").await;
    assert_eq!(state_of(&task), TaskState::Completed);
    let artifact_text = task.artifacts[0].parts[0].content.clone();
    assert_eq!(
        artifact_text,
        Some(part::Content::Text("echo: hello".into()))
    );

    let fetched = client
        .get_task(request(
            pb::GetTaskRequest {
                tenant: "fake".into(),
                id: task.id.clone(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(fetched.id, task.id);
    assert_eq!(state_of(&fetched), TaskState::Completed);

    let listed = client
        .list_tasks(request(
            pb::ListTasksRequest {
                tenant: "fake".into(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.tasks.iter().any(|listed| listed.id == task.id));
    assert_eq!(listed.total_size, 1);

    let working = send_task(&mut client, "wait", "alice").await;
    assert_eq!(state_of(&working), TaskState::Working);
    let canceled = client
        .cancel_task(request(
            pb::CancelTaskRequest {
                tenant: "fake".into(),
                id: working.id.clone(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(state_of(&canceled), TaskState::Canceled);
}

#[tokio::test]
async fn streams_and_subscriptions_arrive_as_stream_responses() {
    let (_gateway, mut client) = setup().await;
    let mut stream = client
        .send_streaming_message(request(send_request("fake", "hello"), "alice"))
        .await
        .expect("stream")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("event") {
        events.push(event.payload.expect("payload"));
    }
    assert_eq!(events.len(), 4, "{events:?}");
    let task_id = match &events[0] {
        stream_response::Payload::Task(task) => task.id.clone(),
        other => panic!("first event is not the task: {other:?}"),
    };
    assert!(matches!(
        &events[2],
        stream_response::Payload::ArtifactUpdate(update) if update.task_id == task_id
    ));
    match &events[3] {
        stream_response::Payload::StatusUpdate(update) => assert_eq!(
            update.status.as_ref().map(|status| status.state()),
            Some(TaskState::Completed)
        ),
        other => panic!("last event is not a status update: {other:?}"),
    }

    let working = send_task(&mut client, "wait", "alice").await;
    let mut subscription = client
        .subscribe_to_task(request(
            pb::SubscribeToTaskRequest {
                tenant: "fake".into(),
                id: working.id.clone(),
            },
            "alice",
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let first = subscription
        .message()
        .await
        .expect("first event")
        .and_then(|event| event.payload);
    assert!(
        matches!(&first, Some(stream_response::Payload::Task(task)) if task.id == working.id),
        "{first:?}"
    );
}

#[tokio::test]
async fn an_unknown_task_is_not_found_with_the_same_error_info_as_json_rpc() {
    let (gateway, mut client) = setup().await;
    let status = client
        .get_task(request(
            pb::GetTaskRequest {
                tenant: "fake".into(),
                id: "no-such-task".into(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect_err("unknown task");
    assert_eq!(status.code(), Code::NotFound);
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "TASK_NOT_FOUND");
    assert_eq!(info.domain, "a2a-protocol.org");

    let answer = gateway
        .rpc("fake", "alice", "GetTask", json!({"id": "no-such-task"}))
        .await;
    assert_eq!(answer["error"]["code"], -32001);
    assert_eq!(answer["error"]["message"], status.message());
    assert_eq!(answer["error"]["data"][0]["reason"], info.reason);

    let rest = gateway
        .http
        .get(gateway.url("/agents/fake/tasks/no-such-task"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .send()
        .await
        .expect("rest");
    assert_eq!(rest.status(), 404);
    let body: serde_json::Value = rest.json().await.expect("json");
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["details"][0]["reason"], info.reason);
}

#[tokio::test]
async fn another_callers_task_looks_unknown_over_grpc() {
    let (_gateway, mut client) = setup().await;
    let task = send_task(&mut client, "wait", "alice").await;
    for subject in ["mallory"] {
        let status = client
            .cancel_task(request(
                pb::CancelTaskRequest {
                    tenant: "fake".into(),
                    id: task.id.clone(),
                    ..Default::default()
                },
                subject,
            ))
            .await
            .expect_err("not the owner");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.get_details_error_info().map(|info| info.reason),
            Some("TASK_NOT_FOUND".to_owned())
        );
    }
}

#[tokio::test]
async fn bad_grpc_input_is_a_typed_status() {
    let (_gateway, mut client) = setup().await;
    // No tenant: the gateway cannot tell which agent is meant.
    let status = client
        .send_message(request(send_request("", "hello"), "alice"))
        .await
        .expect_err("no tenant");
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = client
        .send_message(request(send_request("nobody", "hello"), "alice"))
        .await
        .expect_err("unknown agent");
    assert_eq!(status.code(), Code::NotFound);

    let mut unsupported = request(send_request("fake", "hello"), "alice");
    unsupported
        .metadata_mut()
        .insert("a2a-version", "0.5".parse().expect("ascii"));
    let status = client
        .send_message(unsupported)
        .await
        .expect_err("unsupported version");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "VERSION_NOT_SUPPORTED");

    let mut no_deadline_left = request(send_request("fake", "hang"), "alice");
    no_deadline_left
        .metadata_mut()
        .insert("grpc-timeout", "200m".parse().expect("ascii"));
    let status = client
        .send_message(no_deadline_left)
        .await
        .expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let _: HashMap<String, String> = status
        .get_details_error_info()
        .map(|info| info.metadata)
        .unwrap_or_default();
}

// === The 3 × 3 bridging matrix ===

/// A client binding of the matrix.
#[derive(Debug, Clone, Copy)]
enum ClientBinding {
    JsonRpc,
    HttpJson,
    Grpc,
}

/// The agent binding of the matrix: the same fake behind one interface.
async fn agent_of(binding: &str) -> support::FakeAgent {
    match binding {
        "GRPC" => support::grpc_fake::spawn_fake_grpc().await,
        _ => spawn_fake(FakeMode::V1).await,
    }
}

/// The fake's card reduced to its one `binding` interface.
fn card_for(agent: &support::FakeAgent, binding: &str) -> serde_json::Value {
    let mut card = agent.card();
    let kept: Vec<serde_json::Value> = card["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|interface| interface["protocolBinding"] == binding)
        .cloned()
        .collect();
    assert_eq!(kept.len(), 1, "{binding}");
    card["supportedInterfaces"] = serde_json::Value::Array(kept);
    card
}

/// One client of the gateway, answering in 1.0 ProtoJSON whatever its
/// binding (gRPC answers are read back through the generated serde).
struct MatrixClient<'a> {
    gateway: &'a Gateway,
    binding: ClientBinding,
    grpc: GrpcClient,
}

impl MatrixClient<'_> {
    async fn unary(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        match self.binding {
            ClientBinding::JsonRpc => {
                let answer = self.gateway.rpc("fake", "alice", method, params).await;
                answer
                    .get("result")
                    .cloned()
                    .unwrap_or_else(|| json!({"error": answer["error"]["data"][0]["reason"]}))
            }
            ClientBinding::HttpJson => {
                let id = params["id"].as_str().unwrap_or_default().to_owned();
                let http = &self.gateway.http;
                let builder = match method {
                    "SendMessage" => http
                        .post(self.gateway.url("/agents/fake/message:send"))
                        .json(&params),
                    "GetTask" => http.get(self.gateway.url(&format!("/agents/fake/tasks/{id}"))),
                    "ListTasks" => http.get(self.gateway.url("/agents/fake/tasks")),
                    "CancelTask" => http
                        .post(self.gateway.url(&format!("/agents/fake/tasks/{id}:cancel")))
                        .json(&json!({})),
                    other => panic!("no REST route for {other}"),
                };
                let response = builder
                    .header("A2A-Version", "1.0")
                    .header("x-test-subject", "alice")
                    .send()
                    .await
                    .expect("rest");
                let body: serde_json::Value = response.json().await.expect("rest json");
                match body.get("error") {
                    Some(error) => json!({"error": error["details"][0]["reason"]}),
                    None => body,
                }
            }
            ClientBinding::Grpc => {
                let mut params = params;
                params["tenant"] = json!("fake");
                let answer = match method {
                    "SendMessage" => self
                        .grpc
                        .send_message(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .map(|response| serde_json::to_value(response.into_inner())),
                    "GetTask" => self
                        .grpc
                        .get_task(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .map(|response| serde_json::to_value(response.into_inner())),
                    "ListTasks" => self
                        .grpc
                        .list_tasks(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .map(|response| serde_json::to_value(response.into_inner())),
                    "CancelTask" => self
                        .grpc
                        .cancel_task(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .map(|response| serde_json::to_value(response.into_inner())),
                    other => panic!("no gRPC call for {other}"),
                };
                match answer {
                    Ok(value) => value.expect("answer as json"),
                    Err(status) => json!({"error": status
                        .get_details_error_info()
                        .map(|info| info.reason)
                        .unwrap_or_default()}),
                }
            }
        }
    }

    async fn stream(&mut self, method: &str, params: serde_json::Value) -> Vec<serde_json::Value> {
        match self.binding {
            ClientBinding::JsonRpc | ClientBinding::HttpJson => {
                let http = &self.gateway.http;
                let builder = match (self.binding, method) {
                    (ClientBinding::JsonRpc, _) => {
                        http.post(self.gateway.url("/agents/fake")).json(
                            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
                        )
                    }
                    (_, "SendStreamingMessage") => http
                        .post(self.gateway.url("/agents/fake/message:stream"))
                        .json(&params),
                    _ => http.get(self.gateway.url(&format!(
                        "/agents/fake/tasks/{}:subscribe",
                        params["id"].as_str().unwrap_or_default()
                    ))),
                };
                let response = builder
                    .header("A2A-Version", "1.0")
                    .header("x-test-subject", "alice")
                    .send()
                    .await
                    .expect("stream");
                let events = support::sse_events(response).await;
                match self.binding {
                    ClientBinding::JsonRpc => events
                        .into_iter()
                        .map(|event| event["result"].clone())
                        .collect(),
                    _ => events,
                }
            }
            ClientBinding::Grpc => {
                let mut params = params;
                params["tenant"] = json!("fake");
                let mut stream = match method {
                    "SendStreamingMessage" => self
                        .grpc
                        .send_streaming_message(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .expect("stream")
                        .into_inner(),
                    _ => self
                        .grpc
                        .subscribe_to_task(request(
                            serde_json::from_value(params).expect("request"),
                            "alice",
                        ))
                        .await
                        .expect("subscribe")
                        .into_inner(),
                };
                let mut events = Vec::new();
                while let Some(event) = stream.message().await.expect("event") {
                    events.push(serde_json::to_value(event).expect("event as json"));
                }
                events
            }
        }
    }
}

/// What a client can observe of a result, with the ids left out.
fn observed(value: &serde_json::Value) -> serde_json::Value {
    let task = value.get("task").unwrap_or(value);
    json!({
        "state": task["status"]["state"],
        "artifact": task["artifacts"][0]["parts"][0]["text"],
    })
}

/// The kinds of a stream's events and its last state.
fn observed_stream(events: &[serde_json::Value]) -> serde_json::Value {
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|event| {
            ["task", "message", "statusUpdate", "artifactUpdate"]
                .into_iter()
                .find(|kind| event.get(*kind).is_some())
        })
        .collect();
    let last_state = events
        .iter()
        .rev()
        .find_map(|event| {
            event
                .get("statusUpdate")
                .or_else(|| event.get("task"))
                .map(|update| update["status"]["state"].clone())
        })
        .unwrap_or_default();
    json!({"kinds": kinds, "last": last_state})
}

#[tokio::test]
async fn every_client_binding_reaches_every_agent_binding_with_the_same_results() {
    let clients = [
        ClientBinding::JsonRpc,
        ClientBinding::HttpJson,
        ClientBinding::Grpc,
    ];
    for agent_binding in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        for client_binding in clients {
            let cell = format!("{client_binding:?} client -> {agent_binding} agent");
            let agent = agent_of(agent_binding).await;
            let gateway = spawn_gateway_h2c().await;
            gateway.register("fake", card_for(&agent, agent_binding));
            let mut client = MatrixClient {
                gateway: &gateway,
                binding: client_binding,
                grpc: self::client(&gateway),
            };

            let sent = client
                .unary("SendMessage", support::send_params("hello"))
                .await;
            assert_eq!(
                observed(&sent),
                json!({"state": "TASK_STATE_COMPLETED", "artifact": "echo: hello"}),
                "{cell}: send {sent}"
            );
            let task_id = sent["task"]["id"].as_str().expect("task id").to_owned();

            let events = client
                .stream("SendStreamingMessage", support::send_params("hello"))
                .await;
            assert_eq!(
                observed_stream(&events),
                json!({"kinds": ["task", "statusUpdate", "artifactUpdate", "statusUpdate"],
                       "last": "TASK_STATE_COMPLETED"}),
                "{cell}: stream {events:?}"
            );

            let fetched = client.unary("GetTask", json!({"id": task_id})).await;
            assert_eq!(observed(&fetched), observed(&sent), "{cell}: get {fetched}");
            assert_eq!(fetched["id"], json!(task_id), "{cell}");

            let listed = client.unary("ListTasks", json!({})).await;
            let listed_ids: Vec<&str> = listed["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .filter_map(|task| task["id"].as_str())
                .collect();
            assert_eq!(listed_ids.len(), 2, "{cell}: list {listed}");
            assert!(
                listed_ids.contains(&task_id.as_str()),
                "{cell}: list {listed}"
            );

            let waiting = client
                .unary("SendMessage", support::send_params("wait"))
                .await;
            let waiting_id = waiting["task"]["id"].as_str().expect("task id").to_owned();
            let subscribed = client
                .stream("SubscribeToTask", json!({"id": waiting_id}))
                .await;
            assert_eq!(
                observed_stream(&subscribed),
                json!({"kinds": ["task", "statusUpdate"], "last": "TASK_STATE_COMPLETED"}),
                "{cell}: subscribe {subscribed:?}"
            );
            let canceled = client.unary("CancelTask", json!({"id": waiting_id})).await;
            assert_eq!(
                canceled["status"]["state"],
                json!("TASK_STATE_CANCELED"),
                "{cell}: cancel {canceled}"
            );

            let unknown = client.unary("GetTask", json!({"id": "no-such-task"})).await;
            assert_eq!(
                unknown,
                json!({"error": "TASK_NOT_FOUND"}),
                "{cell}: unknown task"
            );
            let done = client.unary("CancelTask", json!({"id": task_id})).await;
            assert_eq!(
                done,
                json!({"error": "TASK_NOT_CANCELABLE"}),
                "{cell}: cancel done task"
            );
        }
    }
}

#[tokio::test]
async fn served_cards_offer_grpc_at_the_gateway_with_the_agent_as_tenant() {
    let (gateway, _client) = setup().await;
    let card: serde_json::Value = gateway
        .http
        .get(gateway.url("/agents/fake/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    let authority = gateway.base_url.trim_start_matches("http://");
    let grpc: Vec<&serde_json::Value> = card["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|interface| interface["protocolBinding"] == "GRPC")
        .collect();
    assert_eq!(grpc.len(), 1, "{card}");
    assert_eq!(grpc[0]["url"], json!(authority));
    assert_eq!(grpc[0]["tenant"], json!("fake"));
    assert_eq!(grpc[0]["protocolVersion"], json!("1.0"));

    let own: serde_json::Value = gateway
        .http
        .get(gateway.url("/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    assert!(own["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .any(|interface| interface["protocolBinding"] == "GRPC"
            && interface["url"] == json!(authority)));
}

#[tokio::test]
async fn a2a_extensions_metadata_reaches_a_grpc_agent() {
    let agent = support::grpc_fake::spawn_fake_grpc().await;
    let gateway = spawn_gateway_h2c().await;
    gateway.register("fake", agent.card());
    let mut client = client(&gateway);
    let mut call = request(send_request("fake", "hello"), "alice");
    call.metadata_mut().insert(
        "a2a-extensions",
        "https://example.com/ext/v1".parse().expect("ascii"),
    );
    client.send_message(call).await.expect("send");
    let headers = agent
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert_eq!(
        headers
            .get("a2a-extensions")
            .and_then(|value| value.to_str().ok()),
        Some("https://example.com/ext/v1")
    );
    assert_eq!(
        headers
            .get("a2a-version")
            .and_then(|value| value.to_str().ok()),
        Some("1.0")
    );
    // The caller's test identity header is not forwarded upstream.
    assert!(headers.get("x-test-subject").is_none());
}

#[tokio::test]
async fn grpc_calls_are_authenticated_from_the_authorization_metadata() {
    use support::security::{spawn_secure_gateway, Issuer, SecureOptions};

    let issuer = Issuer::new("grpc-key");
    let secure = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    secure.gateway.register("fake", fake.card());
    let mut client = client(&secure.gateway);

    let status = client
        .send_message(Request::new(send_request("fake", "hello")))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        fake.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    let mut forged = Request::new(send_request("fake", "hello"));
    forged.metadata_mut().insert(
        "authorization",
        "Bearer not.a.token".parse().expect("ascii"),
    );
    let status = client.send_message(forged).await.expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let bearer = format!("Bearer {}", issuer.token("alice", "acme"));
    let mut signed = Request::new(send_request("fake", "hello"));
    signed
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("ascii"));
    let answer = client.send_message(signed).await.expect("authenticated");
    assert!(matches!(
        answer.into_inner().payload,
        Some(send_message_response::Payload::Task(_))
    ));
    // The caller's credential is not forwarded upstream.
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("headers");
    assert!(headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_grpc_agent_on_a_private_address_is_refused_at_connect_time() {
    let agent = support::grpc_fake::spawn_fake_grpc().await;
    // No allow-list: loopback is not a public address.
    let gateway = support::spawn_gateway_h2c_with(convergio_gateway::a2a::A2aConfig {
        upstream_retries: 0,
        ..convergio_gateway::a2a::A2aConfig::default()
    })
    .await;
    gateway.register("fake", agent.card());
    let answer = gateway
        .rpc(
            "fake",
            "alice",
            "SendMessage",
            support::send_params("hello"),
        )
        .await;
    assert!(answer.get("error").is_some(), "{answer}");
    assert_eq!(
        agent
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the agent"
    );
    let status = client(&gateway)
        .send_message(request(send_request("fake", "hello"), "alice"))
        .await
        .expect_err("refused");
    // The same category as on the JSON bindings: the A2A error
    // (InvalidAgentResponse, INTERNAL) and the gateway's own reason.
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let reasons: Vec<String> = status
        .get_error_details_vec()
        .into_iter()
        .filter_map(|detail| match detail {
            tonic_types::ErrorDetail::ErrorInfo(info) => Some(info.reason),
            _ => None,
        })
        .collect();
    assert!(
        reasons.contains(&"UPSTREAM_UNREACHABLE".to_owned()),
        "{reasons:?}"
    );
    assert_eq!(
        answer["error"]["data"][1]["reason"],
        json!("UPSTREAM_UNREACHABLE"),
        "{answer}"
    );
}

/// Refuses every call of `mallory` (as a Cedar `forbid` would), counting
/// the decisions; everything else as [`OpenGate`].
struct RefuseMallory {
    decided: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl convergio_gateway::authorize::Gatekeeper for RefuseMallory {
    async fn admit(
        &self,
        call: &convergio_gateway::authorize::CallFacts<'_>,
    ) -> Result<(), convergio_gateway::GatewayError> {
        self.decided
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call.principal.subject == "mallory" {
            return Err(convergio_gateway::GatewayError::Forbidden {
                agent: call.target.name.clone(),
                action: "send_message".into(),
            });
        }
        Ok(())
    }

    fn may_discover(
        &self,
        _principal: &convergio_gateway::Principal,
        _target: &convergio_gateway::a2a::RouteTarget,
        _loopback: bool,
    ) -> bool {
        true
    }

    fn may_read_card(
        &self,
        _principal: &convergio_gateway::Principal,
        _target: &convergio_gateway::a2a::RouteTarget,
        _loopback: bool,
    ) -> bool {
        true
    }

    fn may_call(
        &self,
        _principal: &convergio_gateway::Principal,
        _target: &convergio_gateway::a2a::RouteTarget,
        _loopback: bool,
    ) -> bool {
        true
    }

    async fn record_listing(
        &self,
        _principal: &convergio_gateway::Principal,
        _request_id: Option<&convergio_gateway::layers::RequestId>,
        _shown: usize,
        _hidden: usize,
    ) {
    }

    fn observe_reply(
        &self,
        _principal: &convergio_gateway::Principal,
        _result: &serde_json::Value,
    ) {
    }

    async fn admit_run(
        &self,
        _principal: &convergio_gateway::Principal,
        _graph: &str,
        _loopback: bool,
        _request_id: Option<&convergio_gateway::layers::RequestId>,
    ) -> Result<(), convergio_gateway::GatewayError> {
        Ok(())
    }

    async fn decide_graph(
        &self,
        _principal: &convergio_gateway::Principal,
        _action: convergio_gateway::authorize::GraphAction,
        _graph: &str,
        _org: &str,
        _loopback: bool,
        _request_id: Option<&convergio_gateway::layers::RequestId>,
    ) -> bool {
        true
    }

    async fn admit_metrics(
        &self,
        _principal: &convergio_gateway::Principal,
        _loopback: bool,
        _request_id: Option<&convergio_gateway::layers::RequestId>,
    ) -> Result<(), convergio_gateway::GatewayError> {
        Ok(())
    }
}

#[tokio::test]
async fn the_gatekeeper_decides_grpc_calls_before_the_agent_sees_them() {
    let gate = std::sync::Arc::new(RefuseMallory {
        decided: std::sync::atomic::AtomicUsize::new(0),
    });
    let agent = support::grpc_fake::spawn_fake_grpc().await;
    let gateway = support::spawn_gateway_h2c_gated(
        convergio_gateway::a2a::A2aConfig {
            upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
            ..convergio_gateway::a2a::A2aConfig::default()
        },
        gate.clone(),
    )
    .await;
    gateway.register("fake", agent.card());
    let mut client = client(&gateway);
    let status = client
        .send_message(request(send_request("fake", "hello"), "mallory"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        agent
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    client
        .send_message(request(send_request("fake", "hello"), "alice"))
        .await
        .expect("admitted");
    assert_eq!(gate.decided.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        agent
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
