//! [`PeerCalls`]: the `peer_call_outcomes` table (migration 0011) on either
//! backend. One statement per operation; the first outcome stored for a
//! key wins (insert-or-nothing on the primary key), so replicas agree.

use async_trait::async_trait;
use convergio_registry::peer_calls::{PeerCallKey, PeerCallStore};
use convergio_registry::{RegistryError, Result};
use serde_json::Value;

use super::on_pool;
use crate::{Db, DbResult};

/// Outcomes of idempotent peer calls in the process's database.
#[derive(Debug, Clone)]
pub struct PeerCalls {
    db: Db,
}

// === impl PeerCalls ===

impl PeerCalls {
    /// The outcome store of `db`.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

#[async_trait]
impl PeerCallStore for PeerCalls {
    async fn outcome(&self, key: &PeerCallKey) -> Result<Option<Value>> {
        let statement = self.db.backend().sql(
            "SELECT outcome FROM peer_call_outcomes \
             WHERE peer = $1 AND agent = $2 AND subject = $3 AND call_key = $4",
        );
        let text: Option<String> = on_pool!(self.db, |pool| sqlx::query_scalar(&statement)
            .bind(&key.peer)
            .bind(&key.agent)
            .bind(&key.subject)
            .bind(&key.key)
            .fetch_optional(pool)
            .await
            .db("reading a peer call outcome")?);
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| {
                RegistryError::corrupt_because("a stored peer call outcome is not JSON", error)
            })
        })
        .transpose()
    }

    async fn remember_outcome(
        &self,
        key: &PeerCallKey,
        outcome: &Value,
        created_at: i64,
    ) -> Result<bool> {
        let statement = self.db.backend().sql(
            "INSERT INTO peer_call_outcomes (peer, agent, subject, call_key, outcome, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (peer, agent, subject, call_key) DO NOTHING",
        );
        let inserted = on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(&key.peer)
            .bind(&key.agent)
            .bind(&key.subject)
            .bind(&key.key)
            .bind(outcome.to_string())
            .bind(created_at)
            .execute(pool)
            .await
            .db("storing a peer call outcome")?
            .rows_affected());
        Ok(inserted > 0)
    }

    async fn prune_outcomes(&self, before: Option<i64>, limit: u32) -> Result<u64> {
        let statement = self.db.backend().sql(
            "DELETE FROM peer_call_outcomes WHERE (peer, agent, subject, call_key) IN \
             (SELECT peer, agent, subject, call_key FROM peer_call_outcomes \
             WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        );
        Ok(on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .db("pruning peer call outcomes")?
            .rows_affected()))
    }

    async fn count_outcomes(&self) -> Result<u64> {
        let rows: i64 = on_pool!(self.db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM peer_call_outcomes"
        )
        .fetch_one(pool)
        .await
        .db("counting peer call outcomes")?);
        Ok(u64::try_from(rows).unwrap_or_default())
    }
}
