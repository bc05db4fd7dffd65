//! Validation of a [`GraphSpec`] into a runnable [`Graph`].
//!
//! Every problem is collected, not just the first, and each points at the
//! YAML line of the offending node or edge when the spec came from text:
//! graph over the size limit, duplicate ids, unknown agents (through an
//! [`AgentCatalog`]), unknown input references, edges to missing nodes,
//! `wait_for` naming no group, cycles without a loop bound, unreachable
//! nodes, and sub-graph problems (prefixed with `/subgraphs/<name>`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dsl::{GraphSpec, NodeKind, NodeSpec, OnError, Reducer, SimpleStrategy, StateKeySpec};
use crate::graph::{Edge, EventWait, Graph, InputRef, MemoryRead, Node, NodeMemory, StateUpdate};
use crate::source::SourceMap;

/// The validation error types live in the crate's error module (which the
/// source map's locating code uses too); re-exported here, beside `validate`.
pub use crate::error::{ValidationCode, ValidationError};

/// Tells validation which agents exist (the lead implements it over the
/// registry).
pub trait AgentCatalog: Send + Sync {
    /// Whether `agent` (a registry name or full agent id) can be called.
    fn contains(&self, agent: &str) -> bool;
}

/// A catalog that accepts every agent (for tests and offline checks).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyAgent;

impl AgentCatalog for AnyAgent {
    fn contains(&self, _agent: &str) -> bool {
        true
    }
}

/// A fixed set of agent names.
#[derive(Debug, Clone, Default)]
pub struct StaticCatalog {
    agents: HashSet<String>,
}

// === impl StaticCatalog ===

impl StaticCatalog {
    /// A catalog of exactly these agents.
    pub fn new<I, S>(agents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            agents: agents.into_iter().map(Into::into).collect(),
        }
    }
}

impl AgentCatalog for StaticCatalog {
    fn contains(&self, agent: &str) -> bool {
        self.agents.contains(agent)
    }
}

/// Size limits applied before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most nodes in one graph (default 10,000).
    pub max_nodes: usize,
    /// Most expanded edges in one graph (default 100,000).
    pub max_edges: usize,
    /// Deepest nesting of sub-graphs (default 8).
    pub max_subgraph_depth: usize,
    /// Server ceiling on how many times one node runs in one run (default
    /// 10,000): a graph's `config.max_iterations` may lower it, never
    /// raise it; a run that reaches it ends `iteration_limit`.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// Server ceiling on a run's time, in seconds (default 3,600; 0: none):
    /// a graph's `timeout_seconds` may lower it, never raise it; a run that
    /// reaches it ends `timed_out`. Time waiting for a human does not count.
    #[serde(default = "default_max_run_seconds")]
    pub max_run_seconds: u64,
    /// Events kept per run (default 10,000): later ones are still streamed
    /// live but not kept, except the final `run_finished`.
    #[serde(default = "default_max_run_events")]
    pub max_run_events: usize,
}

fn default_max_iterations() -> u32 {
    10_000
}

fn default_max_run_seconds() -> u64 {
    3_600
}

fn default_max_run_events() -> usize {
    10_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 10_000,
            max_edges: 100_000,
            max_subgraph_depth: 8,
            max_iterations: default_max_iterations(),
            max_run_seconds: default_max_run_seconds(),
            max_run_events: default_max_run_events(),
        }
    }
}

// === impl Limits ===

impl Limits {
    /// The run-time ceiling as a duration (`None`: no ceiling).
    pub fn max_run_time(&self) -> Option<Duration> {
        (self.max_run_seconds > 0).then(|| Duration::from_secs(self.max_run_seconds))
    }
}

/// Validates `spec` against the catalog and limits, collecting every error.
pub fn validate(
    spec: &GraphSpec,
    catalog: &dyn AgentCatalog,
    limits: &Limits,
) -> Result<Graph, Vec<ValidationError>> {
    let source_map = spec.source.as_deref().map(SourceMap::new);
    let mut collector = Collector {
        source_map: source_map.as_ref(),
        errors: Vec::new(),
    };
    let graph = validate_inner(spec, catalog, limits, "", 0, &mut collector);
    match graph {
        Some(graph) if collector.errors.is_empty() => Ok(graph),
        _ => Err(collector.errors),
    }
}

struct Collector<'a, 't> {
    source_map: Option<&'a SourceMap<'t>>,
    errors: Vec<ValidationError>,
}

impl Collector<'_, '_> {
    fn push(&mut self, code: ValidationCode, pointer: String, message: String) {
        let position = self.source_map.and_then(|map| map.locate(&pointer));
        self.errors.push(ValidationError {
            code,
            message,
            pointer,
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
        });
    }
}

/// Seconds from a document as a duration: positive, finite, and capped at a
/// year so deadline arithmetic cannot overflow.
pub(crate) fn seconds(value: Option<f64>) -> Option<Duration> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    value
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs.min(YEAR)).ok())
}

fn validate_inner(
    spec: &GraphSpec,
    catalog: &dyn AgentCatalog,
    limits: &Limits,
    prefix: &str,
    depth: usize,
    out: &mut Collector<'_, '_>,
) -> Option<Graph> {
    // Size first: a graph over the limit is not analysed further, so an
    // oversized document costs little.
    if spec.nodes.len() > limits.max_nodes {
        out.push(
            ValidationCode::TooLarge,
            format!("{prefix}/nodes"),
            format!(
                "graph has {} nodes, more than the limit of {}",
                spec.nodes.len(),
                limits.max_nodes
            ),
        );
        return None;
    }
    let expanded_edges: usize = spec
        .edges
        .iter()
        .map(|edge| edge.from.ids().len().saturating_mul(edge.to.ids().len()))
        .sum();
    if expanded_edges > limits.max_edges {
        out.push(
            ValidationCode::TooLarge,
            format!("{prefix}/edges"),
            format!(
                "graph has {expanded_edges} edges, more than the limit of {}",
                limits.max_edges
            ),
        );
        return None;
    }

    // Ids.
    let mut index_of: HashMap<&str, u32> = HashMap::with_capacity(spec.nodes.len());
    for (index, node) in spec.nodes.iter().enumerate() {
        if index_of.insert(node.id.as_str(), index as u32).is_some() {
            out.push(
                ValidationCode::DuplicateId,
                format!("{prefix}/nodes/{index}/id"),
                format!("duplicate node id `{}`", node.id),
            );
        }
    }
    // Duplicates keep the first occurrence's index for lookups.
    for (index, node) in spec.nodes.iter().enumerate().rev() {
        index_of.insert(node.id.as_str(), index as u32);
    }
    check_state(spec, &index_of, prefix, out);

    // Groups.
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (index, node) in spec.nodes.iter().enumerate() {
        if let Some(group) = &node.parallel_group {
            groups.entry(group.as_str()).or_default().push(index as u32);
        }
    }

    // Sub-graphs, validated once each.
    let mut subgraphs: BTreeMap<&str, Option<Arc<Graph>>> = BTreeMap::new();
    for (name, subgraph) in &spec.subgraphs {
        let sub_prefix = format!("{prefix}/subgraphs/{name}");
        let graph = if depth + 1 > limits.max_subgraph_depth {
            out.push(
                ValidationCode::TooLarge,
                sub_prefix,
                format!(
                    "sub-graphs nest deeper than the limit of {}",
                    limits.max_subgraph_depth
                ),
            );
            None
        } else {
            validate_inner(subgraph, catalog, limits, &sub_prefix, depth + 1, out).map(Arc::new)
        };
        subgraphs.insert(name.as_str(), graph);
    }

    // Edges.
    let mut edges: Vec<Edge> = Vec::with_capacity(expanded_edges);
    let mut seen_pairs: HashSet<(u32, u32)> = HashSet::new();
    for (edge_index, edge) in spec.edges.iter().enumerate() {
        let resolve = |side: &str, ids: &[String], out: &mut Collector<'_, '_>| -> Vec<u32> {
            let mut resolved = Vec::with_capacity(ids.len());
            for id in ids {
                match index_of.get(id.as_str()) {
                    Some(&index) => resolved.push(index),
                    None => out.push(
                        ValidationCode::MissingNode,
                        format!("{prefix}/edges/{edge_index}/{side}"),
                        format!("edge {side} `{id}`: no node has this id"),
                    ),
                }
            }
            resolved
        };
        let from = resolve("from", edge.from.ids(), out);
        let to = resolve("to", edge.to.ids(), out);
        for &source in &from {
            for &target in &to {
                if edge.when.is_none() && edge.max_traversals.is_none() {
                    seen_pairs.insert((source, target));
                }
                edges.push(Edge {
                    from: source,
                    to: target,
                    when: edge.when.clone(),
                    max_traversals: edge.max_traversals,
                    back: false,
                });
            }
        }
    }

    // Nodes.
    let mut nodes: Vec<Node> = Vec::with_capacity(spec.nodes.len());
    let mut graph_inputs: BTreeSet<String> = BTreeSet::new();
    for (index, node) in spec.nodes.iter().enumerate() {
        let pointer = format!("{prefix}/nodes/{index}");
        for (group_index, group) in node.wait_for.iter().enumerate() {
            match groups.get(group.as_str()) {
                Some(members) => {
                    for &member in members {
                        if member != index as u32 && seen_pairs.insert((member, index as u32)) {
                            edges.push(Edge {
                                from: member,
                                to: index as u32,
                                when: None,
                                max_traversals: None,
                                back: false,
                            });
                        }
                    }
                }
                None => out.push(
                    ValidationCode::UnknownGroup,
                    format!("{pointer}/wait_for/{group_index}"),
                    format!(
                        "node `{}` waits for group `{group}`, but no node is in it",
                        node.id
                    ),
                ),
            }
        }
        let kind = if node.subgraph.is_some() {
            NodeKind::Subgraph
        } else {
            node.kind
        };
        match kind {
            NodeKind::Agent | NodeKind::Judge if node.agent.is_none() => out.push(
                ValidationCode::InvalidNode,
                pointer.clone(),
                format!("node `{}` needs an `agent`", node.id),
            ),
            NodeKind::Router if node.agent.is_none() && node.rules.is_empty() => out.push(
                ValidationCode::InvalidNode,
                pointer.clone(),
                format!("router `{}` needs an `agent` or `rules`", node.id),
            ),
            NodeKind::Subgraph if node.subgraph.is_none() => out.push(
                ValidationCode::InvalidNode,
                pointer.clone(),
                format!("node `{}` of kind subgraph needs `subgraph`", node.id),
            ),
            _ => {}
        }
        if let Some(agent) = &node.agent {
            if kind != NodeKind::Subgraph && !catalog.contains(agent) {
                out.push(
                    ValidationCode::UnknownAgent,
                    format!("{pointer}/agent"),
                    format!(
                        "node `{}` names agent `{agent}`, which the registry does not know",
                        node.id
                    ),
                );
            }
        }
        if let Some(OnError::Fallback { fallback }) = &node.on_error {
            if !catalog.contains(fallback) {
                out.push(
                    ValidationCode::UnknownAgent,
                    format!("{pointer}/on_error"),
                    format!("node `{}` falls back to agent `{fallback}`, which the registry does not know", node.id),
                );
            }
        }
        let subgraph = match &node.subgraph {
            Some(name) => {
                match subgraphs.get(name.as_str()) {
                    Some(graph) => graph.clone(),
                    None => {
                        out.push(
                        ValidationCode::InvalidNode,
                        format!("{pointer}/subgraph"),
                        format!("node `{}` runs sub-graph `{name}`, which `subgraphs` does not define", node.id),
                    );
                        None
                    }
                }
            }
            None => None,
        };
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (input_index, reference) in node.inputs.iter().enumerate() {
            match parse_reference(reference, &index_of, &spec.state) {
                Ok(input) => {
                    if let InputRef::Graph { name } = &input {
                        graph_inputs.insert(name.to_string());
                    }
                    inputs.push(input);
                }
                Err(message) => out.push(
                    ValidationCode::UnknownInput,
                    format!("{pointer}/inputs/{input_index}"),
                    format!("node `{}`: {message}", node.id),
                ),
            }
        }
        let memory = node_memory(node, kind, &index_of, &pointer, &mut graph_inputs, out);
        let update_state = node_state_updates(node, &spec.state, &pointer, out);
        nodes.push(Node {
            id: Arc::from(node.id.as_str()),
            kind,
            agent: node.agent.as_deref().map(Arc::from),
            inputs,
            parallel_group: node.parallel_group.clone(),
            on_error: node.on_error.clone().unwrap_or(OnError::Simple(
                spec.execution.on_error.unwrap_or(SimpleStrategy::Retry),
            )),
            timeout: seconds(node.timeout_seconds),
            rules: node.rules.clone(),
            default_route: node.default_route.clone(),
            subgraph,
            memory,
            update_state,
            stream: node_streams(node, kind, &pointer, out),
            publish: node.publish.as_deref().map(Arc::from),
            wait_for_event: node_event_wait(spec, node, kind, &pointer, out),
        });
    }

    // Entries.
    let node_count = nodes.len();
    let mut in_degree = vec![0u32; node_count];
    for edge in &edges {
        in_degree[edge.to as usize] += 1;
    }
    let mut entries: Vec<u32> = Vec::new();
    if spec.entry.is_empty() {
        entries.extend((0..node_count as u32).filter(|&index| in_degree[index as usize] == 0));
    } else {
        for (entry_index, id) in spec.entry.iter().enumerate() {
            match index_of.get(id.as_str()) {
                Some(&index) => entries.push(index),
                None => out.push(
                    ValidationCode::MissingNode,
                    format!("{prefix}/entry/{entry_index}"),
                    format!("entry `{id}`: no node has this id"),
                ),
            }
        }
    }
    if entries.is_empty() && node_count > 0 {
        out.push(
            ValidationCode::NoEntry,
            format!("{prefix}/nodes"),
            "every node has an incoming edge: name the start nodes in `entry`".to_owned(),
        );
    }

    // Depth-first search from the entries, iteratively (a 10,000-node chain
    // must not overflow the stack): an edge to a node still on the stack
    // closes a cycle and becomes a back edge.
    let mut out_edges: Vec<Vec<u32>> = vec![Vec::new(); node_count];
    for (edge_index, edge) in edges.iter().enumerate() {
        out_edges[edge.from as usize].push(edge_index as u32);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks = vec![Mark::New; node_count];
    for &entry in &entries {
        if marks[entry as usize] != Mark::New {
            continue;
        }
        let mut stack: Vec<(u32, usize)> = vec![(entry, 0)];
        marks[entry as usize] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&edge_index) = out_edges[node as usize].get(*next) {
                *next += 1;
                let target = edges[edge_index as usize].to;
                match marks[target as usize] {
                    Mark::New => {
                        marks[target as usize] = Mark::OnStack;
                        stack.push((target, 0));
                    }
                    Mark::OnStack => edges[edge_index as usize].back = true,
                    Mark::Done => {}
                }
            } else {
                marks[node as usize] = Mark::Done;
                stack.pop();
            }
        }
    }
    if !entries.is_empty() {
        for (index, mark) in marks.iter().enumerate() {
            if *mark == Mark::New {
                out.push(
                    ValidationCode::Unreachable,
                    format!("{prefix}/nodes/{index}"),
                    format!(
                        "node `{}` cannot be reached from any entry node",
                        nodes[index].id
                    ),
                );
            }
        }
    }
    if spec.config.max_iterations.is_none() {
        for edge in edges
            .iter()
            .filter(|edge| edge.back && edge.max_traversals.is_none())
        {
            let pointer = spec
                .edges
                .iter()
                .position(|written| {
                    written
                        .from
                        .ids()
                        .iter()
                        .any(|id| index_of.get(id.as_str()) == Some(&edge.from))
                        && written
                            .to
                            .ids()
                            .iter()
                            .any(|id| index_of.get(id.as_str()) == Some(&edge.to))
                })
                .map(|position| format!("{prefix}/edges/{position}"))
                .unwrap_or_else(|| format!("{prefix}/nodes/{}", edge.to));
            out.push(
                ValidationCode::UnboundedCycle,
                pointer,
                format!(
                    "edge `{}` -> `{}` closes a cycle without a loop bound: set `max_traversals` on an edge of the cycle or `config.max_iterations`",
                    nodes[edge.from as usize].id, nodes[edge.to as usize].id
                ),
            );
        }
    }

    // Implicit inputs: a node that declares none receives its predecessors'
    // outputs, or the whole graph input when it has none.
    for (index, node) in nodes.iter_mut().enumerate() {
        if !spec.nodes[index].inputs.is_empty() {
            continue;
        }
        let mut seen = HashSet::new();
        for edge in edges.iter().filter(|edge| edge.to == index as u32) {
            if seen.insert(edge.from) {
                let label = format!("{}.output", spec.nodes[edge.from as usize].id);
                node.inputs.push(InputRef::Node {
                    node: edge.from,
                    path: None,
                    label: Arc::from(label),
                });
            }
        }
        if node.inputs.is_empty() {
            node.inputs.push(InputRef::WholeInput);
        }
    }

    let mut forward_in = vec![0u32; node_count];
    let mut back_in = vec![0u32; node_count];
    for edge in &edges {
        if edge.back {
            back_in[edge.to as usize] += 1;
        } else {
            forward_in[edge.to as usize] += 1;
        }
    }
    let sinks = (0..node_count as u32)
        .filter(|&index| out_edges[index as usize].is_empty())
        .collect();
    Some(Graph {
        name: Arc::from(spec.name.as_str()),
        description: spec.description.clone(),
        nodes,
        edges,
        entries,
        sinks,
        config: spec.config.clone(),
        execution: spec.execution.clone(),
        graph_inputs: graph_inputs.into_iter().collect(),
        state: spec.state.clone(),
        out_edges,
        forward_in,
        back_in,
    })
}

/// The most hits one memory read of a node asks for (the memory API's bound).
const MAX_MEMORY_TOP_K: u32 = 100;

/// Checks a node's `memory:`: only nodes that call an agent have one, a
/// query is an input reference, `top_k` is in range, a write takes the
/// output. Namespaces are not looked up here: whether they exist and the
/// caller may use them is decided at the call, by policy.
/// Whether a node streams its agent's answer: only a node that calls an
/// agent can.
fn node_streams(
    node: &NodeSpec,
    kind: NodeKind,
    pointer: &str,
    out: &mut Collector<'_, '_>,
) -> bool {
    if node.stream && !calls_an_agent(node, kind) {
        out.push(
            ValidationCode::InvalidNode,
            format!("{pointer}/stream"),
            format!(
                "node `{}` calls no agent, so it has nothing to stream",
                node.id
            ),
        );
        return false;
    }
    node.stream
}

/// A node's `wait_for_event`: only a node that calls an agent waits, for a
/// topic another node publishes.
fn node_event_wait(
    spec: &GraphSpec,
    node: &NodeSpec,
    kind: NodeKind,
    pointer: &str,
    out: &mut Collector<'_, '_>,
) -> Option<EventWait> {
    let wait = node.wait_for_event.as_ref()?;
    let at = format!("{pointer}/wait_for_event");
    if !calls_an_agent(node, kind) {
        out.push(
            ValidationCode::InvalidNode,
            at,
            format!(
                "node `{}` calls no agent, so it cannot wait for an event",
                node.id
            ),
        );
        return None;
    }
    let published = spec
        .nodes
        .iter()
        .any(|other| other.id != node.id && other.publish.as_deref() == Some(wait.topic.as_str()));
    if !published {
        out.push(
            ValidationCode::InvalidNode,
            format!("{at}/topic"),
            format!(
                "node `{}` waits for event `{}`, which no other node publishes",
                node.id, wait.topic
            ),
        );
        return None;
    }
    let Some(timeout) = seconds(Some(wait.timeout_seconds)) else {
        out.push(
            ValidationCode::InvalidNode,
            format!("{at}/timeout_seconds"),
            format!("node `{}`: timeout_seconds must be above 0", node.id),
        );
        return None;
    };
    Some(EventWait {
        topic: Arc::from(wait.topic.as_str()),
        timeout,
    })
}

/// Whether a node of `kind` calls its agent.
fn calls_an_agent(node: &NodeSpec, kind: NodeKind) -> bool {
    matches!(kind, NodeKind::Agent | NodeKind::Judge)
        || (kind == NodeKind::Router && node.agent.is_some())
}

fn node_memory(
    node: &NodeSpec,
    kind: NodeKind,
    index_of: &HashMap<&str, u32>,
    pointer: &str,
    graph_inputs: &mut BTreeSet<String>,
    out: &mut Collector<'_, '_>,
) -> NodeMemory {
    let mut memory = NodeMemory::default();
    let Some(spec) = &node.memory else {
        return memory;
    };
    if !calls_an_agent(node, kind) {
        out.push(
            ValidationCode::InvalidNode,
            format!("{pointer}/memory"),
            format!(
                "node `{}` calls no agent, so it cannot read or write memory",
                node.id
            ),
        );
        return memory;
    }
    for (index, read) in spec.read.iter().enumerate() {
        let at = format!("{pointer}/memory/read/{index}");
        if read.namespace.is_empty() {
            out.push(
                ValidationCode::InvalidNode,
                format!("{at}/namespace"),
                format!("node `{}`: a memory read needs a namespace", node.id),
            );
        }
        if !(1..=MAX_MEMORY_TOP_K).contains(&read.top_k) {
            out.push(
                ValidationCode::InvalidNode,
                format!("{at}/top_k"),
                format!(
                    "node `{}`: top_k must be between 1 and {MAX_MEMORY_TOP_K}, not {}",
                    node.id, read.top_k
                ),
            );
        }
        match parse_reference(&read.query, index_of, &BTreeMap::new()) {
            Ok(query) => {
                if let InputRef::Graph { name } = &query {
                    graph_inputs.insert(name.to_string());
                }
                memory.reads.push(MemoryRead {
                    namespace: Arc::from(read.namespace.as_str()),
                    query,
                    top_k: read.top_k,
                });
            }
            Err(message) => out.push(
                ValidationCode::UnknownInput,
                format!("{at}/query"),
                format!("node `{}`: memory query {message}", node.id),
            ),
        }
    }
    for (index, write) in spec.write.iter().enumerate() {
        let at = format!("{pointer}/memory/write/{index}");
        if write.namespace.is_empty() {
            out.push(
                ValidationCode::InvalidNode,
                format!("{at}/namespace"),
                format!("node `{}`: a memory write needs a namespace", node.id),
            );
        } else if write.from != "output" {
            out.push(
                ValidationCode::InvalidNode,
                format!("{at}/from"),
                format!(
                    "node `{}`: a memory write takes `from: output`, not `{}`",
                    node.id, write.from
                ),
            );
        } else {
            memory.writes.push(Arc::from(write.namespace.as_str()));
        }
    }
    memory
}

/// Checks the shared state's declaration (issue 20): `state` is no node's
/// id when the graph declares state, and each key's initial value fits its
/// reducer.
fn check_state(
    spec: &GraphSpec,
    index_of: &HashMap<&str, u32>,
    prefix: &str,
    out: &mut Collector<'_, '_>,
) {
    if spec.state.is_empty() {
        return;
    }
    if let Some(index) = index_of.get(STATE_PREFIX) {
        out.push(
            ValidationCode::InvalidNode,
            format!("{prefix}/nodes/{index}/id"),
            "node id `state` is reserved when the graph declares `state:`".to_owned(),
        );
    }
    for (key, declared) in &spec.state {
        let fits = match (declared.reducer, &declared.initial) {
            (_, None) | (Reducer::Last, Some(_)) => true,
            (Reducer::Append, Some(initial)) => initial.is_array(),
            (Reducer::Merge, Some(initial)) => initial.is_object(),
        };
        if !fits {
            out.push(
                ValidationCode::InvalidNode,
                format!("{prefix}/state/{key}/initial"),
                format!(
                    "state key `{key}`: an {} key's initial value must be a {}",
                    if declared.reducer == Reducer::Append {
                        "append"
                    } else {
                        "merge"
                    },
                    if declared.reducer == Reducer::Append {
                        "list"
                    } else {
                        "object"
                    },
                ),
            );
        }
    }
}

/// Checks a node's `update_state`: each key is declared, each source is
/// `output` or `output.<path>`.
fn node_state_updates(
    node: &NodeSpec,
    state: &BTreeMap<String, StateKeySpec>,
    pointer: &str,
    out: &mut Collector<'_, '_>,
) -> Vec<StateUpdate> {
    let mut updates = Vec::with_capacity(node.update_state.len());
    for (key, from) in &node.update_state {
        let at = format!("{pointer}/update_state/{key}");
        if !state.contains_key(key) {
            out.push(
                ValidationCode::InvalidNode,
                at,
                format!(
                    "node `{}` updates state key `{key}`, which `state:` does not declare",
                    node.id
                ),
            );
            continue;
        }
        let path = match from.split_once('.') {
            None if from == "output" => None,
            Some(("output", path)) if !path.is_empty() => Some(path.to_owned()),
            _ => {
                out.push(
                    ValidationCode::InvalidNode,
                    at,
                    format!("node `{}`: state key `{key}` is updated from `output` or `output.<path>`, not `{from}`", node.id),
                );
                continue;
            }
        };
        updates.push(StateUpdate {
            key: Arc::from(key.as_str()),
            path,
        });
    }
    updates
}

/// The reference prefix of shared state keys (`state.notes`).
const STATE_PREFIX: &str = "state";

/// Parses an input reference: `name` (graph input), `state.<key>` (when
/// the graph declares state) or `node.output[.path]`.
fn parse_reference(
    reference: &str,
    index_of: &HashMap<&str, u32>,
    state: &BTreeMap<String, StateKeySpec>,
) -> Result<InputRef, String> {
    if let Some(key) = reference
        .strip_prefix(STATE_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|_| !state.is_empty())
    {
        return if state.contains_key(key) {
            Ok(InputRef::State {
                key: Arc::from(key),
                label: Arc::from(reference),
            })
        } else {
            Err(format!(
                "input `{reference}` names state key `{key}`, which `state:` does not declare"
            ))
        };
    }
    match reference.split_once('.') {
        None if !reference.is_empty() => Ok(InputRef::Graph {
            name: Arc::from(reference),
        }),
        None => Err("empty input reference".to_owned()),
        Some((node, rest)) => {
            let path = match rest.split_once('.') {
                None if rest == "output" => None,
                Some(("output", path)) if !path.is_empty() => Some(path.to_owned()),
                _ => {
                    return Err(format!(
                        "input `{reference}` is neither a graph input nor `<node>.output`"
                    ))
                }
            };
            match index_of.get(node) {
                Some(&index) => Ok(InputRef::Node {
                    node: index,
                    path,
                    label: Arc::from(reference),
                }),
                None => Err(format!(
                    "input `{reference}` refers to node `{node}`, which does not exist"
                )),
            }
        }
    }
}
