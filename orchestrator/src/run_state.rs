//! The state of a run, apart from the engine that drives it: [`RunState`]
//! (everything a checkpoint saves), its node states and executions, the
//! events a run emits and the statuses they carry.
//!
//! A leaf module: the executor writes these, the journal stores them, the
//! trace and the metrics read them, and none of those import the executor
//! for it. Everything here is plain serialisable data; the rules that move
//! it forward live in the executor, the delta arithmetic in the journal.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use convergio_schemas::Principal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::mapping::{RemoteTiming, ToolCallReport, Usage};
use crate::replan::{FailedStep, ReplanSettings, RevisionSummary, StepDiff};

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Every reachable node finished or was skipped.
    Succeeded,
    /// A node failed under `retry`, `abort` or a failed fallback.
    Failed,
    /// The run's total timeout passed.
    TimedOut,
    /// A node would have run more than `config.max_iterations` times.
    IterationLimit,
    /// A `human` node failed; the run waits for approve, reject or input.
    WaitingForHuman,
    /// Its owner cancelled it (`POST /v1/runs/{id}:cancel`); it is never
    /// resumed.
    Cancelled,
    /// A node failed and the run had made its `max_replans` re-plans
    /// (§9.2); the outputs of the nodes that finished are its output.
    ReplansExhausted,
    /// A node failed and asking for a new plan failed (the planner erred,
    /// its plans stayed invalid, or re-planning passed a budget); the
    /// outputs of the nodes that finished are its output.
    ReplanFailed,
}

// === impl RunStatus ===

impl RunStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::IterationLimit => "iteration_limit",
            Self::WaitingForHuman => "waiting_for_human",
            Self::Cancelled => "cancelled",
            Self::ReplansExhausted => "replans_exhausted",
            Self::ReplanFailed => "replan_failed",
        }
    }
}

/// A node's state in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Not started yet.
    Pending,
    /// A call is in flight.
    Running,
    /// Its last run produced an output.
    Succeeded,
    /// It failed (and its strategy did not recover).
    Failed,
    /// It failed under `skip`: output null.
    Skipped,
    /// No edge into it was taken.
    NotRun,
    /// The run ended while it was in flight.
    Cancelled,
}

/// The outcome of one node execution, as in the §8.1 trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// The node produced an output.
    Success,
    /// The node failed.
    Failed,
    /// The node failed and was skipped.
    Skipped,
}

// === impl ExecutionStatus ===

impl ExecutionStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One node's state, including the join counters that make a run resumable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node.
    pub node_id: String,
    /// Where it is.
    pub status: NodeStatus,
    /// How many times it started.
    pub runs: u32,
    /// Calls made, retries and fallbacks included.
    pub attempts: u32,
    /// The attempt in flight of the current run of the node (1-based).
    pub attempt: u32,
    /// When the current run of the node started.
    pub started_at: Option<DateTime<Utc>>,
    /// Its last output (null until it succeeds).
    pub output: Value,
    /// Its last error.
    pub error: Option<String>,
    /// Usage summed over its calls.
    pub usage: Usage,
    /// Forward edges into it resolved in the current round.
    pub forward_resolved: u32,
    /// Forward edges into it taken in the current round.
    pub forward_taken: u32,
    /// Back edges into it resolved in the current round.
    pub back_resolved: u32,
    /// Back edges into it taken in the current round.
    pub back_taken: u32,
    /// It became ready again while running.
    pub rerun: bool,
    /// The call in flight goes to the fallback agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

/// One node execution (a row of the trace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeExecution {
    /// The node.
    pub node_id: String,
    /// The agent that answered, or `subgraph:<name>` / `router:rules`.
    pub agent: String,
    /// Which run of the node this was (1-based).
    pub iteration: u32,
    /// Calls made.
    pub attempts: u32,
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// Reported usage.
    pub usage: Usage,
    /// The tool calls the agent reported making.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolCallReport>,
    /// Another organisation's timing of the call, when it shared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteTiming>,
    /// Outcome.
    pub status: ExecutionStatus,
    /// Error text for failed and skipped executions.
    pub error: Option<String>,
}

/// Events of a run, for the streaming mode and the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// A node started a run.
    NodeStarted {
        /// The run.
        run_id: Uuid,
        /// The node.
        node_id: String,
        /// The agent called, if any.
        agent: Option<String>,
        /// Which run of the node (1-based).
        iteration: u32,
    },
    /// A node produced its output.
    NodeOutput {
        /// The run.
        run_id: Uuid,
        /// The node.
        node_id: String,
        /// The output.
        output: Value,
    },
    /// An event a streaming node's agent streamed (issue 18): an A2A 1.0
    /// `StreamResponse` (`task`, `statusUpdate`, `artifactUpdate` or
    /// `message`), in the order the agent sent them. Live only: sent to the
    /// run's event stream, not kept in the run's state.
    NodeUpdate {
        /// The run.
        run_id: Uuid,
        /// The node.
        node_id: String,
        /// Which run of the node (1-based).
        iteration: u32,
        /// The agent's event.
        event: Value,
    },
    /// A call failed.
    NodeError {
        /// The run.
        run_id: Uuid,
        /// The node.
        node_id: String,
        /// What failed.
        error: String,
        /// What happens next: `retry`, `skip`, `fallback`, `abort`, `human`.
        action: String,
    },
    /// A node finished (succeeded, skipped or failed).
    NodeFinished {
        /// The run.
        run_id: Uuid,
        /// The node.
        node_id: String,
        /// Its status.
        status: NodeStatus,
        /// Its wall time.
        duration_ms: u64,
    },
    /// A node failed and the run continues on a new plan (§9.2).
    PlanRevised {
        /// The run.
        run_id: Uuid,
        /// Which re-plan (1-based).
        number: u32,
        /// The node whose failure asked for it.
        failed_node: String,
        /// Its error.
        error: String,
        /// Who planned.
        planner: String,
        /// The step ids added, removed, changed and kept.
        diff: StepDiff,
    },
    /// The run ended.
    RunFinished {
        /// The run.
        run_id: Uuid,
        /// How it ended.
        status: RunStatus,
        /// Why, when it did not succeed.
        error: Option<String>,
    },
}

/// Everything about a run: serialisable, so it can be checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// Where the run is.
    pub status: RunStatus,
    /// The run input.
    pub input: Value,
    /// Who started the run (a resumed run calls agents as this principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Principal>,
    /// Per node, in graph order.
    pub nodes: Vec<NodeState>,
    /// Times each edge (graph order) was taken.
    pub edge_traversals: Vec<u32>,
    /// Nodes ready but not started, in order.
    pub ready: Vec<u32>,
    /// Usage of the whole run.
    pub usage: Usage,
    /// Usage per agent.
    pub usage_by_agent: BTreeMap<String, Usage>,
    /// Executions in completion order.
    pub executions: Vec<NodeExecution>,
    /// The event log (when enabled). `node_output` events are logged only
    /// for streaming runs; outputs are always in `nodes[].output`.
    pub events: Vec<RunEvent>,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the run did not succeed.
    pub error: Option<String>,
    /// The node waiting for a human decision (status `waiting_for_human`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_node: Option<String>,
    /// How the run re-plans when a node fails (runs started from a plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replan: Option<ReplanSettings>,
    /// A node failed and the run waits for its re-plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_replan: Option<FailedStep>,
    /// The re-plans made, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionSummary>,
    /// The run's shared state (issue 20), by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shared: BTreeMap<String, Value>,
}

/// A summary of a run, for status lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: Option<DateTime<Utc>>,
}
