//! `echo`: answers every text part with `echo: <text>` and data parts with
//! themselves.
//!
//! Input: any message. Text parts may carry test hooks, each a
//! whitespace-separated word:
//! - `message`: answer with a direct Message instead of a task;
//! - `sleep:<ms>`: stay WORKING that long (at most 10 minutes) before the
//!   artifact; cancellable, for cancel/subscribe/disconnect tests;
//! - `fail`: end FAILED; `input`: end INPUT_REQUIRED (a follow-up message to
//!   the task then completes it, unless it says `input` again).
//!
//! A task streams WORKING → artifact `echo` → COMPLETED. Usage:
//! `tokens_in` = input tokens, `tokens_out` = output tokens, `tool_calls` 0.

use std::time::Duration;

use async_trait::async_trait;
use convergio_schemas::a2a::TaskState;
use serde_json::{json, Value};

use crate::logic::{count_part_tokens, data_parts, text_part, text_parts, usage, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// Longest honoured `sleep:<ms>`.
const MAX_SLEEP: Duration = Duration::from_secs(600);

/// The echo agent's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoLogic;

/// The hooks found in a message's text.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hooks {
    message: bool,
    fail: bool,
    input: bool,
    sleep: Option<Duration>,
}

fn hooks(message: &Value) -> Hooks {
    let mut hooks = Hooks::default();
    for word in text_parts(message)
        .into_iter()
        .flat_map(str::split_whitespace)
    {
        match word {
            "message" => hooks.message = true,
            "fail" => hooks.fail = true,
            "input" => hooks.input = true,
            _ => {
                if let Some(ms) = word
                    .strip_prefix("sleep:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                {
                    hooks.sleep = Some(Duration::from_millis(ms).min(MAX_SLEEP));
                }
            }
        }
    }
    hooks
}

fn echo_parts(message: &Value) -> Vec<Value> {
    let mut parts: Vec<Value> = text_parts(message)
        .into_iter()
        .map(|text| text_part(format!("echo: {text}")))
        .collect();
    parts.extend(
        data_parts(message)
            .into_iter()
            .map(|data| json!({ "data": data })),
    );
    if parts.is_empty() {
        parts.push(text_part("echo: "));
    }
    parts
}

fn usage_for(message: &Value, output: &[Value]) -> Value {
    usage(
        count_part_tokens(crate::logic::parts(message)),
        count_part_tokens(output),
        0,
    )
}

/// The echo agent's card template.
pub fn card() -> Value {
    json!({
        "name": "echo",
        "description": "Echoes every text part back as `echo: <text>`. Deterministic test agent with hooks: sleep:<ms>, fail, input, message.",
        "version": "1.0.0",
        "provider": {"organization": "Convergio examples", "url": "https://convergio.dev/examples"},
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [{
            "id": "echo",
            "name": "Echo",
            "description": "Returns the input text prefixed with `echo: `; data parts come back unchanged.",
            "tags": ["echo", "test", "diagnostics"],
            "examples": ["hello", "sleep:500 hello", "fail", "input", "message hi"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["text/plain", "application/json"]
        }]
    })
}

#[async_trait]
impl AgentLogic for EchoLogic {
    async fn reply(&self, message: &Value) -> Option<Value> {
        if !hooks(message).message {
            return None;
        }
        let parts = echo_parts(message);
        let usage = usage_for(message, &parts);
        Some(json!({ "parts": parts, "metadata": { "usage": usage } }))
    }

    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let hooks = hooks(&message);
        context.working()?;
        if let Some(duration) = hooks.sleep {
            context.sleep(duration).await?;
        }
        let parts = echo_parts(&message);
        let usage = usage_for(&message, &parts);
        context.set_metadata("usage", usage.clone())?;
        let metadata = Some(json!({ "usage": usage }));
        if hooks.fail {
            let reply =
                context.agent_message(vec![text_part("echo failed as requested")], metadata);
            return context.status(TaskState::Failed, Some(reply));
        }
        context.artifact(
            json!({ "artifactId": format!("{}-echo", context.task_id()), "name": "echo", "parts": parts }),
            false,
            true,
        )?;
        if hooks.input {
            let reply = context.agent_message(vec![text_part("echo needs more input")], metadata);
            return context.status(TaskState::InputRequired, Some(reply));
        }
        let reply = context.agent_message(parts, metadata);
        context.status(TaskState::Completed, Some(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hooks_from_words() {
        let message = json!({"parts": [{"text": "hi sleep:250 fail"}, {"text": "input"}]});
        assert_eq!(
            hooks(&message),
            Hooks {
                message: false,
                fail: true,
                input: true,
                sleep: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(
            hooks(&json!({"parts": [{"text": "failure sleep:x"}]})),
            Hooks::default()
        );
    }
}
