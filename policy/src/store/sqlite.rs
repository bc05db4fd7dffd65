//! The SQLite backend: WAL journal, a busy timeout, and `BEGIN IMMEDIATE`
//! write transactions so that concurrent appends queue for the write lock
//! instead of failing on upgrade.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use super::{
    audit_query, audit_retention, decode_record, decode_version, encoded_parts, into_page,
    page_size, NewPolicyVersion, PolicyVersion, Store,
};
use crate::audit::{
    chain_hash, format_at, stored_precision, AuditCheckpoint, AuditEntry, AuditFilter, AuditPage,
    AuditRecord, GENESIS_HASH,
};
use crate::error::{PolicyError, Result};

const SCHEMA: &str = include_str!("../../migrations/sqlite/0001_policy.sql");

const VERSION_COLUMNS: &str = "version, text, author, reason, created_at, active";

/// Policy and audit storage in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` and creates the
    /// tables.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// The underlying pool (tests use it to tamper with rows).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert_active(&self, new: &NewPolicyVersion) -> Result<PolicyVersion> {
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions")
                .fetch_one(&mut *transaction)
                .await?;
        sqlx::query("UPDATE policy_versions SET active = 0 WHERE active = 1")
            .execute(&mut *transaction)
            .await?;
        let created_at = stored_precision(new.created_at)?;
        sqlx::query(
            "INSERT INTO policy_versions (version, text, author, reason, created_at, active) \
             VALUES (?, ?, ?, ?, ?, 1)",
        )
        .bind(version)
        .bind(&new.text)
        .bind(&new.author)
        .bind(&new.reason)
        .bind(format_at(&created_at))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(PolicyVersion {
            version,
            text: new.text.clone(),
            author: new.author.clone(),
            reason: new.reason.clone(),
            created_at,
            active: true,
        })
    }

    async fn active_version(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT version FROM policy_versions WHERE active = 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn get(&self, version: Option<i64>) -> Result<PolicyVersion> {
        let row = match version {
            Some(version) => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version = ?"
                ))
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE active = 1"
                ))
                .fetch_optional(&self.pool)
                .await?
            }
        };
        match (row, version) {
            (Some(row), _) => decode_version(&row),
            (None, Some(version)) => Err(PolicyError::VersionNotFound { version }),
            (None, None) => Err(PolicyError::NoActivePolicy),
        }
    }

    async fn list_versions(&self) -> Result<Vec<PolicyVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM policy_versions ORDER BY version DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_version).collect()
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord> {
        self.append_audit_batch(std::slice::from_ref(entry))
            .await?
            .pop()
            .ok_or_else(|| PolicyError::Corrupt("an append of one wrote nothing".to_owned()))
    }

    async fn append_audit_batch(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // BEGIN IMMEDIATE takes the write lock first, so reading the head and
        // inserting after it cannot interleave with another writer.
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *transaction)
            .await?;
        let (mut seq, mut prev_hash) = match head {
            Some(row) => (
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("hash")?,
            ),
            None => (0, GENESIS_HASH.to_owned()),
        };
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut entry = entry.clone();
            entry.at = stored_precision(entry.at)?;
            let (determining, detail) = encoded_parts(&entry)?;
            seq += 1;
            let hash = chain_hash(&prev_hash, seq, &entry);
            sqlx::query(
                "INSERT INTO audit_records (seq, at, request_id, subject, org, method, action, \
                 resource, decision, determining, detail, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(seq)
            .bind(format_at(&entry.at))
            .bind(&entry.request_id)
            .bind(&entry.subject)
            .bind(&entry.org)
            .bind(&entry.method)
            .bind(&entry.action)
            .bind(&entry.resource)
            .bind(&entry.decision)
            .bind(determining)
            .bind(detail)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *transaction)
            .await?;
            records.push(AuditRecord {
                seq,
                entry,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            });
        }
        transaction.commit().await?;
        Ok(records)
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let limit = page_size(filter);
        let rows = audit_query::<sqlx::Sqlite>(filter, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        let records = rows.iter().map(decode_record).collect::<Result<Vec<_>>>()?;
        Ok(into_page(records, limit))
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, request_id, subject, org, method, action, resource, decision, \
             determining, detail, prev_hash, hash FROM audit_records WHERE seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_record).collect()
    }

    async fn prune_audit(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64> {
        audit_retention::sqlite_prune(&self.pool, before, limit).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>> {
        audit_retention::sqlite_checkpoint(&self.pool).await
    }

    async fn count_audit(&self) -> Result<u64> {
        audit_retention::sqlite_count(&self.pool).await
    }
}
