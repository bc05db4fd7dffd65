//! Re-planning (§9.2) of checkpointed runs, on both backends: a failed
//! node asks the replanner for a new graph with the finished steps and the
//! error, the run continues on it without re-running finished nodes, every
//! re-plan is a journaled step (in the trace and the event stream as
//! `plan_revised` with its diff), spent re-plans end the run with its
//! partial results, and a crash between the failure and the re-plan (or
//! after it) resumes to the same outcome.
//!
//! A crash is a tokio runtime dropped with the run in flight (as in
//! `journal.rs`): everything of that process stops where it was.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use convergio_orchestrator::{
    parse_yaml, validate, AgentCall, AgentReply, AnyAgent, Continue, Dispatch, DispatchError,
    Executor, ExecutorConfig, Graph, Limits, ReplanRequest, ReplanSettings, Replanner, Revision,
    RunEvent, RunEvents, RunJournal, RunOptions, RunResult, RunStatus, StepDiff, Usage,
};
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The plan the runs start on: `analyse` calls an agent that always fails.
const FIRST: &str = r#"
name: plan-r
nodes:
  - {id: fetch, agent: worker, inputs: [topic]}
  - {id: analyse, agent: broken, inputs: [fetch.output]}
  - {id: report, agent: worker, inputs: [analyse.output]}
edges:
  - {from: fetch, to: analyse}
  - {from: analyse, to: report}
config: {checkpoint_enabled: true, max_iterations: 1}
"#;

/// The new plan: `analyse` replaced by `analyse2` on a working agent.
const SECOND: &str = r#"
name: plan-r
nodes:
  - {id: fetch, agent: worker, inputs: [topic]}
  - {id: analyse2, agent: worker, inputs: [fetch.output]}
  - {id: report, agent: worker, inputs: [analyse2.output]}
edges:
  - {from: fetch, to: analyse2}
  - {from: analyse2, to: report}
config: {checkpoint_enabled: true, max_iterations: 1}
"#;

/// A new plan whose new step fails too.
const STILL_BROKEN: &str = r#"
name: plan-r
nodes:
  - {id: fetch, agent: worker, inputs: [topic]}
  - {id: analyse2, agent: broken, inputs: [fetch.output]}
  - {id: report, agent: worker, inputs: [analyse2.output]}
edges:
  - {from: fetch, to: analyse2}
  - {from: analyse2, to: report}
config: {checkpoint_enabled: true, max_iterations: 1}
"#;

/// [`SECOND`] with a token budget the planner's usage alone passes.
const SECOND_OVER_BUDGET: &str = r#"
name: plan-r
nodes:
  - {id: fetch, agent: worker, inputs: [topic]}
  - {id: analyse2, agent: worker, inputs: [fetch.output]}
  - {id: report, agent: worker, inputs: [analyse2.output]}
edges:
  - {from: fetch, to: analyse2}
  - {from: analyse2, to: report}
config: {checkpoint_enabled: true, max_iterations: 1}
execution: {max_tokens_per_run: 5}
"#;

/// What the planner of these tests reports using per re-plan.
const PLANNER_TOKENS: u64 = 7;

#[derive(Clone)]
struct Harness {
    url: String,
}

async fn open(url: &str) -> Harness {
    Harness {
        url: url.to_owned(),
    }
}

impl Harness {
    async fn store(&self, replica: &str) -> Arc<RunStore> {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        RunStore::open(
            db,
            RunStoreConfig {
                replica: replica.to_owned(),
                lease_ttl: Duration::from_secs(30),
                ..RunStoreConfig::default()
            },
        )
    }
}

/// Runs `process` on a runtime of its own, dropped afterwards with
/// whatever it still runs (a crash when it did not finish).
async fn in_process<T: Send + 'static>(process: impl Future<Output = T> + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let output = runtime.block_on(process);
        runtime.shutdown_background();
        output
    })
    .await
    .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Test agents: `worker` answers `node(inputs)`, `broken` always fails; a
/// call of the node named in `hang` hangs (once) and reports it.
#[derive(Default)]
struct Agents {
    /// Every call: (node id, agent, message id).
    calls: Mutex<Vec<(String, String, String)>>,
    hang: Mutex<Option<(String, mpsc::UnboundedSender<()>)>>,
}

impl Agents {
    fn count(&self, node: &str) -> usize {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(id, _, _)| id == node)
            .count()
    }

    fn message_ids(&self, node: &str) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(id, _, _)| id == node)
            .map(|(_, _, message)| message.clone())
            .collect()
    }
}

#[async_trait]
impl Dispatch for Agents {
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError> {
        let message_id = call
            .message
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.calls.lock().expect("calls").push((
            call.node_id.clone(),
            call.agent.clone(),
            message_id,
        ));
        let hang = {
            let mut hang = self.hang.lock().expect("hang");
            match hang.as_ref() {
                Some((node, _)) if *node == call.node_id => hang.take(),
                _ => None,
            }
        };
        if let Some((_, signal)) = hang {
            let _ = signal.send(());
            std::future::pending::<()>().await;
        }
        if call.agent == "broken" {
            return Err(DispatchError::Failed {
                message: "broken refused".to_owned(),
                retryable: false,
            });
        }
        let inputs: Vec<String> = call
            .message
            .get("parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .map(|part| {
                        part.get("text")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| part.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let text = format!("{}({})", call.node_id, inputs.join(","));
        Ok(AgentReply::from_response(json!({
            "message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"text": text}]}
        })))
    }
}

/// A replanner answering each re-plan with the next of `answers` (the last
/// one again when they run out; an `Err` text fails the re-plan), keeping
/// what it was asked; with `hang`, its first call reports and never ends.
struct Planner {
    answers: Vec<Result<&'static str, &'static str>>,
    asked: Mutex<Vec<ReplanRequest>>,
    hang: Mutex<Option<mpsc::UnboundedSender<()>>>,
}

impl Planner {
    fn new(answers: Vec<Result<&'static str, &'static str>>) -> Arc<Self> {
        Arc::new(Self {
            answers,
            asked: Mutex::new(Vec::new()),
            hang: Mutex::new(None),
        })
    }

    fn hanging(answers: Vec<Result<&'static str, &'static str>>) -> (Arc<Self>, HangSignal) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let planner = Self {
            answers,
            asked: Mutex::new(Vec::new()),
            hang: Mutex::new(Some(sender)),
        };
        (Arc::new(planner), receiver)
    }

    fn asked(&self) -> Vec<ReplanRequest> {
        self.asked.lock().expect("asked").clone()
    }
}

type HangSignal = mpsc::UnboundedReceiver<()>;

#[async_trait]
impl Replanner for Planner {
    async fn replan(&self, request: ReplanRequest) -> Result<Revision, String> {
        let number = request.number;
        self.asked.lock().expect("asked").push(request);
        let hang = self.hang.lock().expect("hang").take();
        if let Some(signal) = hang {
            let _ = signal.send(());
            std::future::pending::<()>().await;
        }
        let answer = self
            .answers
            .get(number as usize - 1)
            .or(self.answers.last())
            .copied()
            .unwrap_or(Err("no answer"));
        let source = answer.map_err(str::to_owned)?;
        Ok(Revision {
            source: source.to_owned(),
            graph: graph(source),
            input: None,
            plan: json!({"version": number + 1}),
            planner: "scripted".to_owned(),
            usage: Usage {
                tokens_in: PLANNER_TOKENS,
                ..Usage::default()
            },
        })
    }
}

fn graph(yaml: &str) -> Arc<Graph> {
    let spec = parse_yaml(yaml).expect("graph parses");
    Arc::new(validate(&spec, &AnyAgent, &Limits::default()).expect("graph validates"))
}

fn executor(agents: Arc<Agents>, store: Arc<RunStore>, planner: Arc<Planner>) -> Executor {
    let journal: Arc<dyn RunJournal> = store;
    let replanner: Arc<dyn Replanner> = planner;
    Executor::with_parts(
        agents,
        ExecutorConfig::default(),
        Some(journal),
        Some(replanner),
    )
}

fn options(max_replans: u32) -> RunOptions {
    RunOptions {
        source: Some(FIRST.to_owned()),
        replan: Some(ReplanSettings {
            max_replans,
            plan: json!({"version": 1}),
        }),
        ..RunOptions::default()
    }
}

/// Drains a run's events and returns them with its result.
async fn finish(executor: &Executor, mut events: RunEvents) -> (Vec<RunEvent>, RunResult) {
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        seen.push(event);
    }
    let result = executor.result(events.run_id).expect("the run is kept");
    (seen, result)
}

fn revised(events: &[RunEvent]) -> Vec<(u32, String, StepDiff)> {
    events
        .iter()
        .filter_map(|event| match event {
            RunEvent::PlanRevised {
                number,
                failed_node,
                diff,
                ..
            } => Some((*number, failed_node.clone(), diff.clone())),
            _ => None,
        })
        .collect()
}

fn expected_diff() -> StepDiff {
    StepDiff {
        added: vec!["analyse2".to_owned()],
        removed: vec!["analyse".to_owned()],
        changed: vec!["report".to_owned()],
        kept: vec!["fetch".to_owned()],
    }
}

const FINAL: &str = "report(analyse2(fetch(rust)))";

// === cases ===

async fn a_failed_step_is_replanned_and_the_new_plan_runs(harness: Harness) {
    let store = harness.store("replica-a").await;
    let agents = Arc::new(Agents::default());
    let planner = Planner::new(vec![Ok(SECOND)]);
    let executor = executor(agents.clone(), store.clone(), planner.clone());
    let events = executor
        .stream_with(graph(FIRST), json!({"topic": "rust"}), options(2))
        .expect("run starts");
    let (events, result) = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!(FINAL));

    // The planner was asked once, with the failure and the finished step.
    let asked = planner.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].number, 1);
    assert_eq!(asked[0].plan, json!({"version": 1}));
    assert_eq!(asked[0].failed.node_id, "analyse");
    assert_eq!(asked[0].failed.agent.as_deref(), Some("broken"));
    assert!(
        asked[0].failed.error.contains("broken refused"),
        "{}",
        asked[0].failed.error
    );
    assert_eq!(asked[0].completed.len(), 1);
    assert_eq!(asked[0].completed[0].node_id, "fetch");
    assert_eq!(asked[0].completed[0].agent.as_deref(), Some("worker"));
    assert_eq!(asked[0].completed[0].output, json!("fetch(rust)"));

    // Finished nodes ran once; the failed one was not called again.
    for (node, calls) in [("fetch", 1), ("analyse", 1), ("analyse2", 1), ("report", 1)] {
        assert_eq!(agents.count(node), calls, "calls of {node}");
    }

    // `plan_revised` in the event stream and in the trace, with the diff;
    // the planner's tokens count in the run's usage.
    assert_eq!(
        revised(&events),
        vec![(1, "analyse".to_owned(), expected_diff())]
    );
    assert_eq!(result.trace.revisions.len(), 1);
    assert_eq!(result.trace.revisions[0].diff, expected_diff());
    assert_eq!(result.trace.revisions[0].planner, "scripted");
    assert_eq!(result.state.usage.tokens_in, PLANNER_TOKENS);
    let (_, analyse_event) = events
        .iter()
        .enumerate()
        .find(|(_, event)| matches!(event, RunEvent::NodeError { node_id, .. } if node_id == "analyse"))
        .expect("the failure is an event");
    assert!(
        matches!(analyse_event, RunEvent::NodeError { action, .. } if action == "replan"),
        "{analyse_event:?}"
    );

    // The journal replays to the same end, on the revised graph.
    let other = harness.store("replica-b").await;
    let reader = executor_reading(other);
    let stored = reader.stored_result(result.run_id).await.expect("stored");
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(stored.output, json!(FINAL));
    assert_eq!(stored.trace.revisions, result.trace.revisions);
    let ids: Vec<&str> = stored
        .state
        .nodes
        .iter()
        .map(|node| node.node_id.as_str())
        .collect();
    assert_eq!(ids, ["fetch", "analyse2", "report"]);
}

fn executor_reading(store: Arc<RunStore>) -> Executor {
    executor(Arc::new(Agents::default()), store, Planner::new(Vec::new()))
}

async fn spent_replans_end_the_run_with_its_partial_results(harness: Harness) {
    let store = harness.store("replica-a").await;
    let agents = Arc::new(Agents::default());
    let planner = Planner::new(vec![Ok(STILL_BROKEN)]);
    let executor = executor(agents.clone(), store.clone(), planner.clone());
    let events = executor
        .stream_with(graph(FIRST), json!({"topic": "rust"}), options(1))
        .expect("run starts");
    let (events, result) = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::ReplansExhausted);
    let error = result.error.clone().unwrap_or_default();
    assert!(
        error.contains("analyse2") && error.contains("max_replans 1"),
        "{error}"
    );
    // The partial results: the finished step's output, readable.
    assert_eq!(result.output, json!({"fetch": "fetch(rust)"}));
    assert_eq!(planner.asked().len(), 1, "one re-plan, then none left");
    assert_eq!(revised(&events).len(), 1);
    assert_eq!(agents.count("fetch"), 1);
    let stored = executor_reading(harness.store("replica-b").await)
        .stored_result(result.run_id)
        .await
        .expect("stored");
    assert_eq!(stored.status, RunStatus::ReplansExhausted);
    assert_eq!(stored.output, json!({"fetch": "fetch(rust)"}));

    // A planner that fails ends the run `replan_failed`, partial results
    // kept too.
    let planner = Planner::new(vec![Err("no agent can analyse")]);
    let executor = self::executor(Arc::new(Agents::default()), store, planner);
    let events = executor
        .stream_with(graph(FIRST), json!({"topic": "rust"}), options(3))
        .expect("run starts");
    let (_, result) = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::ReplanFailed);
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|error| error.contains("no agent can analyse")),
        "{:?}",
        result.error
    );
    assert_eq!(result.output, json!({"fetch": "fetch(rust)"}));

    // Planning counts against the run's budgets: a re-plan whose usage
    // passes the token budget ends the run.
    let planner = Planner::new(vec![Ok(SECOND_OVER_BUDGET)]);
    let agents = Arc::new(Agents::default());
    let executor = self::executor(agents.clone(), harness.store("replica-c").await, planner);
    let events = executor
        .stream_with(graph(FIRST), json!({"topic": "rust"}), options(3))
        .expect("run starts");
    let (_, result) = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::ReplanFailed);
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|error| error.contains("budget exceeded")),
        "{:?}",
        result.error
    );
    assert_eq!(agents.count("analyse2"), 0, "nothing of the new plan ran");
}

/// Starts a run in a process that dies once `planner` (or the agents) hang:
/// returns the run id.
async fn crash_when_hung(
    harness: &Harness,
    agents: Arc<Agents>,
    planner: Arc<Planner>,
    mut hung: HangSignal,
) -> Uuid {
    let process = harness.clone();
    in_process(async move {
        let store = process.store("replica-a").await;
        let executor = executor(agents, store, planner);
        let events = executor
            .stream_with(graph(FIRST), json!({"topic": "rust"}), options(2))
            .expect("run starts");
        hung.recv().await.expect("the process hung");
        events.run_id
    })
    .await
}

/// Resumes `run_id` in a new process (same replica name, so at once).
async fn resume(
    harness: &Harness,
    run_id: Uuid,
    agents: Arc<Agents>,
    planner: Arc<Planner>,
) -> RunResult {
    let process = harness.clone();
    in_process(async move {
        let store = process.store("replica-a").await;
        let executor = executor(agents, store, planner);
        let events = executor
            .continue_stream(run_id, Continue::Resume, None, None)
            .await
            .expect("the run resumes");
        finish(&executor, events).await.1
    })
    .await
}

async fn a_crash_around_a_replan_resumes_to_the_same_outcome(harness: Harness) {
    // Between the failure and the re-plan: the failure is journaled, the
    // planner never answers in the process that dies.
    let agents = Arc::new(Agents::default());
    let (planner, hung) = Planner::hanging(vec![Ok(SECOND)]);
    let run_id = crash_when_hung(&harness, agents.clone(), planner.clone(), hung).await;
    assert_eq!(planner.asked().len(), 1);
    let stored = harness
        .store("replica-r")
        .await
        .load(run_id, None)
        .await
        .expect("the run is stored");
    assert_eq!(stored.status, RunStatus::Running);
    let pending = stored
        .steps
        .last()
        .and_then(|step| step.pending_replan.clone())
        .expect("the failure is journaled before the re-plan");
    assert_eq!(pending.node_id, "analyse");

    let planner = Planner::new(vec![Ok(SECOND)]);
    let result = resume(&harness, run_id, agents.clone(), planner.clone()).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!(FINAL));
    assert_eq!(result.trace.revisions.len(), 1);
    assert_eq!(result.trace.revisions[0].diff, expected_diff());
    // The resumed run asked again with the same failure and finished step,
    // and called no agent twice: not `fetch`, not the failed `analyse`.
    let asked = planner.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].failed.node_id, "analyse");
    assert_eq!(asked[0].completed[0].output, json!("fetch(rust)"));
    for node in ["fetch", "analyse", "analyse2", "report"] {
        assert_eq!(agents.count(node), 1, "calls of {node}");
    }

    // After the re-plan: the new graph is journaled; the node in flight is
    // sent again with the same message id, and nothing is re-planned.
    let agents = Arc::new(Agents::default());
    let (sender, hung) = mpsc::unbounded_channel();
    *agents.hang.lock().expect("hang") = Some(("analyse2".to_owned(), sender));
    let planner = Planner::new(vec![Ok(SECOND)]);
    let run_id = crash_when_hung(&harness, agents.clone(), planner.clone(), hung).await;
    let resumed_planner = Planner::new(vec![Ok(STILL_BROKEN)]);
    let result = resume(&harness, run_id, agents.clone(), resumed_planner.clone()).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!(FINAL));
    assert!(resumed_planner.asked().is_empty(), "no second re-plan");
    let sent = agents.message_ids("analyse2");
    assert_eq!(sent.len(), 2, "sent before the crash and again after it");
    assert_eq!(sent[0], sent[1], "same message id after the crash");
    for node in ["fetch", "analyse", "report"] {
        assert_eq!(agents.count(node), 1, "calls of {node}");
    }
}

convergio_tests::on_both_backends!(
    super::open;
    a_failed_step_is_replanned_and_the_new_plan_runs,
    spent_replans_end_the_run_with_its_partial_results,
    a_crash_around_a_replan_resumes_to_the_same_outcome,
);
