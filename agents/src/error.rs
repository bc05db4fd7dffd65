//! The crate's error type. Protocol failures seen by A2A clients are not
//! errors of this type: they are `protocol::ProtocolError` values
//! rendered on the wire; `AgentsError` covers starting agents and running
//! their logic.

use convergio_schemas::{ErrorKind, Violation};

/// Why an example agent could not start or a task step could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// The listener's address could not be read or the server failed.
    #[error("agent server i/o error: {source}")]
    Io {
        /// The underlying I/O error.
        #[from]
        source: std::io::Error,
    },
    /// The card built from the template does not validate as an A2A 1.0 card.
    #[error("agent card is invalid: {}", violations.iter().map(|v| format!("{} {}", v.pointer, v.message)).collect::<Vec<_>>().join("; "))]
    InvalidCard {
        /// Every schema violation.
        violations: Vec<Violation>,
    },
    /// No example agent has this name.
    #[error("unknown example agent {name:?}")]
    UnknownAgent {
        /// The name that was asked for.
        name: String,
    },
    /// The task is already in a terminal state (for example canceled), so
    /// the update was dropped.
    #[error("task {task_id} is closed")]
    TaskClosed {
        /// The task's id.
        task_id: String,
    },
    /// The agent's logic could not process its input.
    #[error("agent logic failed: {reason}")]
    Logic {
        /// What went wrong, in plain words.
        reason: String,
    },
}

// === impl AgentsError ===

impl AgentsError {
    /// The shared classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { .. } => ErrorKind::Internal,
            Self::InvalidCard { .. } => ErrorKind::InvalidInput,
            Self::UnknownAgent { .. } => ErrorKind::NotFound,
            Self::TaskClosed { .. } => ErrorKind::Conflict,
            Self::Logic { .. } => ErrorKind::InvalidInput,
        }
    }
}
