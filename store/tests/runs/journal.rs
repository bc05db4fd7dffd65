//! Durable runs conformance (issue 8), run listings and stored graphs
//! (issue 14), on both backends.
//!
//! A crash is a tokio runtime dropped with the run in flight: its tasks (the
//! run, the journal writer, the pool) vanish exactly where they were, as
//! with SIGKILL, and a new journal on the same database resumes the run.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use convergio_orchestrator::api::GraphSummary;
use convergio_orchestrator::{
    parse_yaml, validate, AgentCall, AgentReply, AnyAgent, Continue, Dispatch, DispatchError,
    Executor, ExecutorConfig, Graph, GraphStore, Limits, OrchestratorError, RunEvents, RunFilter,
    RunJournal, RunOptions, RunResult, RunStatus,
};
use convergio_schemas::{AuthMethod, Principal};
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

const CHAIN: &str = r#"
name: chain
nodes:
  - {id: a, agent: worker, inputs: [topic]}
  - {id: b, agent: worker, inputs: [a.output]}
  - {id: c, agent: worker, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

const FAN: &str = r#"
name: fan
nodes:
  - {id: a, agent: worker, inputs: [topic]}
  - {id: x, agent: worker, inputs: [a.output]}
  - {id: y, agent: worker, inputs: [a.output]}
  - {id: z, agent: worker, inputs: [x.output, y.output]}
edges:
  - {from: a, to: [x, y]}
  - {from: [x, y], to: z}
config: {checkpoint_enabled: true}
"#;

const SHARED: &str = r#"
name: shared
state:
  notes: {reducer: append}
nodes:
  - {id: a, agent: worker, inputs: [topic], update_state: {notes: output}}
  - {id: x, agent: worker, inputs: [a.output], update_state: {notes: output}}
  - {id: y, agent: worker, inputs: [a.output], update_state: {notes: output}}
  - {id: z, agent: worker, inputs: [state.notes]}
edges:
  - {from: a, to: [x, y]}
  - {from: [x, y], to: z}
config: {checkpoint_enabled: true}
"#;

const HUMAN: &str = r#"
name: reviewed
nodes:
  - {id: a, agent: worker, inputs: [topic]}
  - {id: b, agent: flaky, inputs: [a.output], on_error: human}
  - {id: c, agent: worker, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

/// A fresh database for one case; each process of the case opens its own
/// journal on it.
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
        self.store_with(replica, Duration::from_secs(30)).await
    }

    async fn store_with(&self, replica: &str, lease_ttl: Duration) -> Arc<RunStore> {
        let db = Db::open(&self.url, &DbConfig::default())
            .await
            .expect("database opens");
        RunStore::open(
            db,
            RunStoreConfig {
                replica: replica.to_owned(),
                lease_ttl,
                ..RunStoreConfig::default()
            },
        )
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `process` as a process of its own: on a runtime of its own (on a
/// thread of its own, since a runtime cannot be blocked on inside another),
/// dropped afterwards with whatever it still runs.
async fn in_process<T: Send + 'static>(process: impl Future<Output = T> + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        let runtime = runtime();
        let output = runtime.block_on(process);
        runtime.shutdown_background();
        output
    })
    .await
    .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Test agents: `worker` answers `node(inputs)`, `flaky` fails while
/// `fail_flaky` is set; a node named in `hang` hangs (once) and reports it.
#[derive(Default)]
struct Agents {
    /// Every call: (node id, message id).
    calls: Mutex<Vec<(String, String)>>,
    hang: Mutex<Option<(String, mpsc::UnboundedSender<()>)>>,
    fail_flaky: Mutex<bool>,
}

impl Agents {
    fn hanging_on(node: &str) -> (Arc<Self>, mpsc::UnboundedReceiver<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let agents = Self {
            hang: Mutex::new(Some((node.to_owned(), sender))),
            ..Self::default()
        };
        (Arc::new(agents), receiver)
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().expect("calls").clone()
    }

    fn count(&self, node: &str) -> usize {
        self.calls().iter().filter(|(id, _)| id == node).count()
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
        self.calls
            .lock()
            .expect("calls")
            .push((call.node_id.clone(), message_id));
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
        if call.agent == "flaky" && *self.fail_flaky.lock().expect("flaky") {
            return Err(DispatchError::Failed {
                message: "flaky refused".to_owned(),
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

fn graph(yaml: &str) -> Arc<Graph> {
    let spec = parse_yaml(yaml).expect("graph parses");
    Arc::new(validate(&spec, &AnyAgent, &Limits::default()).expect("graph validates"))
}

fn executor(agents: Arc<Agents>, store: Arc<RunStore>) -> Executor {
    Executor::with_journal(agents, ExecutorConfig::default(), store)
}

fn options(source: &str) -> RunOptions {
    RunOptions {
        source: Some(source.to_owned()),
        ..RunOptions::default()
    }
}

fn input() -> Value {
    json!({"topic": "rust"})
}

/// Drains a run's events and returns its result.
async fn finish(executor: &Executor, mut events: RunEvents) -> RunResult {
    while events.next().await.is_some() {}
    executor.result(events.run_id).expect("the run is kept")
}

/// Starts `yaml` in a process that dies once `hang_node` is called:
/// returns the run id and the calls the dead process made. The process is
/// replica `replica-a`; a restart with the same name resumes at once,
/// another replica only once the lease expired.
async fn crash_at(
    harness: &Harness,
    yaml: &'static str,
    hang_node: &str,
) -> (Uuid, Vec<(String, String)>) {
    let (agents, mut hung) = Agents::hanging_on(hang_node);
    let process = harness.clone();
    let process_agents = agents.clone();
    let run_id = in_process(async move {
        let store = process.store("replica-a").await;
        let executor = executor(process_agents, store);
        let events = executor
            .stream_with(graph(yaml), input(), options(yaml))
            .expect("run starts");
        hung.recv().await.expect("the node was called");
        events.run_id
    })
    .await;
    (run_id, agents.calls())
}

/// The output of `yaml` run from start to end by a process of its own.
async fn uninterrupted(harness: &Harness, yaml: &'static str) -> Value {
    let process = harness.clone();
    in_process(async move {
        let store = process.store("replica-u").await;
        let executor = executor(Arc::new(Agents::default()), store);
        let events = executor
            .stream_with(graph(yaml), input(), options(yaml))
            .expect("run starts");
        let result = finish(&executor, events).await;
        assert_eq!(result.status, RunStatus::Succeeded);
        result.output
    })
    .await
}

// === cases ===

async fn replay_rebuilds_the_final_state(harness: Harness) {
    let store = harness.store("replica-a").await;
    let executor = executor(Arc::new(Agents::default()), store.clone());
    let events = executor
        .stream_with(graph(FAN), input(), options(FAN))
        .expect("run starts");
    let result = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded);
    let stored = executor
        .stored_result(result.run_id)
        .await
        .expect("stored run");
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(stored.output, result.output);
    assert_eq!(stored.state.nodes, result.state.nodes);
    assert_eq!(stored.state.edge_traversals, result.state.edge_traversals);
    assert_eq!(stored.state.executions, result.state.executions);
    assert_eq!(stored.state.trace_id, result.state.trace_id);
    let loaded = store.load(result.run_id, None).await.expect("loads");
    assert!(
        loaded.steps.len() <= 6,
        "one step per finished node at most"
    );
}

async fn crash_mid_run_resumes_without_calling_finished_nodes_again(harness: Harness) {
    let expected = uninterrupted(&harness, CHAIN).await;
    let (run_id, before) = crash_at(&harness, CHAIN, "b").await;
    assert_eq!(
        before
            .iter()
            .map(|(node, _)| node.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let store = harness.store("replica-a").await;
    let agents = Arc::new(Agents::default());
    let executor = executor(agents.clone(), store);
    let events = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .expect("the run resumes");
    let result = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, expected);
    // `a` finished before the crash: not called again. `b` was in
    // flight: re-sent with the same message id. `c` ran once.
    assert_eq!(agents.count("a"), 0);
    assert_eq!(agents.count("c"), 1);
    let resent: Vec<_> = agents
        .calls()
        .into_iter()
        .filter(|(node, _)| node == "b")
        .collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].1, before[1].1, "same messageId after the crash");
    // Finished now: resuming again is refused.
    let again = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .err()
        .expect("a finished run does not resume");
    assert!(
        matches!(again, OrchestratorError::RunEnded { .. }),
        "{again}"
    );
}

async fn fan_out_crash_keeps_the_finished_branch(harness: Harness) {
    let expected = uninterrupted(&harness, FAN).await;
    // `y` hangs while `x` may finish: the resumed run must not call any
    // node whose step was committed.
    let (run_id, before) = crash_at(&harness, FAN, "y").await;
    let store = harness.store("replica-a").await;
    let stored = store.load(run_id, None).await.expect("loads");
    let agents = Arc::new(Agents::default());
    let executor = executor(agents.clone(), store);
    let events = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .expect("the run resumes");
    let result = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, expected);
    let finished_before: Vec<String> = stored
        .steps
        .iter()
        .flat_map(|step| step.executions.iter().map(|run| run.node_id.clone()))
        .collect();
    for node in &finished_before {
        assert_eq!(agents.count(node), 0, "{node} finished before the crash");
    }
    assert_eq!(agents.count("a"), 0);
    assert_eq!(agents.count("z"), 1);
    let ids_before: HashMap<String, String> = before.into_iter().collect();
    for (node, message_id) in agents.calls() {
        if let Some(old) = ids_before.get(&node) {
            assert_eq!(*old, message_id, "{node} re-sent with its message id");
        }
    }
}

/// Shared state (issue 20) is part of each node's step: a crash while `y`
/// runs and a resume leave every node's update in the state exactly once.
async fn shared_state_survives_a_crash_without_duplicate_updates(harness: Harness) {
    let (run_id, _) = crash_at(&harness, SHARED, "y").await;
    let store = harness.store("replica-a").await;
    let agents = Arc::new(Agents::default());
    let executor = executor(agents.clone(), store);
    let events = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .expect("the run resumes");
    let result = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    let mut notes: Vec<String> = result.state.shared["notes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|note| note.as_str().unwrap_or_default().to_owned())
        .collect();
    notes.sort();
    assert_eq!(notes, ["a(rust)", "x(a(rust))", "y(a(rust))"]);
    // `z` read the whole list, as a data part.
    let z = result.state.nodes[3]
        .output
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for note in &notes {
        assert!(z.contains(note.as_str()), "{z}");
    }
    assert_eq!(agents.count("a"), 0, "a finished before the crash");
}

async fn humans_approve_input_and_reject(harness: Harness) {
    let store = harness.store("replica-a").await;
    let agents = Arc::new(Agents::default());
    *agents.fail_flaky.lock().expect("flaky") = true;
    let executor = executor(agents.clone(), store.clone());
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let events = executor
            .stream_with(graph(HUMAN), input(), options(HUMAN))
            .expect("run starts");
        let result = finish(&executor, events).await;
        assert_eq!(result.status, RunStatus::WaitingForHuman);
        assert_eq!(result.state.waiting_node.as_deref(), Some("b"));
        waiting.push(result.run_id);
    }
    // Resuming a waiting run is not the way to continue it.
    let error = executor
        .continue_stream(waiting[0], Continue::Resume, None, None)
        .await
        .err()
        .expect("resume refused");
    assert!(
        matches!(error, OrchestratorError::RunEnded { .. }),
        "{error}"
    );

    // The decision survives a restart: a new executor on a new journal.
    drop(executor);
    let store = harness.store("replica-b").await;
    let executor = executor_again(agents.clone(), store.clone());
    *agents.fail_flaky.lock().expect("flaky") = false;
    let approved = finish(
        &executor,
        executor
            .continue_stream(waiting[0], Continue::Approve, None, None)
            .await
            .expect("approve"),
    )
    .await;
    assert_eq!(
        approved.status,
        RunStatus::Succeeded,
        "{:?}",
        approved.error
    );
    assert_eq!(approved.output, json!("c(b(a(rust)))"));

    let given = finish(
        &executor,
        executor
            .continue_stream(
                waiting[1],
                Continue::Input {
                    output: json!("from a person"),
                },
                None,
                None,
            )
            .await
            .expect("input"),
    )
    .await;
    assert_eq!(given.status, RunStatus::Succeeded);
    assert_eq!(given.output, json!("c(from a person)"));

    let rejected = finish(
        &executor,
        executor
            .continue_stream(
                waiting[2],
                Continue::Reject {
                    reason: Some("not today".to_owned()),
                },
                None,
                None,
            )
            .await
            .expect("reject"),
    )
    .await;
    assert_eq!(rejected.status, RunStatus::Failed);
    assert!(rejected
        .error
        .as_deref()
        .is_some_and(|error| error.contains("not today")));

    // Approving a run that is not waiting changes nothing.
    let steps = store
        .load(waiting[0], None)
        .await
        .expect("loads")
        .steps
        .len();
    let error = executor
        .continue_stream(waiting[0], Continue::Approve, None, None)
        .await
        .err()
        .expect("approve refused");
    assert!(
        matches!(error, OrchestratorError::NotWaiting { .. }),
        "{error}"
    );
    let after = store
        .load(waiting[0], None)
        .await
        .expect("loads")
        .steps
        .len();
    assert_eq!(steps, after);
}

fn executor_again(agents: Arc<Agents>, store: Arc<RunStore>) -> Executor {
    executor(agents, store)
}

async fn named_checkpoints_resume_as_new_runs(harness: Harness) {
    let (run_id, _) = crash_at(&harness, CHAIN, "b").await;
    let store = harness.store("replica-b").await;
    let agents = Arc::new(Agents::default());
    let executor = executor(agents.clone(), store.clone());
    let checkpoint = executor.checkpoint(run_id, "after_a").await.expect("named");
    assert_eq!(checkpoint.seq, 1);
    let duplicate = executor.checkpoint(run_id, "after_a").await.err();
    assert!(matches!(
        duplicate,
        Some(OrchestratorError::CheckpointExists { .. })
    ));
    let listed = executor.checkpoints(run_id).await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "after_a");
    let missing = executor
        .resume_from_checkpoint(run_id, "nope", None, None, None)
        .await
        .err();
    assert!(matches!(
        missing,
        Some(OrchestratorError::CheckpointNotFound { .. })
    ));
    // No node after `after_a` reads the run input: a new input would be
    // silently ignored, so it is refused (issue 14).
    let ignored = executor
        .resume_from_checkpoint(run_id, "after_a", Some(json!({"topic": "go"})), None, None)
        .await
        .err();
    assert!(
        matches!(ignored, Some(OrchestratorError::InputUnused { .. })),
        "{ignored:?}"
    );
    let events = executor
        .resume_from_checkpoint(run_id, "after_a", None, None, None)
        .await
        .expect("resumes from the checkpoint");
    let forked = events.run_id;
    assert_ne!(forked, run_id);
    let result = finish(&executor, events).await;
    assert_eq!(result.status, RunStatus::Succeeded);
    // `a` ran before the checkpoint: its output is kept.
    assert_eq!(result.output, json!("c(b(a(rust)))"));
    assert_eq!(agents.count("a"), 0);
    let source = store.load(run_id, None).await.expect("loads");
    assert_eq!(
        source.status,
        RunStatus::Running,
        "the source run is untouched"
    );
}

async fn bad_rows_and_requests_are_refused_without_changes(harness: Harness) {
    let (run_id, _) = crash_at(&harness, CHAIN, "b").await;
    let store = harness.store("replica-a").await;
    let executor = executor(Arc::new(Agents::default()), store.clone());
    let unknown = executor
        .continue_stream(Uuid::now_v7(), Continue::Resume, None, None)
        .await
        .err();
    assert!(matches!(
        unknown,
        Some(OrchestratorError::RunNotFound { .. })
    ));
    let original = store.load(run_id, None).await.expect("loads");

    store
        .overwrite_step(run_id, 1, 1, "{not json")
        .await
        .expect("tampered");
    let corrupt = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .err()
        .expect("corrupt refused");
    assert!(
        matches!(&corrupt, OrchestratorError::CorruptRun { message, .. } if message.contains("step 1")),
        "{corrupt}"
    );

    let body = serde_json::to_string(&original.steps[0]).expect("encodes");
    store
        .overwrite_step(run_id, 1, 0, &body)
        .await
        .expect("tampered");
    let old = executor
        .continue_stream(run_id, Continue::Resume, None, None)
        .await
        .err()
        .expect("old format refused");
    assert!(
        matches!(&old, OrchestratorError::CorruptRun { message, .. } if message.contains("format 0")),
        "{old}"
    );

    // Nothing changed: once repaired, the run resumes from where it was.
    store
        .overwrite_step(run_id, 1, 1, &body)
        .await
        .expect("repaired");
    let after = store.load(run_id, None).await.expect("loads");
    assert_eq!(after.steps, original.steps);
    assert_eq!(after.status, RunStatus::Running);
    let result = finish(
        &executor,
        executor
            .continue_stream(run_id, Continue::Resume, None, None)
            .await
            .expect("resumes"),
    )
    .await;
    assert_eq!(result.status, RunStatus::Succeeded);
}

async fn leases_pass_to_another_replica_only_when_expired(harness: Harness) {
    // Replica A's leases last no time at all, so they are expired as soon as
    // it stops renewing (it died); replica B's last 30 s.
    let (agents, mut hung) = Agents::hanging_on("b");
    let process = harness.clone();
    let run_id = in_process(async move {
        let store = process.store_with("replica-a", Duration::ZERO).await;
        let executor = executor(agents, store);
        let events = executor
            .stream_with(graph(CHAIN), input(), options(CHAIN))
            .expect("run starts");
        hung.recv().await.expect("b called");
        events.run_id
    })
    .await;
    let b = harness.store("replica-b").await;
    let c = harness.store("replica-c").await;
    let claimed = b.claim_expired(10).await.expect("claims");
    assert_eq!(claimed, vec![run_id]);
    // B holds it now: C cannot claim it, nor take it over.
    assert!(!c.claim(run_id).await.expect("claim"));
    assert!(c.claim_expired(10).await.expect("claims").is_empty());
    let stored = b.load(run_id, None).await.expect("loads");
    assert_eq!(stored.lease_owner.as_deref(), Some("replica-b"));
    assert_eq!(b.renew(&[run_id]).await.expect("renews"), 1);
    assert_eq!(
        c.renew(&[run_id]).await.expect("renews"),
        0,
        "not c's lease"
    );
    let agents = Arc::new(Agents::default());
    let on_b = executor(agents.clone(), b.clone());
    let result = finish(
        &on_b,
        on_b.continue_stream(run_id, Continue::Resume, None, None)
            .await
            .expect("b resumes its run"),
    )
    .await;
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(agents.count("a"), 0);
    // A finished run is never claimed.
    assert!(c.claim_expired(10).await.expect("claims").is_empty());
}

/// `b` reads the run input as well as `a`'s output.
const READS_LATER: &str = r#"
name: reads_later
nodes:
  - {id: a, agent: worker, inputs: [topic]}
  - {id: b, agent: worker, inputs: [a.output, topic]}
  - {id: c, agent: worker, inputs: [b.output]}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
config: {checkpoint_enabled: true}
"#;

fn principal(org: &str, subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        org: Some(org.to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::ApiKey,
    }
}

/// Issue 14: a new input from a checkpoint reaches the nodes still to run,
/// and is refused (the run store untouched) where none would read it.
async fn new_input_from_a_checkpoint_runs_or_is_refused(harness: Harness) {
    let (run_id, _) = crash_at(&harness, READS_LATER, "b").await;
    let store = harness.store("replica-b").await;
    let agents = Arc::new(Agents::default());
    let executor = executor(agents.clone(), store.clone());
    executor.checkpoint(run_id, "after_a").await.expect("named");
    let result = finish(
        &executor,
        executor
            .resume_from_checkpoint(run_id, "after_a", Some(json!({"topic": "go"})), None, None)
            .await
            .expect("b still reads the input"),
    )
    .await;
    assert_eq!(result.status, RunStatus::Succeeded);
    let output = result.output.to_string();
    assert!(
        output.contains("go") && output.contains("a(rust)"),
        "{output}"
    );
    assert_eq!(agents.count("a"), 0, "a keeps its output");

    // A checkpoint at the last step of a finished run: nothing is left
    // to run, so a new input is refused, saying why.
    let events = executor
        .stream_with(graph(CHAIN), input(), options(CHAIN))
        .expect("run starts");
    let finished = finish(&executor, events).await;
    executor
        .checkpoint(finished.run_id, "end")
        .await
        .expect("named");
    let before = store
        .list_runs(&RunFilter {
            limit: 100,
            ..RunFilter::default()
        })
        .await
        .expect("lists")
        .len();
    let refused = executor
        .resume_from_checkpoint(
            finished.run_id,
            "end",
            Some(json!({"topic": "new"})),
            None,
            None,
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(refused, OrchestratorError::InputUnused { .. }));
    assert!(
        refused.to_string().contains("would change nothing"),
        "{refused}"
    );
    let after = store
        .list_runs(&RunFilter {
            limit: 100,
            ..RunFilter::default()
        })
        .await
        .expect("lists")
        .len();
    assert_eq!(before, after, "no run was created");
}

/// Issue 14: `GET /v1/runs` lists one owner's stored runs, newest first,
/// filtered by status, graph and start time, page by page.
async fn runs_are_listed_per_owner_with_filters_and_paging(harness: Harness) {
    let store = harness.store("replica-a").await;
    let executor = executor(Arc::new(Agents::default()), store.clone());
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut alice = Vec::new();
    for (yaml, who) in [
        (CHAIN, principal("acme.example", "alice")),
        (FAN, principal("acme.example", "alice")),
        (CHAIN, principal("other.example", "alice")),
        (CHAIN, principal("acme.example", "alice")),
    ] {
        let owner = who.owner_key();
        let options = RunOptions {
            caller: Some(who),
            ..options(yaml)
        };
        let events = executor
            .stream_with(graph(yaml), input(), options)
            .expect("run starts");
        let result = finish(&executor, events).await;
        if owner == "acme.example/alice" {
            alice.push(result.run_id);
        }
    }
    let filter = |owner: &str| RunFilter {
        owner: owner.to_owned(),
        limit: 10,
        ..RunFilter::default()
    };
    let ids = |listed: Vec<convergio_orchestrator::RunListing>| {
        listed.iter().map(|run| run.run_id).collect::<Vec<_>>()
    };
    let newest_first: Vec<Uuid> = alice.iter().rev().copied().collect();
    let listed = store
        .list_runs(&filter("acme.example/alice"))
        .await
        .expect("lists");
    assert!(listed.iter().all(|run| run.status == RunStatus::Succeeded));
    assert_eq!(ids(listed), newest_first);
    let other = store
        .list_runs(&filter("other.example/alice"))
        .await
        .expect("lists");
    assert_eq!(other.len(), 1, "another org's alice is another owner");
    assert!(store
        .list_runs(&filter("nobody"))
        .await
        .expect("lists")
        .is_empty());

    let fans = RunFilter {
        graph_id: Some("fan".to_owned()),
        ..filter("acme.example/alice")
    };
    assert_eq!(
        ids(store.list_runs(&fans).await.expect("lists")),
        [alice[1]]
    );
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..filter("acme.example/alice")
    };
    assert!(store.list_runs(&running).await.expect("lists").is_empty());
    let since = RunFilter {
        since: Some(started),
        until: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
        ..filter("acme.example/alice")
    };
    assert_eq!(store.list_runs(&since).await.expect("lists").len(), 3);
    let later = RunFilter {
        since: Some(chrono::Utc::now() + chrono::Duration::seconds(5)),
        ..filter("acme.example/alice")
    };
    assert!(store.list_runs(&later).await.expect("lists").is_empty());

    let first_page = RunFilter {
        limit: 2,
        ..filter("acme.example/alice")
    };
    let page = ids(store.list_runs(&first_page).await.expect("lists"));
    assert_eq!(page, newest_first[..2]);
    let next_page = RunFilter {
        before: page.last().copied(),
        ..first_page
    };
    let rest = ids(store.list_runs(&next_page).await.expect("lists"));
    assert_eq!(rest, newest_first[2..]);
}

fn graph_summary(org: &str, name: &str) -> GraphSummary {
    GraphSummary {
        name: name.to_owned(),
        org: org.to_owned(),
        description: Some("a chain".to_owned()),
        version: 0,
        nodes: 3,
        edges: 2,
        agents: vec!["worker".to_owned()],
        stored_at: chrono::Utc::now(),
    }
}

/// Issue 14: stored graphs are versioned per organisation and outlive the
/// process that stored them.
async fn graphs_are_versioned_per_organisation_and_kept(harness: Harness) {
    let process = harness.clone();
    in_process(async move {
        let store = process.store("replica-a").await;
        let first = store
            .put(&graph_summary("a.example", "chain"), "v1")
            .await
            .expect("stores");
        let second = store
            .put(&graph_summary("a.example", "chain"), "v2")
            .await
            .expect("stores");
        let theirs = store
            .put(&graph_summary("b.example", "chain"), "b1")
            .await
            .expect("stores");
        assert_eq!((first.version, second.version, theirs.version), (1, 2, 1));
        assert_eq!(second.org, "a.example");
        assert_eq!(store.list("c.example").await.expect("lists"), Vec::new());
    })
    .await;
    // Another process on the same database.
    let store = harness.store("replica-b").await;
    let latest = store
        .get("a.example", "chain", None)
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!((latest.source.as_str(), latest.summary.version), ("v2", 2));
    assert_eq!(latest.summary.agents, ["worker"]);
    assert_eq!(latest.summary.description.as_deref(), Some("a chain"));
    let old = store
        .get("a.example", "chain", Some(1))
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!(old.source, "v1");
    assert!(store
        .get("a.example", "chain", Some(3))
        .await
        .expect("reads")
        .is_none());
    assert!(store
        .get("c.example", "chain", None)
        .await
        .expect("reads")
        .is_none());
    let theirs = store
        .get("b.example", "chain", None)
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!(
        theirs.source, "b1",
        "one organisation's store never touches another's"
    );
    let listed = store.list("a.example").await.expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].version), ("chain", 2));
    // Concurrent stores of one name each get their own version.
    let stores = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.put(&graph_summary("a.example", "chain"), "v").await })
    });
    let mut versions = Vec::new();
    for store in stores {
        versions.push(store.await.expect("joins").expect("stores").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (3..=10).collect::<Vec<_>>());
}

convergio_tests::on_both_backends!(
    super::open;
    replay_rebuilds_the_final_state,
    crash_mid_run_resumes_without_calling_finished_nodes_again,
    fan_out_crash_keeps_the_finished_branch,
    shared_state_survives_a_crash_without_duplicate_updates,
    humans_approve_input_and_reject,
    named_checkpoints_resume_as_new_runs,
    bad_rows_and_requests_are_refused_without_changes,
    leases_pass_to_another_replica_only_when_expired,
    new_input_from_a_checkpoint_runs_or_is_refused,
    runs_are_listed_per_owner_with_filters_and_paging,
    graphs_are_versioned_per_organisation_and_kept,
);
