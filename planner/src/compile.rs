//! A plan as the graph it runs: each step becomes a node, each dependency
//! an edge, and the constraints become the graph's run bounds. Also the run
//! input a plan's run gets (`goal` and one `task_<step>` per step, merged
//! under the caller's own input).

use convergio_orchestrator::dsl::{EdgeSpec, ExecutionSpec, GraphConfig, NodeSpec, OneOrMany};
use convergio_orchestrator::GraphSpec;
use serde_json::{Map, Value};

use crate::document::{Constraints, PlanDocument};

/// The graph `plan` runs, named `name`.
pub fn to_graph(plan: &PlanDocument, name: &str, constraints: &Constraints) -> GraphSpec {
    let nodes = plan
        .steps
        .iter()
        .map(|step| NodeSpec {
            id: step.id.clone(),
            agent: Some(step.agent.clone()),
            kind: Default::default(),
            inputs: step.inputs.clone(),
            parallel_group: None,
            wait_for: Vec::new(),
            on_error: None,
            timeout_seconds: None,
            rules: Vec::new(),
            default_route: None,
            subgraph: None,
            memory: None,
            update_state: Default::default(),
            stream: false,
            publish: None,
            wait_for_event: None,
        })
        .collect();
    let mut edges = Vec::new();
    for step in &plan.steps {
        let after = plan.dependencies(step);
        if !after.is_empty() {
            edges.push(EdgeSpec {
                from: if after.len() == 1 {
                    OneOrMany::One(after[0].clone())
                } else {
                    OneOrMany::Many(after)
                },
                to: OneOrMany::One(step.id.clone()),
                when: None,
                max_traversals: None,
            });
        }
    }
    GraphSpec {
        name: name.to_owned(),
        description: Some(brief(&plan.goal)),
        nodes,
        edges,
        entry: Vec::new(),
        config: GraphConfig {
            // A plan has no cycles: every step runs at most once.
            max_iterations: Some(1),
            timeout_seconds: constraints
                .time_budget_minutes
                .map(|minutes| (minutes * 60.0).max(1.0)),
            checkpoint_enabled: false,
        },
        execution: ExecutionSpec {
            max_tokens_per_run: constraints.token_budget,
            max_cost_per_run: constraints.cost_budget,
            ..ExecutionSpec::default()
        },
        subgraphs: Default::default(),
        state: Default::default(),
        source: None,
    }
}

/// The graph as YAML text, the form `POST /v1/runs` and `convergio graph`
/// take.
pub fn to_yaml(graph: &GraphSpec) -> String {
    serde_yaml::to_string(graph).unwrap_or_default()
}

/// The run input of a plan's run: the caller's `input` (an object; any
/// other value is kept under `input`), plus `goal` and `task_<step>` for
/// every step where the caller's input does not set them.
pub fn run_input(plan: &PlanDocument, input: Option<Value>) -> Value {
    let mut object = match input {
        Some(Value::Object(map)) => map,
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            let mut map = Map::new();
            map.insert("input".to_owned(), other);
            map
        }
    };
    object
        .entry("goal")
        .or_insert_with(|| Value::String(plan.goal.clone()));
    for step in &plan.steps {
        object
            .entry(PlanDocument::task_input(&step.id))
            .or_insert_with(|| Value::String(step.task.clone()));
    }
    Value::Object(object)
}

/// The goal shortened for a graph description (500 characters).
fn brief(goal: &str) -> String {
    let mut text: String = goal.chars().take(500).collect();
    if text.len() < goal.len() {
        text.push('…');
    }
    format!("plan: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::PlanStep;

    fn step(id: &str, agent: &str, inputs: &[&str], after: &[&str]) -> PlanStep {
        PlanStep {
            id: id.to_owned(),
            agent: agent.to_owned(),
            task: format!("do {id}"),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            after: after.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn dependencies_become_edges_and_budgets_bounds() {
        let plan = PlanDocument {
            goal: "g".to_owned(),
            steps: vec![
                step("a", "x", &["source_code"], &[]),
                step("b", "y", &["source_code"], &[]),
                step("c", "z", &["a.output", "b.output"], &["a"]),
            ],
            ..PlanDocument::default()
        };
        let constraints = Constraints {
            time_budget_minutes: Some(2.0),
            token_budget: Some(500),
            cost_budget: Some(0.25),
            ..Constraints::default()
        };
        let graph = to_graph(&plan, "plan-1", &constraints);
        assert_eq!(graph.nodes.len(), 3);
        assert_eq!(graph.edges.len(), 1);
        assert_eq!(
            graph.edges[0].from,
            OneOrMany::Many(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(graph.config.timeout_seconds, Some(120.0));
        assert_eq!(graph.execution.max_tokens_per_run, Some(500));
        assert_eq!(graph.execution.max_cost_per_run, Some(0.25));
        let input = run_input(&plan, Some(serde_json::json!({"source_code": "x=1"})));
        assert_eq!(input["task_c"], "do c");
        assert_eq!(input["goal"], "g");
        assert_eq!(input["source_code"], "x=1");
    }
}
