//! The run engine: a single coordinator task per run drives the graph, node
//! calls run concurrently as futures inside it (no task spawn per node), and
//! all state lives in one plain serialisable [`RunState`] so durable runs
//! (issue 8) can checkpoint it between steps.
//!
//! # Scheduling
//! A node becomes ready when every forward edge into it has been resolved
//! (taken or not) and at least one was taken; when all were not taken the
//! node is bypassed (`not_run`) and its outgoing edges count as not taken, so
//! joins behind an unused branch still run. Back edges (those closing a
//! cycle) are counted separately: a node re-runs when every back edge into
//! it has resolved and one was taken. Entries start the run. Ready nodes run
//! up to `max_concurrent_agents` at a time.
//!
//! # Edges
//! When a node finishes, each edge leaving it is taken if its `when` holds on
//! the output (always, without `when`) and it has been taken fewer than
//! `max_traversals` times; an `otherwise` edge is taken when no conditional
//! edge was. A node asked to run more than `config.max_iterations` times
//! ends the run with status `iteration_limit`.
//!
//! # Failures
//! A call that errs, times out, answers garbage, or pushes its agent or the
//! run over a budget fails the node; then its strategy applies: `retry`
//! (retry with exponential backoff and jitter, then abort), `skip` (output
//! null, downstream runs), `fallback` (one call to the other agent, then
//! abort), `abort` (the run fails and nodes in flight are cancelled), `human`
//! (the run ends `waiting_for_human`; resuming needs durable runs). Budget
//! errors are never retried.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use convergio_schemas::a2a::MAX_TOKENS_METADATA;
use convergio_schemas::Principal;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::dispatch::{AgentCall, Dispatch, MemoryAction, MemoryOp, NodeUpdates, Usage};
use crate::dsl::{
    lookup_path, Backoff, NodeKind, OnError, Reducer, SimpleStrategy, When, WhenKeyword,
};
use crate::error::{DispatchError, OrchestratorError};
use crate::graph::{event_key, route, EventWait, Graph, InputRef, Node};
use crate::journal::{
    Checkpoint, NewRun, PlanRevision, RunHeader, RunJournal, StepDelta, StoredRun,
};
use crate::mapping::{build_message, push_data_part, reply_output, NodeReport};
use crate::metrics::Metrics;
use crate::replan::{
    diff, CompletedStep, FailedStep, ReplanRequest, ReplanSettings, Replanner, Revision,
    RevisionSummary,
};
use crate::trace::{child_traceparent, new_trace_id, PriceTable, Trace};
use crate::validate::seconds;

pub use crate::run_state::{
    ExecutionStatus, NodeExecution, NodeState, NodeStatus, RunEvent, RunState, RunStatus,
    RunSummary,
};

/// The error of a cancelled run.
const CANCELLED: &str = "the run was cancelled";

/// Executor-wide settings (graph documents override the per-run ones).
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// `max_concurrent_agents` when a graph does not set it.
    pub default_max_concurrent_agents: usize,
    /// First retry delay; doubles per attempt under exponential backoff.
    pub retry_base_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// Prices for trace costs.
    pub prices: PriceTable,
    /// Whether runs keep their event log in [`RunState::events`].
    pub record_events: bool,
    /// Finished runs kept in memory for status and result lookups.
    pub max_retained_runs: usize,
    /// Checkpoint every run when a journal is set, not only those whose
    /// graph sets `checkpoint_enabled`.
    pub checkpoint_by_default: bool,
    /// Limits applied when a stored run's graph document is compiled again
    /// to resume it.
    pub resume_limits: crate::validate::Limits,
    /// The ceilings every run is held to whatever its graph says:
    /// iterations per node, run time, events kept (issue 15).
    pub limits: crate::validate::Limits,
    /// Distinct graph names, and agent names, that get metric labels of
    /// their own; the rest share `other` (issue 15).
    pub max_metric_labels: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            default_max_concurrent_agents: 10,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(30),
            prices: PriceTable::default(),
            record_events: true,
            max_retained_runs: 10_000,
            checkpoint_by_default: false,
            resume_limits: crate::validate::Limits::default(),
            limits: crate::validate::Limits::default(),
            max_metric_labels: crate::metrics::DEFAULT_MAX_LABELS,
        }
    }
}

/// Per-run settings the caller chooses.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Who starts the run: every agent call is made as this principal (the
    /// gateway's dispatcher reads it from [`AgentCall::caller`]).
    pub caller: Option<Principal>,
    /// Where the caller connected from (handed to every agent call as
    /// [`AgentCall::origin`]).
    pub origin: Option<std::net::IpAddr>,
    /// The graph document, stored with a checkpointed run so that any
    /// replica can rebuild the graph to resume it.
    pub source: Option<String>,
    /// The W3C trace id the run adopts (from its caller's `traceparent`,
    /// read with [`crate::trace::trace_id_of`]); `None`: a new trace.
    pub trace_id: Option<String>,
    /// Re-plan from a failed node instead of failing (§9.2); needs an
    /// executor with a replanner.
    pub replan: Option<ReplanSettings>,
}

/// How a stored run continues.
#[derive(Debug, Clone, PartialEq)]
pub enum Continue {
    /// Resume an interrupted run from its last step.
    Resume,
    /// A human approves the waiting node: it runs again.
    Approve,
    /// A human supplies the waiting node's output; the run continues.
    Input {
        /// The node's output.
        output: Value,
    },
    /// A human rejects: the run fails.
    Reject {
        /// Why, for the run's error.
        reason: Option<String>,
    },
}

/// The result of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The run's id.
    pub run_id: Uuid,
    /// How it ended.
    pub status: RunStatus,
    /// The output of the one sink that ran, or `{sink_id: output}` for
    /// every sink that ran when several did.
    pub output: Value,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// The §8.1 trace.
    pub trace: Trace,
    /// The final state.
    pub state: RunState,
}

enum RunEntry {
    Running(RunSummary),
    Finished(Box<RunResult>),
}

/// In-memory registry of async and streaming runs, by id.
#[derive(Default)]
pub struct Runs {
    entries: Mutex<(HashMap<Uuid, RunEntry>, VecDeque<Uuid>)>,
}

// === impl Runs ===

impl Runs {
    fn start(&self, summary: RunSummary) {
        if let Ok(mut guard) = self.entries.lock() {
            guard.0.insert(summary.run_id, RunEntry::Running(summary));
        }
    }

    fn finish(&self, result: &RunResult, retain: usize) {
        if let Ok(mut guard) = self.entries.lock() {
            let (entries, order) = &mut *guard;
            entries.insert(result.run_id, RunEntry::Finished(Box::new(result.clone())));
            order.push_back(result.run_id);
            while order.len() > retain {
                if let Some(old) = order.pop_front() {
                    entries.remove(&old);
                }
            }
        }
    }

    fn summary(&self, run_id: Uuid) -> Option<RunSummary> {
        let guard = self.entries.lock().ok()?;
        match guard.0.get(&run_id)? {
            RunEntry::Running(summary) => Some(summary.clone()),
            RunEntry::Finished(result) => Some(RunSummary {
                run_id,
                graph_id: result.state.graph_id.clone(),
                status: result.status,
                started_at: result.state.started_at,
                finished_at: result.state.finished_at,
            }),
        }
    }

    fn result(&self, run_id: Uuid) -> Result<RunResult, OrchestratorError> {
        let guard = self
            .entries
            .lock()
            .map_err(|_| OrchestratorError::RunLost {
                run_id: run_id.to_string(),
            })?;
        match guard.0.get(&run_id) {
            None => Err(OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            }),
            Some(RunEntry::Running(_)) => Err(OrchestratorError::RunNotFinished {
                run_id: run_id.to_string(),
            }),
            Some(RunEntry::Finished(result)) => Ok((**result).clone()),
        }
    }
}

struct Inner {
    dispatch: Arc<dyn Dispatch>,
    config: ExecutorConfig,
    runs: Runs,
    metrics: Metrics,
    /// Where checkpointed runs are journaled.
    journal: Option<Arc<dyn RunJournal>>,
    /// Checkpointed runs this process is driving.
    active: Mutex<HashSet<Uuid>>,
    /// Asks for new plans for runs that re-plan (§9.2).
    replanner: Option<Arc<dyn Replanner>>,
    /// A cancel signal per run this process is driving.
    cancels: Mutex<HashMap<Uuid, watch::Sender<bool>>>,
}

/// Runs validated graphs against a [`Dispatch`]: sync, async, streaming and
/// batch. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// An async run started by [`Executor::spawn`].
pub struct RunHandle {
    /// The run's id (status and result by id through the executor).
    pub run_id: Uuid,
    join: tokio::task::JoinHandle<RunResult>,
}

// === impl RunHandle ===

impl RunHandle {
    /// Waits for the run to end.
    pub async fn wait(self) -> Result<RunResult, OrchestratorError> {
        let run_id = self.run_id;
        self.join.await.map_err(|_| OrchestratorError::RunLost {
            run_id: run_id.to_string(),
        })
    }
}

/// The event stream of a streaming run; ends after `RunFinished`.
pub struct RunEvents {
    /// The run's id.
    pub run_id: Uuid,
    receiver: mpsc::UnboundedReceiver<RunEvent>,
}

impl Stream for RunEvents {
    type Item = RunEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RunEvent>> {
        self.receiver.poll_recv(cx)
    }
}

// === impl Executor ===

impl Executor {
    /// An executor calling agents through `dispatch`.
    pub fn new(dispatch: Arc<dyn Dispatch>, config: ExecutorConfig) -> Self {
        Self::build(dispatch, config, None, None)
    }

    /// An executor that journals checkpointed runs to `journal`.
    pub fn with_journal(
        dispatch: Arc<dyn Dispatch>,
        config: ExecutorConfig,
        journal: Arc<dyn RunJournal>,
    ) -> Self {
        Self::build(dispatch, config, Some(journal), None)
    }

    /// An executor with every collaborator: an optional journal for
    /// checkpointed runs and an optional replanner for runs started with
    /// [`RunOptions::replan`] (without one, such a run fails like any).
    pub fn with_parts(
        dispatch: Arc<dyn Dispatch>,
        config: ExecutorConfig,
        journal: Option<Arc<dyn RunJournal>>,
        replanner: Option<Arc<dyn Replanner>>,
    ) -> Self {
        Self::build(dispatch, config, journal, replanner)
    }

    fn build(
        dispatch: Arc<dyn Dispatch>,
        config: ExecutorConfig,
        journal: Option<Arc<dyn RunJournal>>,
        replanner: Option<Arc<dyn Replanner>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dispatch,
                runs: Runs::default(),
                metrics: Metrics::with_label_cap(config.max_metric_labels),
                config,
                journal,
                active: Mutex::new(HashSet::new()),
                cancels: Mutex::new(HashMap::new()),
                replanner,
            }),
        }
    }

    /// The journal checkpointed runs go to, if any.
    pub fn journal(&self) -> Option<&Arc<dyn RunJournal>> {
        self.inner.journal.as_ref()
    }

    /// The metrics of every run this executor finished.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Sync mode: runs the graph to its end.
    pub async fn run(
        &self,
        graph: Arc<Graph>,
        input: Value,
    ) -> Result<RunResult, OrchestratorError> {
        self.run_with(graph, input, RunOptions::default()).await
    }

    /// Sync mode with per-run options.
    pub async fn run_with(
        &self,
        graph: Arc<Graph>,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, OrchestratorError> {
        check_input(&graph, &input)?;
        let run_id = Uuid::now_v7();
        let durable = self.fresh_durable(&graph, &input, run_id, &options);
        let caller = options.caller.map(Arc::new);
        if durable.is_some() {
            // A checkpointed run is kept by id and marked active, so a
            // concurrent resume cannot drive it twice.
            let start = RunStart::Fresh {
                input,
                run_id,
                trace_id: options.trace_id,
                replan: options.replan,
            };
            let (_, join) = self.launch_run(graph, start, None, caller, options.origin, durable)?;
            return join.await.map_err(|_| OrchestratorError::RunLost {
                run_id: run_id.to_string(),
            });
        }
        let result = run_graph(
            self.inner.clone(),
            graph,
            RunStart::Fresh {
                input,
                run_id,
                trace_id: options.trace_id,
                replan: options.replan,
            },
            None,
            caller,
            options.origin,
            durable,
        )
        .await;
        self.inner.metrics.record_run(&result.state);
        Ok(result)
    }

    /// Async mode: starts the run and returns its id at once.
    pub fn spawn(&self, graph: Arc<Graph>, input: Value) -> Result<RunHandle, OrchestratorError> {
        self.spawn_with(graph, input, RunOptions::default())
    }

    /// Async mode with per-run options.
    pub fn spawn_with(
        &self,
        graph: Arc<Graph>,
        input: Value,
        options: RunOptions,
    ) -> Result<RunHandle, OrchestratorError> {
        self.start(graph, input, None, options)
            .map(|(run_id, join)| RunHandle { run_id, join })
    }

    /// Streaming mode: starts the run and returns its events as they happen.
    pub fn stream(&self, graph: Arc<Graph>, input: Value) -> Result<RunEvents, OrchestratorError> {
        self.stream_with(graph, input, RunOptions::default())
    }

    /// Streaming mode with per-run options. The run is kept (status and
    /// result by id) like an async run.
    pub fn stream_with(
        &self,
        graph: Arc<Graph>,
        input: Value,
        options: RunOptions,
    ) -> Result<RunEvents, OrchestratorError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (run_id, _join) = self.start(graph, input, Some(sender), options)?;
        Ok(RunEvents { run_id, receiver })
    }

    /// Batch mode: one run per input, at most `concurrency` at a time, one
    /// result per input in input order; a failing run does not affect others.
    pub async fn batch(
        &self,
        graph: Arc<Graph>,
        inputs: Vec<Value>,
        concurrency: usize,
    ) -> Vec<Result<RunResult, OrchestratorError>> {
        self.batch_with(graph, inputs, concurrency, RunOptions::default())
            .await
    }

    /// Batch mode with per-run options (shared by every run of the batch).
    pub async fn batch_with(
        &self,
        graph: Arc<Graph>,
        inputs: Vec<Value>,
        concurrency: usize,
        options: RunOptions,
    ) -> Vec<Result<RunResult, OrchestratorError>> {
        futures_util::stream::iter(inputs)
            .map(|input| {
                let executor = self.clone();
                let graph = graph.clone();
                let options = options.clone();
                async move {
                    let run_id = Uuid::nil();
                    tokio::spawn(
                        async move { executor.run_with(graph, input, options).await }
                            .in_current_span(),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(OrchestratorError::RunLost {
                            run_id: run_id.to_string(),
                        })
                    })
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// The status of an async or streaming run.
    pub fn status(&self, run_id: Uuid) -> Result<RunSummary, OrchestratorError> {
        self.inner
            .runs
            .summary(run_id)
            .ok_or_else(|| OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            })
    }

    /// The result of a finished async or streaming run.
    pub fn result(&self, run_id: Uuid) -> Result<RunResult, OrchestratorError> {
        self.inner.runs.result(run_id)
    }

    fn start(
        &self,
        graph: Arc<Graph>,
        input: Value,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
        options: RunOptions,
    ) -> Result<(Uuid, tokio::task::JoinHandle<RunResult>), OrchestratorError> {
        check_input(&graph, &input)?;
        let run_id = Uuid::now_v7();
        let durable = self.fresh_durable(&graph, &input, run_id, &options);
        let caller = options.caller.map(Arc::new);
        let origin = options.origin;
        self.launch_run(
            graph,
            RunStart::Fresh {
                input,
                run_id,
                trace_id: options.trace_id,
                replan: options.replan,
            },
            events,
            caller,
            origin,
            durable,
        )
    }

    fn journal_or(&self, run_id: Uuid) -> Result<Arc<dyn RunJournal>, OrchestratorError> {
        self.inner
            .journal
            .clone()
            .ok_or_else(|| OrchestratorError::NotDurable {
                run_id: run_id.to_string(),
            })
    }

    fn is_active(&self, run_id: Uuid) -> bool {
        self.inner
            .active
            .lock()
            .map(|active| active.contains(&run_id))
            .unwrap_or(false)
    }

    /// Rebuilds the graph a stored run is on: its stored document, or the
    /// document of its last re-plan (§9.2).
    pub fn stored_graph(&self, stored: &StoredRun) -> Result<Arc<Graph>, OrchestratorError> {
        match stored
            .steps
            .iter()
            .rev()
            .find_map(|step| step.revision.as_ref())
        {
            Some(revision) => self.compile_stored(stored, &revision.source),
            None => self.compile_stored(stored, &stored.source),
        }
    }

    /// The graph a stored run started on and the one it is on now (the
    /// same unless it re-planned); `graph` stands for both when given.
    fn stored_graphs(
        &self,
        stored: &StoredRun,
        graph: Option<Arc<Graph>>,
    ) -> Result<(Arc<Graph>, Arc<Graph>), OrchestratorError> {
        if let Some(graph) = graph {
            return Ok((graph.clone(), graph));
        }
        let first = self.compile_stored(stored, &stored.source)?;
        let revised = stored.steps.iter().any(|step| step.revision.is_some());
        let current = if revised {
            self.stored_graph(stored)?
        } else {
            first.clone()
        };
        Ok((first, current))
    }

    /// Compiles one of a stored run's graph documents.
    fn compile_stored(
        &self,
        stored: &StoredRun,
        source: &str,
    ) -> Result<Arc<Graph>, OrchestratorError> {
        let corrupt = |message: String| OrchestratorError::CorruptRun {
            run_id: stored.header.run_id.to_string(),
            message,
        };
        if source.is_empty() {
            return Err(corrupt(
                "no graph document is stored with it (a graph built in Rust must be handed in again)"
                    .to_owned(),
            ));
        }
        let spec = crate::source::parse_yaml(source)
            .map_err(|error| corrupt(format!("its graph document does not parse: {error}")))?;
        let graph = crate::validate::validate(
            &spec,
            &crate::validate::AnyAgent,
            &self.inner.config.resume_limits,
        )
        .map_err(|errors| {
            corrupt(format!(
                "its graph document is not valid: {}",
                OrchestratorError::from(errors)
            ))
        })?;
        Ok(Arc::new(graph))
    }

    /// A stored run and its state replayed to its last step.
    pub async fn stored_run(
        &self,
        run_id: Uuid,
        graph: Option<Arc<Graph>>,
    ) -> Result<(StoredRun, Arc<Graph>, RunState), OrchestratorError> {
        let journal = self.journal_or(run_id)?;
        let stored = journal.load(run_id, None).await?;
        let (first, graph) = self.stored_graphs(&stored, graph)?;
        let mut state = RunState::replay(&first, &stored)?;
        // A cancel is written on the run row, not as a step (the replica
        // driving it may be elsewhere): the row's status wins.
        if stored.status == RunStatus::Cancelled {
            state.status = RunStatus::Cancelled;
            state.error = Some(CANCELLED.to_owned());
        }
        Ok((stored, graph, state))
    }

    /// The result of a stored run (finished or not), read from the journal,
    /// so any replica can answer for any run.
    pub async fn stored_result(&self, run_id: Uuid) -> Result<RunResult, OrchestratorError> {
        let (stored, _graph, state) = self.stored_run(run_id, None).await?;
        let trace = Trace::from_state(&state, &self.inner.config.prices);
        Ok(RunResult {
            run_id,
            status: state.status,
            output: crate::journal::stored_output(&stored),
            error: state.error.clone(),
            trace,
            state,
        })
    }

    /// Continues a stored run as a streaming run: `Continue::Resume` after a
    /// crash (the run must still be `running` and not driven anywhere), or a
    /// human decision on a run `waiting_for_human`. Bad requests change
    /// nothing stored. `graph` is needed only for graphs built in Rust.
    pub async fn continue_stream(
        &self,
        run_id: Uuid,
        action: Continue,
        graph: Option<Arc<Graph>>,
        origin: Option<std::net::IpAddr>,
    ) -> Result<RunEvents, OrchestratorError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.continue_run(run_id, action, graph, origin, Some(sender))
            .await?;
        Ok(RunEvents { run_id, receiver })
    }

    async fn continue_run(
        &self,
        run_id: Uuid,
        action: Continue,
        graph: Option<Arc<Graph>>,
        origin: Option<std::net::IpAddr>,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<tokio::task::JoinHandle<RunResult>, OrchestratorError> {
        let journal = self.journal_or(run_id)?;
        if self.is_active(run_id) {
            return Err(OrchestratorError::RunActive {
                run_id: run_id.to_string(),
            });
        }
        let (stored, graph, state) = self.stored_run(run_id, graph).await?;
        match (&action, state.status) {
            (Continue::Resume, RunStatus::Running) => {}
            (Continue::Resume, RunStatus::WaitingForHuman) => {
                return Err(OrchestratorError::RunEnded {
                    run_id: run_id.to_string(),
                    status: "waiting_for_human: approve, reject or give input".to_owned(),
                })
            }
            (Continue::Resume, status) => {
                return Err(OrchestratorError::RunEnded {
                    run_id: run_id.to_string(),
                    status: status.as_str().to_owned(),
                })
            }
            (_, RunStatus::WaitingForHuman) if state.waiting_node.is_some() => {}
            _ => {
                return Err(OrchestratorError::NotWaiting {
                    run_id: run_id.to_string(),
                })
            }
        }
        if !journal.claim(run_id).await? {
            return Err(OrchestratorError::RunActive {
                run_id: run_id.to_string(),
            });
        }
        let mut durable = Durable::new(journal, &graph, None, stored.steps.len() as u64);
        durable.executions_saved = state.executions.len();
        let start = RunStart::Restored {
            state: Box::new(state),
            action,
        };
        // A resume without a caller of its own (the lease keeper's) is
        // judged by the facts of the call that started the run (issue 15).
        let origin = origin.or(stored.header.origin);
        let (_, join) = self.launch_run(graph, start, events, None, origin, Some(durable))?;
        Ok(join)
    }

    /// Starts a new run from a named checkpoint of `run_id`, optionally with
    /// a new input (nodes already finished keep their outputs). The source
    /// run is not changed.
    pub async fn resume_from_checkpoint(
        &self,
        run_id: Uuid,
        name: &str,
        new_input: Option<Value>,
        graph: Option<Arc<Graph>>,
        origin: Option<std::net::IpAddr>,
    ) -> Result<RunEvents, OrchestratorError> {
        let journal = self.journal_or(run_id)?;
        let checkpoint = journal
            .checkpoints(run_id)
            .await?
            .into_iter()
            .find(|checkpoint| checkpoint.name == name)
            .ok_or_else(|| OrchestratorError::CheckpointNotFound {
                run_id: run_id.to_string(),
                name: name.to_owned(),
            })?;
        let stored = journal.load(run_id, Some(checkpoint.seq)).await?;
        let (first, graph) = self.stored_graphs(&stored, graph)?;
        let new_run_id = Uuid::now_v7();
        let mut header = stored.header.clone();
        header.run_id = new_run_id;
        header.trace_id = new_trace_id();
        header.started_at = Utc::now();
        let input_changed = new_input
            .as_ref()
            .is_some_and(|input| *input != stored.header.input);
        if let Some(input) = new_input {
            check_input(&graph, &input)?;
            header.input = input;
        }
        let copy = StoredRun {
            header: header.clone(),
            ..stored
        };
        let mut state = RunState::replay(&first, &copy)?;
        // Nodes that ran before the checkpoint keep their outputs, so a new
        // input matters only if a node still to run reads it; otherwise the
        // run would silently repeat the old result (issue 14).
        if input_changed && !input_read_later(&graph, &state) {
            return Err(OrchestratorError::InputUnused {
                run_id: run_id.to_string(),
                name: name.to_owned(),
            });
        }
        // A checkpoint of an interrupted run continues; one taken at the
        // end of a run starts again from there.
        if state.status != RunStatus::WaitingForHuman {
            state.status = RunStatus::Running;
            state.error = None;
            state.finished_at = None;
        }
        let steps = copy.steps.len() as u64;
        let new_run = NewRun {
            header,
            source: copy.source,
            owner: copy.owner,
            steps: copy.steps,
        };
        let mut durable = Durable::new(journal, &graph, Some(new_run), steps);
        durable.executions_saved = state.executions.len();
        durable.input_changed = true;
        let (sender, receiver) = mpsc::unbounded_channel();
        let start = RunStart::Restored {
            state: Box::new(state),
            action: Continue::Resume,
        };
        self.launch_run(graph, start, Some(sender), None, origin, Some(durable))?;
        Ok(RunEvents {
            run_id: new_run_id,
            receiver,
        })
    }

    /// Cancels a run: a checkpointed run is marked cancelled in the store
    /// first (so no replica resumes it, and the one driving it stops at its
    /// next step), then the run driven here, if any, stops at once (calls
    /// in flight are dropped). Cancelling a cancelled run is a no-op; a run
    /// that already ended otherwise is `RunEnded`.
    pub async fn cancel(&self, run_id: Uuid) -> Result<(), OrchestratorError> {
        let local = self
            .inner
            .cancels
            .lock()
            .map_err(|_| OrchestratorError::RunLost {
                run_id: run_id.to_string(),
            })?
            .get(&run_id)
            .cloned();
        let mut known = local.is_some();
        if let Some(journal) = &self.inner.journal {
            match journal.cancel(run_id).await {
                Ok(true) => known = true,
                Ok(false) => {
                    let stored = journal.load(run_id, Some(0)).await?;
                    if local.is_none() && stored.status != RunStatus::Cancelled {
                        return Err(OrchestratorError::RunEnded {
                            run_id: run_id.to_string(),
                            status: stored.status.as_str().to_owned(),
                        });
                    }
                    known = true;
                }
                Err(OrchestratorError::RunNotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(cancel) = local {
            cancel.send_replace(true);
            return Ok(());
        }
        if known {
            return Ok(());
        }
        match self.inner.runs.summary(run_id) {
            Some(summary) if summary.status == RunStatus::Cancelled => Ok(()),
            Some(summary) => Err(OrchestratorError::RunEnded {
                run_id: run_id.to_string(),
                status: summary.status.as_str().to_owned(),
            }),
            None => Err(OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            }),
        }
    }

    /// Names the last committed step of a checkpointed run.
    pub async fn checkpoint(
        &self,
        run_id: Uuid,
        name: &str,
    ) -> Result<Checkpoint, OrchestratorError> {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(OrchestratorError::InvalidInput {
                message: "a checkpoint name is 1 to 128 characters without control characters"
                    .to_owned(),
            });
        }
        self.journal_or(run_id)?.name_checkpoint(run_id, name).await
    }

    /// The named checkpoints of a checkpointed run.
    pub async fn checkpoints(&self, run_id: Uuid) -> Result<Vec<Checkpoint>, OrchestratorError> {
        self.journal_or(run_id)?.checkpoints(run_id).await
    }

    /// Keeps this replica's leases alive and, when `take_over` is set,
    /// resumes runs whose lease expired (their replica died), every `every`.
    pub fn spawn_lease_keeper(
        &self,
        every: Duration,
        take_over: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let journal = self.inner.journal.clone()?;
        let executor = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let active: Vec<Uuid> = executor
                    .inner
                    .active
                    .lock()
                    .map(|active| active.iter().copied().collect())
                    .unwrap_or_default();
                if let Err(error) = journal.renew(&active).await {
                    tracing::warn!(error = %error, "renewing run leases failed");
                }
                if !take_over {
                    continue;
                }
                let claimed = match journal.claim_expired(16).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(error = %error, "claiming expired runs failed");
                        continue;
                    }
                };
                for run_id in claimed {
                    match executor
                        .continue_run(run_id, Continue::Resume, None, None, None)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(run_id = %run_id, "resumed a run whose lease expired")
                        }
                        Err(error) => {
                            tracing::warn!(run_id = %run_id, error = %error, "a run whose lease expired cannot be resumed")
                        }
                    }
                }
            }
        }))
    }

    /// The journal entry of a new run, when it is checkpointed.
    fn fresh_durable(
        &self,
        graph: &Graph,
        input: &Value,
        run_id: Uuid,
        options: &RunOptions,
    ) -> Option<Durable> {
        let journal = self.inner.journal.clone()?;
        if !(graph.config.checkpoint_enabled || self.inner.config.checkpoint_by_default) {
            return None;
        }
        let header = RunHeader {
            run_id,
            graph_id: graph.name.to_string(),
            trace_id: options.trace_id.clone().unwrap_or_else(new_trace_id),
            input: input.clone(),
            caller: options.caller.clone(),
            origin: options.origin,
            started_at: Utc::now(),
            replan: options.replan.clone(),
        };
        let owner = options
            .caller
            .as_ref()
            .map(Principal::owner_key)
            .unwrap_or_default();
        Some(Durable::new(
            journal,
            graph,
            Some(NewRun {
                header,
                source: options.source.clone().unwrap_or_default(),
                owner,
                steps: Vec::new(),
            }),
            0,
        ))
    }

    /// Starts a run on its own task, kept by id.
    fn launch_run(
        &self,
        graph: Arc<Graph>,
        start: RunStart,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
        caller: Option<Arc<Principal>>,
        origin: Option<std::net::IpAddr>,
        durable: Option<Durable>,
    ) -> Result<(Uuid, tokio::task::JoinHandle<RunResult>), OrchestratorError> {
        let run_id = start.run_id();
        if durable.is_some() {
            let mut active = self
                .inner
                .active
                .lock()
                .map_err(|_| OrchestratorError::RunLost {
                    run_id: run_id.to_string(),
                })?;
            if !active.insert(run_id) {
                return Err(OrchestratorError::RunActive {
                    run_id: run_id.to_string(),
                });
            }
        }
        self.inner.runs.start(RunSummary {
            run_id,
            graph_id: graph.name.to_string(),
            status: RunStatus::Running,
            started_at: Utc::now(),
            finished_at: None,
        });
        let inner = self.inner.clone();
        let join = tokio::spawn(
            async move {
                // The event stream ends when every sender is gone: holding one
                // until the result is stored means a consumer that saw the end
                // can always fetch the result by id.
                let keep_open = events.clone();
                let durable_run = durable.is_some();
                let result =
                    run_graph(inner.clone(), graph, start, events, caller, origin, durable).await;
                inner.metrics.record_run(&result.state);
                inner.runs.finish(&result, inner.config.max_retained_runs);
                if durable_run {
                    if let Ok(mut active) = inner.active.lock() {
                        active.remove(&run_id);
                    }
                }
                drop(keep_open);
                result
            }
            // The run's span (the gateway's `invoke_workflow`, issue 18) is
            // the parent of every node call's span.
            .in_current_span(),
        );
        Ok((run_id, join))
    }
}

/// Whether a node that may still run in `state` reads the run input: the
/// nodes ready, in flight or waiting for a human, and every node reachable
/// from them (the others have run, or never will).
fn input_read_later(graph: &Graph, state: &RunState) -> bool {
    let mut seen = vec![false; graph.nodes.len()];
    let mut stack: Vec<u32> = state.ready.clone();
    for (index, node) in state.nodes.iter().enumerate() {
        let waiting = state.waiting_node.as_deref() == Some(node.node_id.as_str());
        if node.status == NodeStatus::Running || waiting {
            stack.push(index as u32);
        }
    }
    while let Some(index) = stack.pop() {
        let slot = index as usize;
        if seen.get(slot).is_none_or(|seen| *seen) {
            continue;
        }
        seen[slot] = true;
        let reads_input = graph.nodes[slot]
            .inputs
            .iter()
            .any(|input| matches!(input, InputRef::WholeInput | InputRef::Graph { .. }));
        if reads_input {
            return true;
        }
        for &edge in &graph.out_edges[slot] {
            stack.push(graph.edges[edge as usize].to);
        }
    }
    false
}

/// Checks that the run input carries every graph input a node names.
fn check_input(graph: &Graph, input: &Value) -> Result<(), OrchestratorError> {
    if graph.graph_inputs.is_empty() {
        return Ok(());
    }
    let Some(object) = input.as_object() else {
        return Err(OrchestratorError::InvalidInput {
            message: format!(
                "the input must be an object with {}",
                graph.graph_inputs.join(", ")
            ),
        });
    };
    let missing: Vec<&str> = graph
        .graph_inputs
        .iter()
        .filter(|name| !object.contains_key(name.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OrchestratorError::InvalidInput {
            message: format!("the input lacks {}", missing.join(", ")),
        })
    }
}

type NodeFuture = Pin<Box<dyn Future<Output = NodeOutcome> + Send>>;

struct NodeOutcome {
    node: u32,
    agent: String,
    fallback: bool,
    /// Agent calls this outcome stands for (0 for rule routers).
    calls: u32,
    started: Instant,
    /// The output, or the error and whether a retry may help.
    result: Result<(Value, Usage, NodeReport), (String, bool)>,
}

/// Where a run starts from.
enum RunStart {
    /// A new run.
    Fresh {
        input: Value,
        run_id: Uuid,
        /// The trace adopted from the caller; `None`: a new one.
        trace_id: Option<String>,
        /// How it re-plans, if it does.
        replan: Option<ReplanSettings>,
    },
    /// A stored run replayed to its last step, continued as `action` says.
    Restored {
        state: Box<RunState>,
        action: Continue,
    },
}

// === impl RunStart ===

impl RunStart {
    fn run_id(&self) -> Uuid {
        match self {
            Self::Fresh { run_id, .. } => *run_id,
            Self::Restored { state, .. } => state.run_id,
        }
    }
}

/// A checkpointed run's journal and what changed since its last step.
struct Durable {
    journal: Arc<dyn RunJournal>,
    /// The row to create before the first call (new runs only).
    create: Option<NewRun>,
    /// The last committed step.
    seq: u64,
    node_dirty: Vec<bool>,
    nodes: Vec<u32>,
    edge_dirty: Vec<bool>,
    edges: Vec<u32>,
    agents: Vec<String>,
    executions_saved: usize,
    input_changed: bool,
    /// Shared state keys changed since the last step.
    shared: Vec<String>,
    /// The re-plan the next step records.
    revision: Option<Box<PlanRevision>>,
    /// Set once the journal failed: nothing more is written, and the run
    /// stays resumable from its last committed step.
    failed: bool,
}

// === impl Durable ===

impl Durable {
    fn new(journal: Arc<dyn RunJournal>, graph: &Graph, create: Option<NewRun>, seq: u64) -> Self {
        Self {
            journal,
            create,
            seq,
            node_dirty: vec![false; graph.nodes.len()],
            nodes: Vec::new(),
            edge_dirty: vec![false; graph.edges.len()],
            edges: Vec::new(),
            agents: Vec::new(),
            executions_saved: 0,
            input_changed: false,
            shared: Vec::new(),
            revision: None,
            failed: false,
        }
    }
}

fn run_graph(
    inner: Arc<Inner>,
    graph: Arc<Graph>,
    start: RunStart,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    caller: Option<Arc<Principal>>,
    origin: Option<std::net::IpAddr>,
    durable: Option<Durable>,
) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
    Box::pin(async move {
        let (mut run, action) = match start {
            RunStart::Fresh {
                input,
                run_id,
                trace_id: adopted,
                replan,
            } => {
                let trace_id = durable
                    .as_ref()
                    .and_then(|durable| durable.create.as_ref())
                    .map(|create| create.header.trace_id.clone())
                    .or(adopted);
                let mut run = Run::new(inner, graph, input, run_id, events, caller, origin);
                if let Some(trace_id) = trace_id {
                    run.state.trace_id = trace_id;
                }
                run.state.replan = replan;
                (run, None)
            }
            RunStart::Restored { state, action } => {
                let run = Run::restore(inner, graph, *state, events, caller, origin);
                (run, Some(action))
            }
        };
        run.durable = durable;
        let run_id = run.state.run_id;
        let (cancel, cancelled) = watch::channel(false);
        if let Ok(mut cancels) = run.inner.cancels.lock() {
            cancels.insert(run_id, cancel);
        }
        run.cancelled = Some(cancelled);
        if let Some(create) = run
            .durable
            .as_mut()
            .and_then(|durable| durable.create.take())
        {
            run.state.started_at = create.header.started_at;
            let journal = run.durable.as_ref().map(|durable| durable.journal.clone());
            if let Some(journal) = journal {
                if let Err(error) = journal.create(&create).await {
                    run.store_failed(&error);
                }
            }
        }
        if let Some(action) = action {
            run.continue_with(action);
            run.commit(None).await;
        }
        // A failed node of a run that re-plans leaves a re-plan pending
        // (checkpointed); the run continues on the new graph, or ends.
        loop {
            run.drive().await;
            if run.state.pending_replan.is_none() || run.state.status != RunStatus::Running {
                break;
            }
            run.replan().await;
            if run.state.status != RunStatus::Running {
                break;
            }
        }
        if let Ok(mut cancels) = run.inner.cancels.lock() {
            cancels.remove(&run_id);
        }
        run.state.finished_at = Some(Utc::now());
        let output = run.output();
        run.commit(Some(output.clone())).await;
        run.finish(output)
    })
}

struct Run {
    inner: Arc<Inner>,
    graph: Arc<Graph>,
    state: RunState,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    ready: VecDeque<u32>,
    /// Edges still to signal: (edge index, taken).
    signals: Vec<(u32, bool)>,
    /// `run_id` as text and as a metadata value, made once per run.
    run_id_text: String,
    run_id_value: Value,
    graph_id_value: Value,
    /// Who started the run, shared by every call.
    caller: Option<Arc<Principal>>,
    /// Where the caller connected from.
    origin: Option<std::net::IpAddr>,
    /// The journal of a checkpointed run.
    durable: Option<Durable>,
    /// Becomes `true` when the run is cancelled.
    cancelled: Option<watch::Receiver<bool>>,
    /// When the run's total timeout passes, set by its first drive here
    /// (re-plans and the graphs after them share it).
    deadline: Option<tokio::time::Instant>,
    /// The latest event of each topic (issue 20), for nodes waiting for
    /// one; the run's state keeps them as `event:<topic>` keys. Made when
    /// a node first publishes or waits (see [`Run::published`]).
    published: Option<watch::Sender<BTreeMap<String, Value>>>,
}

// === impl Run ===

impl Run {
    fn new(
        inner: Arc<Inner>,
        graph: Arc<Graph>,
        input: Value,
        run_id: Uuid,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
        caller: Option<Arc<Principal>>,
        origin: Option<std::net::IpAddr>,
    ) -> Self {
        let nodes = graph
            .nodes
            .iter()
            .map(|node| NodeState::pending(node.id.to_string()))
            .collect();
        let state = RunState {
            run_id,
            graph_id: graph.name.to_string(),
            trace_id: new_trace_id(),
            status: RunStatus::Running,
            input,
            caller: caller.as_deref().cloned(),
            nodes,
            edge_traversals: vec![0; graph.edges.len()],
            ready: graph.entries.clone(),
            usage: Usage::default(),
            usage_by_agent: BTreeMap::new(),
            executions: Vec::with_capacity(graph.nodes.len()),
            events: Vec::with_capacity(if inner.config.record_events {
                graph.nodes.len() * 2 + 2
            } else {
                0
            }),
            started_at: Utc::now(),
            finished_at: None,
            error: None,
            waiting_node: None,
            replan: None,
            pending_replan: None,
            revisions: Vec::new(),
            shared: graph.initial_state(),
        };
        Self::restore(inner, graph, state, events, caller, origin)
    }

    /// A run continuing from a replayed state (a new run is one whose ready
    /// queue holds the graph's entries).
    fn restore(
        inner: Arc<Inner>,
        graph: Arc<Graph>,
        mut state: RunState,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
        caller: Option<Arc<Principal>>,
        origin: Option<std::net::IpAddr>,
    ) -> Self {
        let ready = std::mem::take(&mut state.ready).into();
        let run_id_text = state.run_id.to_string();
        let run_id_value = Value::String(run_id_text.clone());
        let graph_id_value = Value::String(graph.name.to_string());
        let caller = caller.or_else(|| state.caller.clone().map(Arc::new));
        Self {
            inner,
            graph,
            state,
            events,
            ready,
            signals: Vec::new(),
            run_id_text,
            run_id_value,
            graph_id_value,
            caller,
            origin,
            durable: None,
            cancelled: None,
            deadline: None,
            published: None,
        }
    }

    /// The run's published events, made from the `event:<topic>` keys of
    /// its state the first time a node publishes or waits for one. Most
    /// graphs do neither, and a watch channel per run (its allocation, its
    /// notifications when dropped) was a cost every run paid.
    fn published(&mut self) -> &watch::Sender<BTreeMap<String, Value>> {
        let shared = &self.state.shared;
        self.published.get_or_insert_with(|| {
            let published = shared
                .iter()
                .filter_map(|(key, value)| {
                    Some((key.strip_prefix("event:")?.to_owned(), value.clone()))
                })
                .collect();
            watch::Sender::new(published)
        })
    }

    /// Applies a human decision (or a plain resume) to a restored run.
    fn continue_with(&mut self, action: Continue) {
        if action == Continue::Resume {
            return;
        }
        let waiting = self
            .state
            .waiting_node
            .take()
            .and_then(|id| self.graph.node_index(&id));
        if action != Continue::Resume {
            self.state.status = RunStatus::Running;
            self.state.error = None;
            self.state.finished_at = None;
        }
        let Some(index) = waiting else {
            return;
        };
        self.mark_node(index);
        match action {
            Continue::Resume => {}
            Continue::Approve => {
                self.state.nodes[index as usize].status = NodeStatus::Pending;
                self.ready.push_back(index);
            }
            Continue::Input { output } => {
                let now = Utc::now();
                let node_state = &mut self.state.nodes[index as usize];
                node_state.error = None;
                self.state.executions.push(NodeExecution {
                    node_id: node_state.node_id.clone(),
                    agent: "human".to_owned(),
                    iteration: node_state.runs,
                    attempts: 0,
                    start_time: now,
                    end_time: now,
                    usage: Usage::default(),
                    tools: Vec::new(),
                    remote: None,
                    status: ExecutionStatus::Success,
                    error: None,
                });
                self.complete(index, output, NodeStatus::Succeeded, Instant::now());
            }
            Continue::Reject { reason } => {
                let node = self.state.nodes[index as usize].node_id.clone();
                let reason = reason.unwrap_or_else(|| "no reason given".to_owned());
                self.end(
                    RunStatus::Failed,
                    Some(format!("node `{node}` was rejected by a human: {reason}")),
                );
            }
        }
    }

    fn mark_node(&mut self, index: u32) {
        if let Some(durable) = &mut self.durable {
            let slot = &mut durable.node_dirty[index as usize];
            if !*slot {
                *slot = true;
                durable.nodes.push(index);
            }
        }
    }

    fn mark_edge(&mut self, index: u32) {
        if let Some(durable) = &mut self.durable {
            let slot = &mut durable.edge_dirty[index as usize];
            if !*slot {
                *slot = true;
                durable.edges.push(index);
            }
        }
    }

    fn mark_agent(&mut self, agent: &str) {
        if let Some(durable) = &mut self.durable {
            if !durable.agents.iter().any(|known| known == agent) {
                durable.agents.push(agent.to_owned());
            }
        }
    }

    /// The changes since the last step, as the next step.
    fn take_delta(&mut self, output: Option<Value>) -> Option<StepDelta> {
        let durable = self.durable.as_mut().filter(|durable| !durable.failed)?;
        durable.seq += 1;
        let state = &self.state;
        let nodes = durable
            .nodes
            .drain(..)
            .map(|index| {
                durable.node_dirty[index as usize] = false;
                (index, state.nodes[index as usize].clone())
            })
            .collect();
        let edges = durable
            .edges
            .drain(..)
            .map(|index| {
                durable.edge_dirty[index as usize] = false;
                (index, state.edge_traversals[index as usize])
            })
            .collect();
        let agent_usage = durable
            .agents
            .drain(..)
            .map(|agent| {
                let usage = state
                    .usage_by_agent
                    .get(&agent)
                    .copied()
                    .unwrap_or_default();
                (agent, usage)
            })
            .collect();
        let executions = state
            .executions
            .get(durable.executions_saved..)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        durable.executions_saved = state.executions.len();
        let input = std::mem::take(&mut durable.input_changed).then(|| state.input.clone());
        let shared = durable
            .shared
            .drain(..)
            .map(|key| {
                let value = state.shared.get(&key).cloned().unwrap_or(Value::Null);
                (key, value)
            })
            .collect();
        Some(StepDelta {
            seq: durable.seq,
            nodes,
            edges,
            ready: self.ready.iter().copied().collect(),
            usage: state.usage,
            shared,
            agent_usage,
            executions,
            status: state.status,
            error: state.error.clone(),
            finished_at: state.finished_at,
            waiting_node: state.waiting_node.clone(),
            input,
            output,
            pending_replan: state.pending_replan.clone(),
            revision: durable.revision.take(),
        })
    }

    /// Commits the changes since the last step; returns once they are
    /// durable (at once for runs that are not checkpointed).
    async fn commit(&mut self, output: Option<Value>) {
        let Some(delta) = self.take_delta(output) else {
            return;
        };
        let Some(journal) = self.durable.as_ref().map(|durable| durable.journal.clone()) else {
            return;
        };
        match journal.append(self.state.run_id, &delta).await {
            Ok(()) => self.inner.metrics.record_checkpoint(),
            // Cancelled through the store (by any replica): stop here and
            // write nothing more; the stored status says cancelled.
            Err(OrchestratorError::RunCancelled { .. }) => {
                if let Some(durable) = &mut self.durable {
                    durable.failed = true;
                }
                self.end(RunStatus::Cancelled, Some(CANCELLED.to_owned()));
                if self.state.status == RunStatus::WaitingForHuman {
                    self.state.status = RunStatus::Cancelled;
                }
            }
            Err(error) => self.store_failed(&error),
        }
    }

    /// The journal failed: stop here; the run resumes from its last
    /// committed step (on this replica or another once the lease expires).
    fn store_failed(&mut self, error: &OrchestratorError) {
        tracing::error!(run_id = %self.state.run_id, error = %error, "checkpoint failed; the run stops");
        if let Some(durable) = &mut self.durable {
            durable.failed = true;
        }
        self.end(
            RunStatus::Failed,
            Some(format!(
                "the run store failed ({error}); the run can be resumed from its last checkpoint"
            )),
        );
    }

    fn wants_events(&self) -> bool {
        self.events.is_some() || self.inner.config.record_events
    }

    fn emit(&mut self, event: RunEvent) {
        if let Some(sender) = &self.events {
            // A stream consumer that went away does not stop the run.
            let _ = sender.send(event.clone());
        }
        // Events kept per run are capped (issue 15); the end is always kept.
        if self.inner.config.record_events
            && (self.state.events.len() < self.inner.config.limits.max_run_events
                || matches!(event, RunEvent::RunFinished { .. }))
        {
            self.state.events.push(event);
        }
    }

    fn end(&mut self, status: RunStatus, error: Option<String>) {
        if self.state.status == RunStatus::Running {
            self.state.status = status;
            self.state.error = error;
        }
    }

    async fn drive(&mut self) {
        let execution = &self.graph.execution;
        let max_in_flight = execution
            .max_concurrent_agents
            .map(|limit| limit.max(1) as usize)
            .unwrap_or(self.inner.config.default_max_concurrent_agents.max(1));
        // The server's ceiling bounds the graph's own timeouts (issue 15).
        let total_timeout = [
            seconds(self.graph.config.timeout_seconds),
            seconds(execution.total_timeout_seconds),
            self.inner.config.limits.max_run_time(),
        ]
        .into_iter()
        .flatten()
        .min();
        // One timer for the whole run, polled alongside the nodes; a run
        // that re-planned keeps the deadline it had.
        if self.deadline.is_none() {
            self.deadline = total_timeout.map(|timeout| tokio::time::Instant::now() + timeout);
        }
        let mut deadline = self
            .deadline
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        if self.state.pending_replan.is_some() {
            // A restored run whose failure was checkpointed before its
            // re-plan: nothing runs until the re-plan.
            return;
        }
        let mut cancelled = self.cancelled.take();
        let mut in_flight: FuturesUnordered<NodeFuture> = FuturesUnordered::new();
        // A restored run re-sends the calls that were in flight at its last
        // step, with the same message ids, so agents can de-duplicate.
        if self.state.status == RunStatus::Running {
            let in_progress: Vec<u32> = (0..self.state.nodes.len() as u32)
                .filter(|&index| self.state.nodes[index as usize].status == NodeStatus::Running)
                .collect();
            for index in in_progress {
                if let Some(future) = self.relaunch(index) {
                    in_flight.push(future);
                }
            }
        }
        loop {
            if cancelled
                .as_ref()
                .is_some_and(|cancelled| *cancelled.borrow())
            {
                self.end(RunStatus::Cancelled, Some(CANCELLED.to_owned()));
            }
            while in_flight.len() < max_in_flight
                && self.state.status == RunStatus::Running
                && self.state.pending_replan.is_none()
            {
                let Some(node) = self.ready.pop_front() else {
                    break;
                };
                if let Some(future) = self.launch(node) {
                    in_flight.push(future);
                }
            }
            if self.state.status != RunStatus::Running
                || self.state.pending_replan.is_some()
                || in_flight.is_empty()
            {
                break;
            }
            let timer = async {
                match deadline.as_mut() {
                    Some(deadline) => deadline.await,
                    None => std::future::pending().await,
                }
            };
            let cancel = async {
                match cancelled.as_mut() {
                    Some(cancelled) => {
                        if cancelled.wait_for(|cancelled| *cancelled).await.is_err() {
                            // The executor is gone; only the other arms end the run.
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                outcome = in_flight.next() => outcome,
                () = timer => {
                    let seconds = total_timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
                    self.end(RunStatus::TimedOut, Some(format!("run exceeded its total timeout of {seconds}s")));
                    None
                }
                () = cancel => {
                    self.end(RunStatus::Cancelled, Some(CANCELLED.to_owned()));
                    None
                }
            };
            match outcome {
                Some(outcome) => self.handle(outcome, &mut in_flight),
                None => break,
            }
            if self.durable.is_some() {
                // Outcomes already at hand join this step, so one commit
                // covers them (fan-outs); then the step is made durable
                // before any node it readied starts.
                while self.state.status == RunStatus::Running && self.state.pending_replan.is_none()
                {
                    match futures_util::FutureExt::now_or_never(in_flight.next()) {
                        Some(Some(outcome)) => self.handle(outcome, &mut in_flight),
                        _ => break,
                    }
                }
                self.commit(None).await;
            }
        }
        // Dropping the futures cancels the calls still in flight.
        drop(in_flight);
        if self.state.pending_replan.is_none() {
            self.end(RunStatus::Succeeded, None);
        }
        for index in 0..self.state.nodes.len() {
            if self.state.nodes[index].status == NodeStatus::Running {
                self.state.nodes[index].status = NodeStatus::Cancelled;
                self.mark_node(index as u32);
            }
        }
        self.state.ready = self.ready.iter().copied().collect();
    }

    /// Re-sends the call of a node that was in flight when its run stopped.
    fn relaunch(&mut self, index: u32) -> Option<NodeFuture> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index as usize];
        let started = Instant::now();
        let node_state = &self.state.nodes[index as usize];
        if self.wants_events() {
            self.emit(RunEvent::NodeStarted {
                run_id: self.state.run_id,
                node_id: node.id.to_string(),
                agent: node.agent.as_deref().map(str::to_owned),
                iteration: node_state.runs,
            });
        }
        let node_state = &self.state.nodes[index as usize];
        match (&node.on_error, node_state.fallback) {
            (OnError::Fallback { fallback }, true) => {
                Some(self.start_call(index, fallback.clone(), true, None, started))
            }
            _ => match node.kind {
                NodeKind::Agent | NodeKind::Judge | NodeKind::Router if node.agent.is_some() => {
                    let agent = node.agent.as_deref().unwrap_or_default().to_owned();
                    Some(self.start_call(index, agent, false, None, started))
                }
                _ => self.launch_local(index, started),
            },
        }
    }

    /// Starts node `index`, or returns `None` when it completes at once or
    /// the run ends.
    fn launch(&mut self, index: u32) -> Option<NodeFuture> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index as usize];
        let node_state = &mut self.state.nodes[index as usize];
        if node_state.status == NodeStatus::Running {
            node_state.rerun = true;
            return None;
        }
        // The server's ceiling bounds the graph's own limit (issue 15).
        let ceiling = self.inner.config.limits.max_iterations;
        let max_iterations = graph
            .config
            .max_iterations
            .map_or(ceiling, |graph_limit| graph_limit.min(ceiling));
        if node_state.runs >= max_iterations {
            let message = format!(
                "node `{}` would run more than max_iterations ({max_iterations}) times",
                node.id
            );
            self.end(RunStatus::IterationLimit, Some(message));
            return None;
        }
        node_state.runs += 1;
        node_state.status = NodeStatus::Running;
        node_state.attempt = 1;
        node_state.fallback = false;
        node_state.started_at = Some(Utc::now());
        let iteration = node_state.runs;
        self.mark_node(index);
        if self.wants_events() {
            self.emit(RunEvent::NodeStarted {
                run_id: self.state.run_id,
                node_id: node.id.to_string(),
                agent: node.agent.as_deref().map(str::to_owned),
                iteration,
            });
        }
        let started = Instant::now();
        match node.kind {
            NodeKind::Agent | NodeKind::Judge | NodeKind::Router if node.agent.is_some() => {
                let agent = node.agent.as_deref().unwrap_or_default().to_owned();
                Some(self.start_call(index, agent, false, None, started))
            }
            _ => self.launch_local(index, started),
        }
    }

    /// Starts a node that calls no agent itself: a rule router or a sub-graph.
    fn launch_local(&mut self, index: u32, started: Instant) -> Option<NodeFuture> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index as usize];
        let inputs = resolve_inputs(node, &self.state);
        match node.kind {
            NodeKind::Router if node.agent.is_none() => {
                let value = match inputs.as_slice() {
                    [(_, value)] => value.clone(),
                    _ => Value::Object(
                        inputs
                            .iter()
                            .map(|(label, value)| ((*label).to_owned(), value.clone()))
                            .collect(),
                    ),
                };
                let result = route(&node.rules, node.default_route.as_deref(), &value)
                    .map(|label| {
                        (
                            Value::String(label),
                            Usage::default(),
                            NodeReport::default(),
                        )
                    })
                    .ok_or_else(|| {
                        (
                            "no router rule matched and no default_route is set".to_owned(),
                            false,
                        )
                    });
                let outcome = NodeOutcome {
                    node: index,
                    agent: "router:rules".to_owned(),
                    fallback: false,
                    calls: 0,
                    started,
                    result,
                };
                Some(Box::pin(std::future::ready(outcome)))
            }
            NodeKind::Subgraph => {
                let Some(subgraph) = node.subgraph.clone() else {
                    self.end(
                        RunStatus::Failed,
                        Some(format!("node `{}` has no sub-graph", node.id)),
                    );
                    return None;
                };
                let mut sub_input = Map::with_capacity(inputs.len());
                let mut whole = None;
                for ((_, value), reference) in inputs.into_iter().zip(&node.inputs) {
                    match reference {
                        InputRef::WholeInput => whole = Some(value),
                        InputRef::Graph { name } => {
                            sub_input.insert(name.to_string(), value);
                        }
                        InputRef::State { label, .. } => {
                            sub_input.insert(label.to_string(), value);
                        }
                        InputRef::Node { node, .. } => {
                            sub_input.insert(graph.nodes[*node as usize].id.to_string(), value);
                        }
                    }
                }
                let sub_input = whole.unwrap_or(Value::Object(sub_input));
                let inner = self.inner.clone();
                let caller = self.caller.clone();
                let origin = self.origin;
                let agent = format!("subgraph:{}", subgraph.name);
                // A sub-graph's calls belong to the parent run's trace.
                let trace_id = Some(self.state.trace_id.clone());
                Some(Box::pin(async move {
                    let result = match check_input(&subgraph, &sub_input) {
                        Err(error) => Err((error.to_string(), false)),
                        Ok(()) => {
                            let start = RunStart::Fresh {
                                input: sub_input,
                                run_id: Uuid::now_v7(),
                                trace_id,
                                replan: None,
                            };
                            let result =
                                run_graph(inner, subgraph, start, None, caller, origin, None).await;
                            match result.status {
                                RunStatus::Succeeded => {
                                    Ok((result.output, result.state.usage, NodeReport::default()))
                                }
                                status => Err((
                                    format!(
                                        "sub-graph ended {}: {}",
                                        status.as_str(),
                                        result.error.unwrap_or_default()
                                    ),
                                    false,
                                )),
                            }
                        }
                    };
                    NodeOutcome {
                        node: index,
                        agent,
                        fallback: false,
                        calls: 0,
                        started,
                        result,
                    }
                }))
            }
            _ => {
                let message = format!("node `{}` has nothing to run", node.id);
                self.end(RunStatus::Failed, Some(message));
                None
            }
        }
    }

    /// Starts one call of node `index` to `agent`, after `delay` (retries).
    fn start_call(
        &mut self,
        index: u32,
        agent: String,
        fallback: bool,
        delay: Option<Duration>,
        started: Instant,
    ) -> NodeFuture {
        let graph = self.graph.clone();
        // A spent budget stops the call before it is made: an agent,
        // local or in another organisation, may spend whatever it is given.
        if let Some(error) = spent_before_call(&graph, &agent, &self.state) {
            let outcome = NodeOutcome {
                node: index,
                agent,
                fallback,
                calls: 0,
                started,
                result: Err((error, false)),
            };
            return Box::pin(std::future::ready(outcome));
        }
        let node = &graph.nodes[index as usize];
        let node_state = &self.state.nodes[index as usize];
        let iteration = node_state.runs;
        // After a re-plan, a step of the same id is a new call: its message
        // id names the revision, so an agent that de-duplicates does not
        // answer with the failed call's outcome.
        let run_text = match self.state.revisions.len() {
            0 => self.run_id_text.clone(),
            revision => format!("{}/r{revision}", self.run_id_text),
        };
        let message_id = if fallback {
            format!("{run_text}/{}/{iteration}/fallback", node.id)
        } else {
            format!("{run_text}/{}/{iteration}/{}", node.id, node_state.attempt)
        };
        let mut metadata = Map::with_capacity(4);
        metadata.insert("convergio.run_id".to_owned(), self.run_id_value.clone());
        metadata.insert(
            "convergio.node_id".to_owned(),
            Value::String(node.id.to_string()),
        );
        metadata.insert("convergio.graph_id".to_owned(), self.graph_id_value.clone());
        metadata.insert("convergio.iteration".to_owned(), Value::from(iteration));
        if let Some(left) = tokens_left(&graph, &agent, &self.state) {
            metadata.insert(MAX_TOKENS_METADATA.to_owned(), Value::from(left));
        }
        let whole_input = matches!(node.inputs.as_slice(), [InputRef::WholeInput]);
        let message = build_message(
            message_id,
            metadata,
            whole_input,
            resolve_inputs(node, &self.state),
        );
        let timeout = node
            .timeout
            .or_else(|| seconds(graph.execution.timeout_per_agent_seconds));
        let call = AgentCall {
            run_id: self.state.run_id,
            graph_id: graph.name.clone(),
            caller: self.caller.clone(),
            origin: self.origin,
            node_id: node.id.to_string(),
            agent: agent.clone(),
            message,
            traceparent: child_traceparent(&self.state.trace_id),
            deadline: timeout.map(|timeout| Instant::now() + delay.unwrap_or_default() + timeout),
            stream: node.stream.then(|| {
                NodeUpdates::new(
                    self.state.run_id,
                    node.id.to_string(),
                    iteration,
                    self.events.clone(),
                )
            }),
        };
        let memory = NodeMemoryUse::of(node, &self.state, &call, || {
            format!("{}.{}.{iteration}", self.run_id_text, node.id)
        });
        let dispatch = self.inner.dispatch.clone();
        let wait = node
            .wait_for_event
            .clone()
            .map(|wait| (wait, node.id.clone(), self.published().subscribe()));
        Box::pin(async move {
            // Timers are boxed so that the node future stays small: glibc
            // consolidates its free lists on every allocation of 1 KiB or
            // more, which dominated wide fan-outs when timers were inline.
            if let Some(delay) = delay {
                Box::pin(tokio::time::sleep(delay)).await;
            }
            let mut call = call;
            if let Some((wait, node_id, published)) = wait {
                match Box::pin(event_for(wait, &node_id, published)).await {
                    Ok(part) => {
                        if let Some(Value::Array(parts)) = call.message.get_mut("parts") {
                            parts.push(part);
                        }
                        // The call's own timeout starts once it is made.
                        call.deadline = timeout.map(|timeout| Instant::now() + timeout);
                    }
                    Err(error) => {
                        return NodeOutcome {
                            node: index,
                            agent,
                            fallback,
                            calls: 0,
                            started,
                            result: Err((error, false)),
                        }
                    }
                }
            }
            let result = match memory {
                None => call_once(&*dispatch, call, timeout, &agent).await,
                Some(memory) => Box::pin(memory.around(&*dispatch, call, timeout, &agent)).await,
            };
            NodeOutcome {
                node: index,
                agent,
                fallback,
                calls: 1,
                started,
                result,
            }
        })
    }

    fn handle(&mut self, outcome: NodeOutcome, in_flight: &mut FuturesUnordered<NodeFuture>) {
        let graph = self.graph.clone();
        let index = outcome.node as usize;
        let node = &graph.nodes[index];
        self.mark_node(outcome.node);
        self.mark_agent(&outcome.agent);
        self.state.nodes[index].attempts += outcome.calls;
        // What the agent reported (tool calls, a remote timing), recorded
        // with the execution.
        let mut report = NodeReport::default();
        let result = match outcome.result {
            Ok((output, usage, reported)) => {
                report = reported;
                self.state.nodes[index].usage.add(usage);
                self.state.usage.add(usage);
                let agent_usage = match self.state.usage_by_agent.get_mut(&outcome.agent) {
                    Some(agent_usage) => agent_usage,
                    None => self
                        .state
                        .usage_by_agent
                        .entry(outcome.agent.clone())
                        .or_default(),
                };
                agent_usage.add(usage);
                let agent_usage = *agent_usage;
                match budget_error(&graph, &outcome.agent, agent_usage, self.state.usage) {
                    // Budget errors are final: retrying would only spend more.
                    Some(error) => Err((error, false, usage)),
                    // So are outputs that do not fit the state they update.
                    None => match self.update_shared(&graph, index, &output) {
                        Ok(()) => Ok((output, usage)),
                        Err(error) => Err((error, false, usage)),
                    },
                }
            }
            Err((error, retryable)) => Err((error, retryable, Usage::default())),
        };
        let (error, retryable, usage) = match result {
            Ok((output, usage)) => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    report,
                    ExecutionStatus::Success,
                    None,
                );
                self.complete(outcome.node, output, NodeStatus::Succeeded, outcome.started);
                return;
            }
            Err(failure) => failure,
        };
        let attempt = self.state.nodes[index].attempt;
        let max_retries = graph.execution.retry_policy.max_retries;
        let action = match (&node.on_error, outcome.fallback) {
            (OnError::Simple(SimpleStrategy::Retry), false)
                if retryable && attempt <= max_retries =>
            {
                "retry"
            }
            (OnError::Fallback { .. }, false) => "fallback",
            (OnError::Simple(SimpleStrategy::Skip), _) => "skip",
            (OnError::Simple(SimpleStrategy::Human), _) => "human",
            // The node's own strategy is spent: a run that re-plans asks
            // for a new plan instead of failing (§9.2).
            _ if self.state.replan.is_some() && self.inner.replanner.is_some() => "replan",
            _ => "abort",
        };
        self.state.nodes[index].error = Some(error.clone());
        if self.wants_events() {
            self.emit(RunEvent::NodeError {
                run_id: self.state.run_id,
                node_id: node.id.to_string(),
                error: error.clone(),
                action: action.to_owned(),
            });
        }
        match (&node.on_error, action) {
            (_, "retry") => {
                self.state.nodes[index].attempt += 1;
                let delay = backoff_delay(
                    graph.execution.retry_policy.backoff,
                    attempt,
                    self.inner.config.retry_base_delay,
                    self.inner.config.retry_max_delay,
                );
                let future = self.start_call(
                    outcome.node,
                    outcome.agent,
                    false,
                    Some(delay),
                    outcome.started,
                );
                in_flight.push(future);
            }
            (OnError::Fallback { fallback }, "fallback") => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    std::mem::take(&mut report),
                    ExecutionStatus::Failed,
                    Some(error),
                );
                let node_state = &mut self.state.nodes[index];
                node_state.attempt = 1;
                node_state.fallback = true;
                node_state.started_at = Some(Utc::now());
                let future =
                    self.start_call(outcome.node, fallback.clone(), true, None, outcome.started);
                in_flight.push(future);
            }
            (_, "skip") => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    std::mem::take(&mut report),
                    ExecutionStatus::Skipped,
                    Some(error),
                );
                self.complete(
                    outcome.node,
                    Value::Null,
                    NodeStatus::Skipped,
                    outcome.started,
                );
            }
            (_, "human") => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    std::mem::take(&mut report),
                    ExecutionStatus::Failed,
                    Some(error.clone()),
                );
                self.fail_node(index, outcome.started);
                let hint = if self.durable.is_some() {
                    "approve, reject or give its output to continue"
                } else {
                    "the run is not checkpointed, so it cannot be continued"
                };
                self.end(
                    RunStatus::WaitingForHuman,
                    Some(format!(
                        "node `{}` failed and needs a human decision ({error}); {hint}",
                        node.id
                    )),
                );
                if self.state.status == RunStatus::WaitingForHuman {
                    self.state.waiting_node = Some(node.id.to_string());
                }
            }
            (_, "replan") => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    std::mem::take(&mut report),
                    ExecutionStatus::Failed,
                    Some(error.clone()),
                );
                self.fail_node(index, outcome.started);
                self.state.pending_replan = Some(FailedStep {
                    node_id: node.id.to_string(),
                    agent: Some(outcome.agent.clone()),
                    error,
                });
            }
            _ => {
                self.record_execution(
                    index,
                    &outcome.agent,
                    usage,
                    std::mem::take(&mut report),
                    ExecutionStatus::Failed,
                    Some(error.clone()),
                );
                self.fail_node(index, outcome.started);
                self.end(
                    RunStatus::Failed,
                    Some(format!("node `{}` failed: {error}", node.id)),
                );
            }
        }
    }

    /// Applies a successful node's `update_state` through the keys'
    /// reducers, all of them or none; the changes go in the node's step.
    fn update_shared(&mut self, graph: &Graph, index: usize, output: &Value) -> Result<(), String> {
        let node = &graph.nodes[index];
        let mut changed = Vec::with_capacity(node.update_state.len());
        for update in &node.update_state {
            let value = match &update.path {
                None => output.clone(),
                Some(path) => lookup_path(output, path).cloned().unwrap_or(Value::Null),
            };
            let reducer = graph
                .state
                .get(&*update.key)
                .map_or(Reducer::Last, |spec| spec.reducer);
            // A node names each key once (`update_state` is a map).
            let mut current = self
                .state
                .shared
                .get(&*update.key)
                .cloned()
                .unwrap_or_else(|| reducer.empty());
            reducer.reduce(&mut current, value).map_err(|reason| {
                format!(
                    "node `{}` could not update state `{}`: {reason}",
                    node.id, update.key
                )
            })?;
            changed.push((update.key.to_string(), current));
        }
        // The node's event goes with its state updates: all or none, in the
        // same checkpointed step.
        if let Some(topic) = &node.publish {
            changed.push((event_key(topic), output.clone()));
            self.published().send_modify(|published| {
                published.insert(topic.to_string(), output.clone());
            });
        }
        for (key, value) in changed {
            if let Some(durable) = &mut self.durable {
                if !durable.shared.contains(&key) {
                    durable.shared.push(key.clone());
                }
            }
            self.state.shared.insert(key, value);
        }
        Ok(())
    }

    fn record_execution(
        &mut self,
        index: usize,
        agent: &str,
        usage: Usage,
        report: NodeReport,
        status: ExecutionStatus,
        error: Option<String>,
    ) {
        let node_state = &self.state.nodes[index];
        let end_time = Utc::now();
        self.state.executions.push(NodeExecution {
            node_id: node_state.node_id.clone(),
            agent: agent.to_owned(),
            iteration: node_state.runs,
            attempts: node_state.attempt,
            start_time: node_state.started_at.unwrap_or(end_time),
            end_time,
            usage,
            tools: report.tools,
            remote: report.remote,
            status,
            error,
        });
    }

    fn fail_node(&mut self, index: usize, started: Instant) {
        self.state.nodes[index].status = NodeStatus::Failed;
        if self.wants_events() {
            self.emit(RunEvent::NodeFinished {
                run_id: self.state.run_id,
                node_id: self.state.nodes[index].node_id.clone(),
                status: NodeStatus::Failed,
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
    }

    /// Records a node's output and resolves the edges leaving it.
    fn complete(&mut self, index: u32, output: Value, status: NodeStatus, started: Instant) {
        self.mark_node(index);
        if self.wants_events() {
            let node_id = self.state.nodes[index as usize].node_id.clone();
            if status == NodeStatus::Succeeded && self.events.is_some() {
                self.emit(RunEvent::NodeOutput {
                    run_id: self.state.run_id,
                    node_id: node_id.clone(),
                    output: output.clone(),
                });
            }
            self.emit(RunEvent::NodeFinished {
                run_id: self.state.run_id,
                node_id,
                status,
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
        self.resolve_out_edges(index, &output);
        let node_state = &mut self.state.nodes[index as usize];
        node_state.status = status;
        node_state.output = output;
        if std::mem::take(&mut node_state.rerun) {
            self.ready.push_back(index);
        }
        self.propagate();
    }

    /// Decides every edge leaving node `index` on its `output` and queues
    /// the signals.
    fn resolve_out_edges(&mut self, index: u32, output: &Value) {
        let graph = self.graph.clone();
        // Decide every edge before signalling, so `otherwise` sees the others.
        let mut conditional_taken = false;
        for &edge_index in &graph.out_edges[index as usize] {
            let edge = &graph.edges[edge_index as usize];
            let taken = match &edge.when {
                Some(When::Keyword(WhenKeyword::Otherwise)) => continue,
                Some(When::Test(condition)) => {
                    let taken = condition.holds(output) && self.within_limit(edge_index);
                    conditional_taken |= taken;
                    taken
                }
                None => self.within_limit(edge_index),
            };
            self.take(edge_index, taken);
        }
        for &edge_index in &graph.out_edges[index as usize] {
            if matches!(
                graph.edges[edge_index as usize].when,
                Some(When::Keyword(WhenKeyword::Otherwise))
            ) {
                let taken = !conditional_taken && self.within_limit(edge_index);
                self.take(edge_index, taken);
            }
        }
    }

    /// Asks the replanner for a new graph from the pending failure and
    /// continues on it, or ends the run: `replans_exhausted` when
    /// `max_replans` are spent, `replan_failed` when no valid graph came,
    /// `timed_out` when the run's time ran out meanwhile. The new graph is
    /// committed as one step before any of its nodes starts.
    async fn replan(&mut self) {
        let Some(failed) = self.state.pending_replan.take() else {
            return;
        };
        let failure = format!("node `{}` failed: {}", failed.node_id, failed.error);
        let (Some(settings), Some(replanner)) =
            (self.state.replan.clone(), self.inner.replanner.clone())
        else {
            self.end(RunStatus::Failed, Some(failure));
            return;
        };
        let number = self.state.revisions.len() as u32 + 1;
        if number > settings.max_replans {
            self.end(
                RunStatus::ReplansExhausted,
                Some(format!(
                    "{failure}; no re-plan left (max_replans {} spent)",
                    settings.max_replans
                )),
            );
            return;
        }
        let completed = self
            .state
            .nodes
            .iter()
            .zip(&self.graph.nodes)
            .filter(|(state, _)| state.status == NodeStatus::Succeeded)
            .map(|(state, node)| CompletedStep {
                node_id: state.node_id.clone(),
                agent: node.agent.as_deref().map(str::to_owned),
                output: state.output.clone(),
            })
            .collect();
        let request = ReplanRequest {
            run_id: self.state.run_id,
            number,
            plan: self
                .state
                .revisions
                .last()
                .map_or_else(|| settings.plan.clone(), |last| last.plan.clone()),
            caller: self.caller.clone(),
            origin: self.origin,
            failed: failed.clone(),
            completed,
            input: self.state.input.clone(),
        };
        let asked = replanner.replan(request);
        let answer = match self.deadline {
            Some(at) => match tokio::time::timeout_at(at, asked).await {
                Ok(answer) => answer,
                Err(_) => {
                    self.end(
                        RunStatus::TimedOut,
                        Some(format!(
                            "{failure}; the run's time ran out while re-planning"
                        )),
                    );
                    return;
                }
            },
            None => asked.await,
        };
        let outcome = answer.and_then(|revision| self.apply_revision(revision, failed, number));
        if let Err(why) = outcome {
            self.end(
                RunStatus::ReplanFailed,
                Some(format!("{failure}; re-plan {number} failed: {why}")),
            );
            return;
        }
        self.commit(None).await;
        // Reported once committed, like every step.
        if self.state.status == RunStatus::Running && self.wants_events() {
            if let Some(summary) = self.state.revisions.last() {
                let event = RunEvent::PlanRevised {
                    run_id: self.state.run_id,
                    number,
                    failed_node: summary.failed.node_id.clone(),
                    error: summary.failed.error.clone(),
                    planner: summary.planner.clone(),
                    diff: summary.diff.clone(),
                };
                self.emit(event);
            }
        }
    }

    /// Moves the run onto `revision`'s graph: nodes that finished keep
    /// their state and output (they must be in the new graph, with the same
    /// agent, after finished nodes only), every other node starts afresh,
    /// and the finished nodes' edges are signalled again to ready the rest.
    fn apply_revision(
        &mut self,
        revision: Revision,
        failed: FailedStep,
        number: u32,
    ) -> Result<(), String> {
        let old = self.graph.clone();
        let new = revision.graph.clone();
        let finished: HashMap<&str, (usize, Option<&str>)> = self
            .state
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, state)| state.status == NodeStatus::Succeeded)
            .map(|(index, state)| {
                (
                    state.node_id.as_str(),
                    (index, old.nodes[index].agent.as_deref()),
                )
            })
            .collect();
        for (id, (_, agent)) in &finished {
            let Some(index) = new.node_index(id) else {
                return Err(format!("the new plan drops step `{id}`, which already ran"));
            };
            if new.nodes[index as usize].agent.as_deref() != *agent {
                return Err(format!(
                    "the new plan changes the agent of step `{id}`, which already ran"
                ));
            }
            if let Some(edge) = new.edges.iter().find(|edge| {
                edge.to == index && !finished.contains_key(&*new.nodes[edge.from as usize].id)
            }) {
                return Err(format!(
                    "the new plan makes step `{id}`, which already ran, wait for step `{}`",
                    new.nodes[edge.from as usize].id
                ));
            }
        }
        let input = revision
            .input
            .clone()
            .unwrap_or_else(|| self.state.input.clone());
        check_input(&new, &input).map_err(|error| error.to_string())?;
        // The usage of planning counts against the run's budgets.
        let planner = format!("planner:{}", revision.planner);
        self.state.usage.add(revision.usage);
        let planner_usage = self
            .state
            .usage_by_agent
            .entry(planner.clone())
            .or_default();
        planner_usage.add(revision.usage);
        let planner_usage = *planner_usage;
        if let Some(error) = budget_error(&new, &planner, planner_usage, self.state.usage) {
            return Err(error);
        }
        let mut kept: Vec<(u32, String)> = Vec::with_capacity(finished.len());
        let nodes = new
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| match finished.get(&*node.id) {
                Some((old_index, _)) => {
                    kept.push((index as u32, node.id.to_string()));
                    let mut state = self.state.nodes[*old_index].clone();
                    state.forward_resolved = 0;
                    state.forward_taken = 0;
                    state.back_resolved = 0;
                    state.back_taken = 0;
                    state.rerun = false;
                    state
                }
                None => NodeState::pending(node.id.to_string()),
            })
            .collect();
        drop(finished);
        // The new layout, then the finished nodes' edges signalled again.
        self.graph = new.clone();
        self.graph_id_value = Value::String(new.name.to_string());
        self.state.nodes = nodes;
        self.state.edge_traversals = vec![0; new.edges.len()];
        if revision.input.is_some() {
            self.state.input = input;
        }
        self.ready.clear();
        self.signals.clear();
        if let Some(durable) = &mut self.durable {
            durable.node_dirty = vec![false; new.nodes.len()];
            durable.nodes.clear();
            durable.edge_dirty = vec![false; new.edges.len()];
            durable.edges.clear();
            durable.input_changed |= revision.input.is_some();
        }
        for (index, _) in &kept {
            let output = self.state.nodes[*index as usize].output.clone();
            self.resolve_out_edges(*index, &output);
        }
        self.propagate();
        let mut ready: Vec<u32> = new.entries.clone();
        ready.extend(self.ready.drain(..));
        let mut seen = HashSet::new();
        self.ready = ready
            .into_iter()
            .filter(|index| {
                self.state.nodes[*index as usize].status == NodeStatus::Pending
                    && seen.insert(*index)
            })
            .collect();
        let summary = RevisionSummary {
            number,
            failed,
            planner: revision.planner.clone(),
            diff: diff(&old, &new, kept.into_iter().map(|(_, id)| id).collect()),
            plan: revision.plan,
            usage: revision.usage,
            at: Utc::now(),
        };
        if let Some(durable) = &mut self.durable {
            // The step records the whole layout: the changes the signals
            // made are in it.
            durable.nodes.clear();
            durable.node_dirty.fill(false);
            durable.edges.clear();
            durable.edge_dirty.fill(false);
            durable.revision = Some(Box::new(PlanRevision {
                summary: summary.clone(),
                source: revision.source,
                nodes: self.state.nodes.clone(),
                edges: self.state.edge_traversals.clone(),
            }));
        }
        self.mark_agent(&planner);
        self.state.revisions.push(summary);
        Ok(())
    }

    fn within_limit(&self, edge_index: u32) -> bool {
        match self.graph.edges[edge_index as usize].max_traversals {
            Some(max) => self.state.edge_traversals[edge_index as usize] < max,
            None => true,
        }
    }

    fn take(&mut self, edge_index: u32, taken: bool) {
        if taken {
            self.state.edge_traversals[edge_index as usize] += 1;
            self.mark_edge(edge_index);
        }
        self.signals.push((edge_index, taken));
    }

    /// Resolves pending edge signals: readies nodes whose joins are complete
    /// and bypasses nodes none of whose incoming edges was taken.
    fn propagate(&mut self) {
        let graph = self.graph.clone();
        while let Some((edge_index, taken)) = self.signals.pop() {
            let edge = &graph.edges[edge_index as usize];
            let target = edge.to as usize;
            let before = join_counters(&self.state.nodes[target]);
            let node_state = &mut self.state.nodes[target];
            if edge.back {
                node_state.back_resolved += 1;
                node_state.back_taken += u32::from(taken);
                if node_state.back_resolved >= graph.back_in[target] {
                    let any = node_state.back_taken > 0;
                    node_state.back_resolved = 0;
                    node_state.back_taken = 0;
                    if any {
                        self.ready.push_back(edge.to);
                    }
                }
            } else {
                node_state.forward_resolved += 1;
                node_state.forward_taken += u32::from(taken);
                if node_state.forward_resolved >= graph.forward_in[target] {
                    let any = node_state.forward_taken > 0;
                    node_state.forward_resolved = 0;
                    node_state.forward_taken = 0;
                    if any {
                        self.ready.push_back(edge.to);
                    } else {
                        if node_state.status == NodeStatus::Pending {
                            node_state.status = NodeStatus::NotRun;
                        }
                        for &next in &graph.out_edges[target] {
                            self.signals.push((next, false));
                        }
                    }
                }
            }
            // A signal that readies a node with one incoming edge leaves its
            // state as it was: journal only real changes (a 1,000-step chain
            // would otherwise write every node twice).
            if join_counters(&self.state.nodes[target]) != before {
                self.mark_node(edge.to);
            }
        }
    }

    /// The run's output: the one sink that ran, or every sink that ran by id.
    fn output(&self) -> Value {
        let graph = &self.graph;
        let ran = |index: &&u32| {
            matches!(
                self.state.nodes[**index as usize].status,
                NodeStatus::Succeeded | NodeStatus::Skipped
            )
        };
        if matches!(
            self.state.status,
            RunStatus::ReplansExhausted | RunStatus::ReplanFailed
        ) {
            // The partial results: every node that finished, by id.
            return Value::Object(
                self.state
                    .nodes
                    .iter()
                    .filter(|node| node.status == NodeStatus::Succeeded)
                    .map(|node| (node.node_id.clone(), node.output.clone()))
                    .collect(),
            );
        }
        if self.state.status == RunStatus::Succeeded
            || self.state.status == RunStatus::IterationLimit
        {
            let sinks: Vec<&u32> = graph.sinks.iter().filter(ran).collect();
            match sinks.as_slice() {
                [only] => self.state.nodes[**only as usize].output.clone(),
                _ => Value::Object(
                    sinks
                        .iter()
                        .map(|&&index| {
                            let node_state = &self.state.nodes[index as usize];
                            (node_state.node_id.clone(), node_state.output.clone())
                        })
                        .collect(),
                ),
            }
        } else {
            Value::Null
        }
    }

    fn finish(mut self, output: Value) -> RunResult {
        if self.wants_events() {
            let event = RunEvent::RunFinished {
                run_id: self.state.run_id,
                status: self.state.status,
                error: self.state.error.clone(),
            };
            self.emit(event);
        }
        let trace = Trace::from_state(&self.state, &self.inner.config.prices);
        RunResult {
            run_id: self.state.run_id,
            status: self.state.status,
            output,
            error: self.state.error.clone(),
            trace,
            state: self.state,
        }
    }
}

/// What a signal can change in a node's state.
fn join_counters(node: &NodeState) -> (u32, u32, u32, u32, NodeStatus) {
    (
        node.forward_resolved,
        node.forward_taken,
        node.back_resolved,
        node.back_taken,
        node.status,
    )
}

/// The values of a node's inputs, labelled by reference.
fn resolve_inputs<'g>(node: &'g Node, state: &RunState) -> Vec<(&'g str, Value)> {
    node.inputs
        .iter()
        .map(|input| resolve_input(input, state))
        .collect()
}

/// One input's label and value.
fn resolve_input<'g>(input: &'g InputRef, state: &RunState) -> (&'g str, Value) {
    match input {
        InputRef::WholeInput => ("input", state.input.clone()),
        InputRef::Graph { name } => (
            &**name,
            state.input.get(&**name).cloned().unwrap_or(Value::Null),
        ),
        InputRef::State { key, label } => (
            &**label,
            state.shared.get(&**key).cloned().unwrap_or(Value::Null),
        ),
        InputRef::Node { node, path, label } => {
            let output = &state.nodes[*node as usize].output;
            let value = match path {
                None => output.clone(),
                Some(path) => lookup_path(output, path).cloned().unwrap_or(Value::Null),
            };
            (&**label, value)
        }
    }
}

/// A node call's `memory:` (issue 20), its queries resolved: searched
/// before the call, the hits added to the message as a data part; the
/// output written after it succeeds, before the step is journaled, under a
/// key of the run, node and iteration (a resumed run writes the same key).
struct NodeMemoryUse {
    /// Namespace, query text, hits wanted.
    reads: Vec<(Arc<str>, String, u32)>,
    writes: Vec<Arc<str>>,
    /// The key the output is written under.
    key: String,
    /// Every operation's namespace-independent fields, from the call.
    run_id: Uuid,
    graph_id: Arc<str>,
    node_id: String,
    agent: String,
    caller: Option<Arc<Principal>>,
    origin: Option<std::net::IpAddr>,
    traceparent: String,
}

// === impl NodeMemoryUse ===

impl NodeMemoryUse {
    /// The node's memory use, if it has one; `key` (made only then) names
    /// the output written.
    fn of(
        node: &Node,
        state: &RunState,
        call: &AgentCall,
        key: impl FnOnce() -> String,
    ) -> Option<Box<Self>> {
        if node.memory.reads.is_empty() && node.memory.writes.is_empty() {
            return None;
        }
        let reads = node
            .memory
            .reads
            .iter()
            .map(|read| {
                let query = match resolve_input(&read.query, state).1 {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (read.namespace.clone(), query, read.top_k)
            })
            .collect();
        Some(Box::new(Self {
            reads,
            writes: node.memory.writes.clone(),
            key: key(),
            run_id: call.run_id,
            graph_id: call.graph_id.clone(),
            node_id: call.node_id.clone(),
            agent: call.agent.clone(),
            caller: call.caller.clone(),
            origin: call.origin,
            traceparent: call.traceparent.clone(),
        }))
    }

    fn op(&self, namespace: &Arc<str>, action: MemoryAction) -> MemoryOp {
        MemoryOp {
            run_id: self.run_id,
            graph_id: self.graph_id.clone(),
            node_id: self.node_id.clone(),
            agent: self.agent.clone(),
            caller: self.caller.clone(),
            origin: self.origin,
            traceparent: self.traceparent.clone(),
            namespace: namespace.clone(),
            action,
        }
    }

    async fn around(
        self,
        dispatch: &dyn Dispatch,
        mut call: AgentCall,
        timeout: Option<Duration>,
        agent: &str,
    ) -> Result<(Value, Usage, NodeReport), (String, bool)> {
        let failed = |namespace: &str, error: DispatchError| {
            let retryable = error.retryable();
            (format!("memory `{namespace}`: {error}"), retryable)
        };
        if !self.reads.is_empty() {
            let mut found = Map::with_capacity(self.reads.len());
            for (namespace, query, top_k) in &self.reads {
                let action = MemoryAction::Search {
                    query: query.clone(),
                    top_k: *top_k,
                };
                let hits = dispatch
                    .memory(self.op(namespace, action))
                    .await
                    .map_err(|error| failed(namespace, error))?;
                found.insert(namespace.to_string(), hits);
            }
            let mut data = Map::with_capacity(1);
            data.insert("memory".to_owned(), Value::Object(found));
            push_data_part(&mut call.message, Value::Object(data));
        }
        let (output, usage, report) = call_once(dispatch, call, timeout, agent).await?;
        for namespace in &self.writes {
            let action = MemoryAction::Write {
                key: self.key.clone(),
                value: output.clone(),
            };
            dispatch
                .memory(self.op(namespace, action))
                .await
                .map_err(|error| failed(namespace, error))?;
        }
        Ok((output, usage, report))
    }
}

/// What the graph's token budgets leave for a call to `agent` now, if it
/// has any: the smaller of the run's and the agent's remainders. A model
/// agent caps its answer at it (`convergio.maxTokens`), so a budget stops
/// an answer before it is paid for, not only after.
fn tokens_left(graph: &Graph, agent: &str, state: &RunState) -> Option<u64> {
    let execution = &graph.execution;
    let run = execution
        .max_tokens_per_run
        .map(|max| max.saturating_sub(state.usage.tokens()));
    let per_agent = execution.max_tokens_per_agent.map(|max| {
        let used = state
            .usage_by_agent
            .get(agent)
            .map_or(0, |usage| usage.tokens());
        max.saturating_sub(used)
    });
    match (run, per_agent) {
        (Some(run), Some(per_agent)) => Some(run.min(per_agent)),
        (left, None) | (None, left) => left,
    }
}

/// Why a call to `agent` may not start: a token budget with nothing left
/// (the run's or the agent's), or a run cost budget already reached.
fn spent_before_call(graph: &Graph, agent: &str, state: &RunState) -> Option<String> {
    if tokens_left(graph, agent, state) == Some(0) {
        return Some(format!(
            "budget exceeded: no tokens left for agent `{agent}` (the run used {}), so it was not called",
            state.usage.tokens()
        ));
    }
    let max = graph.execution.max_cost_per_run?;
    let spent = state.usage.cost_micros? as f64 / 1_000_000.0;
    (spent >= max).then(|| {
        format!("budget exceeded: the run cost {spent}, reaching max_cost_per_run {max}, so agent `{agent}` was not called")
    })
}

/// Returns a budget error when usage passed a limit of the graph.
fn budget_error(
    graph: &Graph,
    agent: &str,
    agent_usage: Usage,
    run_usage: Usage,
) -> Option<String> {
    let execution = &graph.execution;
    if let Some(max) = execution.max_tokens_per_agent {
        if agent_usage.tokens() > max {
            return Some(format!(
                "budget exceeded: agent `{agent}` used {} tokens, over max_tokens_per_agent {max}",
                agent_usage.tokens()
            ));
        }
    }
    if let Some(max) = execution.max_tool_calls_per_agent {
        if agent_usage.tool_calls > max {
            return Some(format!(
                "budget exceeded: agent `{agent}` made {} tool calls, over max_tool_calls_per_agent {max}",
                agent_usage.tool_calls
            ));
        }
    }
    if let Some(max) = execution.max_tokens_per_run {
        if run_usage.tokens() > max {
            return Some(format!(
                "budget exceeded: the run used {} tokens, over max_tokens_per_run {max}",
                run_usage.tokens()
            ));
        }
    }
    if let Some(max) = execution.max_tool_calls_per_run {
        if run_usage.tool_calls > max {
            return Some(format!(
                "budget exceeded: the run made {} tool calls, over max_tool_calls_per_run {max}",
                run_usage.tool_calls
            ));
        }
    }
    if let (Some(max), Some(spent)) = (execution.max_cost_per_run, run_usage.cost_micros) {
        let spent = spent as f64 / 1_000_000.0;
        if spent > max {
            return Some(format!(
                "budget exceeded: the run cost {spent}, over max_cost_per_run {max}"
            ));
        }
    }
    None
}

/// Waits for an event on `wait`'s topic: the data part it arrives as, or
/// why the node stops waiting.
async fn event_for(
    wait: EventWait,
    node_id: &str,
    mut published: watch::Receiver<BTreeMap<String, Value>>,
) -> Result<Value, String> {
    let topic = &*wait.topic;
    let waited = tokio::time::timeout(
        wait.timeout,
        published.wait_for(|published| published.contains_key(topic)),
    )
    .await;
    match waited {
        Ok(Ok(published)) => {
            let event = published.get(topic).cloned().unwrap_or(Value::Null);
            Ok(serde_json::json!({"data": {"event": {topic: event}}}))
        }
        Ok(Err(_)) => Err(format!(
            "node `{node_id}` stopped waiting for event `{topic}`: the run ended"
        )),
        Err(_) => Err(format!(
            "node `{node_id}` waited {}s for event `{topic}`; none was published",
            wait.timeout.as_secs_f64()
        )),
    }
}

/// Makes one call and maps its reply to the node's output, or to an error
/// and whether a retry may help.
async fn call_once(
    dispatch: &dyn Dispatch,
    call: AgentCall,
    timeout: Option<Duration>,
    agent: &str,
) -> Result<(Value, Usage, NodeReport), (String, bool)> {
    let reply = match timeout {
        Some(timeout) => match Box::pin(tokio::time::timeout(timeout, dispatch.call(call))).await {
            Ok(reply) => reply,
            Err(_) => Err(DispatchError::Timeout),
        },
        None => dispatch.call(call).await,
    };
    match reply {
        Ok(reply) => match reply_output(&reply.response) {
            Ok(output) => Ok((output, reply.usage, reply.report)),
            Err(error) => Err((
                format!("agent `{agent}` answered badly: {}", error.message),
                error.retryable,
            )),
        },
        Err(DispatchError::Timeout) => Err((
            format!(
                "agent `{agent}` timed out after {}s",
                timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
            ),
            true,
        )),
        Err(error) => Err((format!("agent `{agent}`: {error}"), error.retryable())),
    }
}

/// Full-jitter backoff before retry number `attempt` (1-based): a random
/// delay up to base × 2^(attempt-1) (exponential) or base (fixed).
fn backoff_delay(backoff: Backoff, attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = match backoff {
        Backoff::None => return Duration::ZERO,
        Backoff::Fixed => base,
        Backoff::Exponential => base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)),
    }
    .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}
