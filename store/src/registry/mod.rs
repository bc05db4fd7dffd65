//! The registry's tables on either backend: [`AgentStore`] (agents, their
//! history, trust changes, discovery side tables, task and context routes),
//! [`ApiKeys`], [`Peers`], [`PeerCalls`], [`PushTables`], [`StreamEvents`] and
//! [`Retention`], each implementing the trait the
//! registry crate defines and each built from the process's one [`Db`].
//!
//! Every statement is written once with `$N` placeholders. Code that only
//! binds and reads runs on either pool through [`on_pool!`]; the agent
//! store, whose write transactions pass a connection through helpers, is
//! instantiated once per backend by a macro (`agents.rs`). Per-backend code
//! is kept only where behaviour differs, each place saying why: SQLite's
//! in-memory text index against PostgreSQL's `ts_rank`, taking SQLite's
//! write lock up front against row locks, and file compaction.
//!
//! Timestamps are the one column type the backends store differently:
//! RFC 3339 text with microseconds on SQLite (fixed width, so text order is
//! time order), `TIMESTAMPTZ` on PostgreSQL; [`Stamps`] binds and reads them.

mod agents;
mod keys;
mod peer_calls;
mod peers;
mod push;
mod retention;
mod stream_events;
mod text_index;

use chrono::{DateTime, SecondsFormat, Utc};
use convergio_registry::{RegistryError, Result};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use sqlx::Row;

pub use agents::AgentStore;
pub use keys::ApiKeys;
pub use peer_calls::PeerCalls;
pub use peers::Peers;
pub use push::PushTables;
pub use retention::{Retention, MAX_VACUUM_PAGES};
pub use stream_events::StreamEvents;

#[cfg(doc)]
use crate::Db;
use crate::DbResult;

/// Runs `$body` with `$pool` bound to the pool of `$db` (a [`Db`]), once
/// per backend: the body is written once and type-checked for each.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.pool() {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How a backend binds and reads a timestamp column.
pub(crate) trait Stamps: sqlx::Database {
    /// The bound form of a timestamp.
    type Stamp: for<'q> sqlx::Encode<'q, Self> + sqlx::Type<Self> + Send + 'static;

    /// `at` as this backend stores it.
    fn stamp(at: &DateTime<Utc>) -> Self::Stamp;

    /// The timestamp in `column` of `row`, `None` when it is NULL.
    fn read_optional_stamp(row: &Self::Row, column: &str) -> Result<Option<DateTime<Utc>>>;

    /// The timestamp in the NOT NULL `column` of `row`.
    fn read_stamp(row: &Self::Row, column: &str) -> Result<DateTime<Utc>> {
        Self::read_optional_stamp(row, column)?
            .ok_or_else(|| RegistryError::corrupt(format!("stored timestamp {column} is missing")))
    }
}

impl Stamps for sqlx::Sqlite {
    type Stamp = String;

    fn stamp(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    fn read_optional_stamp(
        row: &sqlx::sqlite::SqliteRow,
        column: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        let text: Option<String> = row.try_get(column).db("reading a timestamp column")?;
        text.map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|error| {
                    RegistryError::corrupt_because(format!("stored timestamp {text:?}"), error)
                })
        })
        .transpose()
    }
}

impl Stamps for sqlx::Postgres {
    type Stamp = DateTime<Utc>;

    fn stamp(at: &DateTime<Utc>) -> DateTime<Utc> {
        *at
    }

    fn read_optional_stamp(
        row: &sqlx::postgres::PgRow,
        column: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(row.try_get(column).db("reading a timestamp column")?)
    }
}

/// Parses a stored agent id.
pub(crate) fn parse_id(text: &str) -> Result<AgentId> {
    text.parse()
        .map_err(|error| RegistryError::corrupt_because(format!("stored agent id {text:?}"), error))
}

/// Parses a stored role.
pub(crate) fn parse_role(text: &str) -> Result<AgentRole> {
    text.parse()
        .map_err(|error| RegistryError::corrupt_because("stored role", error))
}

/// Parses a stored trust level.
pub(crate) fn parse_trust(text: &str) -> Result<TrustLevel> {
    text.parse()
        .map_err(|error| RegistryError::corrupt_because("stored trust level", error))
}

/// Parses a stored JSON column.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|error| RegistryError::corrupt_because(format!("stored {what}"), error))
}

/// Serialises a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| RegistryError::corrupt_because("cannot serialise", error))
}

/// A count read from the database as a `u64`.
pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
