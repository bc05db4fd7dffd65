//! sqlx errors typed once: every database failure leaves this crate as a
//! [`StorageError`] whose kind says what a client sees and whose source is
//! sqlx's own error.

use convergio_schemas::{StorageError, StorageFailure};

/// SQLite's `SQLITE_BUSY` and `SQLITE_LOCKED` primary result codes.
const SQLITE_BUSY: &str = "5";
const SQLITE_LOCKED: &str = "6";
/// PostgreSQL's `serialization_failure`, `deadlock_detected`,
/// `lock_not_available`, `too_many_connections` and `cannot_connect_now`.
const PG_RETRYABLE: [&str; 5] = ["40001", "40P01", "55P03", "53300", "57P03"];

/// Classifies `error`, met while doing `context`.
pub fn typed(
    context: impl Into<std::borrow::Cow<'static, str>>,
    error: sqlx::Error,
) -> StorageError {
    let failure = failure_of(&error);
    StorageError::new(failure, context, error)
}

fn failure_of(error: &sqlx::Error) -> StorageFailure {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StorageFailure::Unavailable,
        sqlx::Error::Configuration(_) => StorageFailure::InvalidUrl,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StorageFailure::Corrupt,
        sqlx::Error::Migrate(_) => StorageFailure::Migration,
        sqlx::Error::Database(database) => {
            if database.is_unique_violation() {
                return StorageFailure::Conflict;
            }
            match database.code().as_deref() {
                Some(SQLITE_BUSY | SQLITE_LOCKED) => StorageFailure::Unavailable,
                Some(code) if PG_RETRYABLE.contains(&code) => StorageFailure::Unavailable,
                _ => StorageFailure::Other,
            }
        }
        _ => StorageFailure::Other,
    }
}

/// `.db("what")?` on a sqlx result: the error typed once, with its context.
pub trait DbResult<T> {
    /// Types the error, saying what was being done.
    fn db(self, context: &'static str) -> Result<T, StorageError>;
}

impl<T> DbResult<T> for Result<T, sqlx::Error> {
    fn db(self, context: &'static str) -> Result<T, StorageError> {
        self.map_err(|error| typed(context, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable_and_decode_errors_corrupt() {
        assert_eq!(
            typed("x", sqlx::Error::PoolTimedOut).failure(),
            StorageFailure::Unavailable
        );
        assert_eq!(
            typed("x", sqlx::Error::ColumnNotFound("a".into())).failure(),
            StorageFailure::Corrupt
        );
        assert_eq!(
            typed("x", sqlx::Error::RowNotFound).failure(),
            StorageFailure::Other
        );
    }
}
