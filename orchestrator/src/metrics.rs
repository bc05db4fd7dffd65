//! The §8.2 metrics as `prometheus-client` families (the gateway serves
//! them at `/metrics` beside its own, see [`Metrics::register`]).
//!
//! A run is recorded once, when it ends, so a node call costs no lock.
//!
//! Graph and agent names are chosen by callers, so label values are
//! bounded (issue 15): the first `label_cap` distinct graph names, and
//! agent names, get series of their own; later names share [`OTHER`].

use std::collections::HashSet;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::run_state::{ExecutionStatus, RunState};

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const COUNT_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0, 10000.0];

/// The label value every name beyond the cap is folded into.
pub const OTHER: &str = "other";

/// Distinct graph names (and agent names) with series of their own, by
/// default.
pub const DEFAULT_MAX_LABELS: usize = 100;

/// Names admitted as label values, at most `cap` of them: the fold every
/// caller-chosen label in `/metrics` goes through (the gateway's `agent`
/// label too).
#[derive(Debug, Default)]
pub struct LabelFold {
    admitted: RwLock<HashSet<String>>,
    cap: usize,
}

// === impl LabelFold ===

impl LabelFold {
    /// A fold admitting at most `cap` distinct names.
    pub fn new(cap: usize) -> Self {
        Self {
            admitted: RwLock::new(HashSet::new()),
            cap,
        }
    }

    /// `name` when it is admitted or there is room for it, else [`OTHER`].
    /// Names seen before take only the shared lock (every gateway request
    /// naming an agent asks).
    pub fn label(&self, name: &str) -> String {
        if let Ok(admitted) = self.admitted.read() {
            if admitted.contains(name) {
                return name.to_owned();
            }
            if admitted.len() >= self.cap {
                return OTHER.to_owned();
            }
        }
        let Ok(mut admitted) = self.admitted.write() else {
            return OTHER.to_owned();
        };
        if admitted.contains(name) {
            return name.to_owned();
        }
        if admitted.len() < self.cap && name != OTHER {
            admitted.insert(name.to_owned());
            return name.to_owned();
        }
        OTHER.to_owned()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraphStatus {
    graph: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraphLabel {
    graph: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentStatus {
    agent: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentDirection {
    agent: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn count_histogram() -> Histogram {
    Histogram::new(COUNT_BUCKETS)
}

/// Orchestrator metrics: runs, agents spawned per run, tokens and tool calls
/// per agent, latency per node, success and failure counts, checkpoints.
#[derive(Debug)]
pub struct Metrics {
    graphs: LabelFold,
    agents: LabelFold,
    runs: Family<GraphStatus, Counter>,
    agents_per_run: HistogramFamily<GraphLabel>,
    node_executions: Family<AgentStatus, Counter>,
    tokens: Family<AgentDirection, Counter>,
    tool_calls: Family<AgentLabel, Counter>,
    node_duration: HistogramFamily<AgentLabel>,
    checkpoints: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_label_cap(DEFAULT_MAX_LABELS)
    }
}

// === impl Metrics ===

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry giving at most `label_cap` graph names, and
    /// `label_cap` agent names, series of their own.
    pub fn with_label_cap(label_cap: usize) -> Self {
        Self {
            graphs: LabelFold::new(label_cap),
            agents: LabelFold::new(label_cap),
            runs: Family::default(),
            agents_per_run: Family::new_with_constructor(count_histogram),
            node_executions: Family::default(),
            tokens: Family::default(),
            tool_calls: Family::default(),
            node_duration: Family::new_with_constructor(duration_histogram),
            checkpoints: Counter::default(),
        }
    }

    /// Records a finished run.
    pub fn record_run(&self, state: &RunState) {
        let graph = self.graphs.label(&state.graph_id);
        self.runs
            .get_or_create(&GraphStatus {
                graph: graph.clone(),
                status: state.status.as_str(),
            })
            .inc();
        let spawned = state
            .executions
            .iter()
            .filter(|execution| execution.status != ExecutionStatus::Skipped)
            .count();
        self.agents_per_run
            .get_or_create(&GraphLabel { graph })
            .observe(spawned as f64);
        for execution in &state.executions {
            let agent = self.agents.label(&execution.agent);
            self.node_executions
                .get_or_create(&AgentStatus {
                    agent: agent.clone(),
                    status: execution.status.as_str(),
                })
                .inc();
            for (direction, count) in [
                ("in", execution.usage.tokens_in),
                ("out", execution.usage.tokens_out),
            ] {
                self.tokens
                    .get_or_create(&AgentDirection {
                        agent: agent.clone(),
                        direction,
                    })
                    .inc_by(count);
            }
            let label = AgentLabel { agent };
            self.tool_calls
                .get_or_create(&label)
                .inc_by(execution.usage.tool_calls);
            let seconds = (execution.end_time - execution.start_time)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64
                / 1e6;
            self.node_duration.get_or_create(&label).observe(seconds);
        }
    }

    /// Counts a checkpoint written (durable runs, issue 8).
    pub fn record_checkpoint(&self) {
        self.checkpoints.inc();
    }

    /// Adds these families to `registry` (handles: later records show in
    /// every registry they were added to). Counter names gain `_total` in
    /// the exposition.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "convergio_graph_runs",
            "Graph runs by final status",
            self.runs.clone(),
        );
        registry.register(
            "convergio_graph_agents_spawned",
            "Agent calls per graph run",
            self.agents_per_run.clone(),
        );
        registry.register(
            "convergio_node_executions",
            "Node executions by agent and outcome",
            self.node_executions.clone(),
        );
        registry.register(
            "convergio_agent_tokens",
            "Tokens reported by agents",
            self.tokens.clone(),
        );
        registry.register(
            "convergio_agent_tool_calls",
            "Tool calls reported by agents",
            self.tool_calls.clone(),
        );
        registry.register(
            "convergio_node_duration_seconds",
            "Node latency by agent",
            self.node_duration.clone(),
        );
        registry.register(
            "convergio_checkpoints",
            "Checkpoints written",
            self.checkpoints.clone(),
        );
    }

    /// These metrics alone in the Prometheus text format (0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::journal::RunHeader;
    use crate::validate::{AnyAgent, Limits};

    fn finished(graph_id: &str) -> RunState {
        let graph = Graph::new(graph_id)
            .add_node("only", "echo")
            .build(&AnyAgent, &Limits::default())
            .expect("a one-node graph is valid");
        let header = RunHeader {
            run_id: uuid::Uuid::now_v7(),
            graph_id: graph_id.to_owned(),
            trace_id: String::new(),
            input: serde_json::Value::Null,
            caller: None,
            origin: None,
            started_at: chrono::Utc::now(),
            replan: None,
        };
        let mut state = RunState::fresh(&graph, &header);
        state.status = crate::RunStatus::Succeeded;
        state
    }

    // Regression: issue #15, defect 11
    #[test]
    fn graph_names_beyond_the_cap_fold_into_other() {
        let metrics = Metrics::with_label_cap(3);
        for index in 0..500 {
            metrics.record_run(&finished(&format!("graph-{index}")));
        }
        let text = metrics.render_prometheus();
        let runs: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("convergio_graph_runs_total{"))
            .collect();
        assert_eq!(runs.len(), 4, "{runs:?}");
        assert!(
            text.contains("convergio_graph_runs_total{graph=\"other\",status=\"succeeded\"} 497"),
            "{text}"
        );
        assert!(text.len() < 8 * 1024, "{} bytes", text.len());
    }
}
