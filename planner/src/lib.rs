//! The planning layer (issue 19): from a goal to a validated plan over the
//! agents a caller may use.
//!
//! A plan ([`document`]) is a graph in the orchestrator's DSL written as
//! steps, plus the rationale and the candidates considered. Whoever made it
//! — the built-in [`deterministic`] planner or a planner agent ([`agent`]) —
//! it is checked the same way ([`check`]): the published schema, the plan's
//! constraints, policy for the caller (only agents the caller may discover
//! and call) and the graph rules of a stored graph, before anything runs.
//! [`compile`] turns it into the graph a run executes; [`store`] keeps
//! plans versioned and owned; [`replan`] plans again from a run's failure
//! point (§9.2).
//!
//! ```text
//! PlanRequest ─▶ deterministic::plan | agent::plan_with_agent ─▶ PlanDocument
//! PlanDocument ─▶ check::check_plan(access, limits) ─▶ ValidPlan { spec, graph }
//! ```
//!
//! The crate performs no I/O: the gateway resolves agents and decides
//! policy ([`check::AgentAccess`]) and calls planner agents
//! ([`agent::PlannerAgent`]).

pub mod agent;
pub mod check;
pub mod compile;
pub mod deterministic;
pub mod document;
pub mod error;
pub mod replan;
pub mod store;

pub use check::{
    check_plan, offending_steps, parse_plan, Access, AccessMap, AgentAccess, ValidPlan,
};
pub use document::{
    CandidateCard, CandidateFilter, CandidateSkill, Considered, Constraints, ExecutePlan,
    PlanDocument, PlanRequest, PlanStep, ReplanOptions, ReviewDecision, MAX_REPLANS,
};
pub use error::PlannerError;
pub use store::{MemoryPlanStore, PlanFilter, PlanStatus, PlanStore, StoredPlan};
