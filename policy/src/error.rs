//! The crate's one error enum and its mapping onto the shared
//! [`ErrorKind`] table, and the located [`PolicyDiagnostic`] an invalid
//! policy set carries. A leaf module: it imports nothing from the crate.

use std::fmt;

use convergio_schemas::{ErrorKind, StorageError};
use serde::{Deserialize, Serialize};

/// Everything that can go wrong in the policy crate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The Cedar text does not parse or does not validate against the schema.
    #[error("invalid policy set: {}", summarize(.diagnostics))]
    InvalidPolicy {
        /// Every problem found, with line and column.
        diagnostics: Vec<PolicyDiagnostic>,
    },
    /// The shipped Cedar schema does not parse (a build defect).
    #[error("invalid cedar schema: {message}")]
    InvalidSchema {
        /// What the schema parser said.
        message: String,
    },
    /// Activating the set would leave no administrator able to change policy.
    #[error("refused: the policy set would lock every administrator out (no principal with scope admin may administer_policy)")]
    LockOut,
    /// The requested policy version does not exist.
    #[error("policy version {version} not found")]
    VersionNotFound {
        /// The version asked for.
        version: i64,
    },
    /// No policy set has been stored yet.
    #[error("no policy set is active")]
    NoActivePolicy,
    /// The caller may not do this.
    #[error("{principal} may not {action}")]
    Forbidden {
        /// The caller's subject.
        principal: String,
        /// What it tried.
        action: String,
    },
    /// A request, a YAML test file or a query is malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// The audit chain does not verify at `seq`.
    #[error("audit chain broken at seq {seq}: {reason}")]
    AuditBroken {
        /// The first record that does not verify.
        seq: i64,
        /// Why.
        reason: String,
    },
    /// A database failure, typed once by the storage crate.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored data that does not decode (a corrupted row).
    #[error("corrupt stored data: {message}")]
    Corrupt {
        /// What could not be decoded.
        message: String,
        /// The decoder's error, when one failed.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An audit record whose columns do not decode (its JSON or timestamp
    /// was edited); `verify` reports it as a broken chain at `seq`.
    #[error("corrupt audit record {seq}: {reason}")]
    CorruptAuditRecord {
        /// The record that does not decode.
        seq: i64,
        /// Which column and why.
        reason: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn summarize(diagnostics: &[PolicyDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(|diagnostic| diagnostic.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

// === impl PolicyError ===

impl PolicyError {
    /// A [`PolicyError::Corrupt`] saying `message`.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
            source: None,
        }
    }

    /// A [`PolicyError::Corrupt`]: `message` says what, `source` is the
    /// decoder's error.
    pub fn corrupt_because(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Corrupt {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The shared classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidPolicy { .. } | Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::LockOut => ErrorKind::Conflict,
            Self::VersionNotFound { .. } | Self::NoActivePolicy => ErrorKind::NotFound,
            Self::Forbidden { .. } => ErrorKind::Forbidden,
            Self::AuditBroken { .. } => ErrorKind::Conflict,
            Self::Storage(error) => error.kind(),
            Self::Corrupt { .. }
            | Self::CorruptAuditRecord { .. }
            | Self::InvalidSchema { .. }
            | Self::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

/// One problem in a policy text, located by line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiagnostic {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use convergio_schemas::StorageFailure;

    use super::*;

    #[test]
    fn storage_failures_keep_their_kind_and_their_cause() {
        let timed_out = PolicyError::from(StorageError::new(
            StorageFailure::Unavailable,
            "appending to the audit chain",
            std::io::Error::other("pool timed out"),
        ));
        assert_eq!(timed_out.kind(), ErrorKind::Unavailable);
        assert_eq!(
            timed_out.to_string(),
            "the database is unavailable: appending to the audit chain"
        );
        let cause = timed_out.source().map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("pool timed out"));
        let corrupt = PolicyError::from(StorageError::corrupt("policy_versions.active"));
        assert_eq!(corrupt.kind(), ErrorKind::Internal);
    }
}
