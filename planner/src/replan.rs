//! Re-planning from a run's failure point (design document §9.2): what a
//! planner is told ([`ReplanContext`]), the rule that steps that already ran
//! stay as they were ([`keep_completed`]), and the built-in planner's answer
//! ([`deterministic`]: the failed step moves to the candidate closest to
//! its agent).
//!
//! The orchestrator decides when to re-plan and keeps the finished nodes'
//! states; the gateway asks the planner, checks the new plan for the caller
//! like the first one, and stores it as the plan's next version.

use std::collections::{BTreeSet, HashSet};

use convergio_schemas::Violation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{CandidateCard, Considered, Constraints, PlanDocument};
use crate::error::PlannerError;

/// What a planner is sent to plan again (the `replan` data of the
/// planning message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplanContext {
    /// Which re-plan of the run this is (1-based).
    pub number: u32,
    /// The plan the run was on.
    pub current_plan: PlanDocument,
    /// The step that failed after its error strategy was spent.
    pub failed: FailedPlanStep,
    /// The steps that finished, with their outputs: kept as they are.
    pub completed: Vec<CompletedPlanStep>,
}

/// The failed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedPlanStep {
    /// Its id.
    pub id: String,
    /// The agent that failed.
    pub agent: String,
    /// The error.
    pub error: String,
}

/// A finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedPlanStep {
    /// Its id.
    pub id: String,
    /// Its agent.
    pub agent: String,
    /// Its output.
    pub output: Value,
}

/// `answer` with the finished steps of `previous` kept as they were: a
/// finished step the answer left out is put back (first, in the previous
/// order); one it changed (agent, inputs or `after`) is a violation, sent
/// back to a planner agent like any other.
pub fn keep_completed(
    previous: &PlanDocument,
    answer: &PlanDocument,
    completed: &[String],
) -> Result<PlanDocument, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut restored = Vec::new();
    let mut merged = answer.clone();
    for id in completed {
        let Some(before) = previous.steps.iter().find(|step| &step.id == id) else {
            continue;
        };
        match merged
            .steps
            .iter_mut()
            .enumerate()
            .find(|(_, step)| &step.id == id)
        {
            None => restored.push(before.clone()),
            Some((index, step)) => {
                if step.agent != before.agent
                    || step.inputs != before.inputs
                    || step.after != before.after
                {
                    violations.push(Violation {
                        pointer: format!("/steps/{index}"),
                        message: format!(
                            "step `{id}` already ran: keep it as it was (agent `{}`, inputs {:?}, after {:?})",
                            before.agent, before.inputs, before.after
                        ),
                    });
                }
                step.task.clone_from(&before.task);
            }
        }
    }
    restored.append(&mut merged.steps);
    merged.steps = restored;
    // A finished step cannot wait for one that has not run.
    let done: HashSet<&str> = completed.iter().map(String::as_str).collect();
    for (index, step) in merged.steps.iter().enumerate() {
        if !done.contains(step.id.as_str()) {
            continue;
        }
        for dependency in merged.dependencies(step) {
            if !done.contains(dependency.as_str()) {
                violations.push(Violation {
                    pointer: format!("/steps/{index}"),
                    message: format!(
                        "step `{}` already ran and cannot wait for step `{dependency}`",
                        step.id
                    ),
                });
            }
        }
    }
    if violations.is_empty() {
        Ok(merged)
    } else {
        Err(violations)
    }
}

/// The built-in planner's re-plan: the failed step (same id, inputs and
/// place) moves to the eligible candidate whose skills, tags and role are
/// closest to the failed agent's (ties: the one whose vocabulary meets
/// the step's task most, then by name); agents that failed in this run are
/// not chosen again. Fails when no other candidate shares anything with
/// the failed agent or the task.
pub fn deterministic(
    context: &ReplanContext,
    candidates: &[CandidateCard],
    constraints: &Constraints,
    failed_before: &[String],
) -> Result<PlanDocument, PlannerError> {
    let previous = &context.current_plan;
    let step = previous
        .steps
        .iter()
        .find(|step| step.id == context.failed.id)
        .ok_or_else(|| PlannerError::PlannerFailed {
            message: format!("step `{}` is not in the current plan", context.failed.id),
        })?;
    let failed_card = candidates
        .iter()
        .find(|card| card.name == context.failed.agent);
    let target: BTreeSet<String> = failed_card.map(vocabulary).unwrap_or_default();
    let task: BTreeSet<String> = words(&step.task).collect();
    let mut best: Option<(usize, usize, &CandidateCard)> = None;
    for card in candidates {
        if card.name == context.failed.agent
            || failed_before.iter().any(|agent| agent == &card.name)
            || !eligible(card, constraints)
        {
            continue;
        }
        let own = vocabulary(card);
        let shared = own.intersection(&target).count()
            + usize::from(failed_card.is_some_and(|failed| failed.role == card.role));
        let on_task = own.intersection(&task).count();
        if shared + on_task == 0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_shared, best_task, best_card)) => {
                (shared, on_task) > (best_shared, best_task)
                    || ((shared, on_task) == (best_shared, best_task) && card.name < best_card.name)
            }
        };
        if better {
            best = Some((shared, on_task, card));
        }
    }
    let Some((shared, on_task, chosen)) = best else {
        return Err(PlannerError::PlannerFailed {
            message: format!(
                "no other candidate can take step `{}` (agent `{}` failed: {})",
                step.id, context.failed.agent, context.failed.error
            ),
        });
    };
    let mut plan = previous.clone();
    for planned in &mut plan.steps {
        if planned.id == step.id {
            planned.agent.clone_from(&chosen.name);
        }
    }
    plan.rationale.push(format!(
        "re-plan {}: step `{}` failed on `{}` ({}); `{}` takes it over ({} skill, tag or role terms shared with `{}`, {} task terms)",
        context.number,
        step.id,
        context.failed.agent,
        context.failed.error,
        chosen.name,
        shared,
        context.failed.agent,
        on_task
    ));
    if !plan
        .candidates
        .iter()
        .any(|considered| considered.agent == chosen.name)
    {
        plan.candidates.push(Considered {
            agent: chosen.name.clone(),
            selected: true,
            reason: format!(
                "re-plan {}: replaces `{}`",
                context.number, context.failed.agent
            ),
        });
    }
    for considered in &mut plan.candidates {
        if considered.agent == chosen.name {
            considered.selected = true;
        } else if considered.agent == context.failed.agent {
            considered.reason = format!(
                "failed in re-plan {} ({})",
                context.number, context.failed.error
            );
        }
    }
    Ok(plan)
}

/// Whether the built-in planner may use `card` under `constraints`.
fn eligible(card: &CandidateCard, constraints: &Constraints) -> bool {
    crate::deterministic::ineligible(card, constraints).is_none()
}

fn vocabulary(card: &CandidateCard) -> BTreeSet<String> {
    let mut found = crate::deterministic::vocabulary(card);
    found.extend(words(&card.description));
    found
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    crate::deterministic::words(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{CandidateSkill, PlanStep};
    use convergio_schemas::AgentRole;

    fn step(id: &str, agent: &str, inputs: &[&str]) -> PlanStep {
        PlanStep {
            id: id.to_owned(),
            agent: agent.to_owned(),
            task: format!("do {id}"),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            after: Vec::new(),
        }
    }

    fn card(name: &str, skill: &str, tags: &[&str]) -> CandidateCard {
        CandidateCard {
            name: name.to_owned(),
            skills: vec![CandidateSkill {
                id: skill.to_owned(),
                name: skill.to_owned(),
                description: String::new(),
                tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            }],
            role: AgentRole::Worker,
            ..CandidateCard::default()
        }
    }

    fn previous() -> PlanDocument {
        PlanDocument {
            goal: "g".to_owned(),
            steps: vec![
                step("a", "fetcher", &["topic"]),
                step("b", "checker", &["a.output"]),
                step("c", "writer", &["b.output"]),
            ],
            ..PlanDocument::default()
        }
    }

    #[test]
    fn finished_steps_are_put_back_and_may_not_change() {
        let answer = PlanDocument {
            goal: "g".to_owned(),
            steps: vec![
                step("b2", "other", &["a.output"]),
                step("c", "writer", &["b2.output"]),
            ],
            ..PlanDocument::default()
        };
        let merged = keep_completed(&previous(), &answer, &["a".to_owned()]).expect("merges");
        let ids: Vec<&str> = merged.steps.iter().map(|step| step.id.as_str()).collect();
        assert_eq!(ids, ["a", "b2", "c"]);

        let mut changed = answer.clone();
        changed
            .steps
            .insert(0, step("a", "someone_else", &["topic"]));
        let violations =
            keep_completed(&previous(), &changed, &["a".to_owned()]).expect_err("refused");
        assert!(violations[0].message.contains("step `a` already ran"));
    }

    #[test]
    fn the_builtin_planner_moves_the_failed_step_to_the_closest_candidate() {
        let context = ReplanContext {
            number: 1,
            current_plan: previous(),
            failed: FailedPlanStep {
                id: "b".to_owned(),
                agent: "checker".to_owned(),
                error: "down".to_owned(),
            },
            completed: Vec::new(),
        };
        let candidates = vec![
            card("fetcher", "fetch", &["web"]),
            card("checker", "check", &["security", "code"]),
            card("backup_checker", "check", &["security", "code"]),
            card("writer", "write", &["report"]),
        ];
        let plan =
            deterministic(&context, &candidates, &Constraints::default(), &[]).expect("re-plans");
        assert_eq!(plan.steps[1].agent, "backup_checker");
        assert!(plan
            .rationale
            .last()
            .is_some_and(|why| why.contains("re-plan 1")));
        let none = deterministic(
            &context,
            &candidates,
            &Constraints::default(),
            &["backup_checker".to_owned()],
        );
        assert!(none.is_ok(), "another candidate still shares the role");
        let alone = deterministic(&context, &candidates[1..2], &Constraints::default(), &[]);
        assert!(alone.is_err(), "no other candidate");
    }
}
