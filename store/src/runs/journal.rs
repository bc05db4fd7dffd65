//! The run journal's SQL: the group-commit writer (creates and appends),
//! reads of runs and steps, named checkpoints, leases, cancellation and
//! listings. Each statement is written once (`on_pool!`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use convergio_orchestrator::journal::FORMAT_VERSION;
use convergio_orchestrator::{
    Checkpoint, NewRun, OrchestratorError, RunFilter, RunHeader, RunListing, RunStatus, StepDelta,
    StoredRun,
};
use convergio_schemas::StorageError;
use sqlx::{Connection, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    encode, lease_until, now_ms, parse_time, Answer, Op, RunRow, RunStoreConfig, StepRow,
    WriteStats,
};
use crate::{Backend, Db, DbResult};

fn corrupt(run_id: Uuid, message: impl Into<String>) -> OrchestratorError {
    OrchestratorError::CorruptRun {
        run_id: run_id.to_string(),
        message: message.into(),
    }
}

fn parse_status(run_id: Uuid, text: &str) -> Result<RunStatus, OrchestratorError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| corrupt(run_id, format!("unknown status {text:?}")))
}

/// A run's stored time (`column` names it in the error).
fn run_time(run_id: Uuid, column: &str, text: &str) -> Result<DateTime<Utc>, OrchestratorError> {
    parse_time(text).ok_or_else(|| {
        corrupt(
            run_id,
            format!("its {column} {text:?} is not an RFC 3339 time"),
        )
    })
}

/// A stored step number.
fn step_number(run_id: Uuid, seq: i64) -> Result<u64, OrchestratorError> {
    u64::try_from(seq).map_err(|_| corrupt(run_id, format!("step number {seq} is negative")))
}

/// The smallest UUIDv7 of the millisecond `time` falls in, as text: run ids
/// at or after `time` sort at or after it. A time before 1970 bounds
/// nothing, like 1970 itself.
fn time_bound(time: DateTime<Utc>) -> String {
    let millis = u128::from(u64::try_from(time.timestamp_millis()).unwrap_or(0));
    Uuid::from_u128((millis << 80) | (0x7 << 76) | (1 << 63)).to_string()
}

/// `run` as the rows the writer inserts.
pub(super) fn encode_run(run: &NewRun) -> Result<RunRow, StorageError> {
    let run_id = run.header.run_id;
    let header = encode(&run.header, || {
        format!("encoding the header of run {run_id}")
    })?;
    let steps = run
        .steps
        .iter()
        .map(|step| encode_step(run_id, step))
        .collect::<Result<Vec<_>, _>>()?;
    let status = run
        .steps
        .last()
        .map_or(RunStatus::Running, |step| step.status);
    Ok(RunRow {
        run_id: run_id.to_string(),
        graph_id: run.header.graph_id.clone(),
        owner: run.owner.clone(),
        header,
        source: run.source.clone(),
        status: status.as_str(),
        steps,
    })
}

/// `delta` as the row the writer inserts.
pub(super) fn encode_step(run_id: Uuid, delta: &StepDelta) -> Result<StepRow, StorageError> {
    let body = encode(delta, || {
        format!("encoding step {} of run {run_id}", delta.seq)
    })?;
    Ok(StepRow {
        seq: i64::try_from(delta.seq).unwrap_or(i64::MAX),
        status: delta.status.as_str(),
        body,
    })
}

/// What one batch wrote.
struct Written {
    answers: Vec<Answer>,
    rows: u64,
    bytes: u64,
}

/// The writer task: takes everything queued into one transaction, then
/// answers each operation.
pub(super) async fn write_loop(
    db: Db,
    mut queue: mpsc::Receiver<Op>,
    config: RunStoreConfig,
    stats: Arc<WriteStats>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let answers: Vec<Answer> = match write_batch(&db, &batch, &config).await {
            Ok(written) => {
                stats.rows.fetch_add(written.rows, Ordering::Relaxed);
                stats.bytes.fetch_add(written.bytes, Ordering::Relaxed);
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                written.answers
            }
            Err(error) => {
                tracing::error!(error = %error, "committing run steps failed");
                // Every caller of the batch gets the failure, sharing its
                // cause.
                let failure = error.failure();
                let error = Arc::new(error);
                batch
                    .iter()
                    .map(|_| {
                        Err(OrchestratorError::Storage(StorageError::new(
                            failure,
                            "the batch of run writes this one was in failed",
                            Arc::clone(&error),
                        )))
                    })
                    .collect()
            }
        };
        for (op, answer) in batch.drain(..).zip(answers) {
            let done = match op {
                Op::Create { done, .. } | Op::Append { done, .. } => done,
            };
            let _ = done.send(answer);
        }
    }
}

/// Writes a batch in one transaction: per-operation answers, or an error
/// for the whole batch when the database failed (nothing is written then).
async fn write_batch(
    db: &Db,
    batch: &[Op],
    config: &RunStoreConfig,
) -> Result<Written, StorageError> {
    let until = lease_until(config);
    on_pool!(db, |pool, backend| {
        let mut connection = pool
            .acquire()
            .await
            .db("taking a connection for the run journal")?;
        // The pool is shared with every store at synchronous=NORMAL (see
        // `Db::open`); the setting is per connection and cannot change
        // inside a transaction, so the writer raises it to FULL before its
        // transaction and lowers it again before the connection goes back.
        let full_sync = backend == Backend::Sqlite && config.sqlite_full_sync;
        if full_sync {
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *connection)
                .await
                .db("asking SQLite for synchronous=FULL")?;
        }
        let written = async {
            let mut transaction = connection
                .begin_with(backend.begin_write())
                .await
                .db("starting a run journal transaction")?;
            let mut answers = Vec::with_capacity(batch.len());
            let mut rows = 0u64;
            let mut bytes = 0u64;
            for op in batch {
                match op {
                    Op::Create { run, .. } => {
                        let inserted = sqlx::query(&backend.sql(
                            "INSERT INTO runs (run_id, graph_id, owner, format, header, source, \
                             status, seq, lease_owner, lease_expires_ms, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                             ON CONFLICT (run_id) DO NOTHING",
                        ))
                        .bind(&run.run_id)
                        .bind(&run.graph_id)
                        .bind(&run.owner)
                        .bind(FORMAT_VERSION)
                        .bind(&run.header)
                        .bind(&run.source)
                        .bind(run.status)
                        .bind(run.steps.len() as i64)
                        .bind(&config.replica)
                        .bind(until)
                        .bind(Utc::now().to_rfc3339())
                        .execute(&mut *transaction)
                        .await
                        .db("inserting a run")?
                        .rows_affected();
                        if inserted == 0 {
                            answers.push(Err(OrchestratorError::RunActive {
                                run_id: run.run_id.clone(),
                            }));
                            continue;
                        }
                        rows += 1;
                        bytes += (run.header.len() + run.source.len()) as u64;
                        for step in &run.steps {
                            sqlx::query(&backend.sql(
                                "INSERT INTO run_steps (run_id, seq, format, body) \
                                 VALUES ($1, $2, $3, $4)",
                            ))
                            .bind(&run.run_id)
                            .bind(step.seq)
                            .bind(FORMAT_VERSION)
                            .bind(&step.body)
                            .execute(&mut *transaction)
                            .await
                            .db("inserting a run step")?;
                            rows += 1;
                            bytes += step.body.len() as u64;
                        }
                        answers.push(Ok(()));
                    }
                    Op::Append { run_id, step, .. } => {
                        // A cancelled run takes no more steps, whoever
                        // drives it (issue 15).
                        let updated = sqlx::query(&backend.sql(
                            "UPDATE runs SET seq = $1, status = $2, lease_owner = \
                             CASE WHEN $2 = 'running' THEN lease_owner ELSE NULL END \
                             WHERE run_id = $3 AND seq = $4 AND status <> 'cancelled'",
                        ))
                        .bind(step.seq)
                        .bind(step.status)
                        .bind(run_id.to_string())
                        .bind(step.seq - 1)
                        .execute(&mut *transaction)
                        .await
                        .db("advancing a run")?
                        .rows_affected();
                        if updated == 0 {
                            let status: Option<String> = sqlx::query_scalar(
                                &backend.sql("SELECT status FROM runs WHERE run_id = $1"),
                            )
                            .bind(run_id.to_string())
                            .fetch_optional(&mut *transaction)
                            .await
                            .db("reading a run's status")?;
                            let run_id = run_id.to_string();
                            answers.push(Err(if status.as_deref() == Some("cancelled") {
                                OrchestratorError::RunCancelled { run_id }
                            } else {
                                OrchestratorError::RunActive { run_id }
                            }));
                            continue;
                        }
                        sqlx::query(&backend.sql(
                            "INSERT INTO run_steps (run_id, seq, format, body) \
                             VALUES ($1, $2, $3, $4)",
                        ))
                        .bind(run_id.to_string())
                        .bind(step.seq)
                        .bind(FORMAT_VERSION)
                        .bind(&step.body)
                        .execute(&mut *transaction)
                        .await
                        .db("inserting a run step")?;
                        rows += 2;
                        bytes += step.body.len() as u64;
                        answers.push(Ok(()));
                    }
                }
            }
            transaction.commit().await.db("committing run steps")?;
            Ok::<_, StorageError>(Written {
                answers,
                rows,
                bytes,
            })
        }
        .await;
        if full_sync {
            let restored = sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *connection)
                .await;
            if let Err(error) = restored {
                // Never hand the other stores a connection in an unknown
                // state: close it, the pool opens a fresh one.
                tracing::warn!(error = %error, "restoring synchronous=NORMAL failed; closing the connection");
                connection.close_on_drop();
            }
        }
        written
    })
}

pub(super) async fn load(
    db: &Db,
    run_id: Uuid,
    up_to: Option<u64>,
) -> Result<StoredRun, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        let row = sqlx::query(&backend.sql(
            "SELECT format, header, source, owner, status, lease_owner \
             FROM runs WHERE run_id = $1",
        ))
        .bind(run_id.to_string())
        .fetch_optional(pool)
        .await
        .db("reading a run")?
        .ok_or_else(|| OrchestratorError::RunNotFound {
            run_id: run_id.to_string(),
        })?;
        let format: i64 = row.try_get("format").db("reading a run")?;
        if format != FORMAT_VERSION {
            return Err(corrupt(
                run_id,
                format!(
                    "it is stored in format {format}; this build reads format {FORMAT_VERSION}"
                ),
            ));
        }
        let header_text: String = row.try_get("header").db("reading a run")?;
        let header: RunHeader = serde_json::from_str(&header_text)
            .map_err(|error| corrupt(run_id, format!("its run row does not decode: {error}")))?;
        let status_text: String = row.try_get("status").db("reading a run")?;
        let status = parse_status(run_id, &status_text)?;
        let step_rows = sqlx::query(&backend.sql(
            "SELECT seq, format, body FROM run_steps \
             WHERE run_id = $1 AND seq <= $2 ORDER BY seq",
        ))
        .bind(run_id.to_string())
        .bind(up_to.map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX)))
        .fetch_all(pool)
        .await
        .db("reading a run's steps")?;
        let mut steps = Vec::with_capacity(step_rows.len());
        for step_row in step_rows {
            let seq: i64 = step_row.try_get("seq").db("reading a run step")?;
            let format: i64 = step_row.try_get("format").db("reading a run step")?;
            if format != FORMAT_VERSION {
                return Err(corrupt(
                    run_id,
                    format!(
                        "step {seq} is stored in format {format}; this build reads format \
                         {FORMAT_VERSION}"
                    ),
                ));
            }
            let body: String = step_row.try_get("body").db("reading a run step")?;
            let delta: StepDelta = serde_json::from_str(&body)
                .map_err(|error| corrupt(run_id, format!("step {seq} does not decode: {error}")))?;
            if delta.seq != step_number(run_id, seq)? {
                return Err(corrupt(
                    run_id,
                    format!("step {seq} says it is step {}", delta.seq),
                ));
            }
            steps.push(delta);
        }
        Ok(StoredRun {
            header,
            source: row.try_get("source").db("reading a run")?,
            owner: row.try_get("owner").db("reading a run")?,
            status,
            lease_owner: row.try_get("lease_owner").db("reading a run")?,
            steps,
        })
    })
}

pub(super) async fn name_checkpoint(
    db: &Db,
    run_id: Uuid,
    name: &str,
) -> Result<Checkpoint, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        let mut transaction = pool
            .begin_with(backend.begin_write())
            .await
            .db("starting a checkpoint transaction")?;
        let seq: i64 = sqlx::query_scalar(&backend.sql("SELECT seq FROM runs WHERE run_id = $1"))
            .bind(run_id.to_string())
            .fetch_optional(&mut *transaction)
            .await
            .db("reading a run's last step")?
            .ok_or_else(|| OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            })?;
        // `to_rfc3339` keeps every digit, so the time read back later is
        // this one.
        let created_at = Utc::now();
        let inserted = sqlx::query(&backend.sql(
            "INSERT INTO run_checkpoints (run_id, name, seq, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, name) DO NOTHING",
        ))
        .bind(run_id.to_string())
        .bind(name)
        .bind(seq)
        .bind(created_at.to_rfc3339())
        .execute(&mut *transaction)
        .await
        .db("naming a checkpoint")?
        .rows_affected();
        if inserted == 0 {
            return Err(OrchestratorError::CheckpointExists {
                run_id: run_id.to_string(),
                name: name.to_owned(),
            });
        }
        transaction.commit().await.db("committing a checkpoint")?;
        Ok(Checkpoint {
            name: name.to_owned(),
            seq: step_number(run_id, seq)?,
            created_at,
        })
    })
}

pub(super) async fn checkpoints(
    db: &Db,
    run_id: Uuid,
) -> Result<Vec<Checkpoint>, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        let exists: Option<i64> =
            sqlx::query_scalar(&backend.sql("SELECT seq FROM runs WHERE run_id = $1"))
                .bind(run_id.to_string())
                .fetch_optional(pool)
                .await
                .db("reading a run")?;
        if exists.is_none() {
            return Err(OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            });
        }
        let rows = sqlx::query(&backend.sql(
            "SELECT name, seq, created_at FROM run_checkpoints \
             WHERE run_id = $1 ORDER BY seq, created_at, name",
        ))
        .bind(run_id.to_string())
        .fetch_all(pool)
        .await
        .db("reading a run's checkpoints")?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name").db("reading a checkpoint")?;
                let seq: i64 = row.try_get("seq").db("reading a checkpoint")?;
                let created_at: String = row.try_get("created_at").db("reading a checkpoint")?;
                Ok(Checkpoint {
                    created_at: run_time(
                        run_id,
                        &format!("checkpoint {name:?} created_at"),
                        &created_at,
                    )?,
                    seq: step_number(run_id, seq)?,
                    name,
                })
            })
            .collect()
    })
}

pub(super) async fn claim(
    db: &Db,
    run_id: Uuid,
    replica: &str,
    until: i64,
) -> Result<bool, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        let claimed = sqlx::query(&backend.sql(
            "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 \
             WHERE run_id = $3 AND (lease_owner IS NULL OR lease_owner = $1 \
             OR lease_expires_ms < $4)",
        ))
        .bind(replica)
        .bind(until)
        .bind(run_id.to_string())
        .bind(now_ms())
        .execute(pool)
        .await
        .db("claiming a run")?
        .rows_affected();
        Ok(claimed == 1)
    })
}

/// Renews this replica's leases on the runs `ids` (a JSON array) names.
pub(super) async fn renew(
    db: &Db,
    replica: &str,
    until: i64,
    ids: &str,
) -> Result<u64, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        Ok(sqlx::query(&backend.sql(in_json_ids!(
            backend,
            "UPDATE runs SET lease_expires_ms = $1 WHERE lease_owner = $2 \
             AND status = 'running' AND run_id",
            "$3"
        )))
        .bind(until)
        .bind(replica)
        .bind(ids)
        .execute(pool)
        .await
        .db("renewing leases")?
        .rows_affected())
    })
}

pub(super) async fn claim_expired(
    db: &Db,
    replica: &str,
    until: i64,
    limit: u32,
) -> Result<Vec<Uuid>, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        let sql = match backend {
            // SQLite serialises writers: the select and the update are one.
            Backend::Sqlite => {
                "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 WHERE run_id IN \
                 (SELECT run_id FROM runs WHERE status = 'running' AND lease_expires_ms < $3 \
                 ORDER BY lease_expires_ms LIMIT $4) RETURNING run_id"
            }
            // Replicas claiming at once each take different runs.
            Backend::Postgres => {
                "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 WHERE run_id IN \
                 (SELECT run_id FROM runs WHERE status = 'running' AND lease_expires_ms < $3 \
                 ORDER BY lease_expires_ms LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING run_id"
            }
        };
        let ids: Vec<String> = sqlx::query_scalar(&backend.sql(sql))
            .bind(replica)
            .bind(until)
            .bind(now_ms())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .db("claiming expired runs")?;
        Ok(ids
            .iter()
            .filter_map(|text| match Uuid::parse_str(text) {
                Ok(run_id) => Some(run_id),
                Err(_) => {
                    // Like a listing, a claim skips (and says so) a row no
                    // replica could drive rather than fail the others.
                    tracing::warn!(run_id = %text, "a stored run id does not parse; not resumed");
                    None
                }
            })
            .collect())
    })
}

pub(super) async fn cancel(db: &Db, run_id: Uuid) -> Result<bool, OrchestratorError> {
    on_pool!(db, |pool, backend| {
        // The lease is dropped too: nobody drives a cancelled run.
        let cancelled = sqlx::query(&backend.sql(
            "UPDATE runs SET status = 'cancelled', lease_owner = NULL \
             WHERE run_id = $1 AND status IN ('running', 'waiting_for_human')",
        ))
        .bind(run_id.to_string())
        .execute(pool)
        .await
        .db("cancelling a run")?
        .rows_affected();
        if cancelled == 1 {
            return Ok(true);
        }
        let exists: Option<String> =
            sqlx::query_scalar(&backend.sql("SELECT status FROM runs WHERE run_id = $1"))
                .bind(run_id.to_string())
                .fetch_optional(pool)
                .await
                .db("reading a run's status")?;
        match exists {
            Some(_) => Ok(false),
            None => Err(OrchestratorError::RunNotFound {
                run_id: run_id.to_string(),
            }),
        }
    })
}

/// The listing statement with `$id` as the run id compared and sorted.
macro_rules! list_runs_sql {
    ($id:literal) => {
        concat!(
            "SELECT run_id, graph_id, status, created_at FROM runs \
             WHERE owner = $1 AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR graph_id = $3) AND ($4 IS NULL OR ",
            $id,
            " >= $4) AND ($5 IS NULL OR ",
            $id,
            " < $5) AND ($6 IS NULL OR ",
            $id,
            " < $6) ORDER BY ",
            $id,
            " DESC LIMIT $7"
        )
    };
}

pub(super) async fn list_runs(
    db: &Db,
    filter: &RunFilter,
) -> Result<Vec<RunListing>, OrchestratorError> {
    // Run ids are UUIDv7 in their text form, whose byte order is start
    // order: time bounds and the paging cursor are id bounds.
    on_pool!(db, |pool, backend| {
        let sql = match backend {
            Backend::Sqlite => list_runs_sql!("run_id"),
            // PostgreSQL compares text by the database's collation unless
            // told to compare bytes.
            Backend::Postgres => list_runs_sql!("run_id COLLATE \"C\""),
        };
        let rows = sqlx::query(&backend.sql(sql))
            .bind(&filter.owner)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.graph_id.as_deref())
            .bind(filter.since.map(time_bound))
            .bind(filter.until.map(time_bound))
            .bind(filter.before.map(|id| id.to_string()))
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await
            .db("listing runs")?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.try_get("run_id").db("listing runs")?;
            let Ok(run_id) = Uuid::parse_str(&text) else {
                tracing::warn!(run_id = %text, "a stored run id does not parse; not listed");
                continue;
            };
            let status: String = row.try_get("status").db("listing runs")?;
            let created_at: String = row.try_get("created_at").db("listing runs")?;
            runs.push(RunListing {
                run_id,
                graph_id: row.try_get("graph_id").db("listing runs")?,
                status: parse_status(run_id, &status)?,
                started_at: run_time(run_id, "created_at", &created_at)?,
            });
        }
        Ok(runs)
    })
}

pub(super) async fn overwrite_step(
    db: &Db,
    run_id: Uuid,
    seq: u64,
    format: i64,
    body: &str,
) -> Result<(), OrchestratorError> {
    on_pool!(db, |pool, backend| {
        sqlx::query(
            &backend
                .sql("UPDATE run_steps SET format = $1, body = $2 WHERE run_id = $3 AND seq = $4"),
        )
        .bind(format)
        .bind(body)
        .bind(run_id.to_string())
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .execute(pool)
        .await
        .db("overwriting a run step")?;
        Ok(())
    })
}
