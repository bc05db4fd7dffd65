//! Durable runs (issue 8): the [`RunJournal`] a store implements, and the
//! step deltas it keeps.
//!
//! A checkpointed run is one run row ([`NewRun`]: the graph document, the
//! input, the caller, the owner) plus one [`StepDelta`] per step: the node
//! states that changed, the edges whose traversal count changed, the ready
//! queue, the usage and the executions finished since the previous step.
//! Nothing is stored twice, so a 1,000-step chain writes O(n) bytes, never a
//! copy of the whole [`RunState`] per step. Resuming replays the deltas over
//! the run's first state ([`RunState::fresh`] + [`RunState::apply`]).
//!
//! The crate does no I/O: `convergio-store` implements the journal on SQLite
//! and PostgreSQL. Every row carries [`FORMAT_VERSION`]; a row of another
//! version, or one that does not decode or does not fit the graph, is a
//! [`OrchestratorError::CorruptRun`], never a silent restart.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_schemas::Principal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::dispatch::Usage;
use crate::error::OrchestratorError;
use crate::graph::Graph;
use crate::replan::{FailedStep, ReplanSettings, RevisionSummary};
use crate::run_state::{NodeExecution, NodeState, NodeStatus, RunState, RunStatus};

/// The format of stored run rows and step deltas this build writes and reads.
pub const FORMAT_VERSION: i64 = 1;

/// What identifies a run and never changes after it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// The run input.
    pub input: Value,
    /// Who started the run (resumed runs call agents as this principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Principal>,
    /// Where the caller connected from: policy's `loopback` fact, so a run
    /// resumed by the lease keeper is judged as the original call was
    /// (issue 15). The principal (subject, org, method, scopes) is `caller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<std::net::IpAddr>,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// How the run re-plans when a node fails (runs started from a plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replan: Option<ReplanSettings>,
}

/// A run row to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The run's identity.
    pub header: RunHeader,
    /// The graph document (YAML or JSON), so any replica can rebuild the
    /// graph; empty for graphs built in Rust (the caller supplies the graph
    /// again on resume).
    pub source: String,
    /// Who may see and continue the run (`Principal::owner_key`).
    pub owner: String,
    /// Steps copied from another run (a resume from a named checkpoint).
    pub steps: Vec<StepDelta>,
}

/// The changes one step made to a run's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDelta {
    /// The step's number: 1, 2, … per run, dense.
    pub seq: u64,
    /// Node states that changed, by node index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<(u32, NodeState)>,
    /// Edges whose traversal count changed: (edge index, new count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<(u32, u32)>,
    /// The ready queue after the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready: Vec<u32>,
    /// The run's usage after the step.
    pub usage: Usage,
    /// Shared state keys that changed in the step, with their new values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<(String, Value)>,
    /// Per-agent usage that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_usage: Vec<(String, Usage)>,
    /// Executions finished in the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<NodeExecution>,
    /// The run's status after the step.
    pub status: RunStatus,
    /// Why the run did not succeed (when it ended so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The node waiting for a human decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_node: Option<String>,
    /// A new run input (resume with new input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The run's output, on the step that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The failure waiting for its re-plan, after the step (§9.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_replan: Option<FailedStep>,
    /// The re-plan this step made: the run continues on a new graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Box<PlanRevision>>,
}

/// A re-plan as the journal keeps it, in the step that made it: the new
/// graph document and the run's whole new node and edge layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRevision {
    /// What the trace shows of it.
    pub summary: RevisionSummary,
    /// The new graph document.
    pub source: String,
    /// Every node's state in the new graph's order.
    pub nodes: Vec<NodeState>,
    /// Every edge's traversal count in the new graph's order.
    pub edges: Vec<u32>,
}

/// A named checkpoint: a step of a run a resume can start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The name.
    pub name: String,
    /// The last step it includes.
    pub seq: u64,
    /// When it was named.
    pub created_at: DateTime<Utc>,
}

/// Everything stored about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// Its identity.
    pub header: RunHeader,
    /// The graph document.
    pub source: String,
    /// Who may see it.
    pub owner: String,
    /// The status of its last step (`running` before the first).
    pub status: RunStatus,
    /// The replica holding its lease, if any.
    pub lease_owner: Option<String>,
    /// Its steps in order.
    pub steps: Vec<StepDelta>,
}

/// Which stored runs [`RunJournal::list_runs`] returns: one owner's, newest
/// first (run ids are UUIDv7, so id order is start order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only runs of this owner (`Principal::owner_key`).
    pub owner: String,
    /// Only runs whose last step left them in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this graph.
    pub graph_id: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs older than this one (the paging cursor).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// A stored run as listings show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunListing {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// The status of its last step.
    pub status: RunStatus,
    /// When its row was created (its start).
    pub started_at: DateTime<Utc>,
}

/// Durable storage of run rows and step deltas, with leases.
///
/// `append` returns only once the step is committed: the executor reports a
/// step done, and starts the next, only after that.
#[async_trait]
pub trait RunJournal: Send + Sync + 'static {
    /// The replica this journal leases runs to.
    fn replica(&self) -> &str;

    /// Creates the run row (and any copied steps), leased to this replica.
    async fn create(&self, run: &NewRun) -> Result<(), OrchestratorError>;

    /// Commits one step; `delta.seq` must be the run's next step number.
    async fn append(&self, run_id: Uuid, delta: &StepDelta) -> Result<(), OrchestratorError>;

    /// The run with its steps up to `up_to` (all when `None`).
    async fn load(&self, run_id: Uuid, up_to: Option<u64>) -> Result<StoredRun, OrchestratorError>;

    /// Names the run's last committed step.
    async fn name_checkpoint(
        &self,
        run_id: Uuid,
        name: &str,
    ) -> Result<Checkpoint, OrchestratorError>;

    /// The run's named checkpoints, oldest first.
    async fn checkpoints(&self, run_id: Uuid) -> Result<Vec<Checkpoint>, OrchestratorError>;

    /// Takes the run's lease for this replica when it is free, expired or
    /// already this replica's; `false` when another replica holds it.
    async fn claim(&self, run_id: Uuid) -> Result<bool, OrchestratorError>;

    /// Extends this replica's leases on `runs` (the runs it is driving; a
    /// run it stopped driving, after a journal error for instance, is left
    /// to expire so that a replica takes it over).
    async fn renew(&self, runs: &[Uuid]) -> Result<u64, OrchestratorError>;

    /// Claims up to `limit` running runs whose lease expired.
    async fn claim_expired(&self, limit: u32) -> Result<Vec<Uuid>, OrchestratorError>;

    /// Marks the run cancelled when it is `running` or `waiting_for_human`
    /// (`true`), so no replica resumes it and the replica driving it stops
    /// at its next step (its append fails with `RunCancelled`); `false`
    /// when it had already ended.
    async fn cancel(&self, run_id: Uuid) -> Result<bool, OrchestratorError>;

    /// The stored runs `filter` selects, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunListing>, OrchestratorError>;
}

// === impl RunState ===

impl RunState {
    /// The first state of a run: every node pending, the entries ready.
    pub fn fresh(graph: &Graph, header: &RunHeader) -> Self {
        let nodes = graph
            .nodes
            .iter()
            .map(|node| NodeState::pending(node.id.to_string()))
            .collect();
        Self {
            run_id: header.run_id,
            graph_id: header.graph_id.clone(),
            trace_id: header.trace_id.clone(),
            status: RunStatus::Running,
            input: header.input.clone(),
            caller: header.caller.clone(),
            nodes,
            edge_traversals: vec![0; graph.edges.len()],
            ready: graph.entries.clone(),
            usage: Usage::default(),
            usage_by_agent: BTreeMap::new(),
            executions: Vec::new(),
            events: Vec::new(),
            started_at: header.started_at,
            finished_at: None,
            error: None,
            waiting_node: None,
            replan: header.replan.clone(),
            pending_replan: None,
            revisions: Vec::new(),
            shared: graph.initial_state(),
        }
    }

    /// Replays a stored run's steps over its first state.
    pub fn replay(graph: &Graph, stored: &StoredRun) -> Result<Self, OrchestratorError> {
        let mut state = Self::fresh(graph, &stored.header);
        for (position, delta) in stored.steps.iter().enumerate() {
            if delta.seq != position as u64 + 1 {
                return Err(OrchestratorError::CorruptRun {
                    run_id: stored.header.run_id.to_string(),
                    message: format!(
                        "step {} found where step {} belongs",
                        delta.seq,
                        position + 1
                    ),
                });
            }
            state.apply(delta)?;
        }
        Ok(state)
    }

    /// Applies one step; a delta that does not fit the graph is refused
    /// before anything changes. A step that re-planned replaces the node
    /// and edge layout first: later steps fit the new graph.
    pub fn apply(&mut self, delta: &StepDelta) -> Result<(), OrchestratorError> {
        let corrupt = |message: String| OrchestratorError::CorruptRun {
            run_id: self.run_id.to_string(),
            message: format!("step {}: {message}", delta.seq),
        };
        if let Some(revision) = &delta.revision {
            self.nodes.clone_from(&revision.nodes);
            self.edge_traversals.clone_from(&revision.edges);
            self.revisions.push(revision.summary.clone());
        }
        for (index, node) in &delta.nodes {
            match self.nodes.get(*index as usize) {
                Some(existing) if existing.node_id == node.node_id => {}
                _ => {
                    return Err(corrupt(format!(
                        "node {} does not fit the graph",
                        node.node_id
                    )))
                }
            }
        }
        if let Some((edge, _)) = delta
            .edges
            .iter()
            .find(|(edge, _)| *edge as usize >= self.edge_traversals.len())
        {
            return Err(corrupt(format!("edge {edge} does not exist")));
        }
        if let Some(node) = delta
            .ready
            .iter()
            .find(|node| **node as usize >= self.nodes.len())
        {
            return Err(corrupt(format!("ready node {node} does not exist")));
        }
        for (index, node) in &delta.nodes {
            self.nodes[*index as usize] = node.clone();
        }
        for (edge, count) in &delta.edges {
            self.edge_traversals[*edge as usize] = *count;
        }
        self.ready.clone_from(&delta.ready);
        self.usage = delta.usage;
        for (agent, usage) in &delta.agent_usage {
            self.usage_by_agent.insert(agent.clone(), *usage);
        }
        self.executions.extend(delta.executions.iter().cloned());
        self.status = delta.status;
        self.error.clone_from(&delta.error);
        self.finished_at = delta.finished_at;
        self.waiting_node.clone_from(&delta.waiting_node);
        if let Some(input) = &delta.input {
            self.input = input.clone();
        }
        self.pending_replan.clone_from(&delta.pending_replan);
        for (key, value) in &delta.shared {
            self.shared.insert(key.clone(), value.clone());
        }
        Ok(())
    }
}

// === impl NodeState ===

impl NodeState {
    /// A node that has not started.
    pub fn pending(node_id: String) -> Self {
        Self {
            node_id,
            status: NodeStatus::Pending,
            runs: 0,
            attempts: 0,
            attempt: 0,
            started_at: None,
            output: Value::Null,
            error: None,
            usage: Usage::default(),
            forward_resolved: 0,
            forward_taken: 0,
            back_resolved: 0,
            back_taken: 0,
            rerun: false,
            fallback: false,
        }
    }
}

/// The run output stored with a run's last step, if it ended.
pub fn stored_output(stored: &StoredRun) -> Value {
    stored
        .steps
        .iter()
        .rev()
        .find_map(|delta| delta.output.clone())
        .unwrap_or(Value::Null)
}
