//! The OpenAI-compatible fake's wire: `chat.completion.chunk` events as
//! SSE `data:` lines ending with `data: [DONE]` (usage in the last chunk,
//! as `stream_options.include_usage` asks), or one `chat.completion` body.

use serde_json::{json, Value};

use super::{argument_fragments, Ending, FakeReply};
use crate::types::Usage;

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn chunk(model: &str, delta: Value, finish_reason: Option<&str>) -> String {
    data(&json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }))
}

fn usage_chunk(model: &str, usage: Usage) -> String {
    data(&json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total(),
        },
    }))
}

fn text_chunks(model: &str, chunks: &[String]) -> Vec<String> {
    let mut events = vec![chunk(
        model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    events.extend(
        chunks
            .iter()
            .map(|text| chunk(model, json!({"content": text}), None)),
    );
    events
}

/// The SSE events of a streamed reply and how the body ends.
pub(super) fn events(model: &str, reply: &FakeReply) -> (Vec<String>, Ending) {
    match reply {
        FakeReply::Text { chunks, usage } => {
            let mut events = text_chunks(model, chunks);
            events.push(chunk(model, json!({}), Some("stop")));
            events.push(usage_chunk(model, *usage));
            events.push("data: [DONE]\n\n".to_owned());
            (events, Ending::Closes)
        }
        FakeReply::ToolCalls { calls, usage } => {
            let mut events = vec![chunk(
                model,
                json!({"role": "assistant", "content": null}),
                None,
            )];
            for (index, call) in calls.iter().enumerate() {
                events.push(chunk(
                    model,
                    json!({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
                    None,
                ));
                for fragment in argument_fragments(&call.arguments) {
                    events.push(chunk(
                        model,
                        json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                        None,
                    ));
                }
            }
            events.push(chunk(model, json!({}), Some("tool_calls")));
            events.push(usage_chunk(model, *usage));
            events.push("data: [DONE]\n\n".to_owned());
            (events, Ending::Closes)
        }
        FakeReply::Cut { chunks } => (text_chunks(model, chunks), Ending::Closes),
        FakeReply::Hang { chunks } => (text_chunks(model, chunks), Ending::Hangs),
        FakeReply::Malformed => (vec!["data: {\"choices\": [\n\n".to_owned()], Ending::Closes),
        FakeReply::Status { .. } => (Vec::new(), Ending::Closes),
    }
}

/// The body of a whole reply (`None`: answer with a malformed body).
pub(super) fn whole(model: &str, reply: &FakeReply) -> Option<Value> {
    let (message, finish_reason, usage) = match reply {
        FakeReply::Text { chunks, usage } => (
            json!({"role": "assistant", "content": chunks.concat()}),
            "stop",
            *usage,
        ),
        FakeReply::ToolCalls { calls, usage } => (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": calls.iter().map(|call| json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments.to_string()},
                })).collect::<Vec<_>>(),
            }),
            "tool_calls",
            *usage,
        ),
        _ => return None,
    };
    Some(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total(),
        },
    }))
}
