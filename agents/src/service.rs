//! The binding-independent A2A 1.0 operations. Both bindings (JSON-RPC and
//! HTTP+JSON) turn a request into 1.0 params (a JSON object) and call one of
//! these; results are 1.0 JSON, and streams are sequences of 1.0
//! `StreamResponse` objects.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use convergio_schemas::a2a::{A2aError, TaskState};
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::logic::AgentLogic;
use crate::protocol::{
    optional_bool, optional_str, optional_u64, required_str, FieldViolation, ProtocolError,
};
use crate::tasks::{ListQuery, Started, TaskStore};
use crate::AgentsError;

/// A stream of 1.0 `StreamResponse` objects.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Value> + Send>>;

/// Default and maximum `ListTasks` page sizes (spec: 1–100, default 50).
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 100;

/// One agent's operations: its logic, its tasks, its capabilities.
pub(crate) struct AgentService {
    logic: Arc<dyn AgentLogic>,
    store: Arc<TaskStore>,
    streaming: bool,
}

/// A validated `SendMessage` request.
struct SendRequest {
    message: Value,
    return_immediately: bool,
    history_length: Option<usize>,
}

/// How a send started: a direct reply, or a task.
enum Outcome {
    Message(Value),
    Task(Started),
}

fn is_final_event(event: &Value) -> bool {
    event
        .pointer("/statusUpdate/status/state")
        .and_then(Value::as_str)
        .and_then(TaskState::parse)
        .is_some_and(|state| state.is_terminal() || state.is_interrupted())
}

/// The task snapshot, then every event up to and including the first
/// terminal or interrupted status update. A subscriber that lags beyond the
/// buffer has lost events, so its stream ends rather than skip any.
fn task_stream(
    snapshot: Value,
    mut events: broadcast::Receiver<Value>,
    close_after_snapshot: bool,
) -> EventStream {
    Box::pin(async_stream::stream! {
        yield json!({ "task": snapshot });
        if close_after_snapshot {
            return;
        }
        while let Ok(event) = events.recv().await {
            let last = is_final_event(&event);
            yield event;
            if last {
                break;
            }
        }
    })
}

fn validate_message(message: Option<&Value>) -> Result<Value, ProtocolError> {
    let Some(message) = message.filter(|m| m.is_object()) else {
        return Err(ProtocolError::invalid(
            "message",
            "is required and must be an object",
        ));
    };
    let mut violations = Vec::new();
    let mut violate = |field: &str, description: &str| {
        violations.push(FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
        })
    };
    match message.get("messageId") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => violate(
            "message.messageId",
            "is required and must be a non-empty string",
        ),
    }
    match message.get("role").and_then(Value::as_str) {
        Some("ROLE_USER" | "ROLE_AGENT") => {}
        _ => violate("message.role", "must be ROLE_USER or ROLE_AGENT"),
    }
    for field in ["taskId", "contextId"] {
        if message
            .get(field)
            .is_some_and(|value| !value.is_string() && !value.is_null())
        {
            violate(&format!("message.{field}"), "must be a string");
        }
    }
    match message.get("parts").and_then(Value::as_array) {
        Some(parts) if !parts.is_empty() => {
            for (index, part) in parts.iter().enumerate() {
                let members = ["text", "raw", "url", "data"]
                    .iter()
                    .filter(|member| part.get(**member).is_some())
                    .count();
                let typed = part.get("text").is_none_or(Value::is_string)
                    && part.get("raw").is_none_or(Value::is_string)
                    && part.get("url").is_none_or(Value::is_string);
                if !part.is_object() || members != 1 || !typed {
                    violate(
                        &format!("message.parts[{index}]"),
                        "must have exactly one of text, raw, url or data",
                    );
                }
            }
        }
        _ => violate("message.parts", "is required and must be a non-empty array"),
    }
    if violations.is_empty() {
        Ok(message.clone())
    } else {
        Err(ProtocolError::InvalidParams(violations))
    }
}

fn history_length(params: &Value, field: &str) -> Result<Option<usize>, ProtocolError> {
    Ok(optional_u64(params, field)?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

fn parse_send(params: &Value) -> Result<SendRequest, ProtocolError> {
    let message = validate_message(params.get("message"))?;
    let configuration = params.get("configuration").cloned().unwrap_or(Value::Null);
    if !configuration.is_null() && !configuration.is_object() {
        return Err(ProtocolError::invalid("configuration", "must be an object"));
    }
    let return_immediately = optional_bool(&configuration, "returnImmediately")
        .map_err(|_| {
            ProtocolError::invalid("configuration.returnImmediately", "must be a boolean")
        })?
        .unwrap_or(false);
    let history_length = history_length(&configuration, "historyLength").map_err(|_| {
        ProtocolError::invalid(
            "configuration.historyLength",
            "must be a non-negative integer",
        )
    })?;
    Ok(SendRequest {
        message,
        return_immediately,
        history_length,
    })
}

// === impl AgentService ===

impl AgentService {
    /// A service running `logic`; `streaming` mirrors the card capability.
    pub fn new(logic: Arc<dyn AgentLogic>, store: Arc<TaskStore>, streaming: bool) -> Self {
        Self {
            logic,
            store,
            streaming,
        }
    }

    fn finish_reply(mut reply: Value, context_id: &str) -> Value {
        if !reply.is_object() {
            reply = json!({ "parts": [] });
        }
        if reply.get("messageId").and_then(Value::as_str).is_none() {
            reply["messageId"] = json!(uuid::Uuid::new_v4().to_string());
        }
        reply["role"] = json!("ROLE_AGENT");
        reply["contextId"] = json!(context_id);
        reply
    }

    fn spawn_execution(&self, message: Value, started: &Started) {
        let logic = Arc::clone(&self.logic);
        let store = Arc::clone(&self.store);
        let context = started.context.clone();
        // The logic runs in the request's span (the caller's trace).
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let task_id = context.task_id().to_owned();
            let failure_context = context.clone();
            // The logic runs on its own tokio task so that a panic in it
            // still ends the task (FAILED) instead of leaving it WORKING.
            let run =
                tokio::spawn(async move { logic.execute(message, context).await }.instrument(span));
            let (state, reason) = match run.await {
                Ok(Ok(())) => (TaskState::Completed, None),
                // A closed task was canceled (or ended) under the logic's
                // feet; there is nothing left to record.
                Ok(Err(AgentsError::TaskClosed { .. })) => (TaskState::Completed, None),
                Ok(Err(error)) => (TaskState::Failed, Some(error.to_string())),
                Err(join_error) => (
                    TaskState::Failed,
                    Some(format!("agent logic crashed: {join_error}")),
                ),
            };
            if let Some(reason) = &reason {
                tracing::warn!(task_id = %task_id, reason = %reason, "task execution failed");
            }
            let message = reason
                .map(|reason| failure_context.agent_message(vec![json!({ "text": reason })], None));
            store.finish_if_running(&task_id, state, message);
        });
    }

    async fn start(&self, message: Value) -> Result<Outcome, ProtocolError> {
        let task_id = optional_str(&message, "taskId")?.map(str::to_owned);
        let context_id = optional_str(&message, "contextId")?.map(str::to_owned);
        let started = match task_id {
            Some(task_id) => self
                .store
                .resume(&task_id, context_id.as_deref(), message.clone())?,
            None => {
                let context_id = context_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let mut message = message.clone();
                message["contextId"] = json!(context_id);
                if let Some(reply) = self.logic.reply(&message).await {
                    return Ok(Outcome::Message(Self::finish_reply(reply, &context_id)));
                }
                self.store.create(&context_id, message)
            }
        };
        let mut executed = message;
        executed["taskId"] = json!(started.context.task_id());
        executed["contextId"] = json!(started.context.context_id());
        self.spawn_execution(executed, &started);
        Ok(Outcome::Task(started))
    }

    /// `SendMessage`: blocking unless `configuration.returnImmediately`.
    pub async fn send(&self, params: &Value) -> Result<Value, ProtocolError> {
        let request = parse_send(params)?;
        match self.start(request.message).await? {
            Outcome::Message(message) => Ok(json!({ "message": message })),
            Outcome::Task(mut started) => {
                let task_id = started.context.task_id().to_owned();
                if !request.return_immediately {
                    // An error means the store dropped the task's sender, which
                    // only happens at shutdown; the snapshot below still answers.
                    let _ = started
                        .state
                        .wait_for(|state| state.is_terminal() || state.is_interrupted())
                        .await;
                }
                let task = self.store.get(&task_id, request.history_length)?;
                Ok(json!({ "task": task }))
            }
        }
    }

    /// `SendStreamingMessage`: a message-only stream (one `message` event)
    /// or a task stream.
    pub async fn stream(&self, params: &Value) -> Result<EventStream, ProtocolError> {
        if !self.streaming {
            return Err(ProtocolError::a2a_with(
                A2aError::UnsupportedOperation,
                "Streaming is not supported by this agent",
            ));
        }
        let request = parse_send(params)?;
        match self.start(request.message).await? {
            Outcome::Message(message) => Ok(Box::pin(futures_util::stream::once(async move {
                json!({ "message": message })
            }))),
            Outcome::Task(started) => Ok(task_stream(started.snapshot, started.events, false)),
        }
    }

    /// `GetTask`.
    pub fn get(&self, params: &Value) -> Result<Value, ProtocolError> {
        let id = required_str(params, "id")?;
        let history_length = history_length(params, "historyLength")?;
        self.store.get(id, history_length)
    }

    /// `CancelTask`.
    pub fn cancel(&self, params: &Value) -> Result<Value, ProtocolError> {
        let id = required_str(params, "id")?;
        self.store.cancel(id)
    }

    /// `SubscribeToTask`.
    pub fn subscribe(&self, params: &Value) -> Result<EventStream, ProtocolError> {
        if !self.streaming {
            return Err(ProtocolError::a2a_with(
                A2aError::UnsupportedOperation,
                "Streaming is not supported by this agent",
            ));
        }
        let id = required_str(params, "id")?;
        let (snapshot, events, interrupted) = self.store.subscribe(id)?;
        Ok(task_stream(snapshot, events, interrupted))
    }

    /// `ListTasks`.
    pub fn list(&self, params: &Value) -> Result<Value, ProtocolError> {
        let page_size = match optional_u64(params, "pageSize")? {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(size) if size <= MAX_PAGE_SIZE => size,
            Some(_) => {
                return Err(ProtocolError::invalid(
                    "pageSize",
                    "must be between 1 and 100",
                ))
            }
        };
        let page_token = match optional_str(params, "pageToken")? {
            None | Some("") => None,
            Some(token) => Some(token.parse::<u64>().map_err(|_| {
                ProtocolError::invalid("pageToken", "is not a token this server issued")
            })?),
        };
        let state = match optional_str(params, "status")? {
            None | Some("") | Some("TASK_STATE_UNSPECIFIED") => None,
            Some(name) => Some(
                TaskState::parse(name)
                    .ok_or_else(|| ProtocolError::invalid("status", "is not a task state"))?,
            ),
        };
        let status_after = match optional_str(params, "statusTimestampAfter")? {
            None | Some("") => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        ProtocolError::invalid(
                            "statusTimestampAfter",
                            "must be an RFC 3339 timestamp",
                        )
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let query = ListQuery {
            context_id: optional_str(params, "contextId")?
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            state,
            page_size: usize::try_from(page_size).unwrap_or(usize::MAX),
            page_token,
            history_length: history_length(params, "historyLength")?,
            status_after,
            include_artifacts: optional_bool(params, "includeArtifacts")?.unwrap_or(false),
        };
        let (tasks, next_page_token, total) = self.store.list(&query);
        Ok(json!({
            "tasks": tasks,
            "nextPageToken": next_page_token,
            "pageSize": page_size,
            "totalSize": total,
        }))
    }

    /// Every push-notification method: the card says `pushNotifications:false`.
    pub fn push_not_supported() -> ProtocolError {
        ProtocolError::a2a(A2aError::PushNotificationNotSupported)
    }

    /// `GetExtendedAgentCard`: the card says `extendedAgentCard:false`.
    pub fn extended_card_not_supported() -> ProtocolError {
        ProtocolError::a2a_with(
            A2aError::UnsupportedOperation,
            "This agent does not provide an extended agent card",
        )
    }
}
