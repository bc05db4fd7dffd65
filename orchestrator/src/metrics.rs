//! The §8.2 metrics in a small in-crate registry, rendered in the Prometheus
//! text format (the gateway serves it at `/metrics`).
//!
//! A run is recorded once, when it ends, so a node call costs no lock.
//!
//! Graph and agent names are chosen by callers, so label values are
//! bounded (issue 15): the first `label_cap` distinct graph names, and
//! agent names, get series of their own; later names share [`OTHER`].

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::run_state::{ExecutionStatus, RunState};

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const COUNT_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0, 10000.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The label value every name beyond the cap is folded into.
pub const OTHER: &str = "other";

/// Distinct graph names (and agent names) with series of their own, by
/// default.
pub const DEFAULT_MAX_LABELS: usize = 100;

/// Names admitted as label values, at most `cap` of them.
#[derive(Debug, Default)]
struct Labels {
    admitted: HashSet<String>,
}

impl Labels {
    /// `name` when it is admitted or there is room for it, else [`OTHER`].
    fn label<'a>(&mut self, name: &'a str, cap: usize) -> &'a str {
        if self.admitted.contains(name) {
            return name;
        }
        if self.admitted.len() < cap && name != OTHER {
            self.admitted.insert(name.to_owned());
            return name;
        }
        OTHER
    }
}

#[derive(Debug, Default)]
struct Registry {
    graphs: Labels,
    agents: Labels,
    runs: BTreeMap<(String, &'static str), u64>,
    agents_per_run: BTreeMap<String, Histogram>,
    node_executions: BTreeMap<String, BTreeMap<&'static str, u64>>,
    tokens_in: BTreeMap<String, u64>,
    tokens_out: BTreeMap<String, u64>,
    tool_calls: BTreeMap<String, u64>,
    node_duration: BTreeMap<String, Histogram>,
    checkpoints: u64,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, by: u64) {
    match map.get_mut(key) {
        Some(value) => *value += by,
        None => {
            map.insert(key.to_owned(), by);
        }
    }
}

/// Orchestrator metrics: runs, agents spawned per run, tokens and tool calls
/// per agent, latency per node, success and failure counts, checkpoints.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    label_cap: usize,
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
            registry: Mutex::new(Registry::default()),
            label_cap,
        }
    }

    /// Records a finished run.
    pub fn record_run(&self, state: &RunState) {
        let Ok(mut registry) = self.registry.lock() else {
            return;
        };
        let registry = &mut *registry;
        let cap = self.label_cap;
        let graph = registry.graphs.label(&state.graph_id, cap).to_owned();
        *registry
            .runs
            .entry((graph.clone(), state.status.as_str()))
            .or_insert(0) += 1;
        let spawned = state
            .executions
            .iter()
            .filter(|execution| execution.status != ExecutionStatus::Skipped)
            .count();
        registry
            .agents_per_run
            .entry(graph)
            .or_insert_with(|| Histogram::new(&COUNT_BUCKETS))
            .observe(spawned as f64);
        for execution in &state.executions {
            let agent = registry.agents.label(&execution.agent, cap);
            match registry.node_executions.get_mut(agent) {
                Some(by_status) => *by_status.entry(execution.status.as_str()).or_insert(0) += 1,
                None => {
                    registry.node_executions.insert(
                        agent.to_owned(),
                        BTreeMap::from([(execution.status.as_str(), 1)]),
                    );
                }
            }
            bump(&mut registry.tokens_in, agent, execution.usage.tokens_in);
            bump(&mut registry.tokens_out, agent, execution.usage.tokens_out);
            bump(&mut registry.tool_calls, agent, execution.usage.tool_calls);
            let seconds = (execution.end_time - execution.start_time)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64
                / 1e6;
            match registry.node_duration.get_mut(agent) {
                Some(histogram) => histogram.observe(seconds),
                None => {
                    let mut histogram = Histogram::new(&DURATION_BUCKETS);
                    histogram.observe(seconds);
                    registry.node_duration.insert(agent.to_owned(), histogram);
                }
            }
        }
    }

    /// Counts a checkpoint written (durable runs, issue 8).
    pub fn record_checkpoint(&self) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.checkpoints += 1;
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let Ok(registry) = self.registry.lock() else {
            return out;
        };
        out.push_str("# HELP convergio_graph_runs_total Graph runs by final status.\n# TYPE convergio_graph_runs_total counter\n");
        for ((graph, status), count) in &registry.runs {
            let _ = writeln!(
                out,
                "convergio_graph_runs_total{{graph=\"{}\",status=\"{status}\"}} {count}",
                escape(graph)
            );
        }
        out.push_str("# HELP convergio_graph_agents_spawned Agent calls per graph run.\n# TYPE convergio_graph_agents_spawned histogram\n");
        for (graph, histogram) in &registry.agents_per_run {
            histogram.render(
                &mut out,
                "convergio_graph_agents_spawned",
                &format!("graph=\"{}\"", escape(graph)),
            );
        }
        out.push_str("# HELP convergio_node_executions_total Node executions by agent and outcome.\n# TYPE convergio_node_executions_total counter\n");
        for (agent, by_status) in &registry.node_executions {
            for (status, count) in by_status {
                let _ = writeln!(
                    out,
                    "convergio_node_executions_total{{agent=\"{}\",status=\"{status}\"}} {count}",
                    escape(agent)
                );
            }
        }
        out.push_str("# HELP convergio_agent_tokens_total Tokens reported by agents.\n# TYPE convergio_agent_tokens_total counter\n");
        for (agent, count) in &registry.tokens_in {
            let _ = writeln!(
                out,
                "convergio_agent_tokens_total{{agent=\"{}\",direction=\"in\"}} {count}",
                escape(agent)
            );
        }
        for (agent, count) in &registry.tokens_out {
            let _ = writeln!(
                out,
                "convergio_agent_tokens_total{{agent=\"{}\",direction=\"out\"}} {count}",
                escape(agent)
            );
        }
        out.push_str("# HELP convergio_agent_tool_calls_total Tool calls reported by agents.\n# TYPE convergio_agent_tool_calls_total counter\n");
        for (agent, count) in &registry.tool_calls {
            let _ = writeln!(
                out,
                "convergio_agent_tool_calls_total{{agent=\"{}\"}} {count}",
                escape(agent)
            );
        }
        out.push_str("# HELP convergio_node_duration_seconds Node latency by agent.\n# TYPE convergio_node_duration_seconds histogram\n");
        for (agent, histogram) in &registry.node_duration {
            histogram.render(
                &mut out,
                "convergio_node_duration_seconds",
                &format!("agent=\"{}\"", escape(agent)),
            );
        }
        out.push_str("# HELP convergio_checkpoints_total Checkpoints written.\n# TYPE convergio_checkpoints_total counter\n");
        let _ = writeln!(out, "convergio_checkpoints_total {}", registry.checkpoints);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
