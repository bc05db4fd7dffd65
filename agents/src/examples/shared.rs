//! Small pieces shared by the debate, support, planning and supervisor
//! example agents: their card, reading every string and every object of a
//! message, and completing a task with one artifact.
//!
//! These agents answer in one step (no streaming chunks), so a task goes
//! WORKING → one artifact → COMPLETED, with the usage convention of
//! [`crate::logic::usage`].

use convergio_schemas::a2a::TaskState;
use serde_json::{json, Map, Value};

use crate::logic::{count_part_tokens, data_parts, parts, text_parts, usage};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// Deepest nesting searched inside a data part.
const MAX_DEPTH: usize = 16;

/// A card template for one of these agents: one skill, streaming on (the
/// task's events stream like every example agent's).
pub fn card(name: &str, description: &str, skill: Value) -> Value {
    json!({
        "name": name,
        "description": description,
        "version": "1.0.0",
        "provider": {"organization": "Convergio examples", "url": "https://convergio.dev/examples"},
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [skill]
    })
}

/// The message's text: its text parts joined by newlines. The orchestrator
/// puts every string-valued node input in the text part, so this is the
/// graph's text input (a topic, a query, a goal) beside structured outputs.
pub fn message_text(message: &Value) -> String {
    text_parts(message).join("\n")
}

/// Every object inside the message's data parts (depth-first, in order,
/// parents before children) for which `keep` holds.
pub fn objects_where(
    message: &Value,
    keep: impl Fn(&Map<String, Value>) -> bool,
) -> Vec<&Map<String, Value>> {
    fn walk<'v>(
        value: &'v Value,
        depth: usize,
        keep: &dyn Fn(&Map<String, Value>) -> bool,
        found: &mut Vec<&'v Map<String, Value>>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::Object(map) => {
                if keep(map) {
                    found.push(map);
                }
                for child in map.values() {
                    walk(child, depth + 1, keep, found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, depth + 1, keep, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for data in data_parts(message) {
        walk(data, 0, &keep, &mut found);
    }
    found
}

/// Every string in the message: its text parts, then every string value
/// inside its data parts (depth-first, in order).
pub fn all_strings(message: &Value) -> Vec<&str> {
    fn walk<'v>(value: &'v Value, depth: usize, found: &mut Vec<&'v str>) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::String(text) => found.push(text),
            Value::Object(map) => map.values().for_each(|child| walk(child, depth + 1, found)),
            Value::Array(items) => items.iter().for_each(|item| walk(item, depth + 1, found)),
            _ => {}
        }
    }
    let mut found = text_parts(message);
    for data in data_parts(message) {
        walk(data, 0, &mut found);
    }
    found
}

/// Completes the task with one artifact named `name` holding `output`, and
/// the same parts as the final status message; usage counts the input and
/// output tokens and `tool_calls`.
pub fn complete(
    context: &TaskContext,
    message: &Value,
    name: &str,
    output: Vec<Value>,
    tool_calls: u64,
) -> Result<(), AgentsError> {
    context.working()?;
    let usage = usage(
        count_part_tokens(parts(message)),
        count_part_tokens(&output),
        tool_calls,
    );
    context.set_metadata("usage", usage.clone())?;
    context.artifact(
        json!({"artifactId": format!("{}-{name}", context.task_id()), "name": name, "parts": output}),
        false,
        true,
    )?;
    let reply = context.agent_message(output, Some(json!({ "usage": usage })));
    context.status(TaskState::Completed, Some(reply))
}

/// Every whole word of `text`, lowercased (letters and digits only).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_objects_in_data_parts_only() {
        let message = json!({"parts": [
            {"text": "{\"side\": \"for\"}"},
            {"data": {"pro.output": {"side": "for", "round": 1}, "other": [{"side": "against"}]}}
        ]});
        let sides: Vec<&Value> = objects_where(&message, |map| map.contains_key("side"))
            .into_iter()
            .filter_map(|map| map.get("side"))
            .collect();
        assert_eq!(sides, [&json!("for"), &json!("against")]);
    }

    #[test]
    fn words_are_lowercased_and_split_on_punctuation() {
        let found: Vec<String> = words("Invoice #INV-42, can't pay!").collect();
        assert_eq!(found, ["invoice", "inv", "42", "can", "t", "pay"]);
    }
}
