//! Executor behaviour: error strategies, timeouts, budgets, concurrency, the
//! four modes, run lookups, traces and metrics.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use convergio_orchestrator::{
    AgentCall, DispatchError, Executor, ExecutorConfig, NodeStatus, OrchestratorError, Price,
    PriceTable, RunEvent, RunStatus, Usage,
};
use futures_util::StreamExt;
use serde_json::json;
use support::{
    data_reply, executor, graph, text_of, text_reply, text_reply_with_usage, FakeAgents,
};

fn two_step(on_error: &str, extra: &str) -> String {
    format!(
        "name: two_step\nnodes:\n  - id: first\n    agent: flaky\n    inputs: [text]\n    on_error: {on_error}\n  - id: second\n    agent: echo\nedges:\n  - {{from: first, to: second}}\n{extra}"
    )
}

fn echo(
    call: &convergio_orchestrator::AgentCall,
) -> Result<convergio_orchestrator::AgentReply, DispatchError> {
    text_reply(&format!("echo({})", text_of(call)))
}

#[tokio::test]
async fn retries_transient_failures_with_new_message_ids_then_succeeds() {
    let failures = Arc::new(AtomicU32::new(2));
    let remaining = failures.clone();
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", move |_| {
                if remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    Err(DispatchError::Unavailable {
                        message: "try later".into(),
                    })
                } else {
                    text_reply("ok")
                }
            })
            .agent("echo", echo),
    );
    let result = executor(agents.clone())
        .run(graph(&two_step("retry", "")), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, json!("echo(ok)"));
    let calls = agents.calls_to("flaky");
    assert_eq!(calls.len(), 3);
    let ids: std::collections::HashSet<String> = calls
        .iter()
        .map(|call| call.message["messageId"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(result.state.nodes[0].attempts, 3);
}

#[tokio::test]
async fn exhausted_retries_fail_the_run_and_skip_downstream() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| {
                Err(DispatchError::Unavailable {
                    message: "down".into(),
                })
            })
            .agent("echo", echo),
    );
    let yaml = two_step("retry", "execution:\n  retry_policy: {max_retries: 2}\n");
    let result = executor(agents.clone())
        .run(graph(&yaml), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
    assert!(result
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("first"));
    assert_eq!(agents.calls_to("flaky").len(), 3);
    assert!(agents.calls_to("echo").is_empty());
    assert_eq!(
        result.trace.nodes[0].status,
        convergio_orchestrator::executor::ExecutionStatus::Failed
    );
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    let agents = Arc::new(FakeAgents::new().agent("flaky", |_| {
        Err(DispatchError::Denied {
            message: "policy".into(),
        })
    }));
    let result = executor(agents.clone())
        .run(graph(&two_step("retry", "")), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(agents.calls_to("flaky").len(), 1);
}

#[tokio::test]
async fn skip_gives_a_null_output_and_downstream_still_runs() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| {
                Ok(convergio_orchestrator::AgentReply::from_response(json!(
                    "garbage"
                )))
            })
            .agent("echo", |call| {
                text_reply(&format!("parts={}", call.message["parts"]))
            }),
    );
    let result = executor(agents.clone())
        .run(graph(&two_step("skip", "")), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.state.nodes[0].status, NodeStatus::Skipped);
    assert_eq!(result.state.nodes[0].output, json!(null));
    assert_eq!(
        result.output,
        json!("parts=[{\"data\":{\"first.output\":null}}]")
    );
    assert!(result.state.nodes[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("neither a message nor a task"));
}

#[tokio::test]
async fn fallback_calls_the_other_agent_with_the_same_inputs() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| {
                Err(DispatchError::Failed {
                    message: "model error".into(),
                    retryable: false,
                })
            })
            .agent("backup", |call| {
                text_reply(&format!("backup({})", text_of(call)))
            })
            .agent("echo", echo),
    );
    let result = executor(agents.clone())
        .run(
            graph(&two_step("{fallback: backup}", "")),
            json!({"text": "t"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!("echo(backup(t))"));
    let agents_in_trace: Vec<&str> = result
        .trace
        .nodes
        .iter()
        .map(|node| node.agent.as_str())
        .collect();
    assert_eq!(agents_in_trace, ["flaky", "backup", "echo"]);
}

#[tokio::test]
async fn failed_fallback_aborts_the_run() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| Err(DispatchError::Timeout))
            .agent("backup", |_| Err(DispatchError::Timeout)),
    );
    let result = executor(agents)
        .run(
            graph(&two_step("{fallback: backup}", "")),
            json!({"text": "t"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
}

#[tokio::test]
async fn abort_stops_the_run_and_cancels_nodes_in_flight() {
    let yaml = "name: abort\nnodes:\n  - {id: bad, agent: broken, on_error: abort}\n  - {id: slow, agent: sleeper}\n  - {id: after, agent: echo}\nedges:\n  - {from: [bad, slow], to: after}\n";
    let agents = Arc::new(
        FakeAgents::new()
            .agent("broken", |_| {
                Err(DispatchError::Failed {
                    message: "boom".into(),
                    retryable: true,
                })
            })
            .hanging_agent("sleeper")
            .agent("echo", echo),
    );
    let result = executor(agents.clone())
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(agents.calls_to("broken").len(), 1, "abort does not retry");
    assert_eq!(result.state.nodes[1].status, NodeStatus::Cancelled);
    assert_eq!(result.state.nodes[2].status, NodeStatus::Pending);
}

#[tokio::test]
async fn human_strategy_ends_the_run_waiting_for_a_human() {
    let agents = Arc::new(FakeAgents::new().agent("flaky", |_| Err(DispatchError::Timeout)));
    let result = executor(agents)
        .run(graph(&two_step("human", "")), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::WaitingForHuman);
    assert_eq!(result.state.waiting_node.as_deref(), Some("first"));
    // Without a journal the wait cannot be continued, and the error says so
    // (store/tests/runs/journal.rs continues checkpointed ones, issue 8).
    assert!(result
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("the run is not checkpointed, so it cannot be continued"));
}

#[tokio::test]
async fn a_graph_wide_human_strategy_pauses_on_any_nodes_failure() {
    // Issue 8: "any node on failure when configured": execution.on_error
    // applies to nodes without a strategy of their own.
    let yaml = "name: t\nnodes:\n  - {id: first, agent: echo, inputs: [text]}\n  - {id: second, agent: flaky}\n  - {id: third, agent: flaky, on_error: skip}\nedges:\n  - {from: first, to: second}\n  - {from: second, to: third}\nexecution:\n  on_error: human\n";
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| Err(DispatchError::Timeout))
            .agent("echo", echo),
    );
    let result = executor(agents.clone())
        .run(graph(yaml), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::WaitingForHuman);
    assert_eq!(result.state.waiting_node.as_deref(), Some("second"));
    assert_eq!(agents.calls_to("flaky").len(), 1, "human does not retry");
}

#[tokio::test]
async fn a_hanging_agent_times_out_and_its_strategy_applies() {
    let yaml = "name: t\nnodes:\n  - {id: stuck, agent: sleeper, timeout_seconds: 0.05, on_error: skip}\n  - {id: after, agent: echo}\nedges:\n  - {from: stuck, to: after}\n";
    let agents = Arc::new(
        FakeAgents::new()
            .hanging_agent("sleeper")
            .agent("echo", |_| text_reply("after ran")),
    );
    let result = executor(agents)
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, json!("after ran"));
    assert!(result.state.nodes[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("timed out"));
}

#[tokio::test]
async fn the_total_timeout_ends_the_run() {
    let yaml = "name: t\nnodes:\n  - {id: stuck, agent: sleeper}\nexecution: {total_timeout_seconds: 0.05}\n";
    let agents = Arc::new(FakeAgents::new().hanging_agent("sleeper"));
    let result = executor(agents)
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::TimedOut);
    assert_eq!(result.state.nodes[0].status, NodeStatus::Cancelled);
}

#[tokio::test]
async fn an_agent_over_its_token_budget_fails_its_node() {
    let yaml = "name: b\nnodes:\n  - {id: a, agent: spender, on_error: skip}\n  - {id: b, agent: spender}\nedges:\n  - {from: a, to: b}\nexecution: {max_tokens_per_agent: 150}\n";
    let agents = Arc::new(FakeAgents::new().agent("spender", |_| {
        text_reply_with_usage(
            "spent",
            Usage {
                tokens_in: 50,
                tokens_out: 50,
                tool_calls: 1,
                cost_micros: None,
            },
        )
    }));
    let result = executor(agents)
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    // The first call (100 tokens) fits; the second takes the agent to 200.
    assert_eq!(result.state.nodes[0].status, NodeStatus::Succeeded);
    assert_eq!(result.status, RunStatus::Failed);
    assert!(result
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("max_tokens_per_agent"));
    assert_eq!(
        result.state.usage,
        Usage {
            tokens_in: 100,
            tokens_out: 100,
            tool_calls: 2,
            cost_micros: None,
        }
    );
    assert_eq!(result.state.usage_by_agent["spender"].tokens(), 200);
}

/// Token budgets reach the agent before it answers: each call carries
/// what the run's and the agent's budgets leave (`convergio.maxTokens`),
/// so a model agent caps its answer instead of overspending.
#[tokio::test]
async fn each_call_carries_what_the_token_budgets_leave() {
    let yaml = "name: b\nnodes:\n  - {id: a, agent: spender}\n  - {id: b, agent: spender}\n  - {id: c, agent: other}\nedges:\n  - {from: a, to: b}\n  - {from: b, to: c}\nexecution: {max_tokens_per_run: 500, max_tokens_per_agent: 300}\n";
    let reply = |_: &AgentCall| {
        text_reply_with_usage(
            "spent",
            Usage {
                tokens_in: 60,
                tokens_out: 40,
                tool_calls: 0,
                cost_micros: None,
            },
        )
    };
    let agents = Arc::new(
        FakeAgents::new()
            .agent("spender", reply)
            .agent("other", reply),
    );
    let result = executor(agents.clone())
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    let cap = |call: &AgentCall| call.message["metadata"]["convergio.maxTokens"].as_u64();
    let spender: Vec<Option<u64>> = agents.calls_to("spender").iter().map(cap).collect();
    // The agent's 300 bounds its calls: 300, then 200 after its first 100.
    assert_eq!(spender, [Some(300), Some(200)]);
    // After 200 tokens, the run has 300 left, as has the other agent.
    let other: Vec<Option<u64>> = agents.calls_to("other").iter().map(cap).collect();
    assert_eq!(other, [Some(300)]);
    // Without budgets, no cap is sent.
    let free = Arc::new(FakeAgents::new().agent("spender", reply));
    executor(free.clone())
        .run(
            graph("name: f\nnodes:\n  - {id: a, agent: spender}\n"),
            json!("go"),
        )
        .await
        .expect("run");
    assert_eq!(cap(&free.calls_to("spender")[0]), None);
}

#[tokio::test]
async fn a_run_over_its_tool_call_budget_skips_a_skippable_node() {
    let yaml = "name: b\nnodes:\n  - {id: a, agent: tools}\n  - {id: b, agent: tools, on_error: skip}\nedges:\n  - {from: a, to: b}\nexecution: {max_tool_calls_per_run: 3}\n";
    let agents = Arc::new(FakeAgents::new().agent("tools", |_| {
        text_reply_with_usage(
            "used tools",
            Usage {
                tokens_in: 0,
                tokens_out: 0,
                tool_calls: 2,
                cost_micros: None,
            },
        )
    }));
    let result = executor(agents)
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.state.nodes[1].status, NodeStatus::Skipped);
    assert!(result.state.nodes[1]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("budget exceeded"));
}

#[tokio::test]
async fn a_run_over_its_cost_budget_stops_before_the_next_node() {
    let yaml = "name: c\nnodes:\n  - {id: a, agent: pricey}\n  - {id: b, agent: pricey}\n  - {id: c, agent: pricey}\nedges:\n  - {from: a, to: b}\n  - {from: b, to: c}\nexecution: {max_cost_per_run: 0.5}\n";
    let agents = Arc::new(FakeAgents::new().agent("pricey", |_| {
        text_reply_with_usage(
            "spent",
            Usage {
                tokens_in: 10,
                tokens_out: 10,
                tool_calls: 0,
                cost_micros: Some(300_000),
            },
        )
    }));
    let result = executor(agents.clone())
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    // 0.3 after `a`, 0.6 after `b`: over 0.5, so `c` never runs.
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.state.usage.cost_micros, Some(600_000));
    assert_eq!(result.state.nodes[2].status, NodeStatus::Pending);
    assert!(
        result.state.nodes[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("over max_cost_per_run 0.5"),
        "{:?}",
        result.state.nodes[1]
    );
}

#[tokio::test]
async fn concurrency_never_exceeds_max_concurrent_agents() {
    let mut yaml = String::from("name: wide\nnodes:\n  - {id: src, agent: fast}\n");
    for index in 0..12 {
        yaml.push_str(&format!("  - {{id: w{index}, agent: slow}}\n"));
    }
    yaml.push_str("edges:\n  - from: src\n    to: [");
    yaml.push_str(
        &(0..12)
            .map(|index| format!("w{index}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    yaml.push_str("]\nexecution: {max_concurrent_agents: 4}\n");
    let agents = Arc::new(
        FakeAgents::new()
            .agent("fast", |_| text_reply("x"))
            .slow_agent("slow", 10, |_| text_reply("y")),
    );
    let result = executor(agents.clone())
        .run(graph(&yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(agents.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(result.output.as_object().expect("12 sinks").len(), 12);
}

#[tokio::test]
async fn a_missing_graph_input_is_rejected_before_any_call() {
    let agents = Arc::new(FakeAgents::new().agent("flaky", |_| text_reply("x")));
    let error = executor(agents.clone())
        .run(graph(&two_step("retry", "")), json!({"other": 1}))
        .await
        .expect_err("input");
    assert!(matches!(error, OrchestratorError::InvalidInput { .. }));
    assert_eq!(error.kind(), convergio_schemas::ErrorKind::InvalidInput);
    assert_eq!(agents.call_count(), 0);
}

#[tokio::test]
async fn spawned_runs_report_status_and_result_by_id() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| text_reply("x"))
            .agent("echo", echo),
    );
    let executor = executor(agents);
    let handle = executor
        .spawn(graph(&two_step("retry", "")), json!({"text": "t"}))
        .expect("spawn");
    let run_id = handle.run_id;
    assert_eq!(executor.status(run_id).expect("known").run_id, run_id);
    let waited = handle.wait().await.expect("finished");
    assert_eq!(waited.status, RunStatus::Succeeded);
    assert_eq!(
        executor.status(run_id).expect("known").status,
        RunStatus::Succeeded
    );
    assert_eq!(
        executor.result(run_id).expect("stored").output,
        json!("echo(x)")
    );
    let unknown = uuid::Uuid::nil();
    assert!(matches!(
        executor.status(unknown),
        Err(OrchestratorError::RunNotFound { .. })
    ));
    assert_eq!(
        executor.result(unknown).expect_err("unknown").kind(),
        convergio_schemas::ErrorKind::NotFound
    );
}

#[tokio::test]
async fn streaming_yields_node_events_then_run_finished() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| text_reply("x"))
            .agent("echo", echo),
    );
    let executor = executor(agents);
    let stream = executor
        .stream(graph(&two_step("retry", "")), json!({"text": "t"}))
        .expect("stream");
    let run_id = stream.run_id;
    let events: Vec<RunEvent> = stream.collect().await;
    let kinds: Vec<String> = events
        .iter()
        .map(|event| {
            serde_json::to_value(event).expect("json")["type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "node_started",
            "node_output",
            "node_finished",
            "node_started",
            "node_output",
            "node_finished",
            "run_finished"
        ]
    );
    assert!(matches!(
        events.last(),
        Some(RunEvent::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));
    assert!(events.iter().all(|event| match event {
        RunEvent::NodeStarted { run_id: id, .. } | RunEvent::RunFinished { run_id: id, .. } =>
            *id == run_id,
        _ => true,
    }));
    assert_eq!(
        executor.result(run_id).expect("stored").state.events.len(),
        7
    );
}

#[tokio::test]
async fn batch_returns_one_isolated_result_per_input() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |call| {
                if text_of(call) == "fail" {
                    Err(DispatchError::Denied {
                        message: "no".into(),
                    })
                } else {
                    data_reply(json!(text_of(call).len()))
                }
            })
            .agent("echo", |call| {
                text_reply(&call.message["parts"][0]["data"]["first.output"].to_string())
            }),
    );
    let inputs = vec![
        json!({"text": "a"}),
        json!({"text": "fail"}),
        json!({"nope": 1}),
        json!({"text": "abcd"}),
    ];
    let results = executor(agents)
        .batch(graph(&two_step("retry", "")), inputs, 2)
        .await;
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().expect("ok").output, json!("1"));
    assert_eq!(results[1].as_ref().expect("ran").status, RunStatus::Failed);
    assert!(matches!(
        results[2],
        Err(OrchestratorError::InvalidInput { .. })
    ));
    assert_eq!(results[3].as_ref().expect("ok").output, json!("4"));
}

#[tokio::test]
async fn trace_costs_come_from_the_agents_report_else_the_price_table() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| {
                text_reply_with_usage(
                    "x",
                    Usage {
                        tokens_in: 1000,
                        tokens_out: 2000,
                        tool_calls: 3,
                        cost_micros: None,
                    },
                )
            })
            .agent("echo", |_| {
                text_reply_with_usage(
                    "y",
                    Usage {
                        tokens_in: 500,
                        tokens_out: 0,
                        tool_calls: 0,
                        cost_micros: Some(250_000),
                    },
                )
            }),
    );
    let mut prices = PriceTable {
        default: Price {
            input_per_1k: 0.01,
            output_per_1k: 0.02,
        },
        ..PriceTable::default()
    };
    prices.agents.insert(
        "echo".into(),
        Price {
            input_per_1k: 1.0,
            output_per_1k: 1.0,
        },
    );
    let executor = Executor::new(
        agents,
        ExecutorConfig {
            prices,
            ..ExecutorConfig::default()
        },
    );
    let result = executor
        .run(graph(&two_step("retry", "")), json!({"text": "t"}))
        .await
        .expect("run");
    assert_eq!(result.trace.total_tokens, 3500);
    // flaky by the default price; echo reported 0.25 itself, which wins
    // over its own price (0.5).
    assert!(
        (result.trace.total_cost - (0.01 + 0.04 + 0.25)).abs() < 1e-9,
        "{}",
        result.trace.total_cost
    );
    assert!((result.trace.nodes[1].cost - 0.25).abs() < 1e-9);
    assert_eq!(result.trace.nodes[0].tool_calls, 3);
    let text = executor.metrics().render_prometheus();
    assert!(
        text.contains("convergio_graph_runs_total{graph=\"two_step\",status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(text.contains("convergio_agent_tokens_total{agent=\"flaky\",direction=\"out\"} 2000"));
    assert!(text.contains("convergio_agent_tool_calls_total{agent=\"flaky\"} 3"));
    assert!(text.contains("convergio_node_duration_seconds_count{agent=\"echo\"} 1"));
    assert!(text.contains("convergio_node_executions_total{agent=\"echo\",status=\"success\"} 1"));
    assert!(text.contains("convergio_graph_agents_spawned_count{graph=\"two_step\"} 1"));
}

#[tokio::test]
async fn run_state_round_trips_through_json_for_checkpoints() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("flaky", |_| text_reply("x"))
            .agent("echo", echo),
    );
    let result = executor(agents)
        .run(graph(&two_step("retry", "")), json!({"text": "t"}))
        .await
        .expect("run");
    let text = serde_json::to_string(&result.state).expect("serialise");
    let back: convergio_orchestrator::RunState = serde_json::from_str(&text).expect("deserialise");
    assert_eq!(back, result.state);
}

#[tokio::test]
async fn absurd_timeouts_are_capped_instead_of_overflowing() {
    let yaml = "name: t\nnodes:\n  - {id: a, agent: echo, timeout_seconds: 1.0e300}\nexecution: {total_timeout_seconds: 1.0e300, timeout_per_agent_seconds: 1.0e300}\nconfig: {timeout_seconds: 1.0e300}\n";
    let agents = Arc::new(FakeAgents::new().agent("echo", |_| text_reply("fine")));
    let result = executor(agents)
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, json!("fine"));
}

#[tokio::test]
async fn shared_state_reducers_combine_parallel_updates_and_a_misfit_fails_the_node() {
    let yaml = "name: shared\nstate:\n  notes: {reducer: append}\n  facts: {reducer: merge, initial: {seed: 0}}\n  last: {}\nnodes:\n  - {id: a, agent: data, inputs: [text], update_state: {notes: output.note, facts: output.facts, last: output.note}}\n  - {id: b, agent: data, inputs: [text], update_state: {notes: output.note, facts: output.facts, last: output.note}}\n  - {id: c, agent: echo, inputs: [state.notes, state.facts]}\nedges:\n  - {from: [a, b], to: c}\n";
    let agents = Arc::new(
        FakeAgents::new()
            .agent("data", |call| {
                let node = call.node_id.clone();
                data_reply(json!({"note": [node.clone()], "facts": {node: true}}))
            })
            .agent("echo", |call| {
                text_reply(&call.message["parts"].to_string())
            }),
    );
    let result = executor(agents.clone())
        .run(graph(yaml), json!({"text": "go"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    let shared = &result.state.shared;
    let mut notes: Vec<&str> = shared["notes"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|note| note.as_str())
        .collect();
    notes.sort_unstable();
    assert_eq!(notes, ["a", "b"], "a list update adds each element");
    assert_eq!(shared["facts"], json!({"seed": 0, "a": true, "b": true}));
    assert!(shared["last"] == json!(["a"]) || shared["last"] == json!(["b"]));
    let c = result.state.nodes[2]
        .output
        .as_str()
        .expect("text")
        .to_owned();
    assert!(c.contains("state.notes") && c.contains("seed"), "{c}");

    // A merge key given a non-object fails the node, with nothing applied.
    // (`notes` is reduced first: keys go in order.)
    let misfit = "name: misfit\nstate:\n  zfacts: {reducer: merge}\n  notes: {reducer: append}\nnodes:\n  - {id: a, agent: echo, inputs: [text], update_state: {notes: output, zfacts: output}}\n";
    let result = executor(agents)
        .run(graph(misfit), json!({"text": "go"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("could not update state `zfacts`: a merge key takes an object"),
        "{error}"
    );
    assert_eq!(
        result.state.shared["notes"],
        json!([]),
        "all updates or none"
    );
}

#[tokio::test]
async fn a_spent_budget_stops_the_next_call_before_it_is_made() {
    let yaml = "name: b\nnodes:\n  - {id: a, agent: spender}\n  - {id: b, agent: spender}\nedges:\n  - {from: a, to: b}\nexecution: {max_tokens_per_run: 100}\n";
    let agents = Arc::new(FakeAgents::new().agent("spender", |_| {
        text_reply_with_usage(
            "spent",
            Usage {
                tokens_in: 60,
                tokens_out: 40,
                tool_calls: 0,
                cost_micros: Some(500_000),
            },
        )
    }));
    let result = executor(agents.clone())
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    // Exactly the budget: not over it, yet nothing is left for `b`.
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(agents.calls_to("spender").len(), 1);
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("no tokens left for agent `spender`"),
        "{error}"
    );
    // A cost budget reached stops the next call the same way.
    let yaml = "name: c\nnodes:\n  - {id: a, agent: spender}\n  - {id: b, agent: spender}\nedges:\n  - {from: a, to: b}\nexecution: {max_cost_per_run: 0.5}\n";
    let agents = Arc::new(FakeAgents::new().agent("spender", |_| {
        text_reply_with_usage(
            "spent",
            Usage {
                tokens_in: 1,
                tokens_out: 1,
                tool_calls: 0,
                cost_micros: Some(500_000),
            },
        )
    }));
    let result = executor(agents.clone())
        .run(graph(yaml), json!("go"))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(agents.calls_to("spender").len(), 1);
    assert!(result
        .error
        .unwrap_or_default()
        .contains("max_cost_per_run"));
}

#[tokio::test]
async fn an_event_published_by_one_node_releases_another_or_its_timeout_fails_it() {
    // `waiter` is ready at once, beside `publisher`, but calls its agent
    // only once `publisher` (slow) published its output on `ready`.
    let yaml = "name: events\nnodes:\n  - {id: publisher, agent: slow, inputs: [text], publish: ready}\n  - {id: waiter, agent: echo, inputs: [text], wait_for_event: {topic: ready, timeout_seconds: 30}}\n  - {id: end, agent: echo, inputs: [waiter.output]}\nedges:\n  - {from: waiter, to: end}\n";
    let agents = Arc::new(
        FakeAgents::new()
            .slow_agent("slow", 50, |_| data_reply(json!({"go": true})))
            .agent("echo", |call| {
                text_reply(&call.message["parts"].to_string())
            }),
    );
    let result = executor(agents.clone())
        .run(graph(yaml), json!({"text": "hi"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    let order: Vec<&str> = result
        .state
        .executions
        .iter()
        .map(|execution| execution.node_id.as_str())
        .collect();
    assert_eq!(order, ["publisher", "waiter", "end"]);
    let waiter = agents.calls_to("echo")[0].message["parts"].clone();
    assert!(
        waiter
            .as_array()
            .expect("parts")
            .iter()
            .any(|part| part["data"] == json!({"event": {"ready": {"go": true}}})),
        "{waiter:#}"
    );
    // The event is in the run's state, so a resume sees it too.
    assert_eq!(result.state.shared["event:ready"], json!({"go": true}));

    // Nobody publishes in time: the waiter fails after its timeout, without
    // calling its agent, and its strategy (skip) decides what follows.
    let late = "name: late\nnodes:\n  - {id: publisher, agent: hang, publish: ready}\n  - {id: waiter, agent: echo, inputs: [text], on_error: skip, wait_for_event: {topic: ready, timeout_seconds: 0.2}}\nexecution: {timeout_per_agent_seconds: 1}\nconfig: {timeout_seconds: 2}\n";
    let agents = Arc::new(
        FakeAgents::new()
            .hanging_agent("hang")
            .agent("echo", |_| text_reply("called")),
    );
    let result = executor(agents.clone())
        .run(graph(late), json!({"text": "hi"}))
        .await
        .expect("run");
    let waiter = result
        .state
        .executions
        .iter()
        .find(|execution| execution.node_id == "waiter")
        .expect("the waiter's execution");
    let error = waiter.error.clone().unwrap_or_default();
    assert!(
        error.contains("waited 0.2s for event `ready`; none was published"),
        "{error}"
    );
    assert!(agents.calls_to("echo").is_empty());

    // A topic nobody publishes, or a node that calls no agent waiting, is
    // refused when the graph is validated.
    let orphan = "name: o\nnodes:\n  - {id: w, agent: echo, wait_for_event: {topic: never, timeout_seconds: 1}}\n";
    let errors = convergio_orchestrator::validate(
        &convergio_orchestrator::parse_yaml(orphan).expect("schema-valid"),
        &convergio_orchestrator::AnyAgent,
        &convergio_orchestrator::Limits::default(),
    )
    .expect_err("invalid");
    assert!(
        errors
            .iter()
            .any(|error| error.to_string().contains("which no other node publishes")),
        "{errors:?}"
    );
}
