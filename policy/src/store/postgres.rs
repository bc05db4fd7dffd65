//! The PostgreSQL backend. Writers that must be serialised across replicas
//! (activating a policy version, appending to the audit chain) take a
//! transaction-scoped advisory lock first, so they queue instead of racing
//! for the same next number.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::{
    audit_query, audit_retention, decode_record, decode_version, encoded_parts, into_page,
    page_size, NewPolicyVersion, PolicyVersion, Store,
};
use crate::audit::{
    chain_hash, format_at, stored_precision, AuditCheckpoint, AuditEntry, AuditFilter, AuditPage,
    AuditRecord, GENESIS_HASH,
};
use crate::error::{PolicyError, Result};

const SCHEMA: &str = include_str!("../../migrations/postgres/0001_policy.sql");

const VERSION_COLUMNS: &str = "version, text, author, reason, created_at, active";

/// Advisory lock key serialising policy activations.
const POLICY_LOCK: i64 = 0x636f_6e76_706f_6c31;
/// Advisory lock key serialising audit appends.
const AUDIT_LOCK: i64 = 0x636f_6e76_6175_6431;

/// Policy and audit storage in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects to the database at `url` and creates the tables.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        // Concurrent first starts of several replicas would race on
        // CREATE TABLE IF NOT EXISTS; the advisory lock makes them queue.
        let mut transaction = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(POLICY_LOCK)
            .execute(&mut *transaction)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(Self { pool })
    }

    /// The underlying pool (tests use it to tamper with rows).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert_active(&self, new: &NewPolicyVersion) -> Result<PolicyVersion> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(POLICY_LOCK)
            .execute(&mut *transaction)
            .await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions")
                .fetch_one(&mut *transaction)
                .await?;
        sqlx::query("UPDATE policy_versions SET active = FALSE WHERE active")
            .execute(&mut *transaction)
            .await?;
        let created_at = stored_precision(new.created_at)?;
        sqlx::query(
            "INSERT INTO policy_versions (version, text, author, reason, created_at, active) \
             VALUES ($1, $2, $3, $4, $5, TRUE)",
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
            sqlx::query_scalar("SELECT version FROM policy_versions WHERE active")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn get(&self, version: Option<i64>) -> Result<PolicyVersion> {
        let row = match version {
            Some(version) => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version = $1"
                ))
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE active"
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
        // The advisory lock is held until commit, so reading the head and
        // inserting after it cannot interleave with another writer, in this
        // replica or any other.
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *transaction)
            .await?;
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        let rows = audit_query::<sqlx::Postgres>(filter, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        let records = rows.iter().map(decode_record).collect::<Result<Vec<_>>>()?;
        Ok(into_page(records, limit))
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, request_id, subject, org, method, action, resource, decision, \
             determining, detail, prev_hash, hash FROM audit_records WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_record).collect()
    }

    async fn prune_audit(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64> {
        audit_retention::postgres_prune(&self.pool, AUDIT_LOCK, before, limit).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>> {
        audit_retention::postgres_checkpoint(&self.pool).await
    }

    async fn count_audit(&self) -> Result<u64> {
        audit_retention::postgres_count(&self.pool).await
    }
}
