//! [`ModelLogic`]: the [`AgentLogic`] of one model agent.
//!
//! One turn (one A2A message):
//! 1. WORKING; the context's conversation is loaded ([`Conversations`])
//!    and trimmed to the agent's token window ([`crate::window`]). The
//!    agent's memory namespaces are searched with the user's text
//!    ([`Recall`], once per turn: every provider call of the turn shares
//!    the query) and the hits join the system prompt as one bounded
//!    paragraph; a refused or failing search is logged and reported in the
//!    task's `memory` metadata, and the turn goes on without it.
//! 2. Before each provider call the organisation's allowance is read
//!    ([`Meter`]): none left fails the task before the call; otherwise
//!    `max_tokens` is capped at what is left. The key is resolved for every
//!    call ([`KeySource`]), so a rotated key applies at once.
//! 3. Text deltas become `artifactUpdate` events of one artifact
//!    (`append`), flushed per chunk. The provider's usage is recorded.
//! 4. Tool calls go to [`ToolCaller`] one by one (bounded by
//!    `max_tool_calls` per turn) and their results back to the model.
//! 5. The answer replaces the streamed artifact (`lastChunk`): the final
//!    text, or with an output schema a data part that validates. The turn's
//!    messages are appended to the conversation; the task's metadata gets
//!    `usage` (`tokens_in`, `tokens_out`, `tool_calls`, `cost` by the price
//!    table), `model`, `provider`.
//!
//! A cancel drops the provider call (closing its connection); the whole
//! turn is bounded by the agent's timeout. Failures end the task FAILED with
//! the error's message, which never holds the key.

use std::sync::Arc;
use tracing::Instrument;

use async_trait::async_trait;
use convergio_agents::logic::{data_parts, text_part, text_parts, usage};
use convergio_agents::{AgentLogic, AgentsError, TaskContext};
use convergio_schemas::a2a::{
    TaskState, CALLER_ORG_METADATA, MAX_TOKENS_METADATA, TOOL_CALLS_METADATA,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::config::ModelAgentConfig;
use crate::conversation::Conversations;
use crate::error::{ModelError, ProviderError, ToolError};
use crate::key::{ApiKey, KeySource};
use crate::meter::{Meter, UsageRecord};
use crate::provider::Provider;
use crate::recall::{recalled_prompt, Recall, RecallQuery, RecallRecord};
use crate::tools::{ToolCallRecord, ToolCaller, ToolInvocation, ToolOutcome};
use crate::types::{ChatEvent, ChatMessage, ChatRequest, ToolCall, Usage};
use crate::window::TokenCounter;

/// Runs one model agent as an A2A agent.
pub struct ModelLogic {
    config: ModelAgentConfig,
    provider: Arc<dyn Provider>,
    keys: Arc<dyn KeySource>,
    conversations: Arc<dyn Conversations>,
    tools: Arc<dyn ToolCaller>,
    meter: Arc<dyn Meter>,
    recall: Arc<dyn Recall>,
    output_validator: Option<jsonschema::Validator>,
}

/// What a turn has done so far (reported even when it fails).
#[derive(Debug, Default)]
struct Turn {
    usage: Usage,
    /// What the provider calls cost, in millionths (the meter's answer).
    cost_micros: u64,
    tool_calls: u32,
    /// Each tool call, for the task's `toolCalls` metadata.
    tools: Vec<ToolCallRecord>,
    /// Each memory search, for the task's `memory` metadata.
    memory: Vec<RecallRecord>,
    streamed: bool,
}

// === impl ModelLogic ===

impl ModelLogic {
    /// The logic of the agent `config` describes, calling `provider` with
    /// keys from `keys`, keeping conversations in `conversations`, calling
    /// tools through `tools`, metering with `meter` and searching its memory
    /// through `recall`. Fails when the output schema does not compile.
    pub fn new(
        config: ModelAgentConfig,
        provider: Arc<dyn Provider>,
        keys: Arc<dyn KeySource>,
        conversations: Arc<dyn Conversations>,
        tools: Arc<dyn ToolCaller>,
        meter: Arc<dyn Meter>,
        recall: Arc<dyn Recall>,
    ) -> Result<Self, ModelError> {
        let output_validator = config
            .output_schema
            .as_ref()
            .map(|schema| {
                jsonschema::validator_for(schema).map_err(|error| ModelError::OutputSchema {
                    reason: error.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            config,
            provider,
            keys,
            conversations,
            tools,
            meter,
            recall,
            output_validator,
        })
    }

    /// The agent's configuration.
    pub fn config(&self) -> &ModelAgentConfig {
        &self.config
    }

    fn system_prompt(&self) -> Option<String> {
        let Some(schema) = &self.config.output_schema else {
            return self.config.instructions.clone();
        };
        let rule = format!(
            "Answer with one JSON value only (no prose, no code fence) that validates against this JSON Schema: {schema}"
        );
        Some(match &self.config.instructions {
            Some(instructions) => format!("{instructions}\n\n{rule}"),
            None => rule,
        })
    }

    /// The system prompt with what the agent's memory holds about `query`
    /// (module docs); each search's outcome is recorded in `turn`.
    async fn system_with_memory(&self, query: &str, turn: &mut Turn) -> Option<String> {
        let system = self.system_prompt();
        let config = &self.config;
        if config.memory_search.is_empty() || query.trim().is_empty() {
            return system;
        }
        let searches = config.memory_search.iter().map(|search| {
            self.recall.search(RecallQuery {
                agent: config.name.clone(),
                org: config.org.clone(),
                namespace: search.namespace.clone(),
                query: query.to_owned(),
                top_k: search.top_k,
            })
        });
        let outcomes = futures_util::future::join_all(searches).await;
        let mut hits = Vec::with_capacity(outcomes.len());
        for (search, outcome) in config.memory_search.iter().zip(outcomes) {
            match outcome {
                Ok(texts) => {
                    turn.memory.push(RecallRecord {
                        namespace: search.namespace.clone(),
                        hits: texts.len(),
                        error: None,
                    });
                    hits.push((search.namespace.clone(), texts));
                }
                Err(error) => {
                    tracing::warn!(agent = %config.name, namespace = %search.namespace, %error, "a model agent's memory search gave nothing");
                    turn.memory.push(RecallRecord {
                        namespace: search.namespace.clone(),
                        hits: 0,
                        error: Some(error.to_string()),
                    });
                }
            }
        }
        let Some(recalled) = recalled_prompt(&hits, config.memory_max_chars) else {
            return system;
        };
        Some(match system {
            Some(system) => format!("{system}\n\n{recalled}"),
            None => recalled,
        })
    }

    /// What `summariser` makes of the earlier turns the window left out,
    /// asked as this agent through its tool caller (policy, quota and audit
    /// apply), as a paragraph for the system prompt. A refused or failing
    /// summary is logged and the turn goes on without it.
    async fn summarise(
        &self,
        summariser: &str,
        dropped: &[ChatMessage],
        context: &TaskContext,
    ) -> Option<String> {
        let text = format!(
            "Summarise this earlier part of a conversation in a few sentences, keeping names, numbers and decisions:\n\n{}",
            crate::window::transcript(dropped, crate::window::MAX_TRANSCRIPT_CHARS)
        );
        let invocation = ToolInvocation {
            agent: self.config.name.clone(),
            org: self.config.org.clone(),
            tool: summariser.to_owned(),
            task_id: context.task_id().to_owned(),
            request_id: uuid::Uuid::now_v7().to_string(),
            message: tool_message(&json!({ "text": text })),
        };
        let failure = match self.tools.call(invocation).await {
            Ok(result) => match tool_result_text(&result) {
                (summary, false) if !summary.trim().is_empty() => {
                    return Some(format!(
                        "Summary of the earlier conversation:\n{}",
                        summary.trim()
                    ))
                }
                (answer, _) => format!("no usable summary: {answer}"),
            },
            Err(error) => error.to_string(),
        };
        tracing::warn!(agent = %self.config.name, summariser, reason = %failure, "the earlier turns were dropped without a summary");
        None
    }

    /// Runs the turn and returns the answer's parts.
    async fn run(
        &self,
        message: &Value,
        context: &TaskContext,
        turn: &mut Turn,
    ) -> Result<Vec<Value>, ModelError> {
        let config = &self.config;
        let mut history = self
            .conversations
            .load(&config.name, context.context_id())
            .await?;
        let mut earlier = None;
        if let Some(window) = config.history_max_tokens {
            let counter = TokenCounter::for_model(self.provider.kind(), &config.model);
            let start = crate::window::window_start(&history, window as usize, counter);
            if let Some(summariser) = config
                .history_summary_agent
                .as_deref()
                .filter(|_| start > 0)
            {
                earlier = self.summarise(summariser, &history[..start], context).await;
            }
            history.drain(..start);
        }
        let user_text = message_text(message);
        let system = self.system_with_memory(&user_text, turn).await;
        let system = match (system, earlier) {
            (system, None) => system,
            (None, Some(summary)) => Some(summary),
            (Some(system), Some(summary)) => Some(format!("{system}\n\n{summary}")),
        };
        let mut said = vec![ChatMessage::user(user_text)];
        let artifact_id = format!("{}-answer", context.task_id());
        let payer = payer(config, message)?;
        // The caller's cap (a graph run's budget left) bounds every
        // provider call of this turn.
        let caller_cap = message["metadata"][MAX_TOKENS_METADATA].as_u64();
        if caller_cap == Some(0) {
            return Err(ModelError::CallerBudgetSpent);
        }
        let answer = loop {
            let max_tokens = match self.meter.allowance(payer).await? {
                Some(0) => {
                    return Err(ModelError::BudgetExhausted {
                        org: payer.to_owned(),
                    })
                }
                Some(left) => left.min(config.max_tokens),
                None => config.max_tokens,
            };
            let max_tokens = caller_cap.map_or(max_tokens, |cap| cap.min(max_tokens));
            let key = if config.api_key.is_empty() {
                ApiKey::none()
            } else {
                self.keys.key(payer, &config.api_key).await?
            };
            let mut messages = Vec::with_capacity(history.len() + said.len());
            messages.extend_from_slice(&history);
            messages.extend_from_slice(&said);
            let request = ChatRequest {
                model: config.model.clone(),
                system: system.clone(),
                messages,
                tools: config.tools.clone(),
                max_tokens,
                temperature: config.temperature,
                stream: true,
                response_schema: config.output_schema.clone(),
            };
            // One `chat {model}` span per provider call (GenAI semantic
            // conventions, issue 18); the provider request carries its
            // `traceparent`.
            let span = tracing::info_span!(
                "chat",
                otel.name = %format!("chat {}", config.model),
                otel.kind = "client",
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = self.provider.kind().name(),
                gen_ai.request.model = %config.model,
                gen_ai.request.max_tokens = max_tokens,
                gen_ai.agent.name = %config.name,
                gen_ai.conversation.id = %context.context_id(),
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
            );
            let mut stream = self
                .provider
                .chat(request, &key)
                .instrument(span.clone())
                .await?;
            let mut text = String::new();
            let mut calls = Vec::new();
            let mut reported = None;
            while let Some(event) = stream.next().await {
                match event? {
                    ChatEvent::TextDelta(delta) => {
                        context.artifact(
                            json!({"artifactId": artifact_id, "name": "answer", "parts": [text_part(delta.as_str())]}),
                            turn.streamed,
                            false,
                        )?;
                        turn.streamed = true;
                        text.push_str(&delta);
                    }
                    ChatEvent::ToolCall(call) => calls.push(call),
                    ChatEvent::Done { usage, .. } => reported = Some(usage),
                }
            }
            drop(stream);
            let usage = reported.ok_or(ProviderError::StreamCut)?;
            span.record("gen_ai.usage.input_tokens", usage.input_tokens);
            span.record("gen_ai.usage.output_tokens", usage.output_tokens);
            drop(span);
            turn.usage = turn.usage.plus(usage);
            let cost_micros = self
                .meter
                .record(&UsageRecord {
                    org: payer.to_owned(),
                    agent: config.name.clone(),
                    provider: self.provider.kind(),
                    model: config.model.clone(),
                    context_id: context.context_id().to_owned(),
                    task_id: context.task_id().to_owned(),
                    usage,
                })
                .await?;
            turn.cost_micros = turn.cost_micros.saturating_add(cost_micros);
            said.push(ChatMessage::Assistant {
                content: text.clone(),
                tool_calls: calls.clone(),
            });
            if calls.is_empty() {
                break text;
            }
            let made = turn.tool_calls.saturating_add(calls.len() as u32);
            if made > config.max_tool_calls {
                return Err(ModelError::TooManyToolCalls {
                    max: config.max_tool_calls,
                });
            }
            for call in calls {
                turn.tool_calls += 1;
                let (message, record) = self.call_tool(call, context).await;
                said.push(message);
                turn.tools.push(record);
            }
        };
        self.conversations
            .append(&config.name, context.context_id(), &said)
            .await?;
        let parts = match &self.output_validator {
            Some(validator) => vec![json!({"data": validated(validator, &answer)?})],
            None => vec![text_part(answer)],
        };
        context.artifact(
            json!({"artifactId": artifact_id, "name": "answer", "parts": parts}),
            false,
            true,
        )?;
        Ok(parts)
    }

    /// Calls one tool; failures become an error result the model reads.
    /// Returns what the model reads and the call's record for the trace.
    async fn call_tool(
        &self,
        call: ToolCall,
        context: &TaskContext,
    ) -> (ChatMessage, ToolCallRecord) {
        let started = std::time::Instant::now();
        let known = self.config.tools.iter().any(|tool| tool.name == call.name);
        let mut record = ToolCallRecord {
            tool: call.name.clone(),
            outcome: ToolOutcome::UnknownTool,
            task_id: None,
            request_id: None,
            duration_ms: 0,
        };
        let (content, is_error) = if !known {
            (format!("there is no tool named {:?}", call.name), true)
        } else {
            let request_id = uuid::Uuid::now_v7().to_string();
            record.request_id = Some(request_id.clone());
            let invocation = ToolInvocation {
                agent: self.config.name.clone(),
                org: self.config.org.clone(),
                tool: call.name.clone(),
                task_id: context.task_id().to_owned(),
                request_id,
                message: tool_message(&call.arguments),
            };
            match self.tools.call(invocation).await {
                Ok(result) => {
                    record.outcome = ToolOutcome::Completed;
                    record.task_id = result
                        .pointer("/task/id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    tool_result_text(&result)
                }
                Err(error) => {
                    record.outcome = match error {
                        ToolError::Refused { .. } => ToolOutcome::Refused,
                        ToolError::Failed { .. } => ToolOutcome::Failed,
                    };
                    (error.to_string(), true)
                }
            }
        };
        record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            agent = %self.config.name,
            tool = %call.name,
            task_id = %context.task_id(),
            outcome = ?record.outcome,
            "model agent called a tool"
        );
        let message = ChatMessage::Tool {
            call_id: call.id,
            name: call.name,
            content,
            is_error,
        };
        (message, record)
    }

    fn metadata(&self, turn: &Turn) -> Value {
        let mut usage = usage(
            turn.usage.input_tokens,
            turn.usage.output_tokens,
            u64::from(turn.tool_calls),
        );
        // In the price table's unit, as a graph's trace sums it.
        usage["cost"] = json!(turn.cost_micros as f64 / 1_000_000.0);
        usage
    }
}

/// The organisation whose key and budget a call uses: the agent's own, or
/// for `api_key: caller` the caller's, as the gateway stamped it into the
/// message (a gated agent is reachable only through the gateway).
fn payer<'a>(config: &'a ModelAgentConfig, message: &'a Value) -> Result<&'a str, ModelError> {
    if config.api_key != "caller" {
        return Ok(&config.org);
    }
    message
        .get("metadata")
        .and_then(|metadata| metadata.get(CALLER_ORG_METADATA))
        .and_then(Value::as_str)
        .filter(|org| !org.is_empty())
        .ok_or(ModelError::NoCallerOrganisation)
}

#[async_trait]
impl AgentLogic for ModelLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        context.working()?;
        let mut turn = Turn::default();
        let outcome = tokio::select! {
            biased;
            () = context.canceled() => {
                return Err(AgentsError::TaskClosed { task_id: context.task_id().to_owned() });
            }
            outcome = tokio::time::timeout(self.config.timeout, self.run(&message, &context, &mut turn)) => {
                outcome.unwrap_or_else(|_| Err(ModelError::Timeout { seconds: self.config.timeout.as_secs_f64() }))
            }
        };
        let usage = self.metadata(&turn);
        context.set_metadata("usage", usage.clone())?;
        context.set_metadata("model", json!(self.config.model))?;
        context.set_metadata("provider", json!(self.provider.kind().name()))?;
        if !turn.tools.is_empty() {
            context.set_metadata(TOOL_CALLS_METADATA, json!(turn.tools))?;
        }
        if !turn.memory.is_empty() {
            context.set_metadata("memory", json!(turn.memory))?;
        }
        let metadata = Some(json!({ "usage": usage }));
        match outcome {
            Ok(parts) => {
                let reply = context.agent_message(parts, metadata);
                context.status(TaskState::Completed, Some(reply))
            }
            Err(ModelError::Task(error)) => Err(error),
            Err(error) => {
                tracing::warn!(agent = %self.config.name, task_id = %context.task_id(), error = %convergio_schemas::problem::ErrorChain(&error), "model agent turn failed");
                let reply = context.agent_message(vec![text_part(error.to_string())], metadata);
                context.status(TaskState::Failed, Some(reply))
            }
        }
    }
}

/// The text the model reads for an A2A message: its text parts, then its
/// data parts as JSON, one per line.
fn message_text(message: &Value) -> String {
    let mut lines: Vec<String> = text_parts(message).into_iter().map(str::to_owned).collect();
    lines.extend(data_parts(message).into_iter().map(Value::to_string));
    lines.join("\n")
}

/// The A2A message a tool call sends: its `text` as a text part and its
/// `data` as a data part (arguments of another shape go whole as data).
fn tool_message(arguments: &Value) -> Value {
    let mut parts = Vec::new();
    if let Some(text) = arguments.get("text").and_then(Value::as_str) {
        parts.push(text_part(text));
    }
    if let Some(data) = arguments.get("data").filter(|data| !data.is_null()) {
        parts.push(json!({ "data": data }));
    }
    if parts.is_empty() {
        parts.push(json!({ "data": arguments }));
    }
    json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": parts,
    })
}

/// A `SendMessage` result as the model reads it: the artifacts' parts (or
/// the status message's, or the direct message's) as text, and whether the
/// task failed.
fn tool_result_text(result: &Value) -> (String, bool) {
    let render = |parts: &[Value]| -> Vec<String> {
        parts
            .iter()
            .filter_map(|part| {
                part.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| part.get("data").map(Value::to_string))
            })
            .collect()
    };
    let parts_of = |value: Option<&Value>| {
        value
            .and_then(|value| value.get("parts"))
            .and_then(Value::as_array)
            .map(|parts| render(parts))
            .unwrap_or_default()
    };
    if let Some(task) = result.get("task") {
        let state = task
            .pointer("/status/state")
            .and_then(Value::as_str)
            .unwrap_or("");
        let failed = matches!(
            state,
            "TASK_STATE_FAILED" | "TASK_STATE_REJECTED" | "TASK_STATE_CANCELED"
        );
        let mut lines: Vec<String> = task
            .get("artifacts")
            .and_then(Value::as_array)
            .map(|artifacts| artifacts.iter().flat_map(|a| parts_of(Some(a))).collect())
            .unwrap_or_default();
        if lines.is_empty() || failed {
            lines.extend(parts_of(task.pointer("/status/message")));
        }
        return (lines.join("\n"), failed);
    }
    if let Some(message) = result.get("message") {
        return (parts_of(Some(message)).join("\n"), false);
    }
    (result.to_string(), false)
}

/// The answer as JSON that validates (a surrounding code fence is allowed).
fn validated(validator: &jsonschema::Validator, answer: &str) -> Result<Value, ModelError> {
    let trimmed = answer.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    let value: Value =
        serde_json::from_str(unfenced).map_err(|error| ModelError::OutputInvalid {
            reason: format!("the answer is not JSON ({error})"),
        })?;
    let violations: Vec<String> = validator
        .iter_errors(&value)
        .take(3)
        .map(|error| format!("{} {}", error.instance_path(), error))
        .collect();
    if violations.is_empty() {
        Ok(value)
    } else {
        Err(ModelError::OutputInvalid {
            reason: violations.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_messages_carry_text_and_data_parts() {
        let message = tool_message(&json!({"text": "Paris", "data": {"unit": "C"}}));
        assert_eq!(
            message["parts"],
            json!([{"text": "Paris"}, {"data": {"unit": "C"}}])
        );
        let message = tool_message(&json!({"city": "Paris"}));
        assert_eq!(message["parts"], json!([{"data": {"city": "Paris"}}]));
    }

    #[test]
    fn reads_tool_results_from_artifacts_status_or_message() {
        let check = |result: Value, expected: (&str, bool)| {
            let (text, failed) = tool_result_text(&result);
            assert_eq!((text.as_str(), failed), expected, "{result}");
        };
        check(
            json!({"task": {"status": {"state": "TASK_STATE_COMPLETED"}, "artifacts": [{"parts": [{"text": "sunny"}, {"data": {"c": 21}}]}]}}),
            ("sunny\n{\"c\":21}", false),
        );
        check(
            json!({"task": {"status": {"state": "TASK_STATE_FAILED", "message": {"parts": [{"text": "boom"}]}}}}),
            ("boom", true),
        );
        check(
            json!({"message": {"parts": [{"text": "hi"}]}}),
            ("hi", false),
        );
    }

    #[test]
    fn validates_answers_inside_or_outside_a_code_fence() {
        let validator = jsonschema::validator_for(&json!({
            "type": "object", "required": ["bullets"],
            "properties": {"bullets": {"type": "array"}}
        }))
        .expect("compiles");
        assert!(validated(&validator, "```json\n{\"bullets\": []}\n```").is_ok());
        assert!(validated(&validator, " {\"bullets\": [\"a\"]} ").is_ok());
        assert!(matches!(
            validated(&validator, "{\"points\": 1}"),
            Err(ModelError::OutputInvalid { .. })
        ));
        assert!(matches!(
            validated(&validator, "five bullets"),
            Err(ModelError::OutputInvalid { .. })
        ));
    }
}
