//! [`AuditSink`]: the hot path's way into the audit log. Decisions are made
//! on every gateway call; appending each one to the hash chain inside the
//! request would put a serialised database transaction on the critical
//! path. Instead the request hands the entry to a bounded channel and one
//! writer task appends entries in order.
//!
//! Nothing is lost: a full channel makes the request wait (back-pressure)
//! rather than drop the entry, and [`AuditWriter::finish`] waits, after the
//! server stopped and dropped every sink, until the writer has appended all
//! that was queued. The writer appends whatever is queued (up to
//! `MAX_BATCH`) in one transaction, so the chain's commit cost is paid per
//! batch, not per decision. An append that fails (database down) is retried
//! a few times, then each entry is logged as lost with its request id.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::{AuditEntry, AuditLog};

/// Default capacity of the queue between requests and the writer.
pub const DEFAULT_AUDIT_QUEUE: usize = 8192;

/// How many times a failed append is tried before its entries are logged as lost.
const APPEND_ATTEMPTS: u32 = 5;

/// The most queued entries appended in one transaction.
const MAX_BATCH: usize = 256;

/// Queues audit entries for the writer task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<AuditEntry>,
}

/// The writer task; [`AuditWriter::finish`] drains it.
#[derive(Debug)]
pub struct AuditWriter {
    task: JoinHandle<u64>,
}

// === impl AuditSink ===

impl AuditSink {
    /// Starts the writer task over `log` with a queue of `capacity` entries.
    pub fn spawn(log: AuditLog, capacity: usize) -> (AuditSink, AuditWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(write_all(log, receiver));
        (AuditSink { sender }, AuditWriter { task })
    }

    /// Queues `entry`; waits while the queue is full.
    pub async fn record(&self, entry: AuditEntry) {
        let entry = match self.sender.try_send(entry) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(entry)) => entry,
            Err(mpsc::error::TrySendError::Closed(entry)) => {
                tracing::error!(request_id = ?entry.request_id, action = %entry.action, "audit writer stopped; entry not recorded");
                return;
            }
        };
        if let Err(error) = self.sender.send(entry).await {
            tracing::error!(request_id = ?error.0.request_id, action = %error.0.action, "audit writer stopped; entry not recorded");
        }
    }
}

// === impl AuditWriter ===

impl AuditWriter {
    /// Waits until every sink is dropped and every queued entry is appended;
    /// returns how many entries were appended.
    pub async fn finish(self) -> u64 {
        self.task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "audit writer task failed");
            0
        })
    }
}

async fn write_all(log: AuditLog, mut receiver: mpsc::Receiver<AuditEntry>) -> u64 {
    let mut written = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // `recv_many` returns 0 only once every sender is gone and the queue is
    // empty; otherwise it takes whatever is queued, up to `MAX_BATCH`, so an
    // idle gateway commits each decision at once and a busy one commits
    // many per transaction.
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        written += append_with_retry(&log, &batch).await;
        batch.clear();
    }
    written
}

/// Appends `batch` in one transaction, retrying the whole batch (it is all
/// or none); returns how many entries were written.
async fn append_with_retry(log: &AuditLog, batch: &[AuditEntry]) -> u64 {
    for attempt in 1..=APPEND_ATTEMPTS {
        match log.append_batch(batch).await {
            Ok(records) => return records.len() as u64,
            Err(error) if attempt < APPEND_ATTEMPTS => {
                tracing::warn!(%error, attempt, entries = batch.len(), "audit append failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(error) => {
                for entry in batch {
                    tracing::error!(%error, request_id = ?entry.request_id, action = %entry.action, resource = %entry.resource, "audit append failed; entry lost");
                }
            }
        }
    }
    0
}
