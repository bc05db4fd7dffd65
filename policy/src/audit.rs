//! The tamper-evident audit log: record types, the hash chain and its
//! verification.
//!
//! Each record stores `hash = SHA-256(prev_hash || canonical JSON of the
//! record)`, hex-encoded, where the canonical JSON has sorted keys and the
//! timestamp as a fixed-width RFC 3339 string with microseconds. Editing a
//! record breaks its own hash; deleting one breaks the `seq` sequence and the
//! next record's `prev_hash`. (Deleting the newest records is only detected
//! against a head hash kept elsewhere, e.g. the last `verify` output.)
//! Records never hold credentials or message bodies: callers put only
//! identifiers in `detail`. Retention deletes the oldest records and keeps
//! an [`AuditCheckpoint`] (seq and hash of the newest one deleted), from
//! which [`AuditLog::verify`] continues the chain and which it reports.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use convergio_schemas::Principal;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{method_name, Action, Decision, Resource};
use crate::error::{PolicyError, Result};
use crate::store::{Store, MAX_AUDIT_PAGE};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to append (the store assigns `seq` and the hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened (stored with microsecond precision).
    pub at: DateTime<Utc>,
    /// The request id, when there is a request.
    pub request_id: Option<String>,
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    pub org: Option<String>,
    /// How the principal authenticated (`jwt`, `api_key`, …).
    pub method: String,
    /// What was done or asked (`send_message`, `policy.put`, `trust.set`).
    pub action: String,
    /// On what (`agent:acme/x`, `policy`).
    pub resource: String,
    /// `allow`, `deny`, or the outcome of a change (`applied`).
    pub decision: String,
    /// The policies that determined the decision.
    pub determining: Vec<String>,
    /// Identifiers and small facts; never credentials or message bodies.
    pub detail: Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, dense.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The previous record's hash (`GENESIS_HASH` for seq 1).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Filters and cursor for an audit query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only this principal subject.
    pub principal: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this decision.
    pub decision: Option<String>,
    /// Only records at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only records before this instant.
    pub until: Option<DateTime<Utc>>,
    /// The cursor: only records with a greater `seq`.
    pub after: Option<i64>,
    /// Page size (default 100, at most 500).
    pub limit: Option<i64>,
}

/// One page of audit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The records, oldest first.
    pub records: Vec<AuditRecord>,
    /// The cursor for the next page, when there may be more.
    pub next: Option<i64>,
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedChain {
    /// How many records were checked.
    pub records: i64,
    /// The hash of the newest record (`GENESIS_HASH` if empty); keep it to
    /// detect truncation later.
    pub head: String,
    /// The first seq checked: 1, or the one after the retention checkpoint.
    #[serde(default)]
    pub first_seq: i64,
    /// The last seq checked (`first_seq - 1` when nothing was).
    #[serde(default)]
    pub last_seq: i64,
    /// Where retention pruned the chain before `first_seq`, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<AuditCheckpoint>,
}

/// Where the pruned prefix of the chain ends (retention, issue 15): the
/// seq and hash of the newest record deleted. Verification continues the
/// chain from it as from a genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The newest pruned record's seq.
    pub seq: i64,
    /// Its hash: the `prev_hash` the next record must carry.
    pub hash: String,
    /// Its time.
    pub at: DateTime<Utc>,
    /// When this checkpoint was written (the last prune).
    pub pruned_at: DateTime<Utc>,
    /// Records pruned in total.
    pub pruned: i64,
}

// === impl AuditEntry ===

impl AuditEntry {
    /// An entry for an authorisation decision.
    pub fn decision(
        request_id: Option<String>,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        decision: &Decision,
    ) -> Self {
        Self {
            at: Utc::now(),
            request_id,
            subject: principal.subject.clone(),
            org: principal.org.clone(),
            method: method_name(principal.method).to_owned(),
            action: action.as_str().to_owned(),
            resource: resource.describe(),
            decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
            determining: decision.determining.clone(),
            detail: Value::Object(Map::new()),
        }
    }

    /// An entry for a change (policy, trust, registry) made by `principal`.
    pub fn change(
        request_id: Option<String>,
        principal: &Principal,
        action: &str,
        resource: &str,
        detail: Value,
    ) -> Self {
        Self {
            at: Utc::now(),
            request_id,
            subject: principal.subject.clone(),
            org: principal.org.clone(),
            method: method_name(principal.method).to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            decision: "applied".to_owned(),
            determining: Vec::new(),
            detail,
        }
    }
}

/// The stored form of a timestamp: fixed width, so text order is time order.
pub fn format_at(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored timestamp.
pub fn parse_at(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| PolicyError::corrupt_because(format!("timestamp {text:?}"), error))
}

/// The canonical JSON of a record's content (everything but the hashes):
/// keys sorted at every level, no whitespace.
pub fn canonical_json(seq: i64, entry: &AuditEntry) -> String {
    let mut out = Vec::with_capacity(384);
    write_canonical_json(&mut out, seq, entry);
    // serde_json writes UTF-8 only; the lossy branch cannot be taken.
    String::from_utf8(out)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// Writes [`canonical_json`] into `out`, field by field (issue #25: the
/// writer hashes every record, and building a JSON document of clones for
/// each cost more than the hash). The output is byte for byte what
/// serialising a sorted `serde_json` object gives, so stored hashes verify.
fn write_canonical_json(out: &mut Vec<u8>, seq: i64, entry: &AuditEntry) {
    out.extend_from_slice(b"{\"action\":");
    write_json(out, entry.action.as_str());
    out.extend_from_slice(b",\"at\":");
    write_json(out, format_at(&entry.at).as_str());
    out.extend_from_slice(b",\"decision\":");
    write_json(out, entry.decision.as_str());
    out.extend_from_slice(b",\"determining\":");
    write_json(out, &entry.determining);
    out.extend_from_slice(b",\"detail\":");
    write_sorted(out, &entry.detail);
    out.extend_from_slice(b",\"method\":");
    write_json(out, entry.method.as_str());
    out.extend_from_slice(b",\"org\":");
    write_json(out, &entry.org);
    out.extend_from_slice(b",\"request_id\":");
    write_json(out, &entry.request_id);
    out.extend_from_slice(b",\"resource\":");
    write_json(out, entry.resource.as_str());
    out.extend_from_slice(b",\"seq\":");
    write_json(out, &seq);
    out.extend_from_slice(b",\"subject\":");
    write_json(out, entry.subject.as_str());
    out.push(b'}');
}

/// Appends `value` as compact JSON. Strings, numbers, options of them and
/// JSON values cannot fail to serialise, and a `Vec` cannot fail to grow.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _infallible = serde_json::to_writer(&mut *out, value);
}

/// Appends `value` with every object's keys sorted, recursively.
fn write_sorted(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_json(out, key.as_str());
                out.push(b':');
                if let Some(inner) = object.get(key) {
                    write_sorted(out, inner);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_sorted(out, item);
            }
            out.push(b']');
        }
        scalar => write_json(out, scalar),
    }
}

/// `hex(SHA-256(prev_hash || canonical JSON))`.
pub fn chain_hash(prev_hash: &str, seq: i64, entry: &AuditEntry) -> String {
    let mut input = Vec::with_capacity(prev_hash.len() + 384);
    input.extend_from_slice(prev_hash.as_bytes());
    write_canonical_json(&mut input, seq, entry);
    hex::encode(digest(&SHA256, &input))
}

/// Truncates `at` to what storage keeps, so the hash computed before the
/// insert equals the one recomputed after a read.
pub fn stored_precision(at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    parse_at(&format_at(&at))
}

/// The records `entries` become when appended, in order, after the chain's
/// newest stored record `head` (its seq and hash; `None` while the chain is
/// empty): each time cut to [`stored_precision`], so the hash computed now
/// is the one recomputed from the stored row; `seq` dense from the head's;
/// each `prev_hash` the hash of the record before it. The store reads the
/// head and inserts the records under one lock.
pub fn chain_after(
    head: Option<(i64, String)>,
    entries: &[AuditEntry],
) -> Result<Vec<AuditRecord>> {
    let (mut seq, mut prev_hash) = head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut entry = entry.clone();
        entry.at = stored_precision(entry.at)?;
        seq += 1;
        let hash = chain_hash(&prev_hash, seq, &entry);
        records.push(AuditRecord {
            seq,
            entry,
            prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        });
    }
    Ok(records)
}

/// The audit log over a store.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
}

// === impl AuditLog ===

impl AuditLog {
    /// An audit log writing to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Appends an entry.
    pub async fn append(&self, entry: &AuditEntry) -> Result<AuditRecord> {
        self.store.append_audit(entry).await
    }

    /// Appends `entries` in order in one transaction (all or none).
    pub async fn append_batch(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>> {
        self.store.append_audit_batch(entries).await
    }

    /// Records an authorisation decision.
    pub async fn record_decision(
        &self,
        request_id: Option<String>,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        decision: &Decision,
    ) -> Result<AuditRecord> {
        self.append(&AuditEntry::decision(
            request_id, principal, action, resource, decision,
        ))
        .await
    }

    /// A filtered page.
    pub async fn query(&self, filter: &AuditFilter) -> Result<AuditPage> {
        self.store.query_audit(filter).await
    }

    /// Retention: deletes up to `limit` of the oldest records older than
    /// `before` (any age for `None`), never the newest, and moves the
    /// checkpoint past them (see `Store::prune_audit`).
    pub async fn prune(&self, before: Option<DateTime<Utc>>, limit: i64) -> Result<u64> {
        self.store.prune_audit(before, limit).await
    }

    /// How many records are stored.
    pub async fn count(&self) -> Result<u64> {
        self.store.count_audit().await
    }

    /// Where the pruned prefix ends, if anything was pruned.
    pub async fn checkpoint(&self) -> Result<Option<AuditCheckpoint>> {
        self.store.audit_checkpoint().await
    }

    /// Walks the whole chain, from the retention checkpoint when a prefix
    /// was pruned (else from seq 1); fails with `AuditBroken { seq }` at the
    /// first record that is missing, edited or out of order.
    pub async fn verify(&self) -> Result<VerifiedChain> {
        let mut checkpoint = self.store.audit_checkpoint().await?;
        // A prune between reading the checkpoint and the first records
        // would look like missing records: read the checkpoint again and
        // start over from it when it moved.
        for _ in 0..4 {
            let verified = self.verify_from(checkpoint.clone()).await;
            if verified.is_ok() {
                return verified;
            }
            let now = self.store.audit_checkpoint().await?;
            if now == checkpoint {
                return verified;
            }
            checkpoint = now;
        }
        self.verify_from(checkpoint).await
    }

    async fn verify_from(&self, checkpoint: Option<AuditCheckpoint>) -> Result<VerifiedChain> {
        let first_seq = checkpoint
            .as_ref()
            .map_or(1, |checkpoint| checkpoint.seq + 1);
        let mut expected_seq = first_seq;
        let mut prev_hash = checkpoint.as_ref().map_or_else(
            || GENESIS_HASH.to_owned(),
            |checkpoint| checkpoint.hash.clone(),
        );
        loop {
            let (batch, undecodable) = match self
                .store
                .audit_range(expected_seq - 1, MAX_AUDIT_PAGE)
                .await
            {
                Ok(batch) => (batch, None),
                // The rows before the undecodable one still need checking
                // (an earlier edit is the first break): read just those.
                Err(PolicyError::CorruptAuditRecord { seq, reason }) => {
                    // With a gap before it, `seq - expected_seq` rows reach
                    // the undecodable one again: read fewer until they do
                    // not (the gap then shows as a missing record).
                    let mut limit = (seq - expected_seq).max(0);
                    let before = loop {
                        match self.store.audit_range(expected_seq - 1, limit).await {
                            Ok(before) => break before,
                            Err(PolicyError::CorruptAuditRecord { .. }) if limit > 0 => {
                                limit -= 1;
                            }
                            Err(error) => return Err(error),
                        }
                    };
                    (before, Some((seq, reason)))
                }
                Err(error) => return Err(error),
            };
            if batch.is_empty() && undecodable.is_none() {
                break;
            }
            for record in batch {
                if record.seq != expected_seq {
                    return Err(PolicyError::AuditBroken {
                        seq: expected_seq,
                        reason: format!("record missing (next stored seq is {})", record.seq),
                    });
                }
                if record.prev_hash != prev_hash {
                    return Err(PolicyError::AuditBroken {
                        seq: record.seq,
                        reason: "prev_hash does not match the previous record".to_owned(),
                    });
                }
                if chain_hash(&prev_hash, record.seq, &record.entry) != record.hash {
                    return Err(PolicyError::AuditBroken {
                        seq: record.seq,
                        reason: "content does not match its hash".to_owned(),
                    });
                }
                prev_hash = record.hash;
                expected_seq += 1;
            }
            if let Some((seq, reason)) = undecodable {
                // A gap before the undecodable record is the earlier break.
                let seq = seq.min(expected_seq);
                return Err(PolicyError::AuditBroken { seq, reason });
            }
        }
        Ok(VerifiedChain {
            records: expected_seq - first_seq,
            head: prev_hash,
            first_seq,
            last_seq: expected_seq - 1,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The canonical form as it was first written (a sorted `serde_json`
    /// object of clones): stored chains were hashed over this text.
    fn reference_canonical_json(seq: i64, entry: &AuditEntry) -> String {
        fn sorted(value: &Value) -> Value {
            match value {
                Value::Object(object) => {
                    let mut keys: Vec<&String> = object.keys().collect();
                    keys.sort();
                    let mut out = Map::new();
                    for key in keys {
                        if let Some(inner) = object.get(key) {
                            out.insert(key.clone(), sorted(inner));
                        }
                    }
                    Value::Object(out)
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        let mut object = Map::new();
        object.insert("action".into(), Value::from(entry.action.clone()));
        object.insert("at".into(), Value::from(format_at(&entry.at)));
        object.insert("decision".into(), Value::from(entry.decision.clone()));
        object.insert("determining".into(), Value::from(entry.determining.clone()));
        object.insert("detail".into(), sorted(&entry.detail));
        object.insert("method".into(), Value::from(entry.method.clone()));
        object.insert("org".into(), Value::from(entry.org.clone()));
        object.insert("request_id".into(), Value::from(entry.request_id.clone()));
        object.insert("resource".into(), Value::from(entry.resource.clone()));
        object.insert("seq".into(), Value::from(seq));
        object.insert("subject".into(), Value::from(entry.subject.clone()));
        Value::Object(object).to_string()
    }

    #[test]
    fn canonical_json_is_unchanged_byte_for_byte() {
        let at = parse_at("2026-12-03T23:59:59.123456Z").expect("time");
        let plain = AuditEntry {
            at,
            request_id: Some("r-1".to_owned()),
            subject: "alice".to_owned(),
            org: Some("acme.example".to_owned()),
            method: "jwt".to_owned(),
            action: "send_message".to_owned(),
            resource: "agent:convergio://agents/echo".to_owned(),
            decision: "allow".to_owned(),
            determining: vec!["internal-same-org".to_owned()],
            detail: json!({"skill": "x", "a2a_method": "SendMessage"}),
        };
        let awkward = AuditEntry {
            request_id: None,
            org: None,
            subject: "quote \" back \\ nl \n tab \t bell \u{7} é 漢 🦀".to_owned(),
            determining: Vec::new(),
            detail: json!({"z": [{"b": 1, "a": null}, 2.5, -3, true], "a": {"y": "\u{0}", "x": []},
                "m": {}}),
            ..plain.clone()
        };
        for (seq, entry) in [(1, &plain), (i64::MAX, &awkward), (-7, &awkward)] {
            assert_eq!(
                canonical_json(seq, entry),
                reference_canonical_json(seq, entry)
            );
        }
        let mut input = GENESIS_HASH.as_bytes().to_vec();
        input.extend_from_slice(reference_canonical_json(1, &plain).as_bytes());
        let expected: String = digest(&SHA256, &input)
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(chain_hash(GENESIS_HASH, 1, &plain), expected);
    }
}
