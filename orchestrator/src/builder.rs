//! The Rust builder, mirroring the design document's §4.2:
//!
//! ```
//! use convergio_orchestrator::{AnyAgent, Graph, Limits};
//!
//! let graph = Graph::new("code_review")
//!     .add_node("analyze", "code_analyzer")
//!     .add_parallel("review", ["security_expert", "performance_expert", "style_checker"])
//!     .add_node("aggregate", "review_aggregator")
//!     .add_node("report", "report_generator")
//!     .connect("analyze", "review")
//!     .connect("review", "aggregate")
//!     .connect("aggregate", "report")
//!     .build(&AnyAgent, &Limits::default())
//!     .expect("valid graph");
//! assert_eq!(graph.nodes.len(), 6);
//! ```
//!
//! The builder writes a [`GraphSpec`], the same type the YAML parses into,
//! and [`GraphBuilder::build`] runs the same validation, so both produce the
//! same [`Graph`]. `connect` accepts a parallel group's name on either side,
//! meaning every member.

use std::collections::BTreeMap;

use crate::dsl::{
    Condition, EdgeSpec, ExecutionSpec, GraphConfig, GraphSpec, NodeKind, NodeSpec, OnError,
    OneOrMany, Reducer, RouteRule, StateKeySpec, When,
};
use crate::graph::Graph;
use crate::validate::{validate, AgentCatalog, Limits, ValidationError};

/// Builds a [`GraphSpec`] in code.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    spec: GraphSpec,
    groups: BTreeMap<String, Vec<String>>,
    /// The nodes added by the last `add_*` call (all members of a group).
    last: std::ops::Range<usize>,
}

/// A member of a parallel group: an agent (its name is also the node id) or
/// an `(id, agent)` pair.
#[derive(Debug, Clone)]
pub struct Member {
    id: String,
    agent: String,
}

impl From<&str> for Member {
    fn from(agent: &str) -> Self {
        Self {
            id: agent.to_owned(),
            agent: agent.to_owned(),
        }
    }
}

impl From<(&str, &str)> for Member {
    fn from((id, agent): (&str, &str)) -> Self {
        Self {
            id: id.to_owned(),
            agent: agent.to_owned(),
        }
    }
}

// === impl Graph ===

impl Graph {
    /// Starts a builder for a graph called `name` (§4.2 `new Graph(name)`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            spec: GraphSpec {
                name: name.to_owned(),
                description: None,
                nodes: Vec::new(),
                edges: Vec::new(),
                entry: Vec::new(),
                config: GraphConfig::default(),
                execution: ExecutionSpec::default(),
                subgraphs: BTreeMap::new(),
                state: BTreeMap::new(),
                source: None,
            },
            groups: BTreeMap::new(),
            last: 0..0,
        }
    }
}

fn node(id: &str, agent: Option<&str>) -> NodeSpec {
    NodeSpec {
        id: id.to_owned(),
        agent: agent.map(str::to_owned),
        kind: NodeKind::Agent,
        inputs: Vec::new(),
        parallel_group: None,
        wait_for: Vec::new(),
        on_error: None,
        timeout_seconds: None,
        rules: Vec::new(),
        default_route: None,
        subgraph: None,
        memory: None,
        update_state: BTreeMap::new(),
        stream: false,
        publish: None,
        wait_for_event: None,
    }
}

// === impl GraphBuilder ===

impl GraphBuilder {
    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.spec.description = Some(description.to_owned());
        self
    }

    /// Adds an agent node.
    pub fn add_node(self, id: &str, agent: &str) -> Self {
        self.push(node(id, Some(agent)))
    }

    /// Adds a fully specified node.
    pub fn add_node_spec(self, node: NodeSpec) -> Self {
        self.push(node)
    }

    /// Adds a judge node (an agent whose reply decides conditional edges).
    pub fn add_judge(self, id: &str, agent: &str) -> Self {
        let mut judge = node(id, Some(agent));
        judge.kind = NodeKind::Judge;
        self.push(judge)
    }

    /// Adds a router that picks a label by rules, without calling an agent.
    pub fn add_rule_router(
        self,
        id: &str,
        rules: Vec<(Condition, &str)>,
        default_route: Option<&str>,
    ) -> Self {
        let mut router = node(id, None);
        router.kind = NodeKind::Router;
        router.rules = rules
            .into_iter()
            .map(|(when, route)| RouteRule {
                when,
                route: route.to_owned(),
            })
            .collect();
        router.default_route = default_route.map(str::to_owned);
        self.push(router)
    }

    /// Adds a node running the sub-graph `subgraph` (added with
    /// [`Self::subgraph`]).
    pub fn add_subgraph_node(self, id: &str, subgraph: &str) -> Self {
        let mut runner = node(id, None);
        runner.kind = NodeKind::Subgraph;
        runner.subgraph = Some(subgraph.to_owned());
        self.push(runner)
    }

    /// Adds parallel nodes in group `group` (§4.2 `addParallel`).
    pub fn add_parallel<I, M>(mut self, group: &str, members: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<Member>,
    {
        let start = self.spec.nodes.len();
        let ids = self.groups.entry(group.to_owned()).or_default();
        for member in members {
            let member: Member = member.into();
            let mut parallel = node(&member.id, Some(&member.agent));
            parallel.parallel_group = Some(group.to_owned());
            ids.push(member.id);
            self.spec.nodes.push(parallel);
        }
        self.last = start..self.spec.nodes.len();
        self
    }

    fn push(mut self, node: NodeSpec) -> Self {
        self.spec.nodes.push(node);
        self.last = self.spec.nodes.len() - 1..self.spec.nodes.len();
        self
    }

    fn last_nodes(&mut self) -> &mut [NodeSpec] {
        let range = self.last.clone();
        &mut self.spec.nodes[range]
    }

    /// Sets the inputs of the nodes the last `add_*` call added.
    pub fn with_inputs<I, S>(mut self, inputs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let inputs: Vec<String> = inputs.into_iter().map(Into::into).collect();
        for last in self.last_nodes() {
            last.inputs = inputs.clone();
        }
        self
    }

    /// Sets the error strategy of the nodes the last `add_*` call added.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        for last in self.last_nodes() {
            last.on_error = Some(on_error.clone());
        }
        self
    }

    /// Declares shared state key `key` with `reducer` (issue 20); nodes
    /// read it as input `state.<key>`.
    pub fn state(mut self, key: &str, reducer: Reducer) -> Self {
        self.spec.state.insert(
            key.to_owned(),
            StateKeySpec {
                reducer,
                initial: None,
            },
        );
        self
    }

    /// Makes the nodes the last `add_*` call added update state `key` from
    /// `from` (`output` or `output.<path>`) when they succeed.
    pub fn update_state(mut self, key: &str, from: &str) -> Self {
        for last in self.last_nodes() {
            last.update_state.insert(key.to_owned(), from.to_owned());
        }
        self
    }

    /// Makes the nodes the last `add_*` call added call their agent with
    /// `SendStreamingMessage`, its events reaching the run's event stream.
    pub fn stream(mut self) -> Self {
        for last in self.last_nodes() {
            last.stream = true;
        }
        self
    }

    /// Makes the nodes the last `add_*` call added publish their output to
    /// the run's `topic` when they succeed.
    pub fn publish(mut self, topic: &str) -> Self {
        for last in self.last_nodes() {
            last.publish = Some(topic.to_owned());
        }
        self
    }

    /// Makes the nodes the last `add_*` call added wait up to
    /// `timeout_seconds` for an event on the run's `topic` before calling
    /// their agent.
    pub fn wait_for_event(mut self, topic: &str, timeout_seconds: f64) -> Self {
        for last in self.last_nodes() {
            last.wait_for_event = Some(crate::dsl::WaitForEventSpec {
                topic: topic.to_owned(),
                timeout_seconds,
            });
        }
        self
    }

    /// Makes the nodes the last `add_*` call added wait for every member of `group`.
    pub fn wait_for(mut self, group: &str) -> Self {
        for last in self.last_nodes() {
            last.wait_for.push(group.to_owned());
        }
        self
    }

    fn expand(&self, name: &str) -> OneOrMany {
        match self.groups.get(name) {
            Some(members) => OneOrMany::Many(members.clone()),
            None => OneOrMany::One(name.to_owned()),
        }
    }

    /// Connects two nodes (or groups, meaning every member).
    pub fn connect(mut self, from: &str, to: &str) -> Self {
        let edge = EdgeSpec {
            from: self.expand(from),
            to: self.expand(to),
            when: None,
            max_traversals: None,
        };
        self.spec.edges.push(edge);
        self
    }

    /// Connects with a condition and an optional traversal bound.
    pub fn connect_when(
        mut self,
        from: &str,
        to: &str,
        when: When,
        max_traversals: Option<u32>,
    ) -> Self {
        let edge = EdgeSpec {
            from: self.expand(from),
            to: self.expand(to),
            when: Some(when),
            max_traversals,
        };
        self.spec.edges.push(edge);
        self
    }

    /// Names the start nodes.
    pub fn entry(mut self, id: &str) -> Self {
        self.spec.entry.push(id.to_owned());
        self
    }

    /// Sets §4.1 `config`.
    pub fn config(mut self, config: GraphConfig) -> Self {
        self.spec.config = config;
        self
    }

    /// Sets §7.2 `execution`.
    pub fn execution(mut self, execution: ExecutionSpec) -> Self {
        self.spec.execution = execution;
        self
    }

    /// Adds a named sub-graph.
    pub fn subgraph(mut self, name: &str, subgraph: GraphBuilder) -> Self {
        self.spec.subgraphs.insert(name.to_owned(), subgraph.spec);
        self
    }

    /// The spec written so far.
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    /// Validates into a runnable graph.
    pub fn build(
        &self,
        catalog: &dyn AgentCatalog,
        limits: &Limits,
    ) -> Result<Graph, Vec<ValidationError>> {
        validate(&self.spec, catalog, limits)
    }
}
