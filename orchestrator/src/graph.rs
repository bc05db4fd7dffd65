//! The validated, index-based graph the executor runs.
//!
//! Node ids become `u32` indices and references are resolved once, so the
//! executor's hot path never looks names up. A [`Graph`] is only produced by
//! [`crate::validate`] (from YAML or the builder), so its invariants hold:
//! every index is in range, every back edge closes a bounded cycle, and every
//! node is reachable from an entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::dsl::{
    Condition, ExecutionSpec, GraphConfig, NodeKind, OnError, RouteRule, StateKeySpec, When,
};

/// A validated graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The graph's name (`graph_id` in traces).
    pub name: Arc<str>,
    /// Free text.
    pub description: Option<String>,
    /// Nodes, in document order; an index is a node's identity at run time.
    pub nodes: Vec<Node>,
    /// Edges, `from`/`to` lists expanded, `wait_for` added.
    pub edges: Vec<Edge>,
    /// Start nodes.
    pub entries: Vec<u32>,
    /// Nodes without outgoing edges; their outputs form the run's output.
    pub sinks: Vec<u32>,
    /// §4.1 `config`.
    pub config: GraphConfig,
    /// §7.2 `execution`.
    pub execution: ExecutionSpec,
    /// Graph input names some node references.
    pub graph_inputs: Vec<String>,
    /// The run's shared state keys and their reducers (issue 20).
    pub state: BTreeMap<String, StateKeySpec>,
    pub(crate) out_edges: Vec<Vec<u32>>,
    pub(crate) forward_in: Vec<u32>,
    pub(crate) back_in: Vec<u32>,
}

/// A validated node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's id.
    pub id: Arc<str>,
    /// What it does.
    pub kind: NodeKind,
    /// The agent called (none for rule routers and sub-graphs).
    pub agent: Option<Arc<str>>,
    /// Resolved inputs, in order.
    pub inputs: Vec<InputRef>,
    /// The parallel group, if any.
    pub parallel_group: Option<String>,
    /// Error strategy.
    pub on_error: OnError,
    /// Per-call timeout override.
    pub timeout: Option<Duration>,
    /// Router rules.
    pub rules: Vec<RouteRule>,
    /// Router default label.
    pub default_route: Option<String>,
    /// The sub-graph a subgraph node runs.
    pub subgraph: Option<Arc<Graph>>,
    /// Memory searched before the call and written after success.
    pub memory: NodeMemory,
    /// Shared state keys it updates when it succeeds (issue 20).
    pub update_state: Vec<StateUpdate>,
    /// Its agent is called with `SendStreamingMessage` (issue 18).
    pub stream: bool,
    /// The run topic its output is published to when it succeeds.
    pub publish: Option<Arc<str>>,
    /// The run topic it waits for before calling its agent.
    pub wait_for_event: Option<EventWait>,
}

/// A node's validated `wait_for_event`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWait {
    /// The topic.
    pub topic: Arc<str>,
    /// How long the node waits.
    pub timeout: Duration,
}

/// The shared-state key holding a topic's latest event.
pub fn event_key(topic: &str) -> String {
    format!("event:{topic}")
}

/// A validated node `memory:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMemory {
    /// Searches: namespace, query reference, hits wanted.
    pub reads: Vec<MemoryRead>,
    /// Namespaces the output is written to.
    pub writes: Vec<Arc<str>>,
}

/// One validated search.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRead {
    /// The namespace.
    pub namespace: Arc<str>,
    /// Where the query text comes from.
    pub query: InputRef,
    /// Hits wanted (1–100).
    pub top_k: u32,
}

// === impl Graph (shared state) ===

impl Graph {
    /// The shared state before any update: each key's `initial`, else the
    /// reducer's empty value.
    pub fn initial_state(&self) -> BTreeMap<String, serde_json::Value> {
        self.state
            .iter()
            .map(|(key, spec)| {
                let value = spec.initial.clone().unwrap_or_else(|| spec.reducer.empty());
                (key.clone(), value)
            })
            .collect()
    }
}

/// One `update_state` entry of a node: the key and where in the output
/// its update is (`None`: the whole output).
#[derive(Debug, Clone, PartialEq)]
pub struct StateUpdate {
    /// The state key.
    pub key: Arc<str>,
    /// A dot path inside the output.
    pub path: Option<String>,
}

/// Where a node input comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputRef {
    /// The whole graph input (entry nodes that declare no inputs).
    WholeInput,
    /// A named field of the graph input (`source_code`).
    Graph {
        /// The field name.
        name: Arc<str>,
    },
    /// A key of the run's shared state (`state.notes`).
    State {
        /// The key.
        key: Arc<str>,
        /// The reference as written; the key in the message's data part.
        label: Arc<str>,
    },
    /// Another node's output (`analyzer.output`, or `router.output.label`).
    Node {
        /// The node's index.
        node: u32,
        /// A dot path inside the output, if any.
        path: Option<String>,
        /// The reference as written; the key in the message's data part.
        label: Arc<str>,
    },
}

/// A single validated edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Source node index.
    pub from: u32,
    /// Target node index.
    pub to: u32,
    /// Condition on the source's output.
    pub when: Option<When>,
    /// How often it may be taken.
    pub max_traversals: Option<u32>,
    /// Whether it closes a cycle (found by depth-first search from the entries).
    pub back: bool,
}

// === impl Graph ===

impl Graph {
    /// The index of the node with this id.
    pub fn node_index(&self, id: &str) -> Option<u32> {
        self.nodes
            .iter()
            .position(|node| &*node.id == id)
            .map(|index| index as u32)
    }

    /// Whether the graph has a cycle.
    pub fn has_cycle(&self) -> bool {
        self.edges.iter().any(|edge| edge.back)
    }
}

/// Evaluates router rules on a value: the first matching rule's route, or
/// the default.
pub(crate) fn route(
    rules: &[RouteRule],
    default_route: Option<&str>,
    value: &serde_json::Value,
) -> Option<String> {
    rules
        .iter()
        .find(|rule| Condition::holds(&rule.when, value))
        .map(|rule| rule.route.clone())
        .or_else(|| default_route.map(str::to_owned))
}
