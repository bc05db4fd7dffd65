//! The Anthropic Messages client: `POST {base}/v1/messages` with `x-api-key`
//! and `anthropic-version: 2023-06-01`. Streaming answers are named SSE
//! events: `message_start` (input usage), `content_block_start` /
//! `content_block_delta` (`text_delta`, or `input_json_delta` for a
//! `tool_use` block) / `content_block_stop`, `message_delta` (stop reason,
//! output usage) and `message_stop`; `ping` is ignored and `error` fails the
//! call. Tool results go back as `tool_result` blocks in one user message.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::retry::Attempts;
use super::sse::{self, Decoder, SseEvent};
use super::{ChatStream, ClientSettings, Provider};
use crate::error::ProviderError;
use crate::key::ApiKey;
use crate::types::{
    ChatEvent, ChatMessage, ChatRequest, ProviderKind, StopReason, ToolCall, Usage,
};

/// The Messages API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A client of the Anthropic Messages API (or a server speaking it).
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    base_url: String,
    url: String,
    http: reqwest::Client,
    settings: ClientSettings,
}

// === impl AnthropicClient ===

impl AnthropicClient {
    /// A client of the API at `base_url` (`https://api.anthropic.com`).
    pub fn new(base_url: &str, settings: ClientSettings) -> Result<Self, ProviderError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            url: format!("{base_url}/v1/messages"),
            http: super::http_client(&base_url, &settings)?,
            base_url,
            settings,
        })
    }
}

#[async_trait]
impl Provider for AnthropicClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn chat(&self, request: ChatRequest, key: &ApiKey) -> Result<ChatStream, ProviderError> {
        let deadline = Instant::now() + self.settings.call_timeout;
        let body = bytes::Bytes::from(request_body(&request).to_string());
        let api_key = key.header("")?;
        let attempts = Attempts {
            base_url: &self.base_url,
            key,
            settings: &self.settings,
            deadline,
            stream: request.stream,
        };
        // The current span is the model agent's `chat` span.
        let traceparent = convergio_agents::trace_context::traceparent();
        let response = attempts
            .send(|| {
                let mut request = self
                    .http
                    .post(&self.url)
                    .header("anthropic-version", ANTHROPIC_VERSION)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(api_key) = &api_key {
                    request = request.header("x-api-key", api_key.clone());
                }
                super::with_traceparent(request, traceparent.as_deref())
            })
            .await?;
        if request.stream {
            Ok(sse::chat_stream(
                response,
                StreamDecoder::default(),
                &self.settings,
                deadline,
            ))
        } else {
            let body = sse::whole_body(response, &self.settings, deadline).await?;
            Ok(sse::ready_stream(whole_answer(&body)?))
        }
    }
}

/// The JSON body of a Messages request. Consecutive tool results join one
/// user message, as the API requires.
pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        match message {
            ChatMessage::User { content } => messages.push(json!({
                "role": "user",
                "content": [{"type": "text", "text": content}],
            })),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::with_capacity(tool_calls.len() + 1);
                if !content.is_empty() {
                    blocks.push(json!({"type": "text", "text": content}));
                }
                blocks.extend(tool_calls.iter().map(|call| {
                    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
                }));
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            ChatMessage::Tool {
                call_id,
                content,
                is_error,
                ..
            } => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": content,
                    "is_error": is_error,
                });
                let joins_previous = messages.last().is_some_and(|last| {
                    last["role"] == "user"
                        && last["content"]
                            .as_array()
                            .is_some_and(|blocks| blocks.iter().all(|b| b["type"] == "tool_result"))
                });
                match messages.last_mut() {
                    Some(last) if joins_previous => {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    _ => messages.push(json!({"role": "user", "content": [block]})),
                }
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": request.stream,
    });
    if let Some(system) = &request.system {
        body["system"] = json!(system);
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| json!({"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}))
            .collect();
    }
    body
}

fn malformed(reason: impl Into<String>) -> ProviderError {
    ProviderError::Malformed {
        reason: reason.into(),
    }
}

fn error_of(body: &Value) -> ProviderError {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    ProviderError::Unavailable {
        status: 0,
        attempts: 1,
        message,
    }
}

/// The events of a whole (not streamed) answer.
fn whole_answer(body: &Value) -> Result<Vec<ChatEvent>, ProviderError> {
    if body.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_of(body));
    }
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("the answer has no content"))?;
    let mut events = Vec::with_capacity(blocks.len() + 1);
    for block in blocks {
        let text = |field: &str| block.get(field).and_then(Value::as_str).unwrap_or("");
        match text("type") {
            "text" => events.push(ChatEvent::TextDelta(text("text").to_owned())),
            "tool_use" => events.push(ChatEvent::ToolCall(ToolCall {
                id: text("id").to_owned(),
                name: text("name").to_owned(),
                arguments: block.get("input").cloned().unwrap_or_else(|| json!({})),
            })),
            _ => {}
        }
    }
    let count = |field: &str| {
        body.pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    events.push(ChatEvent::Done {
        usage: Usage {
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
        },
        stop_reason: body
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(StopReason::from_wire)
            .unwrap_or(StopReason::EndTurn),
    });
    Ok(events)
}

/// A `tool_use` block being assembled.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    json: String,
}

/// Decodes the named events up to `message_stop`.
#[derive(Debug, Default)]
struct StreamDecoder {
    calls: BTreeMap<u64, PartialCall>,
    usage: Usage,
    stop_reason: Option<StopReason>,
}

impl Decoder for StreamDecoder {
    fn decode(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError> {
        let body: Value = serde_json::from_str(&event.data)
            .map_err(|error| malformed(format!("an event is not JSON: {error}")))?;
        // The `type` field names the event too; it is read when a server
        // leaves out the `event:` line.
        let name = if event.event.is_empty() {
            body.get("type").and_then(Value::as_str).unwrap_or("")
        } else {
            event.event.as_str()
        };
        let index = body.get("index").and_then(Value::as_u64).unwrap_or(0);
        match name {
            "message_start" => {
                let count = |field: &str| {
                    body.pointer(&format!("/message/usage/{field}"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                self.usage.input_tokens = count("input_tokens");
                self.usage.output_tokens = count("output_tokens");
            }
            "content_block_start" => {
                let block = body.get("content_block").unwrap_or(&Value::Null);
                let text = |field: &str| block.get(field).and_then(Value::as_str).unwrap_or("");
                match text("type") {
                    "tool_use" => {
                        self.calls.insert(
                            index,
                            PartialCall {
                                id: text("id").to_owned(),
                                name: text("name").to_owned(),
                                json: String::new(),
                            },
                        );
                    }
                    "text" if !text("text").is_empty() => {
                        out.push_back(ChatEvent::TextDelta(text("text").to_owned()));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = body.get("delta").unwrap_or(&Value::Null);
                let text = |field: &str| delta.get(field).and_then(Value::as_str).unwrap_or("");
                match text("type") {
                    "text_delta" if !text("text").is_empty() => {
                        out.push_back(ChatEvent::TextDelta(text("text").to_owned()));
                    }
                    "input_json_delta" => {
                        let call = self.calls.get_mut(&index).ok_or_else(|| {
                            malformed(format!(
                                "input_json_delta for block {index}, which is not a tool_use"
                            ))
                        })?;
                        call.json.push_str(text("partial_json"));
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(call) = self.calls.remove(&index) {
                    let arguments = if call.json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&call.json).map_err(|_| {
                            malformed(format!(
                                "the input of tool call {:?} is not JSON",
                                call.name
                            ))
                        })?
                    };
                    out.push_back(ChatEvent::ToolCall(ToolCall {
                        id: call.id,
                        name: call.name,
                        arguments,
                    }));
                }
            }
            "message_delta" => {
                if let Some(reason) = body.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(StopReason::from_wire(reason));
                }
                if let Some(output) = body.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.output_tokens = output;
                }
                if let Some(input) = body.pointer("/usage/input_tokens").and_then(Value::as_u64) {
                    self.usage.input_tokens = input;
                }
            }
            "message_stop" => {
                out.push_back(ChatEvent::Done {
                    usage: self.usage,
                    stop_reason: self.stop_reason.take().unwrap_or(StopReason::EndTurn),
                });
                return Ok(true);
            }
            "error" => return Err(error_of(&body)),
            _ => {}
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(event: &str, data: Value) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_string(),
        }
    }

    #[test]
    fn decodes_text_and_tool_use_with_usage_from_start_and_delta() {
        let mut decoder = StreamDecoder::default();
        let mut out = VecDeque::new();
        let events = [
            named(
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}}),
            ),
            named(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            named("ping", json!({"type": "ping"})),
            named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check"}}),
            ),
            named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            named(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
            ),
            named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"text\": \"Pa"}}),
            ),
            named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ris\"}"}}),
            ),
            named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            named(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}}),
            ),
        ];
        for event in events {
            assert!(!decoder.decode(event, &mut out).expect("decodes"));
        }
        assert!(decoder
            .decode(
                named("message_stop", json!({"type": "message_stop"})),
                &mut out
            )
            .expect("decodes"));
        let events: Vec<ChatEvent> = out.into_iter().collect();
        assert_eq!(
            events,
            vec![
                ChatEvent::TextDelta("Let me check".into()),
                ChatEvent::ToolCall(ToolCall {
                    id: "toolu_1".into(),
                    name: "weather".into(),
                    arguments: json!({"text": "Paris"}),
                }),
                ChatEvent::Done {
                    usage: Usage {
                        input_tokens: 25,
                        output_tokens: 40
                    },
                    stop_reason: StopReason::ToolUse,
                },
            ]
        );
    }

    #[test]
    fn tool_results_join_one_user_message() {
        let request = ChatRequest {
            model: "m".into(),
            system: Some("be brief".into()),
            messages: vec![
                ChatMessage::user("hi"),
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![
                        ToolCall {
                            id: "a".into(),
                            name: "x".into(),
                            arguments: json!({}),
                        },
                        ToolCall {
                            id: "b".into(),
                            name: "y".into(),
                            arguments: json!({}),
                        },
                    ],
                },
                ChatMessage::Tool {
                    call_id: "a".into(),
                    name: "x".into(),
                    content: "1".into(),
                    is_error: false,
                },
                ChatMessage::Tool {
                    call_id: "b".into(),
                    name: "y".into(),
                    content: "2".into(),
                    is_error: true,
                },
            ],
            tools: Vec::new(),
            max_tokens: 10,
            temperature: None,
            stream: true,
            response_schema: None,
        };
        let body = request_body(&request);
        let messages = body["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[2]["content"].as_array().map(Vec::len), Some(2));
        assert_eq!(body["system"], "be brief");
    }
}
