//! [`StreamEvents`]: the `stream_events` table (migration 0015) on either
//! backend. An append takes its number in the insert (one above the task's
//! highest); when two appends to one task race on PostgreSQL, the loser's
//! insert does nothing and it tries again with the next number.

use async_trait::async_trait;
use convergio_registry::stream_events::{StreamEvent, StreamEventStore};
use convergio_registry::{RegistryError, Result};
use serde_json::Value;

use super::on_pool;
use crate::{Db, DbResult};

/// How many times an append retries a number another append took first.
const APPEND_ATTEMPTS: usize = 64;

/// Tasks' stream events in the process's database.
#[derive(Debug, Clone)]
pub struct StreamEvents {
    db: Db,
}

// === impl StreamEvents ===

impl StreamEvents {
    /// The stream event store of `db`.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

fn seq_of(value: i64) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| RegistryError::corrupt(format!("a stored stream event number is {value}")))
}

#[async_trait]
impl StreamEventStore for StreamEvents {
    async fn append_event(&self, task_id: &str, event: &Value, created_at: i64) -> Result<u64> {
        let statement = self.db.backend().sql(
            "INSERT INTO stream_events (task_id, seq, event, created_at) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3 FROM stream_events WHERE task_id = $1 \
             ON CONFLICT (task_id, seq) DO NOTHING RETURNING seq",
        );
        let text = event.to_string();
        for _ in 0..APPEND_ATTEMPTS {
            let seq: Option<i64> = on_pool!(self.db, |pool| sqlx::query_scalar(&statement)
                .bind(task_id)
                .bind(&text)
                .bind(created_at)
                .fetch_optional(pool)
                .await
                .db("recording a stream event")?);
            if let Some(seq) = seq {
                return seq_of(seq);
            }
        }
        Err(RegistryError::corrupt(format!(
            "task {task_id}'s stream event lost {APPEND_ATTEMPTS} races for its number"
        )))
    }

    async fn events_after(
        &self,
        task_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StreamEvent>> {
        let statement = self.db.backend().sql(
            "SELECT seq, event FROM stream_events WHERE task_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        );
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = on_pool!(self.db, |pool| sqlx::query_as(&statement)
            .bind(task_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .db("reading stream events")?);
        rows.into_iter()
            .map(|(seq, text)| {
                let event = serde_json::from_str(&text).map_err(|error| {
                    RegistryError::corrupt_because("a stored stream event is not JSON", error)
                })?;
                Ok(StreamEvent {
                    seq: seq_of(seq)?,
                    event,
                })
            })
            .collect()
    }

    async fn last_seq(&self, task_id: &str) -> Result<u64> {
        let statement = self
            .db
            .backend()
            .sql("SELECT COALESCE(MAX(seq), 0) FROM stream_events WHERE task_id = $1");
        let seq: i64 = on_pool!(self.db, |pool| sqlx::query_scalar(&statement)
            .bind(task_id)
            .fetch_one(pool)
            .await
            .db("reading a task's last stream event")?);
        seq_of(seq)
    }

    async fn prune_events(&self, before: Option<i64>, limit: u32) -> Result<u64> {
        let statement = self.db.backend().sql(
            "DELETE FROM stream_events WHERE (task_id, seq) IN \
             (SELECT task_id, seq FROM stream_events \
             WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        );
        Ok(on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .db("pruning stream events")?
            .rows_affected()))
    }

    async fn count_events(&self) -> Result<u64> {
        let rows: i64 = on_pool!(self.db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM stream_events"
        )
        .fetch_one(pool)
        .await
        .db("counting stream events")?);
        Ok(u64::try_from(rows).unwrap_or_default())
    }
}
