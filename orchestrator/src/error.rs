//! The orchestrator's error type: parsing, validation, dispatch and run
//! failures, each mapped onto the shared [`ErrorKind`] table, and the
//! located [`ValidationError`]s an invalid graph carries.
//!
//! A leaf module: it imports nothing from the crate, so parsing, validation
//! and execution all use it without importing one another.

use convergio_schemas::{ErrorKind, StorageError};
use serde::{Deserialize, Serialize};

/// Everything that can go wrong in the orchestrator outside a running node.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The document is not valid YAML (or JSON); line and column are 1-based.
    #[error("invalid yaml at line {line}, column {column}: {message}")]
    Yaml {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The document breaks the graph JSON Schema or a structural rule; every
    /// problem is listed with its location.
    #[error("invalid graph: {}", summarize(.errors))]
    Invalid {
        /// Every problem found.
        errors: Vec<ValidationError>,
    },
    /// The run input does not carry what a node expects.
    #[error("invalid run input: {message}")]
    InvalidInput {
        /// What is missing or wrong.
        message: String,
    },
    /// No run with this id is known.
    #[error("run {run_id} not found")]
    RunNotFound {
        /// The id that was asked for.
        run_id: String,
    },
    /// The run has not finished yet, so it has no result.
    #[error("run {run_id} has not finished")]
    RunNotFinished {
        /// The run asked for.
        run_id: String,
    },
    /// The run task ended without a result (it panicked or was dropped).
    #[error("run {run_id} ended without a result")]
    RunLost {
        /// The run concerned.
        run_id: String,
    },
    /// The run already ended; it cannot be resumed or continued.
    #[error("run {run_id} already ended ({status})")]
    RunEnded {
        /// The run concerned.
        run_id: String,
        /// How it ended.
        status: String,
    },
    /// The run is being driven (here or by another replica holding its lease).
    #[error("run {run_id} is running; it cannot be resumed twice")]
    RunActive {
        /// The run concerned.
        run_id: String,
    },
    /// The run was cancelled (here, or through the store by any replica).
    #[error("run {run_id} was cancelled")]
    RunCancelled {
        /// The run concerned.
        run_id: String,
    },
    /// The run is not waiting for a human decision.
    #[error("run {run_id} is not waiting for a human decision")]
    NotWaiting {
        /// The run concerned.
        run_id: String,
    },
    /// The run was not checkpointed, so it cannot be resumed.
    #[error("run {run_id} is not durable (its graph does not set checkpoint_enabled)")]
    NotDurable {
        /// The run concerned.
        run_id: String,
    },
    /// No checkpoint of the run has this name.
    #[error("run {run_id} has no checkpoint named {name:?}")]
    CheckpointNotFound {
        /// The run concerned.
        run_id: String,
        /// The name asked for.
        name: String,
    },
    /// A resume from a checkpoint with a new input, where every node that
    /// reads the run input already ran before the checkpoint (and keeps its
    /// output): the new input would change nothing.
    #[error(
        "checkpoint {name:?} of run {run_id} comes after every node that reads the run input: \
         nodes that ran before a checkpoint keep their outputs, so a new input would change \
         nothing; start a new run with it, or resume from an earlier checkpoint"
    )]
    InputUnused {
        /// The run concerned.
        run_id: String,
        /// The checkpoint asked for.
        name: String,
    },
    /// A checkpoint with this name already exists.
    #[error("run {run_id} already has a checkpoint named {name:?}")]
    CheckpointExists {
        /// The run concerned.
        run_id: String,
        /// The name asked for.
        name: String,
    },
    /// A stored run or step cannot be read back: nothing was changed and
    /// the run was not restarted.
    #[error("stored run {run_id} is unreadable: {message}")]
    CorruptRun {
        /// The run concerned.
        run_id: String,
        /// What is wrong (step number, format version, decode error).
        message: String,
    },
    /// The run store failed (database unreachable or busy, a stored graph
    /// that does not decode); the storage error keeps its cause.
    #[error("run store failed: {0}")]
    Storage(#[from] StorageError),
}

impl From<Vec<ValidationError>> for OrchestratorError {
    fn from(errors: Vec<ValidationError>) -> Self {
        Self::Invalid { errors }
    }
}

fn summarize(errors: &[ValidationError]) -> String {
    let mut text = String::new();
    for (index, error) in errors.iter().enumerate() {
        if index > 0 {
            text.push_str("; ");
        }
        text.push_str(&error.to_string());
    }
    text
}

// === impl OrchestratorError ===

impl OrchestratorError {
    /// The shared error classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Yaml { .. } => ErrorKind::MalformedBody,
            Self::Invalid { .. } | Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::RunNotFound { .. } => ErrorKind::NotFound,
            Self::RunNotFinished { .. } => ErrorKind::Conflict,
            Self::RunLost { .. } => ErrorKind::Internal,
            Self::RunEnded { .. }
            | Self::RunActive { .. }
            | Self::RunCancelled { .. }
            | Self::NotWaiting { .. }
            | Self::NotDurable { .. }
            | Self::CheckpointExists { .. }
            | Self::CorruptRun { .. } => ErrorKind::Conflict,
            Self::CheckpointNotFound { .. } => ErrorKind::NotFound,
            Self::InputUnused { .. } => ErrorKind::Conflict,
            Self::Storage(error) => error.kind(),
        }
    }

    /// The located problems as problem-document violations (the message
    /// starts with the YAML line when known).
    pub fn violations(&self) -> Vec<convergio_schemas::Violation> {
        self.validation_errors()
            .iter()
            .map(ValidationError::to_violation)
            .collect()
    }

    /// The located problems, for validation failures (empty otherwise).
    pub fn validation_errors(&self) -> &[ValidationError] {
        match self {
            Self::Invalid { errors } => errors,
            _ => &[],
        }
    }
}

/// Why a call to an agent failed, as reported by a [`crate::Dispatch`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    /// The agent is not known to the registry.
    #[error("agent {agent} not found")]
    AgentNotFound {
        /// The agent asked for.
        agent: String,
    },
    /// Policy or authentication refused the call.
    #[error("call to agent denied: {message}")]
    Denied {
        /// Why, without internals.
        message: String,
    },
    /// No route leads to the agent (an `external://` agent while federation
    /// is not configured, for instance).
    #[error("agent {agent} is not routable: {reason}")]
    NotRoutable {
        /// The agent asked for.
        agent: String,
        /// Why no route exists.
        reason: String,
    },
    /// The agent did not answer in time.
    #[error("agent timed out")]
    Timeout,
    /// The agent or the path to it is unavailable; worth retrying.
    #[error("agent unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// The agent answered with an error or with something that is not an answer.
    #[error("agent failed: {message}")]
    Failed {
        /// What happened.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
}

// === impl DispatchError ===

impl DispatchError {
    /// The shared error classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::AgentNotFound { .. } => ErrorKind::NotFound,
            Self::NotRoutable { .. } => ErrorKind::InvalidInput,
            Self::Denied { .. } => ErrorKind::Forbidden,
            Self::Timeout => ErrorKind::UpstreamTimeout,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Failed { .. } => ErrorKind::BadUpstream,
        }
    }

    /// Whether the executor may retry the call under a `retry` strategy.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Unavailable { .. } => true,
            Self::Failed { retryable, .. } => *retryable,
            Self::AgentNotFound { .. } | Self::NotRoutable { .. } | Self::Denied { .. } => false,
        }
    }
}

/// What kind of rule a [`ValidationError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationCode {
    /// The document breaks the JSON Schema.
    Schema,
    /// More nodes or edges than the limits allow.
    TooLarge,
    /// Two nodes share an id.
    DuplicateId,
    /// The agent is not in the catalog.
    UnknownAgent,
    /// An input names a node that does not exist, or is malformed.
    UnknownInput,
    /// An edge names a node that does not exist.
    MissingNode,
    /// `wait_for` names a group no node is in.
    UnknownGroup,
    /// A cycle has no `max_traversals` edge and the graph no `max_iterations`.
    UnboundedCycle,
    /// No entry can reach the node.
    Unreachable,
    /// A node lacks what its kind needs (agent, rules, sub-graph).
    InvalidNode,
    /// No node can start the run.
    NoEntry,
}

/// One problem found in a graph, located in the source when possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// The rule broken.
    pub code: ValidationCode,
    /// What is wrong, in plain words.
    pub message: String,
    /// JSON pointer into the document (`/nodes/3/agent`).
    pub pointer: String,
    /// 1-based YAML line, when the spec came from text and it was found.
    pub line: Option<usize>,
    /// 1-based YAML column.
    pub column: Option<usize>,
}

// === impl ValidationError ===

impl ValidationError {
    /// As a problem-document violation: the pointer, and the message with
    /// its YAML line when known.
    pub fn to_violation(&self) -> convergio_schemas::Violation {
        convergio_schemas::Violation {
            pointer: self.pointer.clone(),
            message: self.to_string(),
        }
    }
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            _ if !self.pointer.is_empty() => write!(f, "{}: {}", self.pointer, self.message),
            _ => f.write_str(&self.message),
        }
    }
}
