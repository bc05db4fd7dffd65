//! The registry's error type: one enum whose variants say what went wrong, and
//! an [`ErrorKind`] that says how a client sees it (see `schemas/src/error.rs`).

use convergio_schemas::{AgentId, ErrorKind, StorageError, Violation};

/// Everything the registry, its stores and its API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The card or registration breaks the schema; every violation is listed.
    #[error("agent card is invalid: {} violation(s)", violations.len())]
    InvalidCard {
        /// Each violation with its JSON pointer into the request body.
        violations: Vec<Violation>,
    },
    /// A request value breaks a rule (bad name, bad org, bad page token, …).
    #[error("{message}")]
    InvalidInput {
        /// What is wrong, in plain words.
        message: String,
    },
    /// No live agent has this id (or the requested version does not exist).
    #[error("agent {agent_id} not found")]
    AgentNotFound {
        /// The id that was looked up.
        agent_id: String,
    },
    /// A live agent with this id is registered already.
    #[error("agent {agent_id} is already registered")]
    AgentExists {
        /// The colliding id.
        agent_id: String,
    },
    /// The write named a version that is no longer current.
    #[error("agent {agent_id} is at version {current}, not {expected}")]
    StaleVersion {
        /// The agent written to.
        agent_id: String,
        /// The version the caller based the write on.
        expected: i64,
        /// The version that is stored.
        current: i64,
    },
    /// The caller may not perform this write.
    #[error("{message}")]
    Forbidden {
        /// Which rule refused it.
        message: String,
    },
    /// The caller did not authenticate for a write that needs it.
    #[error("{message}")]
    Unauthenticated {
        /// What is missing.
        message: String,
    },
    /// The card is not verified by its organisation's key, but the change
    /// needs it to be (raising trust to `verified`, or updating a verified
    /// agent).
    #[error("{message}")]
    Verification {
        /// Why the card is not verified.
        message: String,
    },
    /// A signature on the card fails with a key of its organisation, or is
    /// malformed: the card was changed after signing, or the signature is
    /// forged. Such a card is never stored.
    #[error("the card's signature does not verify: {reason}")]
    SignatureInvalid {
        /// What failed (never key material).
        reason: String,
    },
    /// An upstream URL points where the gateway may not connect (loopback,
    /// private, link-local or metadata addresses that are not allow-listed).
    #[error("upstream {index} is refused: {source}")]
    UpstreamRefused {
        /// Which entry of `upstreams`.
        index: usize,
        /// Why: the check's own error.
        #[source]
        source: UpstreamRefusal,
    },
    /// The database failed (typed once by `convergio-store`, cause kept);
    /// the detail is logged, never shown to clients.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// A stored row could not be decoded (corrupt or written by a newer version).
    #[error("stored data is corrupt: {message}")]
    Corrupt {
        /// What could not be decoded.
        message: String,
        /// The decoder's error, when one failed.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Why an upstream check (`UpstreamCheck`) refused a URL: the checker's
/// own error type.
pub type UpstreamRefusal = Box<dyn std::error::Error + Send + Sync>;

/// The registry's result type.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

// === impl RegistryError ===

impl RegistryError {
    /// How a client sees this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidCard { .. }
            | Self::InvalidInput { .. }
            | Self::SignatureInvalid { .. }
            | Self::UpstreamRefused { .. } => ErrorKind::InvalidInput,
            Self::AgentNotFound { .. } => ErrorKind::NotFound,
            Self::AgentExists { .. } => ErrorKind::Conflict,
            Self::StaleVersion { .. } => ErrorKind::PreconditionFailed,
            Self::Forbidden { .. } | Self::Verification { .. } => ErrorKind::Forbidden,
            Self::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Self::Storage(error) => error.kind(),
            Self::Corrupt { .. } => ErrorKind::Internal,
        }
    }

    /// An [`RegistryError::InvalidInput`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// An [`RegistryError::AgentNotFound`] for `id`.
    pub fn not_found(id: &AgentId) -> Self {
        Self::AgentNotFound {
            agent_id: id.to_string(),
        }
    }

    /// A [`RegistryError::Forbidden`] with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
        }
    }

    /// A [`RegistryError::Corrupt`] with `message`.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
            source: None,
        }
    }

    /// A [`RegistryError::Corrupt`]: `message` says what, `source` is the
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

    /// The violations to list in a problem document.
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            Self::InvalidCard { violations } => violations.clone(),
            Self::SignatureInvalid { reason } => vec![Violation {
                pointer: "/card/signatures".to_owned(),
                message: format!("does not verify: {reason}"),
            }],
            Self::UpstreamRefused { index, source } => vec![Violation {
                pointer: format!("/upstreams/{index}/url"),
                message: source.to_string(),
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use convergio_schemas::StorageFailure;

    use super::*;

    #[test]
    fn storage_errors_are_seen_as_their_failure_says() {
        let check = |failure, kind| {
            let error = RegistryError::from(StorageError::plain(failure, "reading agent a"));
            assert_eq!(error.kind(), kind, "{error}");
        };
        check(StorageFailure::Unavailable, ErrorKind::Unavailable);
        check(StorageFailure::Conflict, ErrorKind::Conflict);
        check(StorageFailure::Corrupt, ErrorKind::Internal);
        check(StorageFailure::Other, ErrorKind::Internal);
    }
}
