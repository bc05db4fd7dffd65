//! The gRPC binding on the real server (issue 24): `convergio serve`
//! answers `lf.a2a.v1.A2AService` on its one listener (HTTP/2 cleartext
//! beside HTTP/1.1), the echo agent's served card offers it with the agent
//! as tenant, and a call is decided by the embedded policy like any other.

mod support;

use convergio_gateway::a2a::grpc::proto::a2a_service_client::A2aServiceClient;
use convergio_gateway::a2a::grpc::proto::{
    self as pb, part, send_message_response, GetTaskRequest, Message, Part, Role,
};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::start;
use tonic::{Code, Request};

#[tokio::test(flavor = "multi_thread")]
async fn the_echo_agent_answers_grpc_on_the_server_listener() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let card: Value = reqwest::get(format!(
        "{}/agents/echo/.well-known/agent-card.json",
        server.base
    ))
    .await
    .expect("card")
    .json()
    .await
    .expect("card json");
    let grpc = card["supportedInterfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|interface| interface["protocolBinding"] == "GRPC")
        .cloned()
        .expect("a GRPC interface");
    assert_eq!(
        grpc["url"].as_str(),
        Some(server.base.trim_start_matches("http://"))
    );
    let tenant = grpc["tenant"].as_str().expect("tenant").to_owned();
    assert_eq!(tenant, "echo");

    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut client = A2aServiceClient::with_origin(http, server.base.parse().expect("uri"));
    let send = pb::SendMessageRequest {
        tenant: tenant.clone(),
        message: Some(Message {
            message_id: "grpc-m1".into(),
            role: Role::User.into(),
            parts: vec![Part {
                content: Some(part::Content::Text("hello over grpc".into())),
                ..Part::default()
            }],
            ..Message::default()
        }),
        ..pb::SendMessageRequest::default()
    };
    let answer = client
        .send_message(Request::new(send))
        .await
        .expect("the embedded policy lets loopback callers reach echo")
        .into_inner();
    let text = serde_json::to_string(&answer).expect("json");
    assert!(text.contains("hello over grpc"), "{text}");
    if let Some(send_message_response::Payload::Task(task)) = answer.payload {
        let fetched = client
            .get_task(Request::new(GetTaskRequest {
                tenant: tenant.clone(),
                id: task.id.clone(),
                ..GetTaskRequest::default()
            }))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(fetched.id, task.id);
    }

    let status = client
        .get_task(Request::new(GetTaskRequest {
            tenant,
            id: "no-such-task".into(),
            ..GetTaskRequest::default()
        }))
        .await
        .expect_err("unknown task");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
