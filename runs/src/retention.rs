//! Retention of durable runs (issue 15): deletes finished runs (any status
//! but `running` and `waiting_for_human`, which may still continue) created
//! before a cut-off, oldest first and a bounded number per call, with their
//! steps and named checkpoints, in one transaction. A pruned run is unknown
//! afterwards (`RunNotFound`), like one that never existed.

use chrono::{DateTime, Utc};
use convergio_orchestrator::OrchestratorError;

use crate::{storage_error, Pool, RunStore};

/// Runs that may still continue: never pruned.
const LIVE: &str = "('running', 'waiting_for_human')";

// === impl RunStore (retention) ===

impl RunStore {
    /// Deletes up to `limit` finished runs created before `before` (any
    /// age for `None`), oldest first, with their steps and checkpoints;
    /// returns how many runs were deleted.
    pub async fn prune_finished(
        &self,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<u64, OrchestratorError> {
        // `created_at` is written by `to_rfc3339`, whose text order is time
        // order; with no cut-off every finished run is a candidate.
        let before = before.map_or_else(|| "9999".to_owned(), |before| before.to_rfc3339());
        let limit = i64::from(limit);
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut transaction = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(storage_error)?;
                let ids: Vec<String> = sqlx::query_scalar(&format!(
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs \
                     WHERE status NOT IN {LIVE} AND created_at < ?1 ORDER BY created_at LIMIT ?2) \
                     RETURNING run_id"
                ))
                .bind(&before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .map_err(storage_error)?;
                let ids_json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
                for table in ["run_steps", "run_checkpoints"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE run_id IN (SELECT value FROM json_each(?1))"
                    ))
                    .bind(&ids_json)
                    .execute(&mut *transaction)
                    .await
                    .map_err(storage_error)?;
                }
                transaction.commit().await.map_err(storage_error)?;
                Ok(ids.len() as u64)
            }
            Pool::Postgres(pool) => {
                let mut transaction = pool.begin().await.map_err(storage_error)?;
                // SKIP LOCKED: a run another replica is writing right now is
                // left for the next pass instead of waited for.
                let ids: Vec<String> = sqlx::query_scalar(&format!(
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs \
                     WHERE status NOT IN {LIVE} AND created_at < $1 ORDER BY created_at LIMIT $2 \
                     FOR UPDATE SKIP LOCKED) RETURNING run_id"
                ))
                .bind(&before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .map_err(storage_error)?;
                for table in ["run_steps", "run_checkpoints"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE run_id = ANY($1)"))
                        .bind(&ids)
                        .execute(&mut *transaction)
                        .await
                        .map_err(storage_error)?;
                }
                transaction.commit().await.map_err(storage_error)?;
                Ok(ids.len() as u64)
            }
        }
    }

    /// How many runs are stored, finished or not.
    pub async fn count_runs(&self) -> Result<u64, OrchestratorError> {
        let count: i64 = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM runs")
                .fetch_one(pool)
                .await
                .map_err(storage_error)?,
            Pool::Postgres(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM runs")
                .fetch_one(pool)
                .await
                .map_err(storage_error)?,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
