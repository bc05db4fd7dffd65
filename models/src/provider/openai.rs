//! The OpenAI-compatible chat completions client: `POST {base}/chat/completions`
//! with a bearer key. Streaming answers are SSE `data: {chunk}` lines ending
//! with `data: [DONE]`; `stream_options.include_usage` makes the usage come
//! in the last chunk; tool calls arrive as `delta.tool_calls` fragments,
//! assembled here by their `index`.
//!
//! `max_tokens` is sent, the name every local server (llama.cpp, Ollama,
//! vLLM, LM Studio) reads, except to OpenAI's reasoning models (`o1`, `o3`,
//! `o4-mini`, `gpt-5`, …), which refuse it and read `max_completion_tokens`.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
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

/// A client of one OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    base_url: String,
    url: String,
    http: reqwest::Client,
    settings: ClientSettings,
}

// === impl OpenAiClient ===

impl OpenAiClient {
    /// A client of the API at `base_url` (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:8080/v1`).
    pub fn new(base_url: &str, settings: ClientSettings) -> Result<Self, ProviderError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            url: format!("{base_url}/chat/completions"),
            http: super::http_client(&base_url, &settings)?,
            base_url,
            settings,
        })
    }
}

#[async_trait]
impl Provider for OpenAiClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    async fn chat(&self, request: ChatRequest, key: &ApiKey) -> Result<ChatStream, ProviderError> {
        let deadline = Instant::now() + self.settings.call_timeout;
        let body = bytes::Bytes::from(request_body(&request).to_string());
        let authorization = key.header("Bearer ")?;
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
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(authorization) = &authorization {
                    request = request.header(AUTHORIZATION, authorization.clone());
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

/// The JSON body of a chat completions request.
/// Whether `model` is one of OpenAI's reasoning models (any provider
/// prefix such as `openai/` ignored), which take `max_completion_tokens`.
fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let series = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    };
    ["o1", "o3", "o4"].into_iter().any(series) || name.starts_with("gpt-5")
}

pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut wire = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    wire["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            json!({
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": call.arguments.to_string()},
                            })
                        })
                        .collect();
                }
                wire
            }
            ChatMessage::Tool {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": request.stream,
    });
    let limit = if is_reasoning_model(&request.model) {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body[limit] = json!(request.max_tokens);
    if request.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema},
                })
            })
            .collect();
    }
    if let Some(schema) = &request.response_schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        });
    }
    body
}

fn malformed(reason: impl Into<String>) -> ProviderError {
    ProviderError::Malformed {
        reason: reason.into(),
    }
}

fn parse_arguments(name: &str, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments)
        .map_err(|_| malformed(format!("the arguments of tool call {name:?} are not JSON")))
}

fn read_usage(usage: &Value) -> Usage {
    let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: count("prompt_tokens"),
        output_tokens: count("completion_tokens"),
    }
}

fn error_event(body: &Value) -> Option<ProviderError> {
    let error = body.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    Some(ProviderError::Unavailable {
        status: 0,
        attempts: 1,
        message,
    })
}

/// The events of a whole (not streamed) answer.
fn whole_answer(body: &Value) -> Result<Vec<ChatEvent>, ProviderError> {
    if let Some(error) = error_event(body) {
        return Err(error);
    }
    let choice = body
        .pointer("/choices/0")
        .ok_or_else(|| malformed("the answer has no choices"))?;
    let mut events = Vec::new();
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str) {
        if !text.is_empty() {
            events.push(ChatEvent::TextDelta(text.to_owned()));
        }
    }
    for call in choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let text = |pointer: &str| call.pointer(pointer).and_then(Value::as_str).unwrap_or("");
        let name = text("/function/name").to_owned();
        events.push(ChatEvent::ToolCall(ToolCall {
            id: text("/id").to_owned(),
            arguments: parse_arguments(&name, text("/function/arguments"))?,
            name,
        }));
    }
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(StopReason::from_wire)
        .unwrap_or(StopReason::EndTurn);
    events.push(ChatEvent::Done {
        usage: body.get("usage").map(read_usage).unwrap_or_default(),
        stop_reason,
    });
    Ok(events)
}

/// A tool call being assembled from its fragments.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Decodes `data:` chunks up to `[DONE]`.
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
        if event.data.trim() == "[DONE]" {
            for (_, call) in std::mem::take(&mut self.calls) {
                out.push_back(ChatEvent::ToolCall(ToolCall {
                    arguments: parse_arguments(&call.name, &call.arguments)?,
                    id: call.id,
                    name: call.name,
                }));
            }
            out.push_back(ChatEvent::Done {
                usage: self.usage,
                stop_reason: self.stop_reason.take().unwrap_or(StopReason::EndTurn),
            });
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(&event.data)
            .map_err(|error| malformed(format!("a chunk is not JSON: {error}")))?;
        if let Some(error) = error_event(&chunk) {
            return Err(error);
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = read_usage(usage);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(false);
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(StopReason::from_wire(reason));
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(false);
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                out.push_back(ChatEvent::TextDelta(text.to_owned()));
            }
        }
        for fragment in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let index = fragment.get("index").and_then(Value::as_u64).unwrap_or(0);
            let call = self.calls.entry(index).or_default();
            if let Some(id) = fragment.get("id").and_then(Value::as_str) {
                call.id = id.to_owned();
            }
            if let Some(name) = fragment.pointer("/function/name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            if let Some(arguments) = fragment
                .pointer("/function/arguments")
                .and_then(Value::as_str)
            {
                call.arguments.push_str(arguments);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: text.to_owned(),
        }
    }

    #[test]
    fn assembles_tool_call_fragments_by_index_and_reads_usage_last() {
        let mut decoder = StreamDecoder::default();
        let mut out = VecDeque::new();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"text\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
        ];
        for chunk in chunks {
            assert!(!decoder.decode(data(chunk), &mut out).expect("decodes"));
        }
        assert!(decoder.decode(data("[DONE]"), &mut out).expect("decodes"));
        let events: Vec<ChatEvent> = out.into_iter().collect();
        assert_eq!(
            events,
            vec![
                ChatEvent::TextDelta("Hi".into()),
                ChatEvent::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: json!({"text": "Paris"}),
                }),
                ChatEvent::Done {
                    usage: Usage {
                        input_tokens: 12,
                        output_tokens: 7
                    },
                    stop_reason: StopReason::ToolUse,
                },
            ]
        );
    }

    #[test]
    fn a_chunk_that_is_not_json_is_malformed() {
        let mut decoder = StreamDecoder::default();
        let error = decoder
            .decode(data("{not json"), &mut VecDeque::new())
            .expect_err("refused");
        assert!(matches!(error, ProviderError::Malformed { .. }));
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_the_rest_max_tokens() {
        let body = |model: &str| {
            request_body(&ChatRequest {
                model: model.to_owned(),
                system: None,
                messages: Vec::new(),
                tools: Vec::new(),
                max_tokens: 64,
                temperature: None,
                stream: false,
                response_schema: None,
            })
        };
        for model in [
            "o1",
            "o3-mini",
            "o4-mini-2025-04-16",
            "openai/o3",
            "gpt-5",
            "gpt-5-mini",
        ] {
            let body = body(model);
            assert_eq!(body["max_completion_tokens"], 64, "{model}");
            assert!(body.get("max_tokens").is_none(), "{model}");
        }
        for model in ["gpt-4o-mini", "llama3.1:8b", "o1x", "omni", "qwen2.5-o1"] {
            let body = body(model);
            assert_eq!(body["max_tokens"], 64, "{model}");
            assert!(body.get("max_completion_tokens").is_none(), "{model}");
        }
    }
}
