//! Retention of the registry tables that grow with every call (issue 15):
//! task routes (one per A2A task a caller created) and the nonces of
//! accepted signed peer calls. [`RetentionStore`] deletes the oldest rows a
//! bounded batch at a time, so the pruner (`convergio_gateway::retention`)
//! never holds the write lock for long, and reports and compacts the
//! database file. `convergio-store` implements it on both backends
//! (`Retention`).
//!
//! A pruned task id is simply unknown afterwards: a follow-up on it gets
//! the same answer as a task id that never existed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// How large the database is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseSize {
    /// Bytes on disk: on SQLite the main file plus its write-ahead log; on
    /// PostgreSQL `pg_database_size` of the current database.
    pub bytes: u64,
    /// Bytes of the main file that are free pages, reused by later writes
    /// (SQLite only; 0 on PostgreSQL, whose free space map is not exposed).
    pub free_bytes: u64,
}

/// Pruning and size of the per-call registry tables.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// The backend's name (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Deletes up to `limit` task routes, least recently written first,
    /// among those last written before `before` (any, for `None`); returns
    /// how many. One short statement: callers loop, yielding in between.
    async fn prune_task_routes(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64>;

    /// How many task routes are stored.
    async fn count_task_routes(&self) -> Result<u64>;

    /// Deletes up to `limit` peer nonces whose clock window ended before
    /// `expired_before` (Unix seconds); returns how many. A nonce still in
    /// its window is never deleted: that would let its call be replayed.
    async fn prune_nonces(&self, expired_before: i64, limit: u32) -> Result<u64>;

    /// The database's size now.
    async fn database_size(&self) -> Result<DatabaseSize>;

    /// Gives space freed by pruning back where the backend allows it
    /// without blocking traffic for long; returns the bytes released from
    /// the main file (0 where nothing is released). See the backends for
    /// what each does.
    async fn compact(&self) -> Result<u64>;
}
