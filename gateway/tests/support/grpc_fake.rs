//! A fake A2A agent that speaks only gRPC (`lf.a2a.v1.A2AService` over
//! HTTP/2 cleartext, on the product's accept loop): the JSON fake's
//! behaviour (`operate`) behind the generated server, its requests and
//! answers converted with the generated ProtoJSON serde, its errors as
//! statuses with an A2A ErrorInfo.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::Router;
use convergio_gateway::a2a::grpc::proto::a2a_service_server::{A2aService, A2aServiceServer};
use convergio_gateway::a2a::grpc::proto::{self as pb};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{operate, FakeAgent, FakeMode, FakeState, Outcome};

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, Status>> + Send>>;

/// Starts the gRPC-only fake on a loopback port.
pub async fn spawn_fake_grpc() -> FakeAgent {
    let state = Arc::new(FakeState::default());
    *state.mode.lock().expect("lock") = Some(FakeMode::Grpc);
    let service = A2aServiceServer::new(FakeGrpc {
        state: state.clone(),
    });
    let app = Router::new().route_service("/lf.a2a.v1.A2AService/{method}", service);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let address = listener.local_addr().expect("address");
    tokio::spawn(convergio_gateway::server::serve_with(
        listener,
        app,
        convergio_gateway::server::ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    FakeAgent {
        base_url: address.to_string(),
        state,
        mode: FakeMode::Grpc,
    }
}

struct FakeGrpc {
    state: Arc<FakeState>,
}

fn error_status(code: i64, message: &str) -> Status {
    let (status, reason) = match code {
        -32001 => (Code::NotFound, "TASK_NOT_FOUND"),
        -32002 => (Code::FailedPrecondition, "TASK_NOT_CANCELABLE"),
        _ => (Code::FailedPrecondition, "UNSUPPORTED_OPERATION"),
    };
    Status::with_error_details(
        status,
        message,
        ErrorDetails::with_error_info(reason, "a2a-protocol.org", HashMap::new()),
    )
}

fn convert<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Status> {
    serde_json::from_value(value).map_err(|error| Status::internal(error.to_string()))
}

impl FakeGrpc {
    async fn params<Req: Serialize>(&self, request: &Request<Req>) -> serde_json::Value {
        self.state.requests.fetch_add(1, Ordering::SeqCst);
        *self.state.last_headers.lock().expect("lock") =
            Some(request.metadata().clone().into_headers());
        serde_json::to_value(request.get_ref()).expect("request as json")
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Status> {
        let params = self.params(&request).await;
        match operate(&self.state, method, &params).await {
            Ok(Outcome::Value(value)) => Ok(Response::new(convert(value)?)),
            Ok(_) => Err(Status::internal("the fake has no unary answer")),
            Err((code, message)) => Err(error_status(code, message)),
        }
    }

    async fn stream<Req: Serialize>(
        &self,
        method: &str,
        request: Request<Req>,
    ) -> Result<Response<EventStream>, Status> {
        let params = self.params(&request).await;
        let (events, cut) = match operate(&self.state, method, &params).await {
            Ok(Outcome::Events(events, cut)) => (events, cut),
            Ok(Outcome::Value(value)) => (vec![value], false),
            Ok(Outcome::Garbage | Outcome::Raw(_)) => return Err(Status::internal("garbage")),
            Err((code, message)) => return Err(error_status(code, message)),
        };
        let mut items: Vec<Result<pb::StreamResponse, Status>> =
            events.into_iter().map(convert).collect();
        if cut {
            items.push(Err(Status::unavailable("cut")));
        }
        Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
    }
}

#[tonic::async_trait]
impl A2aService for FakeGrpc {
    type SendStreamingMessageStream = EventStream;
    type SubscribeToTaskStream = EventStream;

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        self.unary("SendMessage", request).await
    }

    async fn send_streaming_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.stream("SendStreamingMessage", request).await
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.unary("GetTask", request).await
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        self.unary("ListTasks", request).await
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.unary("CancelTask", request).await
    }

    async fn subscribe_to_task(
        &self,
        request: Request<pb::SubscribeToTaskRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.stream("SubscribeToTask", request).await
    }

    async fn create_task_push_notification_config(
        &self,
        request: Request<pb::TaskPushNotificationConfig>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        self.unary("CreateTaskPushNotificationConfig", request)
            .await
    }

    async fn get_task_push_notification_config(
        &self,
        request: Request<pb::GetTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        self.unary("GetTaskPushNotificationConfig", request).await
    }

    async fn list_task_push_notification_configs(
        &self,
        request: Request<pb::ListTaskPushNotificationConfigsRequest>,
    ) -> Result<Response<pb::ListTaskPushNotificationConfigsResponse>, Status> {
        self.unary("ListTaskPushNotificationConfigs", request).await
    }

    async fn get_extended_agent_card(
        &self,
        request: Request<pb::GetExtendedAgentCardRequest>,
    ) -> Result<Response<pb::AgentCard>, Status> {
        self.unary("GetExtendedAgentCard", request).await
    }

    async fn delete_task_push_notification_config(
        &self,
        request: Request<pb::DeleteTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        self.unary("DeleteTaskPushNotificationConfig", request)
            .await
    }
}
