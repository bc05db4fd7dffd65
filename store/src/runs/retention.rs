//! Retention of durable runs (issue 15): deletes finished runs (any status
//! but `running` and `waiting_for_human`, which may still continue) created
//! before a cut-off, oldest first and a bounded number per call, with their
//! steps and named checkpoints, in one transaction. A pruned run is unknown
//! afterwards (`RunNotFound`), like one that never existed.

use chrono::{DateTime, Utc};
use convergio_orchestrator::OrchestratorError;
use convergio_schemas::StorageError;

use super::{encode, RunStore};
use crate::{Backend, DbResult};

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
        on_pool!(self.db, |pool, backend| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("starting a run retention transaction")?;
            let sql = match backend {
                Backend::Sqlite => {
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs \
                     WHERE status NOT IN ('running', 'waiting_for_human') AND created_at < $1 \
                     ORDER BY created_at LIMIT $2) RETURNING run_id"
                }
                // SKIP LOCKED: a run another replica is writing right now is
                // left for the next pass instead of waited for.
                Backend::Postgres => {
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs \
                     WHERE status NOT IN ('running', 'waiting_for_human') AND created_at < $1 \
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING run_id"
                }
            };
            let ids: Vec<String> = sqlx::query_scalar(&backend.sql(sql))
                .bind(&before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .db("deleting finished runs")?;
            let ids_json = encode(&ids, || "encoding the pruned run ids".to_owned())?;
            for sql in [
                in_json_ids!(backend, "DELETE FROM run_steps WHERE run_id", "$1"),
                in_json_ids!(backend, "DELETE FROM run_checkpoints WHERE run_id", "$1"),
            ] {
                sqlx::query(&backend.sql(sql))
                    .bind(&ids_json)
                    .execute(&mut *transaction)
                    .await
                    .db("deleting the steps and checkpoints of pruned runs")?;
            }
            transaction
                .commit()
                .await
                .db("committing a run retention pass")?;
            Ok(ids.len() as u64)
        })
    }

    /// How many runs are stored, finished or not.
    pub async fn count_runs(&self) -> Result<u64, OrchestratorError> {
        let count: i64 = on_pool!(self.db, |pool, backend| {
            sqlx::query_scalar::<_, i64>(&backend.sql("SELECT COUNT(*) FROM runs"))
                .fetch_one(pool)
                .await
                .db("counting runs")?
        });
        u64::try_from(count).map_err(|_| {
            OrchestratorError::from(StorageError::corrupt(format!(
                "the run count {count} is negative"
            )))
        })
    }
}
