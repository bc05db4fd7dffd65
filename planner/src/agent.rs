//! Planners that are agents (issue 19): any agent with a `plan` skill —
//! local, a model agent, or another organisation's. Convergio sends it the
//! goal, the constraints and the candidates' cards (names, skills, modes)
//! and expects a plan document back (`schemas/json/plan.schema.json`), as a
//! data part or as JSON text (a fenced block is accepted). An answer that
//! does not validate is sent back with its violations, at most
//! [`MAX_CORRECTIONS`] times; then the request fails with the last
//! violations.
//!
//! The call itself is the gateway's ([`PlannerAgent`]): it goes through the
//! same pipeline as a graph node's, as the caller, so asking a planner is
//! decided by policy like any call.

use async_trait::async_trait;
use convergio_schemas::Violation;
use serde_json::{json, Map, Value};

use crate::check::{parse_plan, ValidPlan};
use crate::document::{CandidateCard, Constraints, PlanDocument};
use crate::error::PlannerError;

/// How many times an invalid answer is sent back before the request fails.
pub const MAX_CORRECTIONS: u32 = 2;

/// The skill a planner agent declares and every planning message names.
pub const PLAN_SKILL: &str = "plan";

/// Sends one message to the planner agent.
#[async_trait]
pub trait PlannerAgent: Send + Sync {
    /// Sends `message` (an A2A 1.0 message) and returns the reply's output
    /// (the orchestrator's reading of a reply: text, or a data part's value).
    async fn ask(&self, message: Value) -> Result<Value, PlannerError>;
}

/// The message asking for a plan; with `feedback`, the previous answer and
/// what was wrong with it; with `replan`, the failure point of a run (the
/// current plan, the steps that finished with their outputs, the step that
/// failed and its error: see [`crate::replan::ReplanContext`]).
pub fn planning_message(
    goal: &str,
    constraints: &Constraints,
    candidates: &[CandidateCard],
    feedback: Option<(&Value, &[Violation])>,
    replan: Option<&Value>,
) -> Value {
    let cards: Vec<Value> = candidates
        .iter()
        .map(|card| {
            json!({
                "name": card.name,
                "description": card.description,
                "role": card.role,
                "skills": card.skills.iter().map(|skill| json!({
                    "id": skill.id, "name": skill.name, "tags": skill.tags,
                })).collect::<Vec<_>>(),
                "input_modes": card.input_modes,
                "output_modes": card.output_modes,
            })
        })
        .collect();
    let mut data = Map::new();
    data.insert("goal".to_owned(), Value::String(goal.to_owned()));
    data.insert(
        "constraints".to_owned(),
        serde_json::to_value(constraints).unwrap_or(Value::Null),
    );
    data.insert("candidates".to_owned(), Value::Array(cards));
    data.insert(
        "plan_schema".to_owned(),
        Value::String("https://convergio.dev/schemas/plan.schema.json".to_owned()),
    );
    let mut text = String::from(
        "Plan the goal with the candidate agents only. Answer with one JSON object and nothing \
         else: {\"goal\": string, \"steps\": [{\"id\", \"agent\", \"task\", \"inputs\": \
         [graph input or <step>.output], \"after\": [step ids]}], \"rationale\": [strings], \
         \"candidates\": [{\"agent\", \"selected\", \"reason\"}]}. Steps that do not depend on \
         each other run in parallel.",
    );
    if let Some(replan) = replan {
        data.insert("replan".to_owned(), replan.clone());
        text.push_str(
            " A step of the current plan (replan.current_plan) failed (replan.failed). Plan again \
             from that point: keep every step in replan.completed exactly as it is (same id, \
             agent and inputs; they ran and are not run again), and replace or add the steps \
             that have not run.",
        );
    }
    if let Some((previous, violations)) = feedback {
        data.insert("previous_plan".to_owned(), previous.clone());
        data.insert(
            "errors".to_owned(),
            Value::Array(
                violations
                    .iter()
                    .map(|v| json!({"pointer": v.pointer, "message": v.message}))
                    .collect(),
            ),
        );
        text.push_str(" Your previous plan was invalid; fix every error listed and answer again.");
    }
    json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"data": Value::Object(data)}, {"text": text}],
        "metadata": {"skill": PLAN_SKILL},
    })
}

/// The plan document in a planner's answer: an object (or `{"plan": …}`),
/// or JSON text, possibly fenced.
pub fn read_answer(output: &Value) -> Result<Value, Vec<Violation>> {
    let unreadable = |message: &str| {
        vec![Violation {
            pointer: String::new(),
            message: message.to_owned(),
        }]
    };
    match output {
        Value::Object(map) => match map.get("plan") {
            Some(plan @ Value::Object(_)) if !map.contains_key("steps") => Ok(plan.clone()),
            _ => Ok(output.clone()),
        },
        Value::String(text) => {
            let start = text.find('{');
            let end = text.rfind('}');
            match (start, end) {
                (Some(start), Some(end)) if start < end => {
                    let value: Value =
                        serde_json::from_str(&text[start..=end]).map_err(|error| {
                            unreadable(&format!("the answer is not a JSON plan: {error}"))
                        })?;
                    read_answer(&value)
                }
                _ => Err(unreadable("the answer holds no JSON object")),
            }
        }
        Value::Array(items) => items
            .iter()
            .find_map(|item| read_answer(item).ok())
            .ok_or_else(|| unreadable("no part of the answer is a JSON plan")),
        _ => Err(unreadable("the answer is not a JSON plan")),
    }
}

/// Asks `agent` for a plan and checks each answer with `check` (schema,
/// policy, graph rules), sending invalid answers back with their
/// violations. Returns the valid plan and how many answers it took.
pub async fn plan_with_agent(
    agent: &dyn PlannerAgent,
    goal: &str,
    constraints: &Constraints,
    candidates: &[CandidateCard],
    check: &(dyn Fn(&PlanDocument) -> Result<ValidPlan, Vec<Violation>> + Send + Sync),
) -> Result<(ValidPlan, u32), PlannerError> {
    ask_until_valid(agent, goal, constraints, candidates, None, check).await
}

/// Asks `agent` for a new plan from a run's failure point (`replan`, a
/// serialised [`crate::replan::ReplanContext`]), with the same feedback
/// rounds as [`plan_with_agent`].
pub async fn replan_with_agent(
    agent: &dyn PlannerAgent,
    goal: &str,
    constraints: &Constraints,
    candidates: &[CandidateCard],
    replan: &Value,
    check: &(dyn Fn(&PlanDocument) -> Result<ValidPlan, Vec<Violation>> + Send + Sync),
) -> Result<(ValidPlan, u32), PlannerError> {
    ask_until_valid(agent, goal, constraints, candidates, Some(replan), check).await
}

async fn ask_until_valid(
    agent: &dyn PlannerAgent,
    goal: &str,
    constraints: &Constraints,
    candidates: &[CandidateCard],
    replan: Option<&Value>,
    check: &(dyn Fn(&PlanDocument) -> Result<ValidPlan, Vec<Violation>> + Send + Sync),
) -> Result<(ValidPlan, u32), PlannerError> {
    let mut feedback: Option<(Value, Vec<Violation>)> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let message = planning_message(
            goal,
            constraints,
            candidates,
            feedback
                .as_ref()
                .map(|(previous, violations)| (previous, violations.as_slice())),
            replan,
        );
        let output = agent.ask(message).await?;
        let outcome = read_answer(&output).and_then(|value| {
            let plan = parse_plan(&value)?;
            check(&plan)
        });
        match outcome {
            Ok(valid) => return Ok((valid, attempts)),
            Err(violations) if attempts > MAX_CORRECTIONS => {
                return Err(PlannerError::PlannerGaveUp {
                    attempts,
                    violations,
                })
            }
            Err(violations) => feedback = Some((output, violations)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use convergio_orchestrator::Limits;
    use convergio_schemas::TrustLevel;

    use crate::check::{check_plan, Access, AccessMap};

    struct Scripted(Mutex<Vec<Value>>, Mutex<Vec<Value>>);

    #[async_trait]
    impl PlannerAgent for Scripted {
        async fn ask(&self, message: Value) -> Result<Value, PlannerError> {
            if let Ok(mut seen) = self.1.lock() {
                seen.push(message);
            }
            let mut answers = self.0.lock().map_err(|_| PlannerError::NoCandidates)?;
            if answers.is_empty() {
                return Err(PlannerError::NoCandidates);
            }
            Ok(answers.remove(0))
        }
    }

    fn checker() -> impl Fn(&PlanDocument) -> Result<ValidPlan, Vec<Violation>> + Send + Sync {
        let mut access = AccessMap::new();
        access.insert("echo", Access::Callable(TrustLevel::Internal));
        access.insert("secret_agent", Access::NotCallable);
        move |plan| {
            check_plan(
                plan,
                "plan-t",
                &Constraints::default(),
                &access,
                &Limits::default(),
            )
        }
    }

    fn answer(agent: &str) -> Value {
        Value::String(format!(
            "```json\n{{\"goal\": \"g\", \"steps\": [{{\"id\": \"s\", \"agent\": \"{agent}\", \"task\": \"t\"}}]}}\n```"
        ))
    }

    #[tokio::test]
    async fn an_invalid_answer_is_corrected_after_feedback() {
        let agent = Scripted(
            Mutex::new(vec![json!({"goal": "g"}), answer("echo")]),
            Mutex::new(Vec::new()),
        );
        let check = checker();
        let (valid, attempts) = plan_with_agent(&agent, "g", &Constraints::default(), &[], &check)
            .await
            .expect("corrected");
        assert_eq!(attempts, 2);
        assert_eq!(valid.plan.steps[0].agent, "echo");
        let seen = agent.1.lock().map(|seen| seen.clone()).unwrap_or_default();
        assert!(seen[1]["parts"][0]["data"]["errors"].is_array());
    }

    #[tokio::test]
    async fn an_answer_that_stays_invalid_fails_with_its_errors() {
        let agent = Scripted(
            Mutex::new(vec![answer("secret_agent"); 3]),
            Mutex::new(Vec::new()),
        );
        let check = checker();
        let error = plan_with_agent(&agent, "g", &Constraints::default(), &[], &check)
            .await
            .expect_err("gave up");
        assert!(matches!(
            error,
            PlannerError::PlannerGaveUp { attempts: 3, .. }
        ));
        assert!(error.violations()[0].message.contains("step `s`"));
    }
}
