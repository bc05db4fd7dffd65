//! Retention of the audit chain (issue 15): what every store checks before
//! it prunes.
//!
//! Pruning deletes a prefix of the chain: the oldest records, up to a batch,
//! that are older than the cut-off, never the newest record (appends read
//! the chain's head from the table, so the head stays). In the same
//! transaction the store moves the one-row `audit_checkpoint` to the seq and
//! hash of the newest record deleted, so `AuditLog::verify` starts from
//! there. The prefix is checked before it goes ([`prunable_prefix`]): it
//! must continue the chain from the previous checkpoint (or the genesis
//! hash), so pruning never erases the evidence of an edit or a deleted
//! record; a broken prefix is refused with `AuditBroken` and nothing is
//! deleted. Appends and prunes take the same lock (SQLite `BEGIN
//! IMMEDIATE`, the PostgreSQL advisory lock), so the head a prune keeps is
//! the head.

use chrono::{DateTime, Utc};

use crate::audit::{chain_hash, AuditCheckpoint, AuditRecord, GENESIS_HASH};
use crate::error::{PolicyError, Result};

/// Checks that `records` (the oldest stored records but the newest, oldest
/// first) continue the chain after `checkpoint`, and returns how many of
/// them are older than `before` (all for `None`): the prefix to delete.
pub fn prunable_prefix(
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
