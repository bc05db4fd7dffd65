//! The §8.2 metrics as `prometheus-client` families (the gateway serves
//! them at `/metrics` beside its own, see [`Metrics::register`]).
//!
//! A run is recorded once, when it ends, so a node call costs no lock.
//!
//! Graph and agent names are chosen by callers, so label values are
//! bounded (issue 15): the first `label_cap` distinct graph names, and
//! agent names, get series of their own; later names share [`OTHER`].

use std::collections::{HashMap, HashSet};
use std::sync::{OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::run_state::{ExecutionStatus, NodeExecution, RunState, RunStatus};

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
    families: Families,
    /// The series of every label value recorded so far; see [`SeriesCache`].
    series: RwLock<SeriesCache>,
    checkpoints: Counter,
}

/// The families, each series of which the gateway renders.
#[derive(Debug)]
struct Families {
    runs: Family<GraphStatus, Counter>,
    agents_per_run: HistogramFamily<GraphLabel>,
    node_executions: Family<AgentStatus, Counter>,
    tokens: Family<AgentDirection, Counter>,
    tool_calls: Family<AgentLabel, Counter>,
    node_duration: HistogramFamily<AgentLabel>,
}

/// Handles to the series of each graph and agent label value, looked up
/// once per run under one shared lock.
///
/// A prometheus-client counter or histogram is a handle sharing its
/// family's storage, so recording through a kept handle is recording into
/// the family (the crate's intended fast path). Looking each series up per
/// node execution instead (a fold, then five `get_or_create` in four
/// families, each hashing an owned label set with SipHash under the
/// family's lock) was over 1,000 instructions and six shared locks per
/// node, taken from every worker thread.
///
/// Keys are label values: admitted names, and [`OTHER`] once a name was
/// folded. The fold admits at most its cap, so the cache holds at most
/// cap + 1 graphs and as many agents. Names are admitted only under the
/// write lock, with their series added at once, so once a fold is full a
/// name that is not a key is one folded into [`OTHER`].
#[derive(Debug, Default)]
struct SeriesCache {
    graphs: HashMap<String, GraphSeries>,
    agents: HashMap<String, AgentSeries>,
    graphs_full: bool,
    agents_full: bool,
}

/// Run statuses with a counter slot of their own in [`GraphSeries`]; a
/// status beyond them (a variant added later) is looked up in its family.
const RUN_STATUSES: usize = 9;

/// Execution statuses in the order of their slots in [`AgentSeries`] and
/// [`AgentCounts`] (see [`execution_slot`]).
const EXECUTION_ORDER: [ExecutionStatus; 3] = [
    ExecutionStatus::Success,
    ExecutionStatus::Failed,
    ExecutionStatus::Skipped,
];

/// Execution statuses with a counter slot in [`AgentSeries`].
const EXECUTION_STATUSES: usize = EXECUTION_ORDER.len();

/// The slot of `status` in [`EXECUTION_ORDER`].
fn execution_slot(status: ExecutionStatus) -> usize {
    match status {
        ExecutionStatus::Success => 0,
        ExecutionStatus::Failed => 1,
        ExecutionStatus::Skipped => 2,
    }
}

/// One graph label value's series.
#[derive(Debug)]
struct GraphSeries {
    label: String,
    /// Runs by final status, each made on first use so that `/metrics`
    /// lists only statuses that happened.
    runs: [OnceLock<Counter>; RUN_STATUSES],
    agents_per_run: Histogram,
}

/// One agent label value's series.
#[derive(Debug)]
struct AgentSeries {
    label: String,
    /// Executions by status, each made on first use.
    executions: [OnceLock<Counter>; EXECUTION_STATUSES],
    tokens_in: Counter,
    tokens_out: Counter,
    tool_calls: Counter,
    node_duration: Histogram,
}

/// Counts of consecutive executions of one agent in a run (fan-outs and
/// chains call one agent many times), added to its counters at once.
struct AgentCounts<'a> {
    series: &'a AgentSeries,
    executions: [u64; EXECUTION_STATUSES],
    tokens_in: u64,
    tokens_out: u64,
    tool_calls: u64,
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
            families: Families {
                runs: Family::default(),
                agents_per_run: Family::new_with_constructor(count_histogram),
                node_executions: Family::default(),
                tokens: Family::default(),
                tool_calls: Family::default(),
                node_duration: Family::new_with_constructor(duration_histogram),
            },
            series: RwLock::new(SeriesCache::default()),
            checkpoints: Counter::default(),
        }
    }

    /// Records a finished run.
    pub fn record_run(&self, state: &RunState) {
        // The cache is only ever added to, whole entries at a time, so a
        // panic elsewhere while it was locked leaves nothing half made.
        let recorded = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .record(state, &self.families);
        if recorded {
            return;
        }
        // A name not seen yet: admit or fold it, add its series, record.
        {
            let mut cache = self.series.write().unwrap_or_else(PoisonError::into_inner);
            cache.add_graph(&state.graph_id, &self.graphs, &self.families);
            for execution in &state.executions {
                cache.add_agent(&execution.agent, &self.agents, &self.families);
            }
        }
        let recorded = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .record(state, &self.families);
        debug_assert!(recorded, "every name of the run has its series now");
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
            self.families.runs.clone(),
        );
        registry.register(
            "convergio_graph_agents_spawned",
            "Agent calls per graph run",
            self.families.agents_per_run.clone(),
        );
        registry.register(
            "convergio_node_executions",
            "Node executions by agent and outcome",
            self.families.node_executions.clone(),
        );
        registry.register(
            "convergio_agent_tokens",
            "Tokens reported by agents",
            self.families.tokens.clone(),
        );
        registry.register(
            "convergio_agent_tool_calls",
            "Tool calls reported by agents",
            self.families.tool_calls.clone(),
        );
        registry.register(
            "convergio_node_duration_seconds",
            "Node latency by agent",
            self.families.node_duration.clone(),
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

// === impl SeriesCache ===

impl SeriesCache {
    /// Records `state` through cached handles; `false`, recording nothing,
    /// when a name has no series yet.
    fn record(&self, state: &RunState, families: &Families) -> bool {
        let Some(graph) = Self::lookup(&self.graphs, self.graphs_full, &state.graph_id) else {
            return false;
        };
        // Resolve every agent first, so a miss records nothing.
        let mut agents = Vec::with_capacity(state.executions.len());
        let mut last: Option<(&str, &AgentSeries)> = None;
        for execution in &state.executions {
            let series = match last {
                Some((name, series)) if name == execution.agent => series,
                _ => match Self::lookup(&self.agents, self.agents_full, &execution.agent) {
                    Some(series) => series,
                    None => return false,
                },
            };
            last = Some((&execution.agent, series));
            agents.push(series);
        }
        graph.count_run(state.status, families);
        let spawned = state
            .executions
            .iter()
            .filter(|execution| execution.status != ExecutionStatus::Skipped)
            .count();
        graph.agents_per_run.observe(spawned as f64);
        let mut counts: Option<AgentCounts<'_>> = None;
        for (execution, series) in state.executions.iter().zip(agents) {
            let counts = match &mut counts {
                Some(counts) if std::ptr::eq(counts.series, series) => counts,
                slot => {
                    if let Some(done) = slot.take() {
                        done.add(families);
                    }
                    slot.insert(AgentCounts::new(series))
                }
            };
            counts.count(execution);
            let seconds = (execution.end_time - execution.start_time)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64
                / 1e6;
            series.node_duration.observe(seconds);
        }
        if let Some(done) = counts {
            done.add(families);
        }
        true
    }

    /// The series of `name`: its own, or [`OTHER`]'s once the fold is full
    /// and `name` is not among the admitted.
    fn lookup<'a, S>(series: &'a HashMap<String, S>, full: bool, name: &str) -> Option<&'a S> {
        series
            .get(name)
            .or_else(|| full.then(|| series.get(OTHER)).flatten())
    }

    fn add_graph(&mut self, name: &str, fold: &LabelFold, families: &Families) {
        Self::add(
            &mut self.graphs,
            &mut self.graphs_full,
            name,
            fold,
            |label| GraphSeries::new(label, families),
        );
    }

    fn add_agent(&mut self, name: &str, fold: &LabelFold, families: &Families) {
        Self::add(
            &mut self.agents,
            &mut self.agents_full,
            name,
            fold,
            |label| AgentSeries::new(label, families),
        );
    }

    /// Admits `name` to `fold` (or folds it) and makes its label's series
    /// unless they exist.
    fn add<S>(
        series: &mut HashMap<String, S>,
        full: &mut bool,
        name: &str,
        fold: &LabelFold,
        make: impl FnOnce(String) -> S,
    ) {
        if Self::lookup(series, *full, name).is_some() {
            return;
        }
        let label = fold.label(name);
        // The fold answers OTHER for another name only once it is full.
        *full |= label == OTHER && name != OTHER;
        series
            .entry(label)
            .or_insert_with_key(|label| make(label.clone()));
    }
}

// === impl GraphSeries ===

impl GraphSeries {
    fn new(label: String, families: &Families) -> Self {
        let agents_per_run = families.agents_per_run.get_or_create_owned(&GraphLabel {
            graph: label.clone(),
        });
        Self {
            label,
            runs: Default::default(),
            agents_per_run,
        }
    }

    /// Counts a run ending `status` (its counter made on first use).
    fn count_run(&self, status: RunStatus, families: &Families) {
        let labels = || GraphStatus {
            graph: self.label.clone(),
            status: status.as_str(),
        };
        match self.runs.get(status as usize) {
            Some(slot) => slot
                .get_or_init(|| families.runs.get_or_create_owned(&labels()))
                .inc(),
            None => families.runs.get_or_create(&labels()).inc(),
        };
    }
}

// === impl AgentSeries ===

impl AgentSeries {
    fn new(label: String, families: &Families) -> Self {
        let direction = |direction| {
            families.tokens.get_or_create_owned(&AgentDirection {
                agent: label.clone(),
                direction,
            })
        };
        let agent = AgentLabel {
            agent: label.clone(),
        };
        Self {
            tokens_in: direction("in"),
            tokens_out: direction("out"),
            tool_calls: families.tool_calls.get_or_create_owned(&agent),
            node_duration: families.node_duration.get_or_create_owned(&agent),
            executions: Default::default(),
            label,
        }
    }

    /// The counter of executions ending `status`, made on first use.
    fn execution_counter(&self, status: ExecutionStatus, families: &Families) -> &Counter {
        self.executions[execution_slot(status)].get_or_init(|| {
            families.node_executions.get_or_create_owned(&AgentStatus {
                agent: self.label.clone(),
                status: status.as_str(),
            })
        })
    }
}

// === impl AgentCounts ===

impl<'a> AgentCounts<'a> {
    fn new(series: &'a AgentSeries) -> Self {
        Self {
            series,
            executions: [0; EXECUTION_STATUSES],
            tokens_in: 0,
            tokens_out: 0,
            tool_calls: 0,
        }
    }

    fn count(&mut self, execution: &NodeExecution) {
        self.executions[execution_slot(execution.status)] += 1;
        let usage = &execution.usage;
        self.tokens_in = self.tokens_in.saturating_add(usage.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(usage.tokens_out);
        self.tool_calls = self.tool_calls.saturating_add(usage.tool_calls);
    }

    /// Adds the counts to the agent's counters. The token and tool call
    /// series exist from the agent's first execution; adding zero to them
    /// would only contend for their cache lines across threads.
    fn add(self, families: &Families) {
        for (status, count) in EXECUTION_ORDER.into_iter().zip(self.executions) {
            if count > 0 {
                self.series
                    .execution_counter(status, families)
                    .inc_by(count);
            }
        }
        for (counter, count) in [
            (&self.series.tokens_in, self.tokens_in),
            (&self.series.tokens_out, self.tokens_out),
            (&self.series.tool_calls, self.tool_calls),
        ] {
            if count > 0 {
                counter.inc_by(count);
            }
        }
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

    fn execution(agent: &str, status: ExecutionStatus, tokens_in: u64) -> NodeExecution {
        let now = chrono::Utc::now();
        NodeExecution {
            node_id: agent.to_owned(),
            agent: agent.to_owned(),
            iteration: 1,
            attempts: 1,
            start_time: now,
            end_time: now,
            usage: crate::Usage {
                tokens_in,
                ..crate::Usage::default()
            },
            tools: Vec::new(),
            remote: None,
            status,
            error: None,
        }
    }

    /// The value of the exposition's line starting with `series `.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn cached_series_count_every_execution_and_fold_late_agents() {
        let metrics = Metrics::with_label_cap(1);
        let mut state = finished("g");
        // Consecutive executions of one agent are added up before they are
        // recorded; `b` comes after the cap and shares `other`.
        state.executions = vec![
            execution("a", ExecutionStatus::Success, 2),
            execution("a", ExecutionStatus::Success, 3),
            execution("b", ExecutionStatus::Failed, 0),
            execution("a", ExecutionStatus::Skipped, 0),
        ];
        metrics.record_run(&state);
        state.status = crate::RunStatus::Failed;
        metrics.record_run(&state);
        let text = metrics.render_prometheus();
        let expected = [
            (
                r#"convergio_graph_runs_total{graph="g",status="succeeded"}"#,
                Some("1"),
            ),
            (
                r#"convergio_graph_runs_total{graph="g",status="failed"}"#,
                Some("1"),
            ),
            (
                r#"convergio_graph_agents_spawned_count{graph="g"}"#,
                Some("2"),
            ),
            (
                r#"convergio_graph_agents_spawned_sum{graph="g"}"#,
                Some("6.0"),
            ),
            (
                r#"convergio_node_executions_total{agent="a",status="success"}"#,
                Some("4"),
            ),
            (
                r#"convergio_node_executions_total{agent="a",status="skipped"}"#,
                Some("2"),
            ),
            // Statuses that never happened have no series.
            (
                r#"convergio_node_executions_total{agent="a",status="failed"}"#,
                None,
            ),
            (
                r#"convergio_node_executions_total{agent="other",status="failed"}"#,
                Some("2"),
            ),
            (
                r#"convergio_agent_tokens_total{agent="a",direction="in"}"#,
                Some("10"),
            ),
            // Series of an agent exist from its first execution, zero or not.
            (
                r#"convergio_agent_tokens_total{agent="other",direction="out"}"#,
                Some("0"),
            ),
            (r#"convergio_agent_tool_calls_total{agent="a"}"#, Some("0")),
            (
                r#"convergio_node_duration_seconds_count{agent="a"}"#,
                Some("6"),
            ),
            (
                r#"convergio_node_duration_seconds_count{agent="other"}"#,
                Some("2"),
            ),
        ];
        for (series, want) in expected {
            assert_eq!(value(&text, series).as_deref(), want, "{series}\n{text}");
        }
        // `b` came after the cap: no series names it.
        assert!(!text.contains(r#"agent="b""#), "{text}");
    }
}
