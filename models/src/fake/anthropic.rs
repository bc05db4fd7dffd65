//! The Anthropic fake's wire: named SSE events (`message_start`,
//! `content_block_start`/`_delta`/`_stop`, `ping`, `message_delta`,
//! `message_stop`), or one `message` body.

use serde_json::{json, Value};

use super::{argument_fragments, Ending, FakeReply};
use crate::types::Usage;

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn start(model: &str, usage: Usage) -> String {
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": 1},
        }}),
    )
}

fn text_events(model: &str, chunks: &[String], usage: Usage) -> Vec<String> {
    let mut events = vec![
        start(model, usage),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    events.extend(chunks.iter().map(|text| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        )
    }));
    events
}

fn finish(stop_reason: &str, usage: Usage) -> [String; 2] {
    [
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": usage.output_tokens}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

/// The SSE events of a streamed reply and how the body ends.
pub(super) fn events(model: &str, reply: &FakeReply) -> (Vec<String>, Ending) {
    match reply {
        FakeReply::Text { chunks, usage } => {
            let mut events = text_events(model, chunks, *usage);
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            events.extend(finish("end_turn", *usage));
            (events, Ending::Closes)
        }
        FakeReply::ToolCalls { calls, usage } => {
            let mut events = vec![start(model, *usage)];
            for (index, call) in calls.iter().enumerate() {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
                ));
                for fragment in argument_fragments(&call.arguments) {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": fragment}}),
                    ));
                }
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                ));
            }
            events.extend(finish("tool_use", *usage));
            (events, Ending::Closes)
        }
        FakeReply::Cut { chunks } => (text_events(model, chunks, Usage::default()), Ending::Closes),
        FakeReply::Hang { chunks } => (text_events(model, chunks, Usage::default()), Ending::Hangs),
        FakeReply::Malformed => (
            vec!["event: message_start\ndata: {\"type\": \"message_start\", \n\n".to_owned()],
            Ending::Closes,
        ),
        FakeReply::Status { .. } => (Vec::new(), Ending::Closes),
    }
}

/// The body of a whole reply (`None`: answer with a malformed body).
pub(super) fn whole(model: &str, reply: &FakeReply) -> Option<Value> {
    let (content, stop_reason, usage) = match reply {
        FakeReply::Text { chunks, usage } => (
            vec![json!({"type": "text", "text": chunks.concat()})],
            "end_turn",
            *usage,
        ),
        FakeReply::ToolCalls { calls, usage } => (
            calls
                .iter()
                .map(|call| json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}))
                .collect(),
            "tool_use",
            *usage,
        ),
        _ => return None,
    };
    Some(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    }))
}
