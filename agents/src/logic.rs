//! The [`AgentLogic`] trait a server runs, plus small helpers for reading
//! A2A 1.0 messages and reporting usage.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::tasks::TaskContext;
use crate::AgentsError;

/// What an agent does with a message.
///
/// For a message that starts a new task, the server first asks
/// [`AgentLogic::reply`]: `Some(message)` answers directly with that
/// Message and no task is created. Otherwise the server creates a task
/// (SUBMITTED) and runs [`AgentLogic::execute`] on its own tokio task.
/// Follow-up messages to an interrupted task go straight to `execute`.
///
/// `execute` reports progress through the [`TaskContext`]. When it returns
/// `Ok` without having ended the task, the server marks it COMPLETED; on
/// `Err` (or a panic) the server marks it FAILED. It must stop promptly once
/// [`TaskContext::is_canceled`] is true; every context update fails after a
/// cancel, so `?` does this naturally.
#[async_trait]
pub trait AgentLogic: Send + Sync + 'static {
    /// A direct reply Message (only `parts` and optional `metadata` are
    /// needed; the server fills `messageId`, `role` and `contextId`), or
    /// `None` to run a task.
    async fn reply(&self, message: &Value) -> Option<Value> {
        let _ = message;
        None
    }

    /// Runs one turn of a task.
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError>;
}

/// The text of every text part of a message, in order.
pub fn text_parts(message: &Value) -> Vec<&str> {
    parts(message)
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}

/// Every data part's value, in order.
pub fn data_parts(message: &Value) -> Vec<&Value> {
    parts(message)
        .iter()
        .filter_map(|part| part.get("data"))
        .collect()
}

/// The parts of a message or artifact (empty when absent).
pub fn parts(message: &Value) -> &[Value] {
    message
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A text part.
pub fn text_part(text: impl Into<String>) -> Value {
    json!({ "text": text.into() })
}

/// A data part.
pub fn data_part(data: Value) -> Value {
    json!({ "data": data })
}

/// Whitespace-separated tokens in a text.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Whitespace-separated tokens in every string inside a JSON value.
pub fn count_value_tokens(value: &Value) -> u64 {
    match value {
        Value::String(text) => count_tokens(text),
        Value::Array(items) => items.iter().map(count_value_tokens).sum(),
        Value::Object(map) => map.values().map(count_value_tokens).sum(),
        _ => 0,
    }
}

/// Tokens in every text and data part of a list of parts.
pub fn count_part_tokens(parts: &[Value]) -> u64 {
    parts
        .iter()
        .map(|part| {
            part.get("text")
                .and_then(Value::as_str)
                .map(count_tokens)
                .unwrap_or(0)
                + part.get("data").map(count_value_tokens).unwrap_or(0)
        })
        .sum()
}

/// The usage report carried as `metadata.usage`.
pub fn usage(tokens_in: u64, tokens_out: u64, tool_calls: u64) -> Value {
    json!({ "tokens_in": tokens_in, "tokens_out": tokens_out, "tool_calls": tool_calls })
}
