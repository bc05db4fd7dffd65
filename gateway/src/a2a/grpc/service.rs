//! The gateway's `A2AService` server: each of the 11 methods decodes its
//! request into a [`Call`] (ProtoJSON through pbjson serde), names the agent
//! by the request's `tenant` (the served cards' gRPC interfaces carry the
//! agent's name as their tenant, which clients copy into every request),
//! runs the shared pipeline ([`super::super::execute`]) and encodes the
//! answer. Metadata are the call's headers: `authorization` was read by the
//! `Authenticate` layer already, `a2a-version` must be 1.0 when present,
//! `a2a-extensions` is forwarded upstream like the HTTP header, and
//! `grpc-timeout` bounds the upstream call as a graph node's deadline does.
//! Errors are statuses with ErrorInfo details ([`super::status`]).

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method as HttpMethod};
use convergio_schemas::a2a::{Method, ProtocolVersion, VERSION_HEADER};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::proto::a2a_service_server::{A2aService, A2aServiceServer};
use super::proto::{self as pb};
use super::SERVICE_PATH;
use crate::a2a::answer::Answer;
use crate::a2a::forward::Reply;
use crate::a2a::sse::SseParser;
use crate::a2a::{execute, inbound, resolve, A2aState, Call, CallDeadline, ClientSide, Incoming};
use crate::layers::{render_grpc_status, RequestId};
use crate::routes::Binding;
use crate::GatewayError;

/// The events of a server-streaming method.
pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, Status>> + Send>>;

/// The service, over the A2A routes' state.
#[derive(Clone)]
pub(crate) struct GrpcGateway {
    state: A2aState,
}

/// The tower service to mount at [`SERVICE_PATH`].
pub(crate) fn server(state: A2aState) -> A2aServiceServer<GrpcGateway> {
    A2aServiceServer::new(GrpcGateway { state })
}

/// What a call needs after its pipeline ran.
struct Ran {
    reply: Reply,
    agent: String,
    request_id: Option<RequestId>,
}

// === impl GrpcGateway ===

impl GrpcGateway {
    /// Decodes, routes and runs one call.
    async fn run<Req: Serialize>(
        &self,
        method: Method,
        request: Request<Req>,
    ) -> Result<Ran, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let mut incoming = Incoming::from_parts(
            &extensions,
            metadata.into_headers(),
            HttpMethod::POST,
            format!("{SERVICE_PATH}{}", method.v1_name()),
            None,
        );
        let request_id = incoming.request_id.clone();
        let fail = |error: GatewayError| render_grpc_status(&error, request_id.as_ref(), false);
        check_version(&incoming.headers).map_err(fail)?;
        let caller_deadline = grpc_timeout(&incoming.headers)
            .map_err(fail)?
            .map(|timeout| tokio::time::Instant::now() + timeout);
        if let Some(deadline) = caller_deadline {
            let earlier = match incoming.call_deadline {
                Some(CallDeadline(existing)) => existing.min(deadline),
                None => deadline,
            };
            incoming.call_deadline = Some(CallDeadline(earlier));
        }
        let params = serde_json::to_value(&message).map_err(|error| {
            fail(GatewayError::internal(
                "encoding a gRPC request as ProtoJSON",
                error,
            ))
        })?;
        inbound::check_params(method, &params).map_err(fail)?;
        let name = match params.get("tenant").and_then(Value::as_str) {
            Some(tenant) if !tenant.is_empty() => tenant.to_owned(),
            _ => {
                return Err(fail(GatewayError::InvalidParams {
                    detail: "tenant must name the agent on the gateway's gRPC endpoint".into(),
                }))
            }
        };
        let target = resolve(&self.state, &name).await.map_err(fail)?;
        let call = Call::new(
            method,
            params,
            ClientSide {
                binding: Binding::Grpc,
                version: ProtocolVersion::V1_0,
                id: Value::Null,
            },
        );
        let reply = execute(&self.state, &target, call, &incoming)
            .await
            .map_err(|failure| {
                let status =
                    render_grpc_status(&failure.error, request_id.as_ref(), failure.disclose_cause);
                // The caller's own deadline passed: gRPC says so with its
                // own code (the details still name the upstream timeout).
                let expired =
                    caller_deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline);
                if expired && matches!(failure.error, GatewayError::UpstreamTimeout { .. }) {
                    Status::with_details(
                        tonic::Code::DeadlineExceeded,
                        status.message(),
                        status.details().to_vec().into(),
                    )
                } else {
                    status
                }
            })?;
        Ok(Ran {
            reply,
            agent: target.name.clone(),
            request_id,
        })
    }

    /// A unary method: one result, decoded into its response message.
    async fn unary<Req, Resp>(
        &self,
        method: Method,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let ran = self.run(method, request).await?;
        match ran.reply {
            Reply::Unary(answer) => {
                decode_result(answer, &ran.agent, ran.request_id.as_ref()).map(Response::new)
            }
            // Only the two streaming methods are relayed as streams.
            Reply::Stream(_) => Err(render_grpc_status(
                &GatewayError::internal_plain("a unary call was answered with a stream"),
                ran.request_id.as_ref(),
                false,
            )),
        }
    }

    /// A server-streaming method: the relayed events, or the one result
    /// an upstream answered a stream request with.
    async fn stream<Req: Serialize>(
        &self,
        method: Method,
        request: Request<Req>,
    ) -> Result<Response<EventStream>, Status> {
        let ran = self.run(method, request).await?;
        let events: EventStream = match ran.reply {
            Reply::Unary(answer) => {
                let event: pb::StreamResponse =
                    decode_result(answer, &ran.agent, ran.request_id.as_ref())?;
                Box::pin(futures_util::stream::once(async move { Ok(event) }))
            }
            Reply::Stream(body) => Box::pin(events(body, ran.agent, ran.request_id)),
        };
        Ok(Response::new(events))
    }
}

/// A 1.0 result as the method's response message; a result the message
/// cannot hold is the agent's bad answer.
fn decode_result<Resp: DeserializeOwned>(
    answer: Answer,
    agent: &str,
    request_id: Option<&RequestId>,
) -> Result<Resp, Status> {
    let result = answer
        .into_value()
        .map_err(|error| render_grpc_status(&error, request_id, false))?;
    // DeleteTaskPushNotificationConfig answers `null` on JSON-RPC; Empty is `{}`.
    let result = match result {
        Value::Null => Value::Object(serde_json::Map::new()),
        other => other,
    };
    serde_json::from_value(result).map_err(|error| {
        render_grpc_status(
            &GatewayError::UpstreamInvalid {
                agent: agent.to_owned(),
                detail: format!("the answer does not fit the gRPC response: {error}"),
            },
            request_id,
            false,
        )
    })
}

/// The relayed stream (SSE of bare StreamResponses, the HTTP+JSON client
/// shape) as messages; an error event ends it with its status.
fn events(
    body: Body,
    agent: String,
    request_id: Option<RequestId>,
) -> impl Stream<Item = Result<pb::StreamResponse, Status>> + Send + 'static {
    async_stream::stream! {
        let mut parser = SseParser::new();
        let mut data = body.into_data_stream();
        let invalid = |detail: String| render_grpc_status(
            &GatewayError::UpstreamInvalid { agent: agent.clone(), detail },
            request_id.as_ref(),
            false,
        );
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    yield Err(invalid(format!("stream broke: {error}")));
                    return;
                }
            };
            for payload in parser.push(&chunk) {
                let value: Value = match serde_json::from_str(&payload) {
                    Ok(value) => value,
                    Err(error) => {
                        yield Err(invalid(format!("stream event is not JSON: {error}")));
                        return;
                    }
                };
                if value.get("error").is_some() {
                    yield Err(super::status::from_rest_error(&value));
                    return;
                }
                match serde_json::from_value::<pb::StreamResponse>(value) {
                    Ok(event) => yield Ok(event),
                    Err(error) => {
                        yield Err(invalid(format!("stream event does not fit StreamResponse: {error}")));
                        return;
                    }
                }
            }
        }
    }
}

/// The service is A2A 1.0 (the 0.3 service was `a2a.v1`): an `a2a-version`
/// other than 1.0 is refused, an absent one means 1.0.
fn check_version(headers: &HeaderMap) -> Result<(), GatewayError> {
    match headers.get(VERSION_HEADER) {
        None => Ok(()),
        Some(value) => match value.to_str() {
            Ok(text) if ProtocolVersion::from_header(Some(text)) == Some(ProtocolVersion::V1_0) => {
                Ok(())
            }
            Ok(text) => Err(GatewayError::VersionNotSupported {
                version: text.to_owned(),
            }),
            Err(_) => Err(GatewayError::VersionNotSupported {
                version: "\u{fffd}".into(),
            }),
        },
    }
}

/// The caller's deadline from `grpc-timeout` (`<1-8 digits><H|M|S|m|u|n>`).
fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, GatewayError> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let invalid = || GatewayError::InvalidRequest {
        detail: "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u, n)".into(),
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let duration = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(invalid()),
    };
    Ok(Some(duration))
}

#[tonic::async_trait]
impl A2aService for GrpcGateway {
    type SendStreamingMessageStream = EventStream;
    type SubscribeToTaskStream = EventStream;

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        self.unary(Method::SendMessage, request).await
    }

    async fn send_streaming_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.stream(Method::SendStreamingMessage, request).await
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.unary(Method::GetTask, request).await
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        self.unary(Method::ListTasks, request).await
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.unary(Method::CancelTask, request).await
    }

    async fn subscribe_to_task(
        &self,
        request: Request<pb::SubscribeToTaskRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.stream(Method::SubscribeToTask, request).await
    }

    async fn create_task_push_notification_config(
        &self,
        request: Request<pb::TaskPushNotificationConfig>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        self.unary(Method::CreateTaskPushNotificationConfig, request)
            .await
    }

    async fn get_task_push_notification_config(
        &self,
        request: Request<pb::GetTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        self.unary(Method::GetTaskPushNotificationConfig, request)
            .await
    }

    async fn list_task_push_notification_configs(
        &self,
        request: Request<pb::ListTaskPushNotificationConfigsRequest>,
    ) -> Result<Response<pb::ListTaskPushNotificationConfigsResponse>, Status> {
        self.unary(Method::ListTaskPushNotificationConfigs, request)
            .await
    }

    async fn get_extended_agent_card(
        &self,
        request: Request<pb::GetExtendedAgentCardRequest>,
    ) -> Result<Response<pb::AgentCard>, Status> {
        self.unary(Method::GetExtendedAgentCard, request).await
    }

    async fn delete_task_push_notification_config(
        &self,
        request: Request<pb::DeleteTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        self.unary(Method::DeleteTaskPushNotificationConfig, request)
            .await
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let read = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(text).expect("ascii"));
            grpc_timeout(&headers)
        };
        assert_eq!(read("2S").ok().flatten(), Some(Duration::from_secs(2)));
        assert_eq!(
            read("1500m").ok().flatten(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(read("1H").ok().flatten(), Some(Duration::from_secs(3600)));
        assert!(read("S").is_err());
        assert!(read("123456789S").is_err());
        assert!(read("10x").is_err());
        assert_eq!(grpc_timeout(&HeaderMap::new()).ok().flatten(), None);
    }

    #[test]
    fn only_version_one_is_served() {
        let mut headers = HeaderMap::new();
        assert!(check_version(&headers).is_ok());
        headers.insert(VERSION_HEADER, HeaderValue::from_static("1.0"));
        assert!(check_version(&headers).is_ok());
        headers.insert(VERSION_HEADER, HeaderValue::from_static("0.3"));
        assert!(check_version(&headers).is_err());
    }
}
