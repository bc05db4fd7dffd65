//! The gateway as a gRPC client of an agent whose card offers `GRPC`: a
//! call's ProtoJSON params become the method's request message (pbjson
//! serde, then prost), sent as one length-prefixed frame over HTTP/2 (h2c
//! or TLS) through the same SSRF-guarded pool machinery as every other
//! upstream call (`forward.rs` sends it, with its retries, bounds and
//! breaker); the answer's frames become 1.0 results or stream events, and a
//! non-OK `grpc-status` becomes the relayed A2A error (`status.rs`).

use bytes::{Buf, Bytes, BytesMut};
use convergio_schemas::a2a::Method;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::proto as pb;
use super::SERVICE_PATH;
use crate::GatewayError;

/// The gRPC content type.
pub(crate) const CONTENT_TYPE: &str = "application/grpc";

/// Largest message the gateway reads from an agent's stream.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The URL of `method` on the agent's gRPC endpoint `base`.
pub(crate) fn method_url(base: &str, method: Method) -> String {
    format!(
        "{}{SERVICE_PATH}{}",
        base.trim_end_matches('/'),
        method.v1_name()
    )
}

/// The framed request message for `method` from its 1.0 params.
pub(crate) fn encode_request(method: Method, params: Value) -> Result<Bytes, GatewayError> {
    let message = match method {
        Method::SendMessage | Method::SendStreamingMessage => {
            typed::<pb::SendMessageRequest>(params)?
        }
        Method::GetTask => typed::<pb::GetTaskRequest>(params)?,
        Method::ListTasks => typed::<pb::ListTasksRequest>(params)?,
        Method::CancelTask => typed::<pb::CancelTaskRequest>(params)?,
        Method::SubscribeToTask => typed::<pb::SubscribeToTaskRequest>(params)?,
        Method::CreateTaskPushNotificationConfig => {
            typed::<pb::TaskPushNotificationConfig>(params)?
        }
        Method::GetTaskPushNotificationConfig => {
            typed::<pb::GetTaskPushNotificationConfigRequest>(params)?
        }
        Method::ListTaskPushNotificationConfigs => {
            typed::<pb::ListTaskPushNotificationConfigsRequest>(params)?
        }
        Method::DeleteTaskPushNotificationConfig => {
            typed::<pb::DeleteTaskPushNotificationConfigRequest>(params)?
        }
        Method::GetExtendedAgentCard => typed::<pb::GetExtendedAgentCardRequest>(params)?,
    };
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.extend_from_slice(&[0]);
    let length = u32::try_from(message.len()).map_err(|_| GatewayError::InvalidParams {
        detail: "the request is too large for one gRPC message".into(),
    })?;
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&message);
    Ok(framed.freeze())
}

fn typed<T: DeserializeOwned + Message>(params: Value) -> Result<Vec<u8>, GatewayError> {
    let message: T =
        serde_json::from_value(params).map_err(|error| GatewayError::InvalidParams {
            detail: format!("the request does not fit the agent's gRPC binding: {error}"),
        })?;
    Ok(message.encode_to_vec())
}

/// A unary answer's message as the method's 1.0 result.
pub(crate) fn decode_result(method: Method, message: &[u8]) -> Result<Value, String> {
    match method {
        Method::SendMessage => json::<pb::SendMessageResponse>(message),
        Method::SendStreamingMessage | Method::SubscribeToTask => {
            json::<pb::StreamResponse>(message)
        }
        Method::GetTask | Method::CancelTask => json::<pb::Task>(message),
        Method::ListTasks => json::<pb::ListTasksResponse>(message),
        Method::CreateTaskPushNotificationConfig | Method::GetTaskPushNotificationConfig => {
            json::<pb::TaskPushNotificationConfig>(message)
        }
        Method::ListTaskPushNotificationConfigs => {
            json::<pb::ListTaskPushNotificationConfigsResponse>(message)
        }
        Method::DeleteTaskPushNotificationConfig => json::<pbjson_types::Empty>(message),
        Method::GetExtendedAgentCard => json::<pb::AgentCard>(message),
    }
}

/// A streamed message as a 1.0 StreamResponse.
pub(crate) fn decode_event(message: &[u8]) -> Result<Value, String> {
    json::<pb::StreamResponse>(message)
}

fn json<T: Message + Default + Serialize>(message: &[u8]) -> Result<Value, String> {
    let decoded = T::decode(message).map_err(|error| format!("not a valid message: {error}"))?;
    serde_json::to_value(&decoded).map_err(|error| format!("cannot be read as ProtoJSON: {error}"))
}

/// Splits a gRPC body into messages as its bytes arrive.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    buffer: BytesMut,
}

// === impl FrameDecoder ===

impl FrameDecoder {
    /// Takes `chunk` and returns the messages it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while self.buffer.len() >= 5 {
            if self.buffer[0] != 0 {
                return Err("compressed gRPC messages are not accepted".into());
            }
            let length = u32::from_be_bytes([
                self.buffer[1],
                self.buffer[2],
                self.buffer[3],
                self.buffer[4],
            ]) as usize;
            if length > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "a gRPC message of {length} bytes is over the limit"
                ));
            }
            if self.buffer.len() < 5 + length {
                break;
            }
            self.buffer.advance(5);
            messages.push(self.buffer.split_to(length).freeze());
        }
        Ok(messages)
    }

    /// Whether part of a message is still waiting for its bytes.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_round_trips_through_its_frame() {
        let params = json!({"tenant": "t", "id": "task-1", "historyLength": 2, "unknownField": 1});
        let framed = encode_request(Method::GetTask, params).expect("encode");
        let mut decoder = FrameDecoder::default();
        let (first, second) = framed.split_at(3);
        assert!(decoder.push(first).expect("partial").is_empty());
        let messages = decoder.push(second).expect("whole");
        assert_eq!(messages.len(), 1);
        assert!(!decoder.has_partial());
        let request = pb::GetTaskRequest::decode(messages[0].clone()).expect("decode");
        assert_eq!(request.id, "task-1");
        assert_eq!(request.history_length, Some(2));
    }

    #[test]
    fn results_come_back_as_proto_json() {
        let task = pb::Task {
            id: "t1".into(),
            status: Some(pb::TaskStatus {
                state: pb::TaskState::Completed.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = decode_result(Method::GetTask, &task.encode_to_vec()).expect("decode");
        assert_eq!(value["id"], "t1");
        assert_eq!(value["status"]["state"], "TASK_STATE_COMPLETED");
    }

    #[test]
    fn a_request_that_does_not_fit_is_invalid_params() {
        let error = encode_request(Method::GetTask, json!({"id": 5})).expect_err("bad id");
        assert!(matches!(error, GatewayError::InvalidParams { .. }));
    }

    #[test]
    fn compressed_or_oversized_frames_are_refused() {
        assert!(FrameDecoder::default().push(&[1, 0, 0, 0, 0]).is_err());
        assert!(FrameDecoder::default()
            .push(&[0, 0xff, 0xff, 0xff, 0xff])
            .is_err());
    }
}
