//! Plan validation: the published schema, the plan's own rules
//! (`max_steps`, unique step ids, trust and organisation constraints),
//! policy for the caller (every step's agent must be one the caller may
//! discover *and* call), then the graph rules the orchestrator applies to a
//! stored graph (agents known, references, limits). Every violation is
//! reported, each naming its step, before anything runs.
//!
//! What the caller may do with an agent is decided by the gateway (Cedar
//! and the registry) and handed in as an [`AgentAccess`], so this module
//! needs no I/O and the same check serves the REST API, planner agents'
//! answers and the benchmark.

use std::collections::{HashMap, HashSet};

use convergio_orchestrator::{validate, Graph, GraphSpec, Limits, StaticCatalog};
use convergio_schemas::validate::{validate as validate_schema, SchemaId};
use convergio_schemas::{TrustLevel, Violation};
use serde_json::Value;

use crate::compile::to_graph;
use crate::document::{Constraints, PlanDocument};

/// How the caller may use one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not registered, or the caller may not discover it (the same answer:
    /// validation is no oracle).
    Unknown,
    /// The caller may discover it but policy refuses it `send_message`.
    NotCallable,
    /// The caller may call it; the agent's trust level.
    Callable(TrustLevel),
    /// An `external://` agent of another organisation (its organisation
    /// answers for it at call time).
    External,
}

/// What the caller may do with each agent a plan names.
pub trait AgentAccess: Send + Sync {
    /// The caller's access to `agent` (registry name or agent id).
    fn access(&self, agent: &str) -> Access;
}

/// A fixed answer per agent (the gateway looks the plan's agents up first);
/// agents not in the map are unknown.
#[derive(Debug, Clone, Default)]
pub struct AccessMap {
    agents: HashMap<String, Access>,
}

// === impl AccessMap ===

impl AccessMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `agent`'s access.
    pub fn insert(&mut self, agent: impl Into<String>, access: Access) {
        self.agents.insert(agent.into(), access);
    }
}

impl AgentAccess for AccessMap {
    fn access(&self, agent: &str) -> Access {
        self.agents.get(agent).copied().unwrap_or(Access::Unknown)
    }
}

/// A plan that passed every check, with the graph it runs.
#[derive(Debug, Clone)]
pub struct ValidPlan {
    /// The plan.
    pub plan: PlanDocument,
    /// Its graph document.
    pub spec: GraphSpec,
    /// The validated graph.
    pub graph: Graph,
}

/// Reads a plan document from JSON: schema first (every violation with its
/// pointer), then the typed form.
pub fn parse_plan(value: &Value) -> Result<PlanDocument, Vec<Violation>> {
    validate_schema(SchemaId::Plan, value)?;
    serde_json::from_value(value.clone()).map_err(|error| {
        vec![Violation {
            pointer: String::new(),
            message: error.to_string(),
        }]
    })
}

/// Validates `plan` for a caller whose access is `access`; `name` is the
/// graph name its runs carry.
pub fn check_plan(
    plan: &PlanDocument,
    name: &str,
    constraints: &Constraints,
    access: &dyn AgentAccess,
    limits: &Limits,
) -> Result<ValidPlan, Vec<Violation>> {
    let mut violations = Vec::new();
    // The schema, on the plan as it will be stored.
    if let Ok(value) = serde_json::to_value(plan) {
        if let Err(mut found) = validate_schema(SchemaId::Plan, &value) {
            violations.append(&mut found);
        }
    }
    if let Some(max_steps) = constraints.max_steps {
        if plan.steps.len() > max_steps as usize {
            violations.push(Violation {
                pointer: "/steps".to_owned(),
                message: format!(
                    "the plan has {} steps; max_steps is {max_steps}",
                    plan.steps.len()
                ),
            });
        }
    }
    let mut seen = HashSet::with_capacity(plan.steps.len());
    for (index, step) in plan.steps.iter().enumerate() {
        let pointer = format!("/steps/{index}");
        if !seen.insert(step.id.as_str()) {
            violations.push(Violation {
                pointer: format!("{pointer}/id"),
                message: format!("step id `{}` is used twice", step.id),
            });
        }
        for after in &step.after {
            if !plan.steps.iter().any(|other| &other.id == after) {
                violations.push(Violation {
                    pointer: format!("{pointer}/after"),
                    message: format!(
                        "step `{}` waits for step `{after}`, which the plan does not have",
                        step.id
                    ),
                });
            }
        }
        let refused = |why: String| Violation {
            pointer: format!("{pointer}/agent"),
            message: format!("step `{}` names agent `{}`: {why}", step.id, step.agent),
        };
        match access.access(&step.agent) {
            Access::Unknown => violations.push(refused(
                "no agent of that name is known to the caller".to_owned(),
            )),
            Access::NotCallable => {
                violations.push(refused("policy does not let the caller call it".to_owned()))
            }
            Access::External if !constraints.allow_external => violations.push(refused(
                "it belongs to another organisation and allow_external is false".to_owned(),
            )),
            Access::External => {}
            Access::Callable(trust) => match constraints.min_trust {
                Some(floor) if trust.rank() < floor.rank() => violations.push(refused(format!(
                    "its trust level {} is below min_trust {}",
                    trust.as_str(),
                    floor.as_str()
                ))),
                _ => {}
            },
        }
    }
    let spec = to_graph(plan, name, constraints);
    // Agents refused above are already reported: the graph check counts
    // them as known so they are not reported twice.
    let catalog = StaticCatalog::new(plan.steps.iter().map(|step| step.agent.as_str()));
    let graph = match validate(&spec, &catalog, limits) {
        Ok(graph) => Some(graph),
        Err(errors) => {
            violations.extend(errors.iter().map(|error| {
                let mut violation = error.to_violation();
                violation.pointer = violation.pointer.replacen("/nodes/", "/steps/", 1);
                violation
            }));
            None
        }
    };
    match graph {
        Some(graph) if violations.is_empty() => Ok(ValidPlan {
            plan: plan.clone(),
            spec,
            graph,
        }),
        _ => Err(violations),
    }
}

/// The steps a set of violations names (`/steps/<n>/…`), as step ids: what
/// a refusal says the caller must change.
pub fn offending_steps(plan: &PlanDocument, violations: &[Violation]) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for violation in violations {
        let index = violation
            .pointer
            .strip_prefix("/steps/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|index| index.parse::<usize>().ok());
        if let Some(step) = index.and_then(|index| plan.steps.get(index)) {
            if !steps.contains(&step.id) {
                steps.push(step.id.clone());
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::PlanStep;
    use serde_json::json;

    fn plan() -> PlanDocument {
        PlanDocument {
            goal: "review".to_owned(),
            steps: vec![
                PlanStep {
                    id: "security".to_owned(),
                    agent: "security_expert".to_owned(),
                    task: "find security problems".to_owned(),
                    inputs: vec!["source_code".to_owned()],
                    after: Vec::new(),
                },
                PlanStep {
                    id: "report".to_owned(),
                    agent: "report_generator".to_owned(),
                    task: "write the report".to_owned(),
                    inputs: vec!["security.output".to_owned()],
                    after: Vec::new(),
                },
            ],
            ..PlanDocument::default()
        }
    }

    fn access(report: Access) -> AccessMap {
        let mut map = AccessMap::new();
        map.insert("security_expert", Access::Callable(TrustLevel::Internal));
        map.insert("report_generator", report);
        map
    }

    #[test]
    fn a_plan_over_callable_agents_validates() {
        let valid = check_plan(
            &plan(),
            "plan-x",
            &Constraints::default(),
            &access(Access::Callable(TrustLevel::Internal)),
            &Limits::default(),
        );
        let valid = valid.expect("valid plan");
        assert_eq!(valid.spec.edges.len(), 1);
    }

    #[test]
    fn refuses_an_agent_the_caller_may_not_call_naming_the_step() {
        for refusal in [Access::NotCallable, Access::Unknown] {
            let plan = plan();
            let violations = check_plan(
                &plan,
                "plan-x",
                &Constraints::default(),
                &access(refusal),
                &Limits::default(),
            )
            .expect_err("refused");
            assert_eq!(offending_steps(&plan, &violations), vec!["report"]);
            assert!(violations[0].message.contains("step `report`"));
        }
    }

    #[test]
    fn enforces_max_steps_trust_and_external() {
        let constraints = Constraints {
            max_steps: Some(1),
            min_trust: Some(TrustLevel::Trusted),
            ..Constraints::default()
        };
        let violations = check_plan(
            &plan(),
            "plan-x",
            &constraints,
            &access(Access::Callable(TrustLevel::Registered)),
            &Limits::default(),
        )
        .expect_err("refused");
        let messages: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("max_steps")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("min_trust")),
            "{messages:?}"
        );
        let external = check_plan(
            &plan(),
            "plan-x",
            &Constraints::default(),
            &access(Access::External),
            &Limits::default(),
        )
        .expect_err("refused");
        assert!(external[0].message.contains("allow_external"));
    }

    #[test]
    fn schema_violations_carry_pointers() {
        let violations =
            parse_plan(&json!({"goal": "g", "steps": [{"id": "a"}]})).expect_err("agent missing");
        assert!(
            violations.iter().any(|v| v.pointer == "/steps/0"),
            "{violations:?}"
        );
        let broken = check_plan(
            &PlanDocument {
                goal: "g".to_owned(),
                steps: vec![PlanStep {
                    id: "a".to_owned(),
                    agent: "security_expert".to_owned(),
                    inputs: vec!["ghost.output".to_owned()],
                    ..PlanStep::default()
                }],
                ..PlanDocument::default()
            },
            "plan-x",
            &Constraints::default(),
            &access(Access::Unknown),
            &Limits::default(),
        )
        .expect_err("unknown reference");
        assert!(
            broken.iter().any(|v| v.pointer.starts_with("/steps/0")),
            "{broken:?}"
        );
    }
}
