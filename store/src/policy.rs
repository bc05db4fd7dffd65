//! Policy-set versions and the hash-chained audit log (the policy crate's
//! [`Store`]) on either backend: every statement is written once with `$N`
//! placeholders and run on the [`Db`]'s pool, whichever it is.
//!
//! The policy crate keeps what is not SQL: the chain arithmetic
//! ([`chain_after`]), the stored form of a record ([`StoredAuditRecord`]),
//! paging, and the retention check ([`prunable_prefix`]). This module reads
//! and writes rows, and holds the invariants that need the database:
//! - a write that reads before it writes (the next version number, the
//!   chain's head, the prefix a prune deletes) runs under one lock per table
//!   family, taken before the read: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
//!   transaction-scoped advisory lock (the keys are those of earlier
//!   releases, so old and new replicas queue on the same lock during an
//!   upgrade);
//! - appends and prunes take the same audit lock, so the head a prune keeps
//!   is the head, and `seq` stays dense with each `prev_hash` the hash of
//!   the record before it;
//! - a record is stored as [`StoredAuditRecord::encode`] wrote it and read
//!   back through [`StoredAuditRecord::decode`], so the hash `verify`
//!   recomputes covers exactly the stored text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_policy::audit::{
    chain_after, format_at, parse_at, stored_precision, AuditCheckpoint, AuditEntry, AuditFilter,
    AuditPage, AuditRecord,
};
use convergio_policy::store::audit_retention::prunable_prefix;
use convergio_policy::store::{into_page, page_size, NewPolicyVersion};
use convergio_policy::{PolicyError, PolicyVersion, Result, Store, StoredAuditRecord};
use sqlx::Connection as _;

use crate::{Db, DbResult, Pool};

/// Advisory lock key serialising policy activations (PostgreSQL).
const POLICY_LOCK: i64 = 0x636f_6e76_706f_6c31;
/// Advisory lock key serialising audit appends and prunes (PostgreSQL).
const AUDIT_LOCK: i64 = 0x636f_6e76_6175_6431;

/// A statement reading whole `policy_versions` rows, then `$rest`.
macro_rules! select_versions {
    ($rest:literal) => {
        concat!(
            "SELECT version, text, author, reason, created_at, active FROM policy_versions",
            $rest
        )
    };
}

/// A statement reading whole `audit_records` rows (in [`RecordRow`]'s
/// order), then `$rest`.
macro_rules! select_records {
    ($rest:literal) => {
        concat!(
            "SELECT seq, at, request_id, subject, org, method, action, resource, decision, \
             determining, detail, prev_hash, hash FROM audit_records",
            $rest
        )
    };
}

const NEXT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions";
// TRUE and FALSE are 1 and 0 to SQLite, whose `active` is an INTEGER flag.
const DEACTIVATE: &str = "UPDATE policy_versions SET active = FALSE WHERE active = TRUE";
const INSERT_VERSION: &str = "INSERT INTO policy_versions \
     (version, text, author, reason, created_at, active) VALUES ($1, $2, $3, $4, $5, TRUE)";
const ACTIVE_VERSION: &str = "SELECT version FROM policy_versions WHERE active = TRUE";
const VERSION: &str = select_versions!(" WHERE version = $1");
const ACTIVE: &str = select_versions!(" WHERE active = TRUE");
const VERSIONS: &str = select_versions!(" ORDER BY version DESC");

const HEAD: &str = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1";
/// The head of a multi-row insert; [`insert_records`] adds the rows.
const INSERT_RECORDS: &str = "INSERT INTO audit_records (seq, at, request_id, subject, org, \
     method, action, resource, decision, determining, detail, prev_hash, hash) ";
/// Rows per insert statement: 13 placeholders each, far below SQLite's
/// 32,766 and PostgreSQL's 65,535 per statement.
const RECORDS_PER_INSERT: usize = 64;
const RANGE: &str = select_records!(" WHERE seq > $1 ORDER BY seq LIMIT $2");
/// The oldest records but the newest: what a prune may delete.
const PRUNABLE: &str =
    select_records!(" WHERE seq < (SELECT MAX(seq) FROM audit_records) ORDER BY seq LIMIT $1");
const DELETE_PREFIX: &str = "DELETE FROM audit_records WHERE seq <= $1";
const CHECKPOINT: &str = "SELECT seq, hash, at, pruned_at, pruned FROM audit_checkpoint";
const MOVE_CHECKPOINT: &str = "INSERT INTO audit_checkpoint \
     (id, seq, hash, at, pruned_at, pruned) VALUES (1, $1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
     at = excluded.at, pruned_at = excluded.pruned_at, \
     pruned = audit_checkpoint.pruned + excluded.pruned";
const COUNT: &str = "SELECT COUNT(*) FROM audit_records";

/// A `policy_versions` row.
type VersionRow = (i64, String, String, String, String, bool);
/// An `audit_records` row.
type RecordRow = (
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);
/// The `audit_checkpoint` row.
type CheckpointRow = (i64, String, String, String, i64);

/// Runs `$body` with `$pool` bound to the [`Db`]'s pool: written once,
/// type-checked once per backend.
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.pool() {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` in a transaction `$transaction` that holds the writers'
/// lock `$lock` from its start; `$body` commits.
macro_rules! locked {
    ($db:expr, $lock:expr, |$transaction:ident| $body:expr) => {
        match $db.pool() {
            // SQLite has one write lock; BEGIN IMMEDIATE takes it before the
            // first read, so concurrent writers queue (busy timeout) instead
            // of failing when a deferred transaction upgrades its read lock.
            //
            // Policy versions and the audit chain keep the durability their
            // own pool had before the shared one (SQLite's default FULL: a
            // commit survives a power cut), so the connection is raised to
            // FULL for the write and lowered again after it. A write that
            // fails returns early and leaves its connection at FULL, which
            // is only slower for the next user, never less safe.
            Pool::Sqlite(pool) => {
                let mut connection = pool
                    .acquire()
                    .await
                    .db("taking a connection for a policy write")?;
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *connection)
                    .await
                    .db("asking SQLite for synchronous=FULL")?;
                let value = {
                    let mut $transaction = connection
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .db("beginning a policy write")?;
                    $body
                };
                if let Err(error) = sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *connection)
                    .await
                {
                    // Never hand the other stores a connection in an unknown
                    // state: close it, the pool opens a fresh one.
                    tracing::warn!(error = %error, "restoring synchronous=NORMAL failed; closing the connection");
                    connection.close_on_drop();
                }
                value
            }
            // PostgreSQL's row locks cannot cover "the next number" or "the
            // head": an advisory lock held until commit serialises the
            // writers of every replica.
            Pool::Postgres(pool) => {
                let mut $transaction = pool.begin().await.db("beginning a policy write")?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind($lock)
                    .execute(&mut *$transaction)
                    .await
                    .db("taking the policy writers' lock")?;
                $body
            }
        }
    };
}

/// Policy versions and the audit chain in the process's database.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    db: Db,
}

// === impl PolicyStore ===

impl PolicyStore {
    /// The store over `db` (already migrated by [`Db::open`]).
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Store for PolicyStore {
    fn backend(&self) -> &'static str {
        self.db.backend().name()
    }

    async fn insert_active(&self, new: &NewPolicyVersion) -> Result<PolicyVersion> {
        let backend = self.db.backend();
        let created_at = stored_precision(new.created_at)?;
        locked!(self.db, POLICY_LOCK, |transaction| {
            let version: i64 = sqlx::query_scalar(&backend.sql(NEXT_VERSION))
                .fetch_one(&mut *transaction)
                .await
                .db("numbering the next policy version")?;
            sqlx::query(&backend.sql(DEACTIVATE))
                .execute(&mut *transaction)
                .await
                .db("deactivating the active policy version")?;
            sqlx::query(&backend.sql(INSERT_VERSION))
                .bind(version)
                .bind(&new.text)
                .bind(&new.author)
                .bind(&new.reason)
                .bind(format_at(&created_at))
                .execute(&mut *transaction)
                .await
                .db("storing a policy version")?;
            transaction
                .commit()
                .await
                .db("committing a policy version")?;
            Ok(PolicyVersion {
                version,
                text: new.text.clone(),
                author: new.author.clone(),
                reason: new.reason.clone(),
                created_at,
                active: true,
            })
        })
    }

    async fn active_version(&self) -> Result<Option<i64>> {
        let sql = self.db.backend().sql(ACTIVE_VERSION);
        let active = with_pool!(self.db, |pool| sqlx::query_scalar(&sql)
            .fetch_optional(pool)
            .await)
        .db("reading the active policy version")?;
        Ok(active)
    }

    async fn get(&self, version: Option<i64>) -> Result<PolicyVersion> {
        let backend = self.db.backend();
        let row: Option<VersionRow> = match version {
            Some(version) => with_pool!(self.db, |pool| sqlx::query_as(&backend.sql(VERSION))
                .bind(version)
                .fetch_optional(pool)
                .await),
            None => with_pool!(self.db, |pool| sqlx::query_as(&backend.sql(ACTIVE))
                .fetch_optional(pool)
                .await),
        }
        .db("reading a policy version")?;
        match (row, version) {
            (Some(row), _) => decode_version(row),
            (None, Some(version)) => Err(PolicyError::VersionNotFound { version }),
            (None, None) => Err(PolicyError::NoActivePolicy),
        }
    }

    async fn list_versions(&self) -> Result<Vec<PolicyVersion>> {
        let sql = self.db.backend().sql(VERSIONS);
        let rows: Vec<VersionRow> =
            with_pool!(self.db, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
                .db("listing policy versions")?;
        rows.into_iter().map(decode_version).collect()
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord> {
        self.append_audit_batch(std::slice::from_ref(entry))
            .await?
            .pop()
            .ok_or_else(|| PolicyError::corrupt("an append of one wrote nothing"))
    }

    async fn append_audit_batch(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.db.backend();
        locked!(self.db, AUDIT_LOCK, |transaction| {
            let head: Option<(i64, String)> = sqlx::query_as(&backend.sql(HEAD))
                .fetch_optional(&mut *transaction)
                .await
                .db("reading the audit chain's head")?;
            let records = chain_after(head, entries)?;
            // One statement per chunk of rows, not per row: each statement
            // is a round trip to the database (on SQLite, to its worker
            // thread), which cost more than the row itself (issue #25).
            for chunk in records.chunks(RECORDS_PER_INSERT) {
                let stored = chunk
                    .iter()
                    .map(StoredAuditRecord::encode)
                    .collect::<Result<Vec<_>>>()?;
                let mut insert = insert_records(stored);
                insert
                    .build()
                    .execute(&mut *transaction)
                    .await
                    .db("appending to the audit chain")?;
            }
            transaction.commit().await.db("committing audit records")?;
            Ok(records)
        })
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let limit = page_size(filter);
        let rows: Vec<RecordRow> = with_pool!(self.db, |pool| {
            let mut query = audit_query(filter, limit);
            query.build_query_as().fetch_all(pool).await
        })
        .db("querying the audit log")?;
        Ok(into_page(decode_records(rows)?, limit))
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let sql = self.db.backend().sql(RANGE);
        let rows: Vec<RecordRow> = with_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(pool)
            .await)
        .db("reading the audit chain")?;
        decode_records(rows)
    }

    async fn prune_audit(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64> {
        let backend = self.db.backend();
        locked!(self.db, AUDIT_LOCK, |transaction| {
            let checkpoint: Option<CheckpointRow> = sqlx::query_as(&backend.sql(CHECKPOINT))
                .fetch_optional(&mut *transaction)
                .await
                .db("reading the audit checkpoint")?;
            let checkpoint = checkpoint.map(decode_checkpoint).transpose()?;
            let rows: Vec<RecordRow> = sqlx::query_as(&backend.sql(PRUNABLE))
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .db("reading the oldest audit records")?;
            let records = decode_records(rows)?;
            let prefix = prunable_prefix(checkpoint.as_ref(), &records, before.as_ref())?;
            let Some(last) = prefix.checked_sub(1).and_then(|last| records.get(last)) else {
                return Ok(0);
            };
            let deleted = sqlx::query(&backend.sql(DELETE_PREFIX))
                .bind(last.seq)
                .execute(&mut *transaction)
                .await
                .db("pruning audit records")?
                .rows_affected();
            sqlx::query(&backend.sql(MOVE_CHECKPOINT))
                .bind(last.seq)
                .bind(&last.hash)
                .bind(format_at(&last.entry.at))
                .bind(format_at(&Utc::now()))
                .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
                .execute(&mut *transaction)
                .await
                .db("moving the audit checkpoint")?;
            transaction.commit().await.db("committing a prune")?;
            Ok(deleted)
        })
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>> {
        let sql = self.db.backend().sql(CHECKPOINT);
        let row: Option<CheckpointRow> = with_pool!(self.db, |pool| sqlx::query_as(&sql)
            .fetch_optional(pool)
            .await)
        .db("reading the audit checkpoint")?;
        row.map(decode_checkpoint).transpose()
    }

    async fn count_audit(&self) -> Result<u64> {
        let sql = self.db.backend().sql(COUNT);
        let count: i64 = with_pool!(self.db, |pool| sqlx::query_scalar(&sql)
            .fetch_one(pool)
            .await)
        .db("counting audit records")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// The filtered audit query: optional filters are left out of the text
/// rather than written as `$n IS NULL OR …`, so each backend can use the
/// `(subject, seq)` and `at` indexes. The builder numbers its own
/// placeholders per backend.
fn audit_query<'a, DB>(filter: &'a AuditFilter, limit: i64) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut builder = sqlx::QueryBuilder::new(select_records!(""));
    builder
        .push(" WHERE seq > ")
        .push_bind(filter.after.unwrap_or(0));
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
        builder.push(" AND at >= ").push_bind(format_at(since));
    }
    if let Some(until) = &filter.until {
        builder.push(" AND at < ").push_bind(format_at(until));
    }
    // One more than the page: it only says whether there is a next page.
    builder.push(" ORDER BY seq LIMIT ").push_bind(limit + 1);
    builder
}

/// `INSERT INTO audit_records … VALUES (…), (…)` for `stored`, in order.
/// The builder numbers its own placeholders per backend.
fn insert_records<'a, DB>(stored: Vec<StoredAuditRecord>) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut builder = sqlx::QueryBuilder::new(INSERT_RECORDS);
    builder.push_values(stored, |mut row, stored| {
        row.push_bind(stored.seq)
            .push_bind(stored.at)
            .push_bind(stored.request_id)
            .push_bind(stored.subject)
            .push_bind(stored.org)
            .push_bind(stored.method)
            .push_bind(stored.action)
            .push_bind(stored.resource)
            .push_bind(stored.decision)
            .push_bind(stored.determining)
            .push_bind(stored.detail)
            .push_bind(stored.prev_hash)
            .push_bind(stored.hash);
    });
    builder
}

fn decode_version(row: VersionRow) -> Result<PolicyVersion> {
    let (version, text, author, reason, created_at, active) = row;
    Ok(PolicyVersion {
        version,
        text,
        author,
        reason,
        created_at: parse_at(&created_at)?,
        active,
    })
}

fn decode_records(rows: Vec<RecordRow>) -> Result<Vec<AuditRecord>> {
    rows.into_iter()
        .map(|row| {
            StoredAuditRecord {
                seq: row.0,
                at: row.1,
                request_id: row.2,
                subject: row.3,
                org: row.4,
                method: row.5,
                action: row.6,
                resource: row.7,
                decision: row.8,
                determining: row.9,
                detail: row.10,
                prev_hash: row.11,
                hash: row.12,
            }
            .decode()
        })
        .collect()
}

fn decode_checkpoint(row: CheckpointRow) -> Result<AuditCheckpoint> {
    let (seq, hash, at, pruned_at, pruned) = row;
    Ok(AuditCheckpoint {
        seq,
        hash,
        at: parse_at(&at)?,
        pruned_at: parse_at(&pruned_at)?,
        pruned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbConfig;

    /// The connection's `PRAGMA synchronous` (1 = NORMAL, 2 = FULL).
    async fn synchronous(db: &Db) -> i64 {
        let Pool::Sqlite(pool) = db.pool() else {
            panic!("a SQLite database")
        };
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("the pragma reads")
    }

    #[tokio::test]
    async fn a_policy_write_hands_its_connection_back_at_normal_sync() {
        // In memory: one connection, so the pragma read is the writer's.
        let db = Db::open("sqlite::memory:", &DbConfig::default())
            .await
            .expect("opens");
        assert_eq!(synchronous(&db).await, 1);
        let store = PolicyStore::new(db.clone());
        let stored = store
            .insert_active(&NewPolicyVersion {
                text: "permit (principal, action, resource);".to_owned(),
                author: "admin".to_owned(),
                reason: "test".to_owned(),
                created_at: Utc::now(),
            })
            .await
            .expect("the version is stored");
        assert_eq!(stored.version, 1);
        assert_eq!(synchronous(&db).await, 1, "the shared pool stays NORMAL");
    }
}
