//! The planning agents of `examples/graphs/hierarchical.yaml` and
//! `sequential.yaml`: `planner` breaks a goal into steps and assigns each to
//! a department, `estimator` sizes steps, `summarizer` totals estimates.
//! Deterministic heuristics, stated here in full; nothing is made up.
//!
//! - `planner`: the goal is the text parts (else every string in the data
//!   parts). Each line, without a list marker (`-`, `*`, `1.`, `1)`), is
//!   split into sentences at `. ` and `; `; each piece is a step. A step's
//!   department is the one whose [`DEPARTMENTS`] keywords it names most
//!   (ties go to the earlier department), `operations` when it names none.
//!   Output: one data part `{"goal", "steps": [{"step", "department"}],
//!   "engineering", "marketing", "operations"}`, each department field
//!   holding its steps as text, one per line (empty when none), so a graph
//!   can hand a department its share with `planner_node.output.marketing`.
//! - `estimator`: the steps are every object with a string `step` in the
//!   data parts (a planner's output), else the planner's steps of the text.
//!   A step's points are `1 + words/4 + 2 × heavy verbs` ([`HEAVY`]),
//!   rounded up to the scale 1, 2, 3, 5, 8, 13. Output: one data part
//!   `{"estimates": [{"step", "department", "points"}], "total_points"}`.
//! - `summarizer`: every object with a string `step` and a numeric `points`
//!   in the data parts, de-duplicated by (department, step) keeping the
//!   highest points (two estimators sizing the same plan count once).
//!   Output: one data part `{"estimates", "steps", "total_points",
//!   "by_department": {department: points}, "summary"}`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::shared::{all_strings, card, complete, message_text, objects_where, words};
use crate::logic::{data_part, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// The departments a planner assigns steps to, with their keywords
/// (matched as whole, lowercased words). Steps naming none go to
/// `operations`.
pub const DEPARTMENTS: [(&str, &[&str]); 2] = [
    (
        "engineering",
        &[
            "build",
            "code",
            "api",
            "deploy",
            "fix",
            "test",
            "tests",
            "implement",
            "migrate",
            "database",
            "server",
            "release",
            "ship",
            "integrate",
            "refactor",
            "backend",
            "frontend",
            "app",
        ],
    ),
    (
        "marketing",
        &[
            "launch",
            "campaign",
            "announce",
            "blog",
            "press",
            "pricing",
            "customers",
            "brand",
            "social",
            "newsletter",
            "advertise",
            "ads",
            "video",
            "webinar",
            "website",
        ],
    ),
];

/// The department of steps that name no department's keyword.
pub const OTHER_DEPARTMENT: &str = "operations";

/// Verbs that make a step heavier to estimate.
pub const HEAVY: [&str; 7] = [
    "build",
    "migrate",
    "implement",
    "integrate",
    "launch",
    "redesign",
    "rewrite",
];

/// The estimation scale.
const SCALE: [u64; 6] = [1, 2, 3, 5, 8, 13];

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub step: String,
    /// Who does it.
    pub department: String,
}

fn strip_marker(line: &str) -> &str {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix(['-', '*', '•']) {
        return rest.trim();
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        if let Some(rest) = line[digits..].strip_prefix(['.', ')']) {
            return rest.trim();
        }
    }
    line
}

/// The department whose keywords `step` names most.
pub fn department(step: &str) -> &'static str {
    let step_words: Vec<String> = words(step).collect();
    let mut best = (OTHER_DEPARTMENT, 0);
    for (name, keywords) in DEPARTMENTS {
        let score = step_words
            .iter()
            .filter(|word| keywords.contains(&word.as_str()))
            .count();
        if score > best.1 {
            best = (name, score);
        }
    }
    best.0
}

/// The steps of a goal.
pub fn plan(goal: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for line in goal.lines() {
        let line = strip_marker(line);
        for sentence in line.split("; ").flat_map(|piece| piece.split(". ")) {
            let sentence = sentence.trim().trim_end_matches(['.', ';']).trim();
            if !sentence.is_empty() {
                steps.push(Step {
                    step: sentence.to_owned(),
                    department: department(sentence).to_owned(),
                });
            }
        }
    }
    steps
}

fn goal_text(message: &Value) -> String {
    let text = message_text(message);
    if text.trim().is_empty() {
        all_strings(message).join("\n")
    } else {
        text
    }
}

/// The planner's output for `message`.
pub fn plan_output(message: &Value) -> Value {
    let goal = goal_text(message);
    let steps = plan(&goal);
    let mut output = json!({
        "goal": goal,
        "steps": steps.iter().map(|s| json!({"step": s.step, "department": s.department})).collect::<Vec<_>>(),
    });
    for name in DEPARTMENTS
        .map(|(name, _)| name)
        .into_iter()
        .chain([OTHER_DEPARTMENT])
    {
        let share: Vec<&str> = steps
            .iter()
            .filter(|step| step.department == name)
            .map(|step| step.step.as_str())
            .collect();
        output[name] = json!(share.join("\n"));
    }
    output
}

/// The points of one step.
pub fn points(step: &str) -> u64 {
    let step_words: Vec<String> = words(step).collect();
    let heavy = step_words
        .iter()
        .filter(|word| HEAVY.contains(&word.as_str()))
        .count() as u64;
    let raw = 1 + step_words.len() as u64 / 4 + 2 * heavy;
    SCALE
        .into_iter()
        .find(|&size| size >= raw)
        .unwrap_or(SCALE[SCALE.len() - 1])
}

fn field(object: &serde_json::Map<String, Value>, name: &str) -> String {
    object
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The estimator's output for `message`.
pub fn estimate_output(message: &Value) -> Value {
    let mut steps: Vec<Step> = Vec::new();
    for object in objects_where(message, |object| {
        object.get("step").is_some_and(Value::is_string)
    }) {
        let step = Step {
            step: field(object, "step"),
            department: match field(object, "department") {
                name if name.is_empty() => department(&field(object, "step")).to_owned(),
                name => name,
            },
        };
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    if steps.is_empty() {
        steps = plan(&goal_text(message));
    }
    let estimates: Vec<Value> = steps
        .iter()
        .map(|s| json!({"step": s.step, "department": s.department, "points": points(&s.step)}))
        .collect();
    let total: u64 = steps.iter().map(|s| points(&s.step)).sum();
    json!({"estimates": estimates, "total_points": total})
}

/// The summarizer's output for `message`.
pub fn summary_output(message: &Value) -> Value {
    let mut estimates: Vec<(Step, u64)> = Vec::new();
    let found = objects_where(message, |object| {
        object.get("step").is_some_and(Value::is_string)
            && object.get("points").is_some_and(Value::is_u64)
    });
    for object in found {
        let step = Step {
            step: field(object, "step"),
            department: field(object, "department"),
        };
        let points = object.get("points").and_then(Value::as_u64).unwrap_or(0);
        match estimates.iter_mut().find(|(known, _)| *known == step) {
            Some((_, known_points)) => *known_points = (*known_points).max(points),
            None => estimates.push((step, points)),
        }
    }
    let mut by_department: BTreeMap<&str, u64> = BTreeMap::new();
    for (step, points) in &estimates {
        *by_department.entry(step.department.as_str()).or_default() += points;
    }
    let total: u64 = by_department.values().sum();
    let shares: Vec<String> = by_department
        .iter()
        .map(|(name, points)| format!("{name} {points}"))
        .collect();
    let summary = format!(
        "{} step(s), {total} point(s){}",
        estimates.len(),
        if shares.is_empty() {
            String::new()
        } else {
            format!(": {}", shares.join(", "))
        }
    );
    json!({
        "estimates": estimates.iter().map(|(s, p)| json!({"step": s.step, "department": s.department, "points": p})).collect::<Vec<_>>(),
        "steps": estimates.len(),
        "total_points": total,
        "by_department": by_department,
        "summary": summary,
    })
}

/// The planner.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlannerLogic;

/// The estimator.
#[derive(Debug, Default, Clone, Copy)]
pub struct EstimatorLogic;

/// The summarizer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SummarizerLogic;

/// The planner's card template.
pub fn planner_card() -> Value {
    card(
        "planner",
        "Breaks a goal into steps (one per line or sentence) and assigns each to engineering, marketing or operations by keywords.",
        json!({
            "id": "plan-goal",
            "name": "Plan a goal",
            "description": "Returns {\"goal\", \"steps\": [{\"step\", \"department\"}], \"engineering\", \"marketing\", \"operations\"}; each department field lists its steps, one per line.",
            "tags": ["planning", "decomposition", "delegation"],
            "examples": ["Build the signup API. Launch a campaign for the beta; Hire a support lead"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json"]
        }),
    )
}

/// The estimator's card template.
pub fn estimator_card() -> Value {
    card(
        "estimator",
        "Sizes each step of a plan in points (1 + words/4 + 2 per heavy verb, rounded up to 1, 2, 3, 5, 8, 13).",
        json!({
            "id": "estimate-steps",
            "name": "Estimate steps",
            "description": "Takes a planner's output (or a goal as text) and returns {\"estimates\": [{\"step\", \"department\", \"points\"}], \"total_points\"}.",
            "tags": ["planning", "estimation"],
            "examples": ["Build the signup API"],
            "inputModes": ["application/json", "text/plain"],
            "outputModes": ["application/json"]
        }),
    )
}

/// The summarizer's card template.
pub fn summarizer_card() -> Value {
    card(
        "summarizer",
        "Totals estimates from any number of inputs, counting a step estimated twice once, by department.",
        json!({
            "id": "summarize-estimates",
            "name": "Summarize estimates",
            "description": "Returns {\"estimates\", \"steps\", \"total_points\", \"by_department\", \"summary\"}.",
            "tags": ["planning", "summary", "aggregation"],
            "examples": ["{\"estimates\": [{\"step\": \"Build the API\", \"department\": \"engineering\", \"points\": 5}]}"],
            "inputModes": ["application/json"],
            "outputModes": ["application/json"]
        }),
    )
}

#[async_trait]
impl AgentLogic for PlannerLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let output = plan_output(&message);
        complete(&context, &message, "plan", vec![data_part(output)], 0)
    }
}

#[async_trait]
impl AgentLogic for EstimatorLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let output = estimate_output(&message);
        complete(&context, &message, "estimates", vec![data_part(output)], 0)
    }
}

#[async_trait]
impl AgentLogic for SummarizerLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let output = summary_output(&message);
        complete(&context, &message, "summary", vec![data_part(output)], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOAL: &str =
        "1. Build the signup API. Launch a campaign for the beta\n- Hire a support lead";

    #[test]
    fn plans_one_step_per_sentence_with_a_department() {
        let steps = plan(GOAL);
        let pairs: Vec<(&str, &str)> = steps
            .iter()
            .map(|s| (s.step.as_str(), s.department.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Build the signup API", "engineering"),
                ("Launch a campaign for the beta", "marketing"),
                ("Hire a support lead", "operations"),
            ]
        );
        let output = plan_output(&json!({"parts": [{"text": GOAL}]}));
        assert_eq!(output["marketing"], "Launch a campaign for the beta");
        assert_eq!(output["steps"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn estimates_by_length_and_heavy_verbs_on_the_scale() {
        assert_eq!(points("Hire a support lead"), 2);
        assert_eq!(points("Build the signup API"), 5);
        assert_eq!(points(&"word ".repeat(100)), 13);
        let planned = plan_output(&json!({"parts": [{"text": GOAL}]}));
        let estimated = estimate_output(&json!({"parts": [{"data": {"plan.output": planned}}]}));
        assert_eq!(estimated["total_points"], 5 + 5 + 2);
        // Text alone is planned first.
        assert_eq!(
            estimate_output(&json!({"parts": [{"text": GOAL}]})),
            estimated
        );
    }

    #[test]
    fn summarizes_counting_a_step_estimated_twice_once() {
        let estimated = estimate_output(&json!({"parts": [{"text": GOAL}]}));
        let message = json!({"parts": [{"data": {"a": estimated.clone(), "b": estimated}}]});
        let summary = summary_output(&message);
        assert_eq!(summary["steps"], 3);
        assert_eq!(summary["total_points"], 12);
        assert_eq!(summary["by_department"]["engineering"], 5);
        assert_eq!(
            summary["summary"],
            "3 step(s), 12 point(s): engineering 5, marketing 5, operations 2"
        );
        // A summary of summaries gives the same totals.
        let again = summary_output(&json!({"parts": [{"data": {"x": summary.clone()}}]}));
        assert_eq!(again["total_points"], 12);
    }
}
