//! Storage of policy-set versions and of the audit chain: the [`Store`] trait
//! every backend implements and [`connect`], which picks one by URL.
//!
//! Tables are prefixed `policy_`/`audit_` so they can live in the registry's
//! database. Their DDL (`migrations/{sqlite,postgres}/0001_policy.sql`) is
//! idempotent and applied by the store itself rather than by `sqlx::migrate!`:
//! the registry's migrator owns `_sqlx_migrations` in the same database, and
//! two migrators there would each see the other's rows as unknown.
//!
//! Invariants every backend keeps (checked by `tests/conformance.rs` on
//! SQLite and PostgreSQL):
//! - exactly one version is active once any exists; activating a version is
//!   one transaction that inserts the new row and clears the old flag;
//! - versions only grow; a rollback inserts a copy of the old text;
//! - audit appends are serialised (SQLite `BEGIN IMMEDIATE`, PostgreSQL
//!   `pg_advisory_xact_lock`), so `seq` is dense and each `prev_hash` is the
//!   previous record's `hash`, whatever the number of writers or replicas.

mod audit_retention;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditCheckpoint, AuditEntry, AuditFilter, AuditPage, AuditRecord};
use crate::error::{PolicyError, Result};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One stored version of the policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// The version number (1, 2, …).
    pub version: i64,
    /// The Cedar text.
    pub text: String,
    /// Who stored it (principal subject).
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Whether this is the active version.
    pub active: bool,
}

/// A version to store and activate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPolicyVersion {
    /// The Cedar text (already validated).
    pub text: String,
    /// Who stores it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Durable storage of policy versions and the audit chain.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Inserts `new` as the next version and makes it the only active one,
    /// in one transaction.
    async fn insert_active(&self, new: &NewPolicyVersion) -> Result<PolicyVersion>;

    /// The active version number, if any set was ever stored.
    async fn active_version(&self) -> Result<Option<i64>>;

    /// A version, or the active one for `None`.
    async fn get(&self, version: Option<i64>) -> Result<PolicyVersion>;

    /// Every version, newest first.
    async fn list_versions(&self) -> Result<Vec<PolicyVersion>>;

    /// Appends to the audit chain; returns the record with its seq and hashes.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord>;

    /// Appends `entries`, in order, in ONE transaction: all or none. The
    /// writer task batches whatever is queued, so a busy gateway pays one
    /// commit per batch instead of one per decision.
    async fn append_audit_batch(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>>;

    /// A filtered page of audit records, oldest first, after `filter.after_seq`.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<AuditPage>;

    /// Every audit record with `seq > after_seq`, oldest first, at most `limit`.
    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>>;

    /// Retention (issue 15): deletes up to `limit` of the oldest audit
    /// records older than `before` (any age for `None`), a prefix of the
    /// chain that never includes the newest record, after checking that it
    /// continues the chain; moves the checkpoint to the newest record
    /// deleted, in the same transaction. Returns how many were deleted.
    /// See `store/audit_retention.rs`.
    async fn prune_audit(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64>;

    /// Where the pruned prefix of the chain ends, if anything was pruned.
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>>;

    /// How many audit records are stored.
    async fn count_audit(&self) -> Result<u64>;
}

/// Opens the store for a database URL (`sqlite:…` or `postgres://…`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(PolicyError::UnsupportedUrl(url.to_owned()))
    }
}

/// The largest page of audit records one query returns.
pub const MAX_AUDIT_PAGE: i64 = 500;

/// The JSON columns of an audit entry: `determining` and `detail`.
fn encoded_parts(entry: &AuditEntry) -> Result<(String, String)> {
    let determining = serde_json::to_string(&entry.determining)
        .map_err(|error| PolicyError::Corrupt(error.to_string()))?;
    let detail = serde_json::to_string(&entry.detail)
        .map_err(|error| PolicyError::Corrupt(error.to_string()))?;
    Ok((determining, detail))
}

/// Decodes a `policy_versions` row (shared by both backends).
fn decode_version<'r, R>(row: &'r R) -> Result<PolicyVersion>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let created_at: String = row.try_get("created_at")?;
    Ok(PolicyVersion {
        version: row.try_get("version")?,
        text: row.try_get("text")?,
        author: row.try_get("author")?,
        reason: row.try_get("reason")?,
        created_at: crate::audit::parse_at(&created_at)?,
        active: row.try_get("active")?,
    })
}

/// Decodes an `audit_records` row (shared by both backends).
fn decode_record<'r, R>(row: &'r R) -> Result<AuditRecord>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get("seq")?;
    let at: String = row.try_get("at")?;
    let determining: String = row.try_get("determining")?;
    let detail: String = row.try_get("detail")?;
    // A column that does not decode is tampering like any other edit, so
    // it names its seq: `verify` reports it as the chain broken there.
    let corrupt = |what: &str, error: &dyn std::fmt::Display| PolicyError::CorruptAuditRecord {
        seq,
        reason: format!("{what} does not decode: {error}"),
    };
    Ok(AuditRecord {
        seq,
        entry: AuditEntry {
            at: crate::audit::parse_at(&at).map_err(|error| corrupt("at", &error))?,
            request_id: row.try_get("request_id")?,
            subject: row.try_get("subject")?,
            org: row.try_get("org")?,
            method: row.try_get("method")?,
            action: row.try_get("action")?,
            resource: row.try_get("resource")?,
            decision: row.try_get("decision")?,
            determining: serde_json::from_str(&determining)
                .map_err(|error| corrupt("determining", &error))?,
            detail: serde_json::from_str(&detail).map_err(|error| corrupt("detail", &error))?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Builds the filtered audit query (shared by both backends).
fn audit_query<'a, DB>(filter: &'a AuditFilter, limit: i64) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut builder = sqlx::QueryBuilder::new(
        "SELECT seq, at, request_id, subject, org, method, action, resource, decision, \
         determining, detail, prev_hash, hash FROM audit_records WHERE seq > ",
    );
    builder.push_bind(filter.after.unwrap_or(0));
    if let Some(principal) = &filter.principal {
        builder
            .push(" AND subject = ")
            .push_bind(principal.as_str());
    }
    if let Some(action) = &filter.action {
        builder.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(decision) = &filter.decision {
        builder
            .push(" AND decision = ")
            .push_bind(decision.as_str());
    }
    if let Some(since) = &filter.since {
        builder
            .push(" AND at >= ")
            .push_bind(crate::audit::format_at(since));
    }
    if let Some(until) = &filter.until {
        builder
            .push(" AND at < ")
            .push_bind(crate::audit::format_at(until));
    }
    builder.push(" ORDER BY seq LIMIT ").push_bind(limit + 1);
    builder
}

/// The page size a filter asks for, clamped to `1..=MAX_AUDIT_PAGE`.
fn page_size(filter: &AuditFilter) -> i64 {
    filter.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE)
}

/// Turns `limit + 1` fetched records into a page with its cursor.
fn into_page(mut records: Vec<AuditRecord>, limit: i64) -> AuditPage {
    let more = records.len() as i64 > limit;
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        records.last().map(|record| record.seq)
    } else {
        None
    };
    AuditPage { records, next }
}
