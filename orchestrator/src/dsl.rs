//! The graph DSL: serde types for the design document's §4.1 YAML, the §7.2
//! `execution` settings, the §7.3 per-node `on_error` strategy, and the
//! extensions the orchestration patterns need.
//!
//! ```yaml
//! name: code_review_pipeline          # §4.1, unchanged
//! nodes:
//!   - id: analyzer
//!     agent: code_analyzer
//!     inputs: [source_code]           # a graph input, or `<node>.output`
//!     on_error: retry                 # retry | skip | abort | human | {fallback: agent}
//! edges:
//!   - from: analyzer                  # one id or a list, on either side
//!     to: [a, b]
//!     when: {path: verdict, equals: continue}   # extension: conditional edge
//!     max_traversals: 3               # extension: loop bound on this edge
//! config: {max_iterations: 20, timeout_seconds: 300, checkpoint_enabled: true}
//! execution: {max_concurrent_agents: 10, retry_policy: {max_retries: 3, backoff: exponential}}
//! ```
//!
//! Extensions (all optional, all in `schemas/json/graph.schema.json`):
//! - `entry: [ids]` names the start nodes when a cycle leaves no node without
//!   incoming edges (a debate starts at `pro`).
//! - node `kind`: `agent` (default), `judge` (an agent whose reply decides the
//!   conditional edges leaving it), `router` (an agent, or with `rules` no
//!   call at all, whose output is a route label) and `subgraph` (runs the
//!   graph named by `subgraph` from the top-level `subgraphs` map).
//! - edge `when`: a [`Condition`] on the source node's output, or the word
//!   `otherwise` (taken when no conditional edge from the same node was).
//! - edge `max_traversals`: the edge is taken at most that many times; after
//!   that it counts as not taken, so an `otherwise` edge ends the loop.
//! - `config.max_iterations` caps how often any node may run in one run;
//!   reaching it ends the run with status `iteration_limit`.
//! - `execution.max_tokens_per_run`, `max_tool_calls_per_run` and
//!   `max_cost_per_run`: run budgets.
//! - `state: {key: {reducer: last|append|merge, initial}}`: the run's
//!   shared state (issue 20). Nodes read a key as input `state.<key>` and
//!   update keys when they succeed (`update_state: {key: output[.path]}`),
//!   all of a node's updates or none (an update that does not fit its
//!   reducer fails the node); the changes are part of the node's
//!   checkpointed step, so a resume applies none twice. The result shows
//!   the final state.
//! - node `stream: true` (issue 18): the agent, local or in another
//!   organisation, is called with `SendStreamingMessage`; each event it
//!   streams reaches the run's event stream as a `node_update`, in order,
//!   and the stream folded is the node's answer.
//! - node `publish: <topic>` and `wait_for_event: {topic, timeout_seconds}`
//!   (issue 20): a node that succeeds publishes its output to a topic of
//!   the run; a node waiting for the topic calls its agent once it has an
//!   event (the latest), which arrives as a data part `{"event": {topic:
//!   …}}`, or fails after its timeout. Waiting holds a place among the
//!   run's `max_concurrent_agents`. Events are kept in the run's state as
//!   `event:<topic>`, checkpointed with the publishing node's step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A parsed graph document, before validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// The graph's name (its `graph_id` in traces).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The nodes, in document order.
    pub nodes: Vec<NodeSpec>,
    /// The edges, in document order.
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
    /// Explicit start nodes (extension); default: nodes without incoming edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<String>,
    /// §4.1 `config`.
    #[serde(default)]
    pub config: GraphConfig,
    /// §7.2 `execution`.
    #[serde(default)]
    pub execution: ExecutionSpec,
    /// Named sub-graphs that `subgraph` nodes run (extension).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subgraphs: BTreeMap<String, GraphSpec>,
    /// The run's shared state (issue 20): keys nodes read as inputs
    /// (`state.<key>`) and update from outputs (`update_state`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, StateKeySpec>,
    /// The source text, kept to point validation errors at lines.
    #[serde(skip)]
    pub source: Option<Arc<str>>,
}

// === impl GraphSpec ===

impl GraphSpec {
    /// Every agent the document names (node agents and fallbacks, in
    /// sub-graphs too), so a caller can look them up before validating
    /// against a catalog that needs no I/O.
    pub fn agent_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        self.collect_agent_names(&mut names);
        names
    }

    fn collect_agent_names(&self, names: &mut BTreeSet<String>) {
        for node in &self.nodes {
            if let Some(agent) = &node.agent {
                names.insert(agent.clone());
            }
            if let Some(OnError::Fallback { fallback }) = &node.on_error {
                names.insert(fallback.clone());
            }
        }
        for subgraph in self.subgraphs.values() {
            subgraph.collect_agent_names(names);
        }
    }
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique id within the graph.
    pub id: String,
    /// Registry name or full agent id; required for agent and judge nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What the node does; default `agent`.
    #[serde(default)]
    pub kind: NodeKind,
    /// Input references: a graph input name or `<node>.output`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The group this node runs in parallel with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_group: Option<String>,
    /// Groups whose every member must finish before this node runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_for: Vec<String>,
    /// §7.3 error strategy; default `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Per-call timeout overriding `execution.timeout_per_agent_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Router rules, evaluated in order on the node's input (router nodes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
    /// Route label when no rule matches (router nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<String>,
    /// The name of the sub-graph to run (subgraph nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subgraph: Option<String>,
    /// Memory the node reads before its call and writes after it
    /// succeeds (agent and judge nodes; issue 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<NodeMemorySpec>,
    /// State keys this node updates when it succeeds: key → `output` or
    /// `output.<path>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub update_state: BTreeMap<String, String>,
    /// Call the agent with `SendStreamingMessage`: each event it streams
    /// reaches the run's event stream as a `node_update` (issue 18).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// A topic of the run this node publishes its output to when it
    /// succeeds (issue 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    /// A topic this node waits for before calling its agent; the event
    /// arrives as a data part `{"event": {"<topic>": …}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_event: Option<WaitForEventSpec>,
}

/// A node's `wait_for_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForEventSpec {
    /// The topic.
    pub topic: String,
    /// How long the node waits before it fails (its `on_error` decides
    /// what follows).
    pub timeout_seconds: f64,
}

/// One key of a run's shared state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateKeySpec {
    /// How updates combine with the value.
    #[serde(default)]
    pub reducer: Reducer,
    /// The value before any update (default: `null`, `[]` or `{}` by reducer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<Value>,
}

/// How a shared state key combines an update with its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reducer {
    /// The newest update replaces the value.
    #[default]
    Last,
    /// The value is a list; an update adds its value (each element of a list).
    Append,
    /// The value is an object; an update's keys replace its keys.
    Merge,
}

// === impl Reducer ===

impl Reducer {
    /// The value before any update.
    pub fn empty(self) -> Value {
        match self {
            Self::Last => Value::Null,
            Self::Append => Value::Array(Vec::new()),
            Self::Merge => Value::Object(serde_json::Map::new()),
        }
    }

    /// `current` after `update`, or why the update does not fit.
    pub fn reduce(self, current: &mut Value, update: Value) -> Result<(), String> {
        match self {
            Self::Last => *current = update,
            Self::Append => {
                let Value::Array(items) = current else {
                    return Err("an append key's value is not a list".to_owned());
                };
                match update {
                    Value::Array(more) => items.extend(more),
                    one => items.push(one),
                }
            }
            Self::Merge => {
                let (Value::Object(fields), Value::Object(update)) = (&mut *current, update) else {
                    return Err("a merge key takes an object".to_owned());
                };
                fields.extend(update);
            }
        }
        Ok(())
    }
}

/// A node's `memory:`: namespaces searched before the call (the hits
/// arrive as a data part `{"memory": {namespace: [hits]}}` of the node's
/// message) and namespaces its output is written to when it succeeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMemorySpec {
    /// Searches, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<MemoryReadSpec>,
    /// Writes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<MemoryWriteSpec>,
}

/// One search of a vector namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryReadSpec {
    /// The namespace searched.
    pub namespace: String,
    /// The query: an input reference (a graph input or `<node>.output`),
    /// its value as text.
    pub query: String,
    /// Hits wanted, 1–100; default 5.
    #[serde(default = "default_top_k")]
    pub top_k: u32,
}

fn default_top_k() -> u32 {
    5
}

/// One write of the node's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryWriteSpec {
    /// The namespace written.
    pub namespace: String,
    /// What is written: only `output` (the node's output).
    #[serde(default = "default_from")]
    pub from: String,
}

fn default_from() -> String {
    "output".to_owned()
}

/// The kinds of node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Calls its agent with its inputs.
    #[default]
    Agent,
    /// An agent whose reply decides the conditional edges leaving it.
    Judge,
    /// Picks the next node: calls a router agent, or evaluates `rules`.
    Router,
    /// Runs a named sub-graph with its inputs.
    Subgraph,
}

/// A router rule: when `when` holds on the input, the output is `route`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// The test on the node's input.
    pub when: Condition,
    /// The label the router outputs.
    pub route: String,
}

/// A single id or a list of ids (both sides of an edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `from: analyzer`
    One(String),
    /// `from: [a, b]`
    Many(Vec<String>),
}

// === impl OneOrMany ===

impl OneOrMany {
    /// The ids, in order.
    pub fn ids(&self) -> &[String] {
        match self {
            Self::One(id) => std::slice::from_ref(id),
            Self::Many(ids) => ids,
        }
    }
}

/// An edge (or, with lists, every pair of `from` × `to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Source node(s).
    pub from: OneOrMany,
    /// Target node(s).
    pub to: OneOrMany,
    /// Condition on the source's output (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// How many times the edge may be taken in one run (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_traversals: Option<u32>,
}

/// The `when` of an edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum When {
    /// `otherwise`: taken when no conditional edge from the same node was.
    Keyword(WhenKeyword),
    /// A test on the source node's output.
    Test(Condition),
}

/// Keywords allowed as `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenKeyword {
    /// See [`When::Keyword`].
    Otherwise,
}

/// A test on a JSON value; every field given must hold.
///
/// `path` is a dot path into the value (`verdict`, `scores.0`); without it
/// the value itself is tested. `contains` is a substring test on strings and
/// a membership test on arrays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Dot path into the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The value differs from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// The string contains this, or the array holds this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The value is present and not null (true) or absent/null (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

// === impl Condition ===

impl Condition {
    /// Whether the condition holds on `value`.
    pub fn holds(&self, value: &Value) -> bool {
        let target = match &self.path {
            None => Some(value),
            Some(path) => lookup_path(value, path),
        };
        if let Some(exists) = self.exists {
            let present = target.is_some_and(|found| !found.is_null());
            if present != exists {
                return false;
            }
        }
        if let Some(expected) = &self.equals {
            if !target.is_some_and(|found| loosely_equal(found, expected)) {
                return false;
            }
        }
        if let Some(unexpected) = &self.not_equals {
            if target.is_some_and(|found| loosely_equal(found, unexpected)) {
                return false;
            }
        }
        if let Some(needle) = &self.contains {
            let matched = match target {
                Some(Value::String(text)) => text.contains(needle.as_str()),
                Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(needle)),
                _ => false,
            };
            if !matched {
                return false;
            }
        }
        true
    }
}

/// Equality that also accepts a string equal to the expected value after
/// trimming (agents often answer `"done\n"`).
fn loosely_equal(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::String(found), Value::String(expected)) => found.trim() == expected.trim(),
        _ => found == expected,
    }
}

/// Follows a dot path (`a.b.0`) into a JSON value.
pub fn lookup_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for segment in path.split('.').filter(|segment| !segment.is_empty()) {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// §4.1 `config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// How many times any one node may run in a run (bounds every cycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// Whole-run timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Whether runs are checkpointed (durable runs land with issue 8).
    #[serde(default)]
    pub checkpoint_enabled: bool,
}

/// §7.2 `execution`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    /// Nodes in flight at once in one run (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_agents: Option<u32>,
    /// Tokens (in + out) one agent may use in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_agent: Option<u64>,
    /// Tool calls one agent may make in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls_per_agent: Option<u64>,
    /// Tokens the whole run may use (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_run: Option<u64>,
    /// Tool calls the whole run may make (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls_per_run: Option<u64>,
    /// What the whole run may cost, in the price table's currency, summed
    /// from the cost its agents report (extension). Agents that report no
    /// cost count as free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_per_run: Option<f64>,
    /// Per-call timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_per_agent_seconds: Option<f64>,
    /// Whole-run timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_seconds: Option<f64>,
    /// How `retry` nodes retry.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// The §7.3 strategy of every node without an `on_error` of its own
    /// (default `retry`); `human` pauses the run on any node's failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<SimpleStrategy>,
}

/// §7.2 `retry_policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The delay between attempts.
    #[serde(default)]
    pub backoff: Backoff,
}

fn default_max_retries() -> u32 {
    3
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            backoff: Backoff::Exponential,
        }
    }
}

/// Backoff shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// base × 2^attempt, with full jitter.
    #[default]
    Exponential,
    /// base, with jitter.
    Fixed,
    /// No delay.
    None,
}

/// §7.3 per-node error strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OnError {
    /// `retry`, `skip`, `abort` or `human`.
    Simple(SimpleStrategy),
    /// `{fallback: <agent>}`.
    Fallback {
        /// The agent called instead.
        fallback: String,
    },
}

/// The strategies written as a single word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimpleStrategy {
    /// Retry with backoff per `retry_policy`, then abort.
    Retry,
    /// Output null; downstream still runs.
    Skip,
    /// Stop the run and cancel nodes in flight.
    Abort,
    /// Pause for a person (needs durable runs; ends `waiting_for_human` today).
    Human,
}
