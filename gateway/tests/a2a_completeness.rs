//! The small points of A2A completeness (issue 24), each over real
//! loopback sockets: push-config calls to an agent without push
//! notifications get that agent's own answer on every binding; ProtoJSON's
//! original (snake_case) field names are accepted like the lowerCamelCase
//! ones on both JSON bindings; and gRPC calls are counted in the metrics by
//! their `grpc-status`. (The AI Catalog's per-caller lists are tested with
//! real policies in tests/policy.rs, the JavaScript SDK in tests/js_sdk.rs.)

mod support;

use convergio_gateway::a2a::grpc::proto::a2a_service_client::A2aServiceClient;
use convergio_gateway::a2a::grpc::proto::{self as pb};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::*;
use tonic::{Code, Request};
use tonic_types::StatusExt;

type GrpcClient = A2aServiceClient<Client<HttpConnector, tonic::body::Body>>;

fn grpc_client(gateway: &Gateway) -> GrpcClient {
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    A2aServiceClient::with_origin(http, gateway.base_url.parse().expect("gateway uri"))
}

fn grpc_request<T>(message: T, subject: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-test-subject", subject.parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("a2a-version", "1.0".parse().expect("ascii"));
    request
}

/// A task of `subject` at `agent`, made through the gateway.
async fn task_of(gateway: &Gateway, agent: &str, subject: &str) -> String {
    let answer = gateway
        .rpc(agent, subject, "SendMessage", send_params("hello"))
        .await;
    answer["result"]["task"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task in {answer}"))
        .to_owned()
}

async fn rest(
    gateway: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = gateway
        .http
        .request(method, gateway.url(path))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("rest");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn push_config_calls_to_an_agent_without_push_get_its_own_answer_on_every_binding() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway_h2c().await;
    // The fake's card has no `pushNotifications` (false by default).
    gateway.register("echo", fake.card());
    let task_id = task_of(&gateway, "echo", "alice").await;
    let seen_before = fake
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);

    // JSON-RPC: -32003 with its ErrorInfo, for the caller's task and for
    // a task id the gateway never saw alike.
    let config = json!({"url": "https://hooks.example/a2a", "token": "t"});
    for task in [task_id.as_str(), "never-seen"] {
        let calls = [
            (
                "CreateTaskPushNotificationConfig",
                json!({"taskId": task, "url": "https://hooks.example/a2a"}),
            ),
            (
                "GetTaskPushNotificationConfig",
                json!({"taskId": task, "id": "c1"}),
            ),
            ("ListTaskPushNotificationConfigs", json!({"taskId": task})),
            (
                "DeleteTaskPushNotificationConfig",
                json!({"taskId": task, "id": "c1"}),
            ),
        ];
        for (method, params) in calls {
            let answer = gateway.rpc("echo", "alice", method, params).await;
            assert_eq!(answer["error"]["code"], json!(-32003), "{method}: {answer}");
            assert_eq!(
                answer["error"]["data"][0]["reason"],
                json!("PUSH_NOTIFICATION_NOT_SUPPORTED"),
                "{method}"
            );
        }
    }

    // HTTP+JSON: 400 FAILED_PRECONDITION with the same reason.
    let base = format!("/agents/echo/tasks/{task_id}/pushNotificationConfigs");
    let calls = [
        (reqwest::Method::POST, base.clone(), Some(config.clone())),
        (reqwest::Method::GET, base.clone(), None),
        (reqwest::Method::GET, format!("{base}/c1"), None),
        (reqwest::Method::DELETE, format!("{base}/c1"), None),
    ];
    for (method, path, body) in calls {
        let (status, answer) = rest(&gateway, method.clone(), &path, body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["status"], json!("FAILED_PRECONDITION"));
        assert_eq!(
            answer["error"]["details"][0]["reason"],
            json!("PUSH_NOTIFICATION_NOT_SUPPORTED")
        );
    }

    // gRPC: FAILED_PRECONDITION with the ErrorInfo.
    let mut client = grpc_client(&gateway);
    let statuses = [
        client
            .create_task_push_notification_config(grpc_request(
                pb::TaskPushNotificationConfig {
                    tenant: "echo".into(),
                    task_id: task_id.clone(),
                    url: "https://hooks.example/a2a".into(),
                    ..Default::default()
                },
                "alice",
            ))
            .await
            .map(|_| ())
            .expect_err("create"),
        client
            .get_task_push_notification_config(grpc_request(
                pb::GetTaskPushNotificationConfigRequest {
                    tenant: "echo".into(),
                    task_id: task_id.clone(),
                    id: "c1".into(),
                },
                "alice",
            ))
            .await
            .map(|_| ())
            .expect_err("get"),
        client
            .list_task_push_notification_configs(grpc_request(
                pb::ListTaskPushNotificationConfigsRequest {
                    tenant: "echo".into(),
                    task_id: task_id.clone(),
                    ..Default::default()
                },
                "alice",
            ))
            .await
            .map(|_| ())
            .expect_err("list"),
        client
            .delete_task_push_notification_config(grpc_request(
                pb::DeleteTaskPushNotificationConfigRequest {
                    tenant: "echo".into(),
                    task_id: task_id.clone(),
                    id: "c1".into(),
                },
                "alice",
            ))
            .await
            .map(|_| ())
            .expect_err("delete"),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "PUSH_NOTIFICATION_NOT_SUPPORTED");
        assert_eq!(info.domain, "a2a-protocol.org");
    }
    assert_eq!(
        fake.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        seen_before,
        "the agent's answer is known from its card: nothing was forwarded"
    );
}

#[tokio::test]
async fn push_config_calls_to_an_agent_with_push_are_forwarded() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway().await;
    let mut card = fake.card();
    card["capabilities"]["pushNotifications"] = json!(true);
    gateway.register("echo", card);
    let task_id = task_of(&gateway, "echo", "alice").await;
    // The fake itself knows no push methods: its own answer comes back.
    let answer = gateway
        .rpc(
            "echo",
            "alice",
            "ListTaskPushNotificationConfigs",
            json!({"taskId": task_id}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32601), "{answer}");
    // And another caller's task is still unknown to this one.
    let answer = gateway
        .rpc(
            "echo",
            "mallory",
            "ListTaskPushNotificationConfigs",
            json!({"taskId": task_id}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32001), "{answer}");
}

/// The value of the series `line_prefix` (name and labels) in `text`.
fn series(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn grpc_calls_are_counted_by_their_grpc_status_not_the_http_200() {
    let metrics = std::sync::Arc::new(convergio_gateway::metrics::GatewayMetrics::default());
    let config = convergio_gateway::a2a::A2aConfig {
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..Default::default()
    };
    let gateway = spawn_gateway_h2c_observed(
        config,
        std::sync::Arc::new(convergio_gateway::authorize::OpenGate),
        metrics.clone(),
    )
    .await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("echo", fake.card());
    let mut client = grpc_client(&gateway);
    let send = || pb::SendMessageRequest {
        tenant: "echo".into(),
        message: Some(pb::Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: pb::Role::User.into(),
            parts: vec![pb::Part {
                content: Some(pb::part::Content::Text("hello".into())),
                ..pb::Part::default()
            }],
            ..pb::Message::default()
        }),
        ..pb::SendMessageRequest::default()
    };

    // Two successes: a unary call (status in the trailers after its
    // message) and a stream read to its end.
    client
        .send_message(grpc_request(send(), "alice"))
        .await
        .expect("unary call");
    let mut events = client
        .send_streaming_message(grpc_request(send(), "alice"))
        .await
        .expect("stream")
        .into_inner();
    while events.message().await.expect("event").is_some() {}
    // Three failures: errors before any message (trailers-only answers).
    let unknown_task = client
        .get_task(grpc_request(
            pb::GetTaskRequest {
                tenant: "echo".into(),
                id: "no-such-task".into(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect_err("unknown task");
    assert_eq!(unknown_task.code(), Code::NotFound);
    let unknown_subscription = client
        .subscribe_to_task(grpc_request(
            pb::SubscribeToTaskRequest {
                tenant: "echo".into(),
                id: "no-such-task".into(),
            },
            "alice",
        ))
        .await
        .map(|_| ())
        .expect_err("unknown task");
    assert_eq!(unknown_subscription.code(), Code::NotFound);
    let no_tenant = client
        .get_task(grpc_request(
            pb::GetTaskRequest {
                id: "t".into(),
                ..Default::default()
            },
            "alice",
        ))
        .await
        .expect_err("no tenant");
    assert_eq!(no_tenant.code(), Code::InvalidArgument);

    let text = metrics.render();
    let requests = |status: u16| {
        series(
            &text,
            &format!(
                "convergio_http_requests_total{{route=\"a2a\",method=\"POST\",agent=\"\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests(200), Some(2.0), "{text}");
    assert_eq!(requests(404), Some(2.0), "{text}");
    assert_eq!(requests(400), Some(1.0), "{text}");
    let by_code = |code: &str| {
        series(
            &text,
            &format!("convergio_grpc_requests_total{{code=\"{code}\"}}"),
        )
    };
    assert_eq!(by_code("OK"), Some(2.0), "{text}");
    assert_eq!(by_code("NOT_FOUND"), Some(2.0), "{text}");
    assert_eq!(by_code("INVALID_ARGUMENT"), Some(1.0), "{text}");
}

#[tokio::test]
async fn jsonrpc_params_in_protojson_original_names_are_read_like_json_names() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway().await;
    let mut card = fake.card();
    card["capabilities"]["pushNotifications"] = json!(true);
    gateway.register("echo", card);
    let answer = gateway
        .rpc(
            "echo",
            "alice",
            "SendMessage",
            json!({"message": {"message_id": "m-snake", "context_id": "ctx-snake", "role": "ROLE_USER",
                "parts": [{"text": "hello", "media_type": "text/plain"}]},
                "configuration": {"return_immediately": false, "history_length": 1}}),
        )
        .await;
    let task = &answer["result"]["task"];
    assert_eq!(task["contextId"], json!("ctx-snake"), "{answer}");
    assert_eq!(task["history"][0]["messageId"], json!("m-snake"));
    assert_eq!(
        task["history"][0]["parts"][0]["mediaType"],
        json!("text/plain")
    );
    let task_id = task["id"].as_str().expect("task id").to_owned();

    // The renamed fields are what ownership reads: another caller naming
    // alice's task or context by their original names is refused.
    let answer = gateway
        .rpc(
            "echo",
            "mallory",
            "SendMessage",
            json!({"message": {"message_id": "m2", "task_id": task_id, "role": "ROLE_USER",
                "parts": [{"text": "steal"}]}}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32001), "{answer}");
    let answer = gateway
        .rpc(
            "echo",
            "mallory",
            "SendMessage",
            json!({"message": {"message_id": "m3", "context_id": "ctx-snake", "role": "ROLE_USER",
                "parts": [{"text": "steal"}]}}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32001), "{answer}");

    // A push-config call routed by `task_id` reaches the agent (the fake
    // knows no push methods: its own -32601 comes back, not -32602).
    let answer = gateway
        .rpc(
            "echo",
            "alice",
            "GetTaskPushNotificationConfig",
            json!({"task_id": task_id, "id": "c1"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32601), "{answer}");
    let answer = gateway
        .rpc(
            "echo",
            "alice",
            "GetTask",
            json!({"id": task_id, "history_length": 0}),
        )
        .await;
    assert_eq!(answer["result"]["id"], json!(task_id), "{answer}");

    // Both spellings of one field: a ProtoJSON parser refuses that.
    let answer = gateway
        .rpc(
            "echo",
            "alice",
            "SendMessage",
            json!({"message": {"messageId": "a", "message_id": "b", "role": "ROLE_USER", "parts": []}}),
        )
        .await;
    assert_eq!(answer["error"]["code"], json!(-32602), "{answer}");
}

#[tokio::test]
async fn http_json_bodies_and_queries_in_protojson_original_names_are_read_like_json_names() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway().await;
    gateway.register("echo", fake.card());
    let mut task_ids = Vec::new();
    for context in ["ctx-a", "ctx-b"] {
        let (status, answer) = rest(
            &gateway,
            reqwest::Method::POST,
            "/agents/echo/message:send",
            Some(
                json!({"message": {"message_id": format!("m-{context}"), "context_id": context,
                "role": "ROLE_USER", "parts": [{"text": "hello"}]},
                "configuration": {"return_immediately": false}}),
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["task"]["contextId"], json!(context), "{answer}");
        task_ids.push(answer["task"]["id"].as_str().expect("id").to_owned());
    }
    let (status, answer) = rest(
        &gateway,
        reqwest::Method::GET,
        "/agents/echo/tasks?page_size=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["tasks"].as_array().map(Vec::len),
        Some(1),
        "page_size is pageSize: {answer}"
    );
    let (status, answer) = rest(
        &gateway,
        reqwest::Method::GET,
        &format!("/agents/echo/tasks/{}?history_length=0", task_ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], json!(task_ids[0]));
}
