//! [`AuditSink`]: the hot path's way into the audit log. Decisions are made
//! on every gateway call; appending each one to the hash chain inside the
//! request would put a serialised database transaction on the critical
//! path. Instead the request hands the entry to a bounded channel and one
//! writer task appends entries in order.
//!
//! Nothing is lost: a full channel makes the request wait (back-pressure)
//! rather than drop the entry, and [`AuditWriter::finish`], called once the
//! server stopped, closes the queue and waits until the writer has appended
//! all that was queued. Closing does not wait for every sink to be dropped:
//! long-lived parts of the server (the registry's change hook, federation,
//! background tasks) hold clones until the process ends, and waiting for
//! them made every stop take the whole drain bound (issue #14). An entry
//! offered after the close is refused and logged as not recorded; the
//! server stops what could still produce entries before it closes the
//! queue. The writer appends whatever is queued (up to
//! `MAX_BATCH`) in one transaction, so the chain's commit cost is paid per
//! batch, not per decision; under load (the last commit was less than
//! [`LINGER`] ago) it first lets the batch fill for the rest of that time,
//! so a busy gateway commits about once per `LINGER` instead of once per
//! handful of decisions, and an idle one still commits each at once. An
//! append that fails (database down) is retried a few times, then each
//! entry is logged as lost with its request id.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::audit::{AuditEntry, AuditLog};

/// Default capacity of the queue between requests and the writer.
pub const DEFAULT_AUDIT_QUEUE: usize = 8192;

/// How many times a failed append is tried before its entries are logged as lost.
const APPEND_ATTEMPTS: u32 = 5;

/// The most queued entries appended in one transaction.
const MAX_BATCH: usize = 256;

/// Under load, the shortest time between two commits: a decision made
/// within it of the last commit waits at most this long to be written.
pub const LINGER: Duration = Duration::from_millis(2);

/// Queues audit entries for the writer task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<AuditEntry>,
}

/// The writer task; [`AuditWriter::finish`] closes the queue and drains it.
#[derive(Debug)]
pub struct AuditWriter {
    task: JoinHandle<u64>,
    close: oneshot::Sender<()>,
}

// === impl AuditSink ===

impl AuditSink {
    /// Starts the writer task over `log` with a queue of `capacity` entries.
    pub fn spawn(log: AuditLog, capacity: usize) -> (AuditSink, AuditWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(write_all(log, receiver, closed));
        (AuditSink { sender }, AuditWriter { task, close })
    }

    /// Entries queued and not yet written (the `/metrics` queue depth).
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Queues `entry` if there is room now, without waiting; hands it back
    /// (`Some`) when the queue is full, for the caller to wait with
    /// [`AuditSink::record`] off its own path. Callers that cannot await (a
    /// synchronous hook) use this first, so their entries are queued in the
    /// order they happened.
    pub fn try_record(&self, entry: AuditEntry) -> Option<AuditEntry> {
        match self.sender.try_send(entry) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(entry)) => Some(entry),
            Err(mpsc::error::TrySendError::Closed(entry)) => {
                tracing::error!(request_id = ?entry.request_id, action = %entry.action, "audit writer stopped; entry not recorded");
                None
            }
        }
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
    /// Closes the queue (sinks still held refuse new entries from now on),
    /// waits until every entry queued before is appended, and returns how
    /// many entries the writer appended in all. Dropping the writer instead
    /// leaves the queue open for as long as any sink lives.
    pub async fn finish(self) -> u64 {
        // The writer may already be gone (every sink dropped); nothing to close then.
        let _ = self.close.send(());
        self.task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "audit writer task failed");
            0
        })
    }
}

async fn write_all(
    log: AuditLog,
    mut receiver: mpsc::Receiver<AuditEntry>,
    closed: oneshot::Receiver<()>,
) -> u64 {
    let mut written = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Watched until it fires (or the writer handle is dropped unfinished,
    // which leaves the queue open to its sinks).
    let mut closed = Some(closed);
    let mut last_commit: Option<tokio::time::Instant> = None;
    loop {
        // `recv_many` returns 0 only once the queue is closed (explicitly,
        // or by every sender going) and empty; otherwise it takes whatever
        // is queued, up to `MAX_BATCH`, so an idle gateway commits each
        // decision at once and a busy one commits many per transaction. It
        // is cancel safe, so losing the race to the close signal loses nothing.
        let received = match closed.as_mut() {
            Some(signal) => tokio::select! {
                received = receiver.recv_many(&mut batch, MAX_BATCH) => received,
                outcome = signal => {
                    closed = None;
                    if outcome.is_ok() {
                        // New sends fail from here; what is queued stays readable.
                        receiver.close();
                    }
                    continue;
                }
            },
            None => receiver.recv_many(&mut batch, MAX_BATCH).await,
        };
        if received == 0 {
            break;
        }
        if let Some(at) = last_commit.filter(|at| at.elapsed() < LINGER) {
            tokio::time::sleep_until(at + LINGER).await;
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        written += append_with_retry(&log, &batch).await;
        last_commit = Some(tokio::time::Instant::now());
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
