//! `PlannerError`: why no valid plan came out, mapped onto the shared
//! [`ErrorKind`] table. A leaf module.

use convergio_schemas::{ErrorKind, StorageError, Violation};

/// Everything that can go wrong while planning or keeping plans.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// No candidate's name, skills or tags match any term of the goal.
    #[error("no candidate agent matches the goal `{goal}`")]
    NoMatch {
        /// The goal (its first 200 characters).
        goal: String,
    },
    /// There are no candidates at all (none matches the filter, or the
    /// caller may discover none).
    #[error("no candidate agents: none matches the filter or may be used by the caller")]
    NoCandidates,
    /// The plan breaks the schema, a plan rule, policy or a graph rule;
    /// every violation is listed, each naming its step.
    #[error("invalid plan: {} violation(s); steps {steps:?}", violations.len())]
    Invalid {
        /// The steps the violations name.
        steps: Vec<String>,
        /// Every violation.
        violations: Vec<Violation>,
    },
    /// A planner agent's answers stayed invalid after every correction.
    #[error("the planner agent's plan is still invalid after {attempts} attempt(s)")]
    PlannerGaveUp {
        /// How many answers were checked.
        attempts: u32,
        /// The last answer's violations.
        violations: Vec<Violation>,
    },
    /// The planner agent could not be called or did not answer.
    #[error("the planner agent failed: {message}")]
    PlannerFailed {
        /// What happened (no upstream internals).
        message: String,
    },
    /// No plan with this id (or the caller may not see it).
    #[error("plan {plan_id} not found")]
    NotFound {
        /// The id asked for.
        plan_id: String,
    },
    /// The plan is not in a state that allows the request.
    #[error("plan {plan_id} is {status}: {action} is not possible")]
    WrongState {
        /// The plan.
        plan_id: String,
        /// Its status.
        status: String,
        /// What was asked.
        action: String,
    },
    /// The plan store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

// === impl PlannerError ===

impl PlannerError {
    /// The shared kind (HTTP status, problem type).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoMatch { .. } | Self::NoCandidates | Self::Invalid { .. } => {
                ErrorKind::InvalidInput
            }
            Self::PlannerGaveUp { .. } => ErrorKind::BadUpstream,
            Self::PlannerFailed { .. } => ErrorKind::BadUpstream,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::WrongState { .. } => ErrorKind::Conflict,
            Self::Storage(error) => error.kind(),
        }
    }

    /// The violations an invalid plan carries (empty otherwise).
    pub fn violations(&self) -> &[Violation] {
        match self {
            Self::Invalid { violations, .. } | Self::PlannerGaveUp { violations, .. } => violations,
            _ => &[],
        }
    }
}
