//! [`ToolCaller`]: how a model agent calls the agents listed as its tools.
//! The serve wiring implements it as an A2A `SendMessage` through the
//! gateway's own pipeline, as the model agent's principal, so policy,
//! quotas, the SSRF guard and audit apply to every tool call.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::error::ToolError;

/// One tool call, as the model agent asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInvocation {
    /// The model agent making the call (its principal).
    pub agent: String,
    /// The organisation that owns the model agent.
    pub org: String,
    /// The tool agent to call.
    pub tool: String,
    /// The model agent's task, for traces.
    pub task_id: String,
    /// The request id the call is made with (`x-request-id`), so the run's
    /// trace and the gateway's audit record of the call name the same one.
    pub request_id: String,
    /// The A2A 1.0 message to send (`messageId`, `role`, `parts`).
    pub message: Value,
}

/// Calls tool agents.
#[async_trait]
pub trait ToolCaller: Send + Sync + 'static {
    /// Sends the invocation's message to its tool agent and returns the
    /// `SendMessage` result (`{"task": …}` or `{"message": …}`).
    async fn call(&self, invocation: ToolInvocation) -> Result<Value, ToolError>;
}

/// A tool caller for agents without tools: every call is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTools;

#[async_trait]
impl ToolCaller for NoTools {
    async fn call(&self, invocation: ToolInvocation) -> Result<Value, ToolError> {
        Err(ToolError::Refused {
            tool: invocation.tool,
            reason: "this agent has no tools".into(),
        })
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// The tool agent answered (its task may still have failed: the model
    /// reads that from the answer).
    Completed,
    /// The call was made and failed.
    Failed,
    /// Policy, a quota, the SSRF guard or discovery refused it.
    Refused,
    /// The model asked for a tool the agent does not have.
    UnknownTool,
}

/// One tool call of a turn, as the task's `toolCalls` metadata reports it
/// (a graph's run trace lists them under the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCallRecord {
    /// The tool agent.
    pub tool: String,
    /// How it ended.
    pub outcome: ToolOutcome,
    /// The tool agent's task, when it answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The request id the call was made with (absent for an unknown tool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Wall time of the call.
    pub duration_ms: u64,
}
