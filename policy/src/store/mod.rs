//! Storage of policy-set versions and of the audit chain: the [`Store`]
//! trait the storage crate (`convergio-store`, the only crate that speaks
//! SQL) implements on SQLite and PostgreSQL, and the non-SQL halves every
//! implementation shares: the stored form of an audit record
//! ([`StoredAuditRecord`]), paging, and the retention check
//! ([`audit_retention`]).
//!
//! Tables are prefixed `policy_`/`audit_`; their DDL is migration 0008 of
//! the storage crate.
//!
//! Invariants every implementation keeps (checked by the storage crate's
//! `tests/policy` suite on SQLite and PostgreSQL):
//! - exactly one version is active once any exists; activating a version is
//!   one transaction that inserts the new row and clears the old flag;
//! - versions only grow; a rollback inserts a copy of the old text;
//! - audit appends are serialised (SQLite `BEGIN IMMEDIATE`, PostgreSQL
//!   `pg_advisory_xact_lock`), so `seq` is dense and each `prev_hash` is the
//!   previous record's `hash`, whatever the number of writers or replicas;
//! - a record's text columns are what [`StoredAuditRecord::encode`] wrote,
//!   and the hash is recomputed from what [`StoredAuditRecord::decode`]
//!   reads back, so an edit of any stored column breaks the chain.

pub mod audit_retention;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{
    format_at, parse_at, AuditCheckpoint, AuditEntry, AuditFilter, AuditPage, AuditRecord,
};
use crate::error::{PolicyError, Result};

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
    /// commit per batch instead of one per decision. The records are
    /// [`crate::audit::chain_after`] the stored head, read under the
    /// appenders' lock.
    async fn append_audit_batch(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>>;

    /// A filtered page of audit records, oldest first, after `filter.after_seq`.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<AuditPage>;

    /// Every audit record with `seq > after_seq`, oldest first, at most `limit`.
    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>>;

    /// Retention (issue 15): deletes up to `limit` of the oldest audit
    /// records older than `before` (any age for `None`), a prefix of the
    /// chain that never includes the newest record, after checking that it
    /// continues the chain ([`audit_retention::prunable_prefix`]); moves the
    /// checkpoint to the newest record deleted, in the same transaction and
    /// under the appenders' lock. Returns how many were deleted.
    async fn prune_audit(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64>;

    /// Where the pruned prefix of the chain ends, if anything was pruned.
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>>;

    /// How many audit records are stored.
    async fn count_audit(&self) -> Result<u64>;
}

/// The largest page of audit records one query returns.
pub const MAX_AUDIT_PAGE: i64 = 500;

/// An `audit_records` row as the database holds it: every column as stored,
/// before decoding. `determining` and `detail` are JSON text and `at` a
/// [`format_at`] timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditRecord {
    /// Position in the chain.
    pub seq: i64,
    /// The entry's time, as [`format_at`] wrote it.
    pub at: String,
    /// The request id.
    pub request_id: Option<String>,
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    pub org: Option<String>,
    /// How the principal authenticated.
    pub method: String,
    /// What was done or asked.
    pub action: String,
    /// On what.
    pub resource: String,
    /// The outcome.
    pub decision: String,
    /// The determining policies, a JSON array.
    pub determining: String,
    /// The detail, a JSON value.
    pub detail: String,
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

// === impl StoredAuditRecord ===

impl StoredAuditRecord {
    /// The columns to store for `record`.
    pub fn encode(record: &AuditRecord) -> Result<Self> {
        let entry = &record.entry;
        Ok(Self {
            seq: record.seq,
            at: format_at(&entry.at),
            request_id: entry.request_id.clone(),
            subject: entry.subject.clone(),
            org: entry.org.clone(),
            method: entry.method.clone(),
            action: entry.action.clone(),
            resource: entry.resource.clone(),
            decision: entry.decision.clone(),
            determining: json(&entry.determining)?,
            detail: json(&entry.detail)?,
            prev_hash: record.prev_hash.clone(),
            hash: record.hash.clone(),
        })
    }

    /// The record these columns hold. A column that does not decode is
    /// tampering like any other edit, so the error names the record's seq
    /// ([`PolicyError::CorruptAuditRecord`]): `verify` reports it as the
    /// chain broken there.
    pub fn decode(self) -> Result<AuditRecord> {
        let seq = self.seq;
        let corrupt = |what: &str, error: &dyn std::fmt::Display| PolicyError::CorruptAuditRecord {
            seq,
            reason: format!("{what} does not decode: {error}"),
        };
        Ok(AuditRecord {
            seq,
            entry: AuditEntry {
                at: parse_at(&self.at).map_err(|error| corrupt("at", &error))?,
                request_id: self.request_id,
                subject: self.subject,
                org: self.org,
                method: self.method,
                action: self.action,
                resource: self.resource,
                decision: self.decision,
                determining: serde_json::from_str(&self.determining)
                    .map_err(|error| corrupt("determining", &error))?,
                detail: serde_json::from_str(&self.detail)
                    .map_err(|error| corrupt("detail", &error))?,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// `value` as a JSON column.
fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| PolicyError::corrupt_because("cannot serialise", error))
}

/// The page size a filter asks for, clamped to `1..=MAX_AUDIT_PAGE`.
pub fn page_size(filter: &AuditFilter) -> i64 {
    filter.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE)
}

/// Turns the `limit + 1` records a page query fetched into a page with its
/// cursor: the extra record only says there is more.
pub fn into_page(mut records: Vec<AuditRecord>, limit: i64) -> AuditPage {
    let more = records.len() as i64 > limit;
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        records.last().map(|record| record.seq)
    } else {
        None
    };
    AuditPage { records, next }
}
