//! Translation of database errors into the orchestrator's error type, once
//! for both backends (the journal's callers only see `OrchestratorError`).

use convergio_orchestrator::OrchestratorError;

/// A database failure as the orchestrator's `Storage` error.
pub fn storage_error(error: sqlx::Error) -> OrchestratorError {
    OrchestratorError::Storage {
        message: error.to_string(),
    }
}
