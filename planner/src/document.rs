//! The plan document and the request that asks for one (issue 19): the
//! wire types of `POST /v1/plans` and of a planner agent's answer, whose
//! published schema is `schemas/json/plan.schema.json`.
//!
//! A plan is a graph in the orchestrator's DSL written as steps: a step is a
//! node (its `id`, the `agent` it calls, the `task` it does and its
//! `inputs`), its `after` list and the `<step>.output` references in its
//! inputs are the edges, and steps that depend on nothing between them run
//! in parallel. [`crate::compile`] turns a plan into the [`GraphSpec`] it
//! runs.
//!
//! [`GraphSpec`]: convergio_orchestrator::GraphSpec

use convergio_orchestrator::api::RunMode;
use convergio_schemas::{AgentRole, TrustLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/plans`: a goal, the agents to plan over and the constraints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// What the plan should achieve, in plain words.
    pub goal: String,
    /// Explicit candidate agents (registry names); empty: use `filter`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Discovery filter choosing the candidates when `agents` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<CandidateFilter>,
    /// Limits on the plan and on its runs.
    #[serde(default)]
    pub constraints: Constraints,
    /// `builtin` (the default: the deterministic planner) or the name of an
    /// agent with a `plan` skill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<String>,
    /// The run inputs the built-in planner's first steps take (e.g.
    /// `source_code`); empty: the whole run input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// `POST /v1/plans/{id}:execute`: how to run the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutePlan {
    /// `sync` (default), `async`, `stream` or `batch`, as `POST /v1/runs`.
    #[serde(default)]
    pub mode: RunMode,
    /// The run input (merged over `goal` and the `task_<step>` inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// One input per run (batch mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Value>,
    /// Runs of a batch at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Wait for a person to approve (optionally editing) or reject the
    /// plan before the run starts.
    #[serde(default)]
    pub review: bool,
    /// Re-plan from a failed step instead of failing (§9.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replan: Option<ReplanOptions>,
}

/// The most re-plans one run may ask for.
pub const MAX_REPLANS: u32 = 10;

/// `replan` of an execute request: when a step fails after its error
/// strategy is spent, the planner is asked for a new plan from that point,
/// at most `max_replans` times per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplanOptions {
    /// The most re-plans (1 to [`MAX_REPLANS`]).
    pub max_replans: u32,
}

/// `POST /v1/plans/{id}:approve`: optionally, the edited plan to run
/// instead (validated again like a new one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    /// The edited plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanDocument>,
    /// Why (kept with the plan's new version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Which registered agents are candidates (every field given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateFilter {
    /// A skill id the agent declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// A tag of the card or of one of its skills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The agent's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The lowest trust level accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust: Option<TrustLevel>,
}

/// Limits on a plan and on the runs of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Most steps in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Whole-run time bound (becomes the graph's `timeout_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_minutes: Option<f64>,
    /// Tokens the run may use (becomes `execution.max_tokens_per_run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u64>,
    /// Cost the run may spend, in the price table's currency (becomes
    /// `execution.max_cost_per_run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<f64>,
    /// The lowest trust level of an agent the plan may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust: Option<TrustLevel>,
    /// Whether agents of other organisations (`external://…`) may be used.
    #[serde(default)]
    pub allow_external: bool,
}

/// What a planner knows of one candidate agent: its card's names, skills
/// and modes, its role and trust. This is all a planner agent is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateCard {
    /// Registry name (or `external://` id).
    pub name: String,
    /// The card's description.
    #[serde(default)]
    pub description: String,
    /// The card's skills.
    #[serde(default)]
    pub skills: Vec<CandidateSkill>,
    /// The card's `defaultInputModes`.
    #[serde(default)]
    pub input_modes: Vec<String>,
    /// The card's `defaultOutputModes`.
    #[serde(default)]
    pub output_modes: Vec<String>,
    /// The registry role.
    #[serde(default)]
    pub role: AgentRole,
    /// The registry trust level.
    #[serde(default = "registered")]
    pub trust: TrustLevel,
    /// The agent's organisation, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

fn registered() -> TrustLevel {
    TrustLevel::Registered
}

impl Default for CandidateCard {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            skills: Vec::new(),
            input_modes: Vec::new(),
            output_modes: Vec::new(),
            role: AgentRole::default(),
            trust: registered(),
            org: None,
        }
    }
}

/// One skill of a candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateSkill {
    /// The skill id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A plan: the steps, why, and the agents that were considered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDocument {
    /// The goal the plan is for.
    pub goal: String,
    /// The steps, in document order.
    pub steps: Vec<PlanStep>,
    /// Why these steps, in this order.
    #[serde(default)]
    pub rationale: Vec<String>,
    /// The agents the planner considered, chosen or not, and why.
    #[serde(default)]
    pub candidates: Vec<Considered>,
}

/// One step: a graph node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// Unique id within the plan (the node id).
    pub id: String,
    /// The agent called (registry name or `external://` id).
    pub agent: String,
    /// What the step does, in plain words. It reaches the agent when the
    /// step lists the graph input `task_<id>` among its `inputs` (every run
    /// of a plan carries `goal` and one `task_<id>` per step).
    #[serde(default)]
    pub task: String,
    /// Input references, as in a graph node: a graph input name or
    /// `<step>.output[.path]`; none: the outputs of the steps it follows
    /// (the whole run input for a first step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Steps that must finish first (besides those named in `inputs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// One candidate agent as the planner saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Considered {
    /// The agent.
    pub agent: String,
    /// Whether a step uses it.
    #[serde(default)]
    pub selected: bool,
    /// Why (or why not).
    #[serde(default)]
    pub reason: String,
}

// === impl PlanDocument ===

impl PlanDocument {
    /// The steps every other step depends on, by index: `after` plus the
    /// steps named in `<step>.output` input references, deduplicated, in
    /// order of first mention. Unknown ids are left out (validation names
    /// them).
    pub fn dependencies(&self, step: &PlanStep) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let referenced = step
            .inputs
            .iter()
            .filter_map(|input| input.split_once(".output").map(|(node, _)| node));
        for id in step.after.iter().map(String::as_str).chain(referenced) {
            if id != step.id
                && self.steps.iter().any(|other| other.id == id)
                && !found.iter().any(|seen| seen == id)
            {
                found.push(id.to_owned());
            }
        }
        found
    }

    /// The graph input that carries `step`'s task text in a run.
    pub fn task_input(step_id: &str) -> String {
        format!("task_{step_id}")
    }

    /// The readable list `convergio plan` prints: one line per step with
    /// what it waits for, then the rationale.
    pub fn readable(&self) -> String {
        let mut out = format!("Plan for: {}\n", self.goal);
        for (index, step) in self.steps.iter().enumerate() {
            let after = self.dependencies(step);
            let waits = if after.is_empty() {
                "start".to_owned()
            } else {
                format!("after {}", after.join(", "))
            };
            out.push_str(&format!(
                "{}. {} [{}] ({waits}): {}\n",
                index + 1,
                step.id,
                step.agent,
                step.task
            ));
        }
        if !self.rationale.is_empty() {
            out.push_str("Why:\n");
            for line in &self.rationale {
                out.push_str(&format!("- {line}\n"));
            }
        }
        out
    }
}
