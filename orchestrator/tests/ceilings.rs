//! Server-side ceilings no graph can raise, and cancellation (issue 15,
//! defect 7): iterations per node, a run's total time, events kept per
//! run, and `Executor::cancel`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use convergio_orchestrator::{
    Executor, ExecutorConfig, Limits, OrchestratorError, RunEvent, RunOptions, RunStatus,
};
use serde_json::json;
use support::{graph, text_reply, FakeAgents};

/// A node that runs itself again after every answer, with a graph limit far
/// above anything a server should allow.
const ENDLESS: &str = "name: endless\nentry: [spin]\nnodes:\n  - {id: spin, agent: spinner}\nedges:\n  - {from: spin, to: spin}\nconfig: {max_iterations: 4000000000}\n";

fn with_limits(agents: Arc<FakeAgents>, limits: Limits) -> Executor {
    Executor::new(
        agents,
        ExecutorConfig {
            limits,
            ..ExecutorConfig::default()
        },
    )
}

fn spinner() -> Arc<FakeAgents> {
    Arc::new(FakeAgents::new().agent("spinner", |_| text_reply("again")))
}

// Regression: issue #15, defect 7
#[tokio::test]
async fn the_server_iteration_ceiling_bounds_a_graph_that_asks_for_more() {
    let agents = spinner();
    let limits = Limits {
        max_iterations: 7,
        ..Limits::default()
    };
    let executor = with_limits(agents.clone(), limits);
    let run = executor.run(graph(ENDLESS), json!("go"));
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the ceiling ends the run")
        .expect("run");
    assert_eq!(result.status, RunStatus::IterationLimit);
    assert_eq!(agents.calls_to("spinner").len(), 7);
    assert!(result
        .error
        .as_deref()
        .is_some_and(|error| error.contains("max_iterations (7)")));
}

// Regression: issue #15, defect 7
#[tokio::test]
async fn the_server_time_ceiling_ends_a_run_without_a_timeout_of_its_own() {
    let yaml = "name: stuck\nnodes:\n  - {id: wait, agent: sleeper}\n";
    let agents = Arc::new(FakeAgents::new().hanging_agent("sleeper"));
    let limits = Limits {
        max_run_seconds: 1,
        ..Limits::default()
    };
    let executor = with_limits(agents, limits);
    let run = executor.run(graph(yaml), json!("go"));
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the ceiling ends the run")
        .expect("run");
    assert_eq!(result.status, RunStatus::TimedOut);
}

// Regression: issue #15, defect 7
#[tokio::test]
async fn events_kept_per_run_are_capped_and_the_end_is_kept() {
    let limits = Limits {
        max_iterations: 50,
        max_run_events: 5,
        ..Limits::default()
    };
    let result = with_limits(spinner(), limits)
        .run(graph(ENDLESS), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::IterationLimit);
    assert_eq!(result.state.events.len(), 6, "{:?}", result.state.events);
    assert!(matches!(
        result.state.events.last(),
        Some(RunEvent::RunFinished { .. })
    ));
}

// Regression: issue #15, defect 7
#[tokio::test]
async fn a_cancelled_run_stops_and_stays_cancelled() {
    let yaml = "name: stuck\nnodes:\n  - {id: wait, agent: sleeper}\n";
    let agents = Arc::new(FakeAgents::new().hanging_agent("sleeper"));
    let executor = with_limits(agents.clone(), Limits::default());
    let handle = executor
        .spawn_with(graph(yaml), json!("go"), RunOptions::default())
        .expect("starts");
    let run_id = handle.run_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while agents.call_count() == 0 {
        assert!(Instant::now() < deadline, "the agent was never called");
        tokio::task::yield_now().await;
    }
    executor.cancel(run_id).await.expect("cancels");
    let result = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the run stops at once")
        .expect("run");
    assert_eq!(result.status, RunStatus::Cancelled);
    assert_eq!(
        executor.status(run_id).expect("known").status,
        RunStatus::Cancelled
    );
    // Again: still cancelled, not an error.
    executor.cancel(run_id).await.expect("idempotent");
    let unknown = uuid::Uuid::now_v7();
    assert!(matches!(
        executor.cancel(unknown).await,
        Err(OrchestratorError::RunNotFound { .. })
    ));
}
