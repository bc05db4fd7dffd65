//! Retention of the audit chain (issue 15), on both backends.
//!
//! Pruning deletes a prefix of the chain: the oldest records, up to a batch,
//! that are older than the cut-off, never the newest record (appends read
//! the chain's head from the table, so the head stays). In the same
//! transaction it moves the one-row `audit_checkpoint` to the seq and hash
//! of the newest record deleted, so `AuditLog::verify` starts from there.
//! The prefix is checked before it goes: it must continue the chain from
//! the previous checkpoint (or the genesis hash), so pruning never erases
//! the evidence of an edit or a deleted record; a broken prefix is refused
//! with `AuditBroken` and nothing is deleted. Appends and prunes take the
//! same lock (SQLite `BEGIN IMMEDIATE`, the PostgreSQL advisory lock), so
//! the head a prune keeps is the head.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::decode_record;
use crate::audit::{chain_hash, format_at, parse_at, AuditCheckpoint, AuditRecord, GENESIS_HASH};
use crate::error::{PolicyError, Result};

const RECORD_COLUMNS: &str = "seq, at, request_id, subject, org, method, action, resource, \
     decision, determining, detail, prev_hash, hash";

/// Checks that `records` (oldest first) continue the chain after
/// `checkpoint`, and returns how many of them are older than `before`.
fn prunable_prefix(
    checkpoint: Option<&AuditCheckpoint>,
    records: &[AuditRecord],
    before: Option<&DateTime<Utc>>,
) -> Result<usize> {
    let first_seq = checkpoint.map_or(1, |checkpoint| checkpoint.seq + 1);
    let mut prev_hash = checkpoint.map_or(GENESIS_HASH, |checkpoint| checkpoint.hash.as_str());
    for (prefix, (expected_seq, record)) in (first_seq..).zip(records).enumerate() {
        if before.is_some_and(|before| record.entry.at >= *before) {
            return Ok(prefix);
        }
        let broken = |reason: &str| PolicyError::AuditBroken {
            seq: expected_seq,
            reason: format!("{reason}; not pruned"),
        };
        if record.seq != expected_seq {
            return Err(broken(&format!(
                "record missing (next stored seq is {})",
                record.seq
            )));
        }
        if record.prev_hash != prev_hash {
            return Err(broken("prev_hash does not match the previous record"));
        }
        if chain_hash(prev_hash, record.seq, &record.entry) != record.hash {
            return Err(broken("content does not match its hash"));
        }
        prev_hash = &record.hash;
    }
    Ok(records.len())
}

fn decode_checkpoint<'r, R>(row: &'r R) -> Result<AuditCheckpoint>
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let at: String = row.try_get("at")?;
    let pruned_at: String = row.try_get("pruned_at")?;
    Ok(AuditCheckpoint {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        at: parse_at(&at)?,
        pruned_at: parse_at(&pruned_at)?,
        pruned: row.try_get("pruned")?,
    })
}

/// The checkpoint, if any prefix was ever pruned (SQLite).
pub(super) async fn sqlite_checkpoint(
    executor: impl sqlx::SqliteExecutor<'_>,
) -> Result<Option<AuditCheckpoint>> {
    let row = sqlx::query("SELECT seq, hash, at, pruned_at, pruned FROM audit_checkpoint")
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(decode_checkpoint).transpose()
}

/// The checkpoint, if any prefix was ever pruned (PostgreSQL).
pub(super) async fn postgres_checkpoint(
    executor: impl sqlx::PgExecutor<'_>,
) -> Result<Option<AuditCheckpoint>> {
    let row = sqlx::query("SELECT seq, hash, at, pruned_at, pruned FROM audit_checkpoint")
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(decode_checkpoint).transpose()
}

/// Prunes up to `limit` of the oldest records older than `before` (SQLite).
pub(super) async fn sqlite_prune(
    pool: &sqlx::SqlitePool,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<u64> {
    let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
    let checkpoint = sqlite_checkpoint(&mut *transaction).await?;
    let rows = sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records \
         WHERE seq < (SELECT MAX(seq) FROM audit_records) ORDER BY seq LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(&mut *transaction)
    .await?;
    let records = rows.iter().map(decode_record).collect::<Result<Vec<_>>>()?;
    let prefix = prunable_prefix(checkpoint.as_ref(), &records, before.as_ref())?;
    let Some(last) = prefix.checked_sub(1).and_then(|last| records.get(last)) else {
        return Ok(0);
    };
    let deleted = sqlx::query("DELETE FROM audit_records WHERE seq <= ?")
        .bind(last.seq)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO audit_checkpoint (id, seq, hash, at, pruned_at, pruned) \
         VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, \
         hash = excluded.hash, at = excluded.at, pruned_at = excluded.pruned_at, \
         pruned = audit_checkpoint.pruned + excluded.pruned",
    )
    .bind(last.seq)
    .bind(&last.hash)
    .bind(format_at(&last.entry.at))
    .bind(format_at(&Utc::now()))
    .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// Prunes up to `limit` of the oldest records older than `before`
/// (PostgreSQL), under the appenders' advisory lock `lock`.
pub(super) async fn postgres_prune(
    pool: &sqlx::PgPool,
    lock: i64,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<u64> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock)
        .execute(&mut *transaction)
        .await?;
    let checkpoint = postgres_checkpoint(&mut *transaction).await?;
    let rows = sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records \
         WHERE seq < (SELECT MAX(seq) FROM audit_records) ORDER BY seq LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *transaction)
    .await?;
    let records = rows.iter().map(decode_record).collect::<Result<Vec<_>>>()?;
    let prefix = prunable_prefix(checkpoint.as_ref(), &records, before.as_ref())?;
    let Some(last) = prefix.checked_sub(1).and_then(|last| records.get(last)) else {
        return Ok(0);
    };
    let deleted = sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
        .bind(last.seq)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO audit_checkpoint (id, seq, hash, at, pruned_at, pruned) \
         VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, \
         hash = excluded.hash, at = excluded.at, pruned_at = excluded.pruned_at, \
         pruned = audit_checkpoint.pruned + excluded.pruned",
    )
    .bind(last.seq)
    .bind(&last.hash)
    .bind(format_at(&last.entry.at))
    .bind(format_at(&Utc::now()))
    .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// How many records the chain holds now (SQLite).
pub(super) async fn sqlite_count(pool: &sqlx::SqlitePool) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_records")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// How many records the chain holds now (PostgreSQL).
pub(super) async fn postgres_count(pool: &sqlx::PgPool) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_records")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}
