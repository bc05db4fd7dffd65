//! Re-planning (design document §9.2): what a run started from a plan does
//! when a node fails after its own error strategy is spent.
//!
//! A run that carries [`ReplanSettings`] and an executor built with a
//! [`Replanner`] does not end on such a failure. It checkpoints the failure
//! (the run's state says a re-plan is pending), asks the replanner for a new
//! graph *from the failure point* with the steps that finished and their
//! outputs ([`ReplanRequest`]), and continues on the [`Revision`] it gets:
//! finished nodes keep their state and outputs and never run again, every
//! other node starts afresh. The step that swaps the graph carries the whole
//! new layout ([`crate::journal::PlanRevision`]), so replaying a journal needs no graph but
//! the first one; it appears in the trace and the event stream with the
//! [`StepDiff`] of the two graphs. When `max_replans` re-plans are spent, or
//! the replanner fails, the run ends (`replans_exhausted`, `replan_failed`)
//! with the outputs of the nodes that finished.
//!
//! The crate does no I/O: the gateway implements [`Replanner`] with the
//! planning layer (planner agents, policy checks).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_schemas::Principal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::graph::{Graph, InputRef};
use crate::mapping::Usage;

/// How a run re-plans; stored with the run so that a resumed run re-plans
/// the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplanSettings {
    /// The most re-plans the run may make.
    pub max_replans: u32,
    /// What the replanner needs to find the plan the run started on (for
    /// the gateway: the plan's id and version). Opaque to the executor.
    pub plan: Value,
}

/// A node whose failure asks for a re-plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedStep {
    /// The node.
    pub node_id: String,
    /// The agent it called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why it failed, after its error strategy was spent.
    pub error: String,
}

/// A node that finished before the failure: it is kept, with its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedStep {
    /// The node.
    pub node_id: String,
    /// The agent it called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Its output.
    pub output: Value,
}

/// What a replanner is asked.
#[derive(Debug, Clone)]
pub struct ReplanRequest {
    /// The run.
    pub run_id: Uuid,
    /// Which re-plan of the run this is (1-based).
    pub number: u32,
    /// The plan the run is on now: the settings' `plan`, or the last
    /// revision's.
    pub plan: Value,
    /// Who started the run (the planner is asked, and the new plan checked,
    /// as this principal).
    pub caller: Option<Arc<Principal>>,
    /// Where the caller connected from.
    pub origin: Option<std::net::IpAddr>,
    /// The failure.
    pub failed: FailedStep,
    /// The nodes that finished, in graph order.
    pub completed: Vec<CompletedStep>,
    /// The run input.
    pub input: Value,
}

/// A replanner's answer: the graph the run continues on.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The graph document (stored with the run, so a resume rebuilds it).
    pub source: String,
    /// The validated graph of `source`.
    pub graph: Arc<Graph>,
    /// A new run input, when the new graph needs inputs the old one did not.
    pub input: Option<Value>,
    /// The new plan, as the next [`ReplanRequest::plan`].
    pub plan: Value,
    /// Who planned (for the trace and the per-agent usage).
    pub planner: String,
    /// What planning cost; it counts against the run's budgets.
    pub usage: Usage,
}

/// Asks for a new plan from a failure point.
#[async_trait]
pub trait Replanner: Send + Sync + 'static {
    /// A new graph keeping `request.completed`, or why there is none (the
    /// run then ends `replan_failed` with that text).
    async fn replan(&self, request: ReplanRequest) -> Result<Revision, String>;
}

/// The step ids a revision added, removed and changed, and the finished
/// ones it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDiff {
    /// Steps only in the new graph.
    pub added: Vec<String>,
    /// Steps only in the old graph.
    pub removed: Vec<String>,
    /// Steps in both whose agent, inputs or dependencies differ.
    pub changed: Vec<String>,
    /// Finished steps carried over with their outputs.
    pub kept: Vec<String>,
}

/// The diff of two graphs' steps (node ids); `kept` is given.
pub fn diff(old: &Graph, new: &Graph, kept: Vec<String>) -> StepDiff {
    let ids = |graph: &Graph| -> BTreeSet<String> {
        graph.nodes.iter().map(|node| node.id.to_string()).collect()
    };
    let (before, after) = (ids(old), ids(new));
    let changed = before
        .intersection(&after)
        .filter(|id| shape(old, id) != shape(new, id))
        .cloned()
        .collect();
    StepDiff {
        added: after.difference(&before).cloned().collect(),
        removed: before.difference(&after).cloned().collect(),
        changed,
        kept,
    }
}

/// What makes a step the same step: its agent, its inputs and the steps
/// it waits for.
fn shape(graph: &Graph, id: &str) -> Option<(Option<String>, Vec<String>, BTreeSet<String>)> {
    let index = graph.node_index(id)?;
    let node = &graph.nodes[index as usize];
    let inputs = node
        .inputs
        .iter()
        .map(|input| match input {
            InputRef::WholeInput => "input".to_owned(),
            InputRef::Graph { name } => name.to_string(),
            InputRef::State { label, .. } => label.to_string(),
            InputRef::Node { label, .. } => label.to_string(),
        })
        .collect();
    let after = graph
        .edges
        .iter()
        .filter(|edge| edge.to == index)
        .map(|edge| graph.nodes[edge.from as usize].id.to_string())
        .collect();
    Some((node.agent.as_deref().map(str::to_owned), inputs, after))
}

/// A re-plan as the run state and the trace show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionSummary {
    /// Which re-plan (1-based).
    pub number: u32,
    /// The failure that asked for it.
    pub failed: FailedStep,
    /// Who planned.
    pub planner: String,
    /// The steps it changed.
    pub diff: StepDiff,
    /// The plan the run continued on (opaque to the executor).
    pub plan: Value,
    /// What planning cost.
    pub usage: Usage,
    /// When the run continued on it.
    pub at: DateTime<Utc>,
}
