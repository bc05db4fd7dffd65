//! Outcomes of idempotent cross-organisation calls (issue 18): the
//! [`PeerCallStore`] trait over the `peer_call_outcomes` table of migration
//! 0011, implemented on both backends by `convergio-store`
//! (`PeerCalls`).
//!
//! A peer's graph node call carries an idempotency key; the receiving
//! gateway stores the first successful answer under (peer, agent, subject,
//! key) and answers a repeat of the key with it instead of running the
//! agent again. The first write wins (insert-or-nothing on the primary
//! key), so two replicas answering the same key keep one outcome. Rows are
//! kept for a retention window and pruned by the gateway's pruner.

use async_trait::async_trait;
use serde_json::Value;

use crate::Result;

/// Who made an idempotent call, to which agent, with which key: the
/// primary key of a stored outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCallKey {
    /// The verified peer organisation.
    pub peer: String,
    /// The agent called (its gateway name).
    pub agent: String,
    /// The calling subject the peer asserted.
    pub subject: String,
    /// The caller's idempotency key.
    pub key: String,
}

/// Durable storage of idempotent peer calls' outcomes.
#[async_trait]
pub trait PeerCallStore: Send + Sync + 'static {
    /// The stored outcome of `key`, if any.
    async fn outcome(&self, key: &PeerCallKey) -> Result<Option<Value>>;

    /// Stores the outcome of `key` at `created_at` (Unix seconds) unless
    /// one is stored already; `Ok(false)` when it was (the first wins).
    async fn remember_outcome(
        &self,
        key: &PeerCallKey,
        outcome: &Value,
        created_at: i64,
    ) -> Result<bool>;

    /// Deletes up to `limit` of the oldest outcomes stored before
    /// `before` (Unix seconds; any age for `None`); returns how many.
    async fn prune_outcomes(&self, before: Option<i64>, limit: u32) -> Result<u64>;

    /// How many outcomes are stored.
    async fn count_outcomes(&self) -> Result<u64>;
}
