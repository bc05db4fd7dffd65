//! Resumable streams (issue 24): the [`StreamEventStore`] trait over the
//! `stream_events` table of migration 0015, implemented on both backends by
//! `convergio-store` (`StreamEvents`).
//!
//! The gateway records each event of a task's stream as it relays it,
//! numbered from 1 per task, in the shared database, so a caller whose
//! connection dropped asks any replica for what followed the last event id
//! it saw. The number is taken in the insert itself (one more than the
//! task's highest), so two streams of one task (a follow-up message to a
//! task that asked for input) never share a number. Rows are kept for a
//! retention window and pruned by the gateway's pruner.

use async_trait::async_trait;
use serde_json::Value;

use crate::Result;

/// One recorded event of a task's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Its number within the task's events, from 1.
    pub seq: u64,
    /// The A2A 1.0 `StreamResponse` as the caller was sent it, or the
    /// gateway's end-of-stream marker (see the gateway's `resume.rs`).
    pub event: Value,
}

/// Durable storage of tasks' stream events.
#[async_trait]
pub trait StreamEventStore: Send + Sync + 'static {
    /// Appends `event` to `task_id`'s events at `created_at` (Unix
    /// seconds); returns the number it was given.
    async fn append_event(&self, task_id: &str, event: &Value, created_at: i64) -> Result<u64>;

    /// Up to `limit` of `task_id`'s events numbered above `after`, in order.
    async fn events_after(&self, task_id: &str, after: u64, limit: u32)
        -> Result<Vec<StreamEvent>>;

    /// The highest number `task_id`'s events reached (0 for none).
    async fn last_seq(&self, task_id: &str) -> Result<u64>;

    /// Deletes up to `limit` of the oldest events stored before `before`
    /// (Unix seconds; any age for `None`); returns how many.
    async fn prune_events(&self, before: Option<i64>, limit: u32) -> Result<u64>;

    /// How many events are stored.
    async fn count_events(&self) -> Result<u64>;
}
