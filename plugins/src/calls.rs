//! Plugin agents calling other agents (agent ABI v1's optional import
//! `convergio.call_agent`, see the crate README).
//!
//! The sandbox never makes a call itself: a plugin agent is handed an
//! [`AgentCaller`] when it is loaded (the serving process sends each call
//! through the gateway's own pipeline as the plugin's principal, so policy,
//! quotas, the SSRF guard and audit apply) and [`AgentCallLimits`] bounding
//! what one invocation may do:
//!
//! - at most `max_calls` calls;
//! - every call shares one wall-clock budget of `timeout_ms` per invocation
//!   (each call gets what is left of it). Time spent waiting for an answer
//!   is not charged to the sandbox's own `deadline_ms`, which keeps bounding
//!   the module's own running time; fuel keeps bounding its CPU;
//! - the request read from the module at most `max_request_bytes`, the
//!   answer written back at most `max_reply_bytes`.
//!
//! Everything the module passes is checked here: a bad pointer, a length
//! outside its memory, a request that is not `{"agent", "message"|"text"}`
//! is answered `{"error": {"code": "BAD_REQUEST", …}}`, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The host function's name in [`crate::runtime::HOST_MODULE`].
pub const CALL_AGENT_IMPORT: &str = "call_agent";

/// One call a plugin agent asks for, as its caller receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCall {
    /// The agent to call (its gateway name).
    pub agent: String,
    /// The A2A 1.0 message to send (`messageId`, `role`, `parts`).
    pub message: Value,
    /// The plugin agent's task, for traces.
    pub task_id: String,
    /// What is left of the invocation's budget: the call must end by then.
    pub timeout: Duration,
    /// The largest reply the plugin may receive, in bytes.
    pub max_reply_bytes: usize,
}

/// Why a call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentCallError {
    /// Policy, a quota, discovery or these bounds refused it.
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// It was made and failed (the agent erred, the reply was too large).
    #[error("failed: {reason}")]
    Failed {
        /// Why.
        reason: String,
    },
    /// No answer within the budget.
    #[error("no answer within {timeout_ms} ms")]
    Timeout {
        /// The time the call had.
        timeout_ms: u64,
    },
}

// === impl AgentCallError ===

impl AgentCallError {
    /// The code the plugin reads (`REFUSED`, `FAILED`, `TIMEOUT`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "REFUSED",
            Self::Failed { .. } => "FAILED",
            Self::Timeout { .. } => "TIMEOUT",
        }
    }
}

/// Makes plugin agents' calls. The plugin's fiber is suspended while the
/// future runs, and the future is polled on that fiber's stack: an
/// implementation doing much work (a whole gateway exchange) should spawn
/// it as a task of its own and await it. It ends at most `call.timeout`
/// later.
#[async_trait::async_trait]
pub trait AgentCaller: Send + Sync {
    /// Sends `call.message` to `call.agent`, answering the A2A result (a
    /// Task or a Message).
    async fn call_agent(&self, call: AgentCall) -> Result<Value, AgentCallError>;
}

/// The caller of plugins that may not call agents (an upload being
/// checked, a declaration being read): every call is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAgentCalls;

#[async_trait::async_trait]
impl AgentCaller for NoAgentCalls {
    async fn call_agent(&self, _call: AgentCall) -> Result<Value, AgentCallError> {
        Err(AgentCallError::Refused {
            reason: "calling agents is not available here".into(),
        })
    }
}

/// Bounds on the calls one plugin agent invocation makes (`plugins.agent_calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentCallLimits {
    /// Calls one invocation may make (default 16); more are refused.
    pub max_calls: u32,
    /// The wall-clock budget all of one invocation's calls share, in
    /// milliseconds (default 20 000, under the gateway's default request
    /// timeout of 30 s); a call past it answers `TIMEOUT`.
    pub timeout_ms: u64,
    /// The largest request a module may pass, in bytes (default 1 MiB).
    pub max_request_bytes: usize,
    /// The largest answer written back into the module, in bytes (default
    /// 1 MiB); a larger reply answers `FAILED`.
    pub max_reply_bytes: usize,
}

impl Default for AgentCallLimits {
    fn default() -> Self {
        Self {
            max_calls: 16,
            timeout_ms: 20_000,
            max_request_bytes: 1024 * 1024,
            max_reply_bytes: 1024 * 1024,
        }
    }
}

/// What a plugin agent calls through and how much.
#[derive(Clone)]
pub struct AgentCalling {
    /// Who makes the calls.
    pub caller: Arc<dyn AgentCaller>,
    /// The bounds of one invocation.
    pub limits: AgentCallLimits,
}

impl std::fmt::Debug for AgentCalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCalling")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

// === impl AgentCalling ===

impl AgentCalling {
    /// Calls through `caller` within `limits`.
    pub fn new(caller: Arc<dyn AgentCaller>, limits: AgentCallLimits) -> Self {
        Self { caller, limits }
    }

    /// No calls: each is refused.
    pub fn none() -> Self {
        Self::new(Arc::new(NoAgentCalls), AgentCallLimits::default())
    }
}

/// The calls of one invocation: who makes them and what is left.
pub(crate) struct InvocationCalls {
    calling: AgentCalling,
    task_id: String,
    made: u32,
    budget_left: Duration,
}

// === impl InvocationCalls ===

impl InvocationCalls {
    /// The calls of the invocation running `task_id`.
    pub(crate) fn new(calling: AgentCalling, task_id: &str) -> Self {
        let budget_left = Duration::from_millis(calling.limits.timeout_ms);
        Self {
            calling,
            task_id: task_id.to_owned(),
            made: 0,
            budget_left,
        }
    }

    /// The largest request read from the module.
    pub(crate) fn max_request_bytes(&self) -> usize {
        self.calling.limits.max_request_bytes
    }

    /// Makes the call `request` (the bytes the module passed) describes,
    /// answering the JSON the module reads: `{"result": …}` or `{"error":
    /// {"code", "message"}}`.
    pub(crate) async fn call(&mut self, request: &[u8]) -> Value {
        let limits = &self.calling.limits;
        if self.made >= limits.max_calls {
            return error(
                "REFUSED",
                &format!("at most {} agent calls per message", limits.max_calls),
            );
        }
        let (agent, message) = match parse(request, &self.task_id, self.made) {
            Ok(parsed) => parsed,
            Err(problem) => return error("BAD_REQUEST", &problem),
        };
        if self.budget_left.is_zero() {
            return error(
                "TIMEOUT",
                &format!("the calls' budget of {} ms is spent", limits.timeout_ms),
            );
        }
        self.made += 1;
        let call = AgentCall {
            agent,
            message,
            task_id: self.task_id.clone(),
            timeout: self.budget_left,
            max_reply_bytes: limits.max_reply_bytes,
        };
        let started = Instant::now();
        let outcome = self.calling.caller.call_agent(call).await;
        self.budget_left = self.budget_left.saturating_sub(started.elapsed());
        match outcome {
            Ok(result) => {
                let answer = json!({ "result": result });
                // Serialised once more by the writer; measured here so an
                // oversized reply is a clear FAILED, not a trap.
                let size = serde_json::to_vec(&answer).map_or(usize::MAX, |bytes| bytes.len());
                if size > limits.max_reply_bytes {
                    error(
                        "FAILED",
                        &format!(
                            "the reply of {size} bytes is over the limit of {}",
                            limits.max_reply_bytes
                        ),
                    )
                } else {
                    answer
                }
            }
            Err(failure) => error(failure.code(), &failure.to_string()),
        }
    }
}

/// `{"error": {"code", "message"}}`.
pub(crate) fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCall {
    agent: String,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    text: Option<String>,
}

/// The longest agent name a call may carry.
const MAX_AGENT_NAME: usize = 256;

/// Whether `agent` names an agent the gateway routes: a name (`echo`),
/// `convergio://agents/<name>`, or `external://<org>/agents/<name>` (another
/// organisation's agent registered here).
fn is_agent_reference(agent: &str) -> bool {
    let plain = |text: &str| !text.is_empty() && !text.contains('/') && !text.contains("://");
    if let Some(name) = agent.strip_prefix("convergio://agents/") {
        return plain(name);
    }
    if let Some(rest) = agent.strip_prefix("external://") {
        return rest
            .split_once("/agents/")
            .is_some_and(|(org, name)| plain(org) && plain(name));
    }
    plain(agent)
}

/// Reads a request: the agent and the A2A message to send it (a `text`
/// becomes a user message; a message without `messageId` gets one).
fn parse(request: &[u8], task_id: &str, index: u32) -> Result<(String, Value), String> {
    let wire: WireCall = serde_json::from_slice(request).map_err(|error| {
        format!("the request is not {{\"agent\", \"message\"|\"text\"}} JSON: {error}")
    })?;
    if wire.agent.is_empty() || wire.agent.len() > MAX_AGENT_NAME {
        return Err(format!(
            "the agent name must be 1 to {MAX_AGENT_NAME} bytes"
        ));
    }
    if !is_agent_reference(&wire.agent) {
        return Err(format!(
            "{:?} is not an agent name, convergio://agents/<name> or external://<org>/agents/<name>",
            wire.agent
        ));
    }
    let message_id = format!("{task_id}-call-{index}");
    let message = match (wire.message, wire.text) {
        (Some(Value::Object(mut message)), None) => {
            message
                .entry("messageId")
                .or_insert_with(|| Value::String(message_id));
            message
                .entry("role")
                .or_insert_with(|| Value::String("ROLE_USER".into()));
            Value::Object(message)
        }
        (Some(_), None) => return Err("the message must be an object".into()),
        (None, Some(text)) => {
            let mut message = Map::new();
            message.insert("messageId".into(), Value::String(message_id));
            message.insert("role".into(), Value::String("ROLE_USER".into()));
            message.insert("parts".into(), json!([{ "text": text }]));
            Value::Object(message)
        }
        _ => return Err("a request has either a message or a text".into()),
    };
    Ok((wire.agent, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_or_refused_as_bad() {
        let check = |request: &str, expected: Result<(&str, Value), &str>| {
            let parsed = parse(request.as_bytes(), "t1", 2);
            match expected {
                Ok((agent, message)) => {
                    assert_eq!(parsed, Ok((agent.to_owned(), message)), "{request}")
                }
                Err(part) => assert!(
                    parsed.as_ref().is_err_and(|problem| problem.contains(part)),
                    "{request}: {parsed:?}"
                ),
            }
        };
        check(
            r#"{"agent":"echo","text":"hi"}"#,
            Ok((
                "echo",
                json!({"messageId": "t1-call-2", "role": "ROLE_USER", "parts": [{"text": "hi"}]}),
            )),
        );
        check(
            r#"{"agent":"echo","message":{"messageId":"m","role":"ROLE_AGENT","parts":[]}}"#,
            Ok((
                "echo",
                json!({"messageId": "m", "role": "ROLE_AGENT", "parts": []}),
            )),
        );
        check(r#"{"agent":"echo"}"#, Err("either a message or a text"));
        check(
            r#"{"agent":"echo","text":"a","message":{}}"#,
            Err("either a message or a text"),
        );
        check(r#"{"agent":"echo","message":[]}"#, Err("must be an object"));
        check(r#"{"agent":"","text":"a"}"#, Err("1 to 256"));
        check(
            r#"{"agent":"external://b.example/agents/vault","text":"a"}"#,
            Ok((
                "external://b.example/agents/vault",
                json!({"messageId": "t1-call-2", "role": "ROLE_USER", "parts": [{"text": "a"}]}),
            )),
        );
        for bad in [
            "a/b",
            "http://x",
            "external://b.example/vault",
            "convergio://agents/",
        ] {
            check(
                &format!(r#"{{"agent":"{bad}","text":"a"}}"#),
                Err("is not an agent name"),
            );
        }
        check(r#"{"agent":"echo","text":"a","x":1}"#, Err("not {"));
        check("not json", Err("not {"));
    }
}
