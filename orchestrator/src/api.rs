//! The wire types of the graph and run API (`/v1/graphs`, `/v1/runs`),
//! shared by the gateway that serves it and the CLI that calls it.
//!
//! They live here, next to [`RunEvent`], [`Trace`] and [`RunStatus`] (which
//! they carry), because they describe the orchestrator's own resources; the
//! `schemas` crate keeps the wire types every crate shares (cards, A2A,
//! problems).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::executor::RunResult;
use crate::run_state::{RunStatus, RunSummary};
use crate::trace::Trace;
use crate::Graph;

/// How `POST /v1/runs` runs the graph (design document §7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The response is the finished run.
    #[default]
    Sync,
    /// The response is the run id at once (202); status and result by id.
    Async,
    /// The response is a `text/event-stream` of the run's events.
    Stream,
    /// `inputs` run with bounded concurrency; one result per input.
    Batch,
}

// === impl RunMode ===

impl RunMode {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Stream => "stream",
            Self::Batch => "batch",
        }
    }
}

/// The body of `POST /v1/runs`: a stored graph by name, or a document
/// inline, and the input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The name of a stored graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// With `graph`: the organisation whose graph it is (default the
    /// caller's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_org: Option<String>,
    /// With `graph`: the version to run (default the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<u32>,
    /// A graph document (YAML or JSON text), validated like a stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_yaml: Option<String>,
    /// The mode; default `sync`.
    #[serde(default)]
    pub mode: RunMode,
    /// The run input (every mode but batch); default `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// One input per run (batch mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Value>,
    /// Runs of a batch at a time (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// The answer to an async start: where to look next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAccepted {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// `running`.
    pub status: RunStatus,
}

/// A finished run as the API shows it: the result and its §8.1 trace
/// (the full `RunState` stays on the server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: Uuid,
    /// The graph's name.
    pub graph_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The output of the sink (or `{sink: output}` for several sinks).
    pub output: Value,
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The §8.1 trace.
    pub trace: Trace,
    /// The run's shared state at its end, when the graph declares one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, Value>,
}

impl From<&RunResult> for RunOutcome {
    fn from(result: &RunResult) -> Self {
        Self {
            run_id: result.run_id,
            graph_id: result.state.graph_id.clone(),
            status: result.status,
            output: result.output.clone(),
            error: result.error.clone(),
            trace: result.trace.clone(),
            state: result.state.shared.clone(),
        }
    }
}

/// One input's result in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The input's position in `inputs`.
    pub index: usize,
    /// The run, when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunOutcome>,
    /// Why the run could not start (a bad input), isolated to this item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// The graph's name.
    pub graph_id: String,
    /// Runs that succeeded.
    pub succeeded: usize,
    /// Runs that did not (or could not start).
    pub failed: usize,
    /// One item per input, in input order.
    pub results: Vec<BatchItem>,
}

/// A stored graph, without its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSummary {
    /// The graph's name (its id within its organisation).
    pub name: String,
    /// The organisation that owns it (the storing caller's; empty for
    /// callers without one: the admin token, anonymous callers).
    #[serde(default)]
    pub org: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1 for the first store, +1 per replacement.
    pub version: u32,
    /// Nodes (sub-graphs not counted).
    pub nodes: usize,
    /// Expanded edges.
    pub edges: usize,
    /// Every agent the graph may call.
    pub agents: Vec<String>,
    /// When this version was stored.
    pub stored_at: DateTime<Utc>,
}

// === impl GraphSummary ===

impl GraphSummary {
    /// The summary of a validated graph.
    pub fn new(graph: &Graph, agents: Vec<String>, version: u32) -> Self {
        Self {
            name: graph.name.to_string(),
            org: String::new(),
            description: graph.description.clone(),
            version,
            nodes: graph.nodes.len(),
            edges: graph.edges.len(),
            agents,
            stored_at: Utc::now(),
        }
    }
}

/// A stored graph with its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphDocument {
    /// The summary.
    #[serde(flatten)]
    pub summary: GraphSummary,
    /// The document as it was stored.
    pub source: String,
}

/// The answer to `GET /v1/runs`: the caller's runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    /// One page of runs.
    pub runs: Vec<RunSummary>,
    /// Pass as `page_token` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The list of stored graphs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphList {
    /// Every stored graph, by name.
    pub graphs: Vec<GraphSummary>,
}
