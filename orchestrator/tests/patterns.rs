//! End-to-end runs of the design document's §4.1 pipeline and the six §3
//! patterns, each from its example file in `examples/graphs/`, against
//! deterministic in-process agents.

mod support;

use std::sync::Arc;

use convergio_orchestrator::{NodeStatus, RunStatus};
use serde_json::{json, Value};
use support::{data_of, data_reply, example, executor, graph, text_of, text_reply, FakeAgents};

/// Agents that append their name to the list they receive (the bench's G1 shape).
fn appending(
    name: &'static str,
) -> impl Fn(
    &convergio_orchestrator::AgentCall,
) -> Result<convergio_orchestrator::AgentReply, convergio_orchestrator::DispatchError> {
    move |call| {
        let mut seen: Vec<String> = Vec::new();
        if let Value::Object(inputs) = data_of(call) {
            for value in inputs.values() {
                if let Some(items) = value.as_array() {
                    for item in items {
                        if let Some(text) = item.as_str() {
                            if !seen.iter().any(|existing| existing == text) {
                                seen.push(text.to_owned());
                            }
                        }
                    }
                }
            }
        }
        seen.push(name.to_owned());
        data_reply(json!(seen))
    }
}

#[tokio::test]
async fn code_review_pipeline_runs_from_the_design_document_yaml() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("code_analyzer", |call| {
                assert_eq!(text_of(call), "fn main() {}");
                data_reply(json!(["analyzer"]))
            })
            .agent("security_expert", appending("security"))
            .agent("performance_expert", appending("performance"))
            .agent("style_checker", appending("style"))
            .agent("review_aggregator", appending("aggregator"))
            .agent("report_generator", |call| {
                let list = data_of(call)["aggregator.output"].clone();
                let names: Vec<&str> = list
                    .as_array()
                    .expect("list")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                text_reply(&names.join(","))
            }),
    );
    let graph = graph(&example("code_review_pipeline.yaml"));
    let result = executor(agents.clone())
        .run(graph, json!({"source_code": "fn main() {}"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(
        result.output,
        json!("analyzer,security,performance,style,aggregator")
    );
    assert_eq!(agents.call_count(), 6);

    // Every call carries the run's trace id in its own child span.
    let calls = agents.calls.lock().expect("calls").clone();
    let trace_id = &result.trace.trace_id;
    let mut spans = std::collections::HashSet::new();
    for call in &calls {
        let fields: Vec<&str> = call.traceparent.split('-').collect();
        assert_eq!(fields[1], trace_id);
        assert!(
            spans.insert(fields[2].to_owned()),
            "span ids are unique per call"
        );
        assert_eq!(
            call.message["metadata"]["convergio.run_id"],
            json!(result.run_id.to_string())
        );
        assert_eq!(
            call.message["metadata"]["convergio.node_id"],
            json!(call.node_id)
        );
    }
    // The §8.1 trace: one entry per node, in the documented shape.
    let trace = serde_json::to_value(&result.trace).expect("trace json");
    assert_eq!(trace["graph_id"], "code_review_pipeline");
    assert_eq!(trace["nodes"].as_array().expect("nodes").len(), 6);
    for key in [
        "node_id",
        "agent",
        "start_time",
        "end_time",
        "tokens_in",
        "tokens_out",
        "tool_calls",
        "status",
    ] {
        assert!(
            trace["nodes"][0].get(key).is_some(),
            "trace node lacks {key}"
        );
    }
    for key in ["trace_id", "total_tokens", "total_cost", "duration_ms"] {
        assert!(trace.get(key).is_some(), "trace lacks {key}");
    }
    assert_eq!(trace["nodes"][0]["status"], "success");
}

#[tokio::test]
async fn sequential_pipeline_passes_each_output_to_the_next() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("planner", |call| {
                text_reply(&format!("plan for {}", text_of(call)))
            })
            .agent("estimator", |call| {
                text_reply(&format!("estimated({})", text_of(call)))
            })
            .agent("summarizer", |call| {
                text_reply(&format!("summed({})", text_of(call)))
            }),
    );
    let result = executor(agents.clone())
        .run(graph(&example("sequential.yaml")), json!({"goal": "login"}))
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, json!("summed(estimated(plan for login))"));
    let order: Vec<String> = agents
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|call| call.agent.clone())
        .collect();
    assert_eq!(order, ["planner", "estimator", "summarizer"]);
}

#[tokio::test]
async fn parallel_fanout_runs_sources_concurrently_and_merges_them() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("code_analyzer", |_| text_reply("analysis"))
            .slow_agent("security_expert", 20, |_| text_reply("security"))
            .slow_agent("performance_expert", 20, |_| text_reply("performance"))
            .slow_agent("style_checker", 20, |_| text_reply("style"))
            .agent("review_aggregator", |call| {
                let data = data_of(call);
                let keys: Vec<&String> = data.as_object().expect("object").keys().collect();
                assert_eq!(
                    keys,
                    ["security.output", "performance.output", "style.output"]
                );
                text_reply(&text_of(call).replace("\n\n", "+"))
            }),
    );
    let result = executor(agents.clone())
        .run(
            graph(&example("parallel_fanout.yaml")),
            json!({"source_code": "q"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded);
    assert_eq!(result.output, json!("security+performance+style"));
    assert_eq!(
        agents
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

fn supervisor(
    finish_after: u32,
) -> impl Fn(
    &convergio_orchestrator::AgentCall,
) -> Result<convergio_orchestrator::AgentReply, convergio_orchestrator::DispatchError> {
    move |call| {
        let round = call.message["metadata"]["convergio.iteration"]
            .as_u64()
            .unwrap_or(0) as u32;
        let data = data_of(call);
        if round > 1 {
            assert_eq!(
                data["security.output"],
                json!(format!("research for round {}", round - 1))
            );
        }
        if round > finish_after {
            data_reply(
                json!({"done": true, "summary": format!("finished after {} rounds", round - 1)}),
            )
        } else {
            data_reply(json!({"done": false, "instructions": format!("round {round}")}))
        }
    }
}

fn supervised_agents(finish_after: u32) -> Arc<FakeAgents> {
    Arc::new(
        FakeAgents::new()
            .agent("project_manager", supervisor(finish_after))
            .agent("security_expert", |call| {
                text_reply(&format!("research for {}", text_of(call)))
            })
            .agent("style_checker", |call| {
                text_reply(&format!("draft for {}", text_of(call)))
            })
            .agent("review_aggregator", |call| {
                text_reply(
                    data_of(call)["supervisor.output"]["summary"]
                        .as_str()
                        .unwrap_or("?"),
                )
            }),
    )
}

#[tokio::test]
async fn supervisor_delegates_rounds_until_it_is_done() {
    let agents = supervised_agents(2);
    let result = executor(agents.clone())
        .run(
            graph(&example("supervisor_worker.yaml")),
            json!({"task": "write a report"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!("finished after 2 rounds"));
    assert_eq!(agents.calls_to("project_manager").len(), 3);
    assert_eq!(agents.calls_to("security_expert").len(), 2);
    assert_eq!(agents.calls_to("style_checker").len(), 2);
}

#[tokio::test]
async fn supervisor_that_never_finishes_ends_at_the_iteration_limit() {
    let agents = supervised_agents(u32::MAX);
    let result = executor(agents.clone())
        .run(
            graph(&example("supervisor_worker.yaml")),
            json!({"task": "endless"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::IterationLimit);
    assert!(result
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("max_iterations"));
    assert_eq!(agents.calls_to("project_manager").len(), 5);
    assert!(agents.calls_to("review_aggregator").is_empty());
}

fn debate_agents(decide_in_round: Option<u64>) -> Arc<FakeAgents> {
    Arc::new(
        FakeAgents::new()
            .agent("advocate", |call| {
                let round = call.message["metadata"]["convergio.iteration"]
                    .as_u64()
                    .unwrap_or(0);
                text_reply(&format!("pro#{round}"))
            })
            .agent("critic", |call| {
                let round = call.message["metadata"]["convergio.iteration"]
                    .as_u64()
                    .unwrap_or(0);
                assert_eq!(data_of(call)["pro.output"], json!(format!("pro#{round}")));
                text_reply(&format!("con#{round}"))
            })
            .agent("arbiter", move |call| {
                let round = call.message["metadata"]["convergio.iteration"]
                    .as_u64()
                    .unwrap_or(0);
                if Some(round) == decide_in_round {
                    data_reply(json!({"decision": "pro wins", "round": round}))
                } else {
                    data_reply(json!({"decision": "continue", "round": round}))
                }
            })
            .agent("verdict_writer", |call| {
                let data = data_of(call);
                text_reply(&format!(
                    "{} after {} ({}, {})",
                    data["judge.output"]["decision"].as_str().unwrap_or("?"),
                    data["judge.output"]["round"],
                    data["pro.output"].as_str().unwrap_or("?"),
                    data["con.output"].as_str().unwrap_or("?")
                ))
            }),
    )
}

#[tokio::test]
async fn debate_ends_when_the_judge_decides() {
    let agents = debate_agents(Some(2));
    let result = executor(agents.clone())
        .run(
            graph(&example("debate.yaml")),
            json!({"topic": "tabs or spaces"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(result.output, json!("pro wins after 2 (pro#2, con#2)"));
    assert_eq!(agents.calls_to("advocate").len(), 2);
}

#[tokio::test]
async fn debate_ends_at_the_round_limit_when_the_judge_never_decides() {
    let agents = debate_agents(None);
    let result = executor(agents.clone())
        .run(
            graph(&example("debate.yaml")),
            json!({"topic": "tabs or spaces"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    // One opening round plus max_traversals (2) more.
    assert_eq!(agents.calls_to("advocate").len(), 3);
    assert_eq!(result.output, json!("continue after 3 (pro#3, con#3)"));
}

#[tokio::test]
async fn hierarchical_nodes_run_their_sub_graphs() {
    let agents = Arc::new(
        FakeAgents::new()
            // The planner is both the CEO and each team's manager, the
            // summarizer both each team's report and the final summary.
            .agent("planner", |call| {
                if call.node_id == "ceo" {
                    data_reply(json!({"engineering": "build it", "marketing": "sell it"}))
                } else {
                    text_reply(&format!("plan: {}", text_of(call)))
                }
            })
            .agent("estimator", |call| {
                text_reply(&format!("done({})", text_of(call)))
            })
            .agent("summarizer", |call| {
                if call.node_id == "summary" {
                    let data = data_of(call);
                    text_reply(&format!(
                        "{} | {}",
                        data["engineering.output"].as_str().unwrap_or("?"),
                        data["marketing.output"].as_str().unwrap_or("?")
                    ))
                } else {
                    text_reply(&text_of(call).replace("\n\n", " & "))
                }
            }),
    );
    let result = executor(agents.clone())
        .run(
            graph(&example("hierarchical.yaml")),
            json!({"goal": "launch"}),
        )
        .await
        .expect("run");
    assert_eq!(result.status, RunStatus::Succeeded, "{:?}", result.error);
    assert_eq!(
        result.output,
        json!("done(plan: build it) & done(plan: build it) | done(plan: sell it) & done(plan: sell it)")
    );
    assert_eq!(agents.calls_to("estimator").len(), 4);
    let executed: Vec<&str> = result
        .trace
        .nodes
        .iter()
        .map(|node| node.agent.as_str())
        .collect();
    assert!(executed.contains(&"subgraph:team"));
}

#[tokio::test]
async fn dynamic_routing_follows_the_router_agents_reply() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("intent_classifier", |call| {
                let query = text_of(call);
                text_reply(if query.contains("invoice") {
                    "billing"
                } else if query.contains("crash") {
                    "technical"
                } else {
                    "chitchat"
                })
            })
            .agent("billing_specialist", |call| {
                text_reply(&format!("billing: {}", text_of(call)))
            })
            .agent("tech_support", |call| {
                text_reply(&format!("tech: {}", text_of(call)))
            })
            .agent("generalist", |call| {
                text_reply(&format!("general: {}", text_of(call)))
            }),
    );
    let executor = executor(agents.clone());
    let graph = graph(&example("dynamic_routing.yaml"));
    let cases = [
        ("my invoice is wrong", "billing: my invoice is wrong"),
        ("app crash", "tech: app crash"),
        ("hello", "general: hello"),
    ];
    for (query, expected) in cases {
        let result = executor
            .run(graph.clone(), json!({"query": query}))
            .await
            .expect("run");
        assert_eq!(result.status, RunStatus::Succeeded);
        assert_eq!(result.output, json!(expected));
        let not_run = result
            .state
            .nodes
            .iter()
            .filter(|node| node.status == NodeStatus::NotRun)
            .count();
        assert_eq!(not_run, 2, "only the chosen specialist runs");
    }
    assert_eq!(agents.call_count(), 6);
}

#[tokio::test]
async fn rule_router_picks_a_route_without_calling_an_agent() {
    let agents = Arc::new(
        FakeAgents::new()
            .agent("billing_specialist", |_| text_reply("billing"))
            .agent("tech_support", |_| text_reply("technical"))
            .agent("generalist", |_| text_reply("general")),
    );
    let executor = executor(agents.clone());
    let graph = graph(&example("dynamic_routing_rules.yaml"));
    let cases = [
        (json!({"category": "billing", "text": "refund"}), "billing"),
        (
            json!({"category": "other", "text": "an error occurred"}),
            "technical",
        ),
        (json!({"category": "other", "text": "hi"}), "general"),
    ];
    for (ticket, expected) in cases {
        let result = executor
            .run(graph.clone(), json!({"ticket": ticket}))
            .await
            .expect("run");
        assert_eq!(result.output, json!(expected));
    }
    assert_eq!(
        agents.call_count(),
        3,
        "the router itself never calls an agent"
    );
}
