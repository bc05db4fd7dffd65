//! [`StorageError`]: a database failure, typed once by the storage crate
//! (`convergio-store`, the only crate that speaks SQL) and carried with its
//! cause by every crate's own error, which names no database library.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use crate::ErrorKind;

/// What kind of storage failure happened; decides how a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageFailure {
    /// The database cannot be reached or is busy (pool timeout, refused
    /// connection, lock timeout): retrying later may succeed.
    Unavailable,
    /// A write collided with a row that exists (a unique constraint).
    Conflict,
    /// A stored row does not decode: edited by hand, or written by a newer
    /// version. Never replaced by a default.
    Corrupt,
    /// The schema could not be brought up to date at start.
    Migration,
    /// The database URL names no supported backend or does not parse.
    InvalidUrl,
    /// Anything else the database said.
    Other,
}

/// A database failure with what was being done and, when there is one, the
/// database library's own error as its source.
#[derive(Debug)]
pub struct StorageError {
    failure: StorageFailure,
    context: Cow<'static, str>,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

// === impl StorageFailure ===

impl StorageFailure {
    /// The failure in a few plain words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unavailable => "the database is unavailable",
            Self::Conflict => "the write collides with a stored row",
            Self::Corrupt => "stored data does not decode",
            Self::Migration => "the database schema could not be migrated",
            Self::InvalidUrl => "the database URL is not usable",
            Self::Other => "the database failed",
        }
    }
}

// === impl StorageError ===

impl StorageError {
    /// A failure caused by `source` while doing `context`.
    pub fn new(
        failure: StorageFailure,
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            failure,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Stored data that does not decode; `what` names the row and column.
    pub fn corrupt(what: impl Into<Cow<'static, str>>) -> Self {
        Self {
            failure: StorageFailure::Corrupt,
            context: what.into(),
            source: None,
        }
    }

    /// A failure with no underlying error (a refused URL, for instance).
    pub fn plain(failure: StorageFailure, context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            failure,
            context: context.into(),
            source: None,
        }
    }

    /// Which kind of failure this is.
    pub fn failure(&self) -> StorageFailure {
        self.failure
    }

    /// What was being done, or which stored value does not decode.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// How a client sees this failure: busy or unreachable databases are
    /// worth a retry, a bad URL is the operator's input, the rest is ours.
    pub fn kind(&self) -> ErrorKind {
        match self.failure {
            StorageFailure::Unavailable => ErrorKind::Unavailable,
            StorageFailure::Conflict => ErrorKind::Conflict,
            StorageFailure::InvalidUrl => ErrorKind::InvalidInput,
            StorageFailure::Corrupt | StorageFailure::Migration | StorageFailure::Other => {
                ErrorKind::Internal
            }
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.failure.describe(), self.context)
    }
}

impl Error for StorageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_its_cause_and_says_what_was_being_done() {
        let cause = std::io::Error::other("connection refused");
        let error = StorageError::new(StorageFailure::Unavailable, "reading agent a/b", cause);
        assert_eq!(
            error.to_string(),
            "the database is unavailable: reading agent a/b"
        );
        let source = error.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        let corrupt = StorageError::corrupt("runs.created_at of run 1");
        assert!(corrupt.source().is_none());
        assert_eq!(corrupt.kind(), ErrorKind::Internal);
    }
}
