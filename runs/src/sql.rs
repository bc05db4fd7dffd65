//! The SQL of the journal. Both backends run the same statements, written
//! with `$N` placeholders (SQLite reads them as `?N`); a macro instantiates
//! the code per sqlx database type because a transaction's type differs.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use convergio_orchestrator::api::{GraphDocument, GraphSummary};
use convergio_orchestrator::journal::FORMAT_VERSION;
use convergio_orchestrator::{
    Checkpoint, OrchestratorError, RunFilter, RunHeader, RunListing, RunStatus, StepDelta,
    StoredRun,
};
use sqlx::Row;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{storage_error, Op, Pool, RunStoreConfig, WriteStats};

fn sqlite(sql: &'static str) -> Cow<'static, str> {
    Cow::Owned(sql.replace('$', "?"))
}

fn postgres(sql: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(sql)
}

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

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The format of stored graph rows this build writes and reads.
const GRAPH_FORMAT: i64 = 1;

/// The smallest UUIDv7 of the millisecond `time` falls in, as text: run ids
/// at or after `time` sort at or after it.
fn time_bound(time: DateTime<Utc>) -> String {
    let millis = u128::from(u64::try_from(time.timestamp_millis()).unwrap_or(0));
    Uuid::from_u128((millis << 80) | (0x7 << 76) | (1 << 63)).to_string()
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| error.is_unique_violation())
}

/// A stored graph row's summary; the row's own columns win over the JSON.
fn graph_summary(
    org: &str,
    name: &str,
    version: i64,
    format: i64,
    body: &str,
    stored_at: &str,
) -> Result<GraphSummary, OrchestratorError> {
    let bad = |message: String| OrchestratorError::Storage {
        message: format!("stored graph {org}/{name} version {version}: {message}"),
    };
    if format != GRAPH_FORMAT {
        return Err(bad(format!(
            "stored in format {format}; this build reads format {GRAPH_FORMAT}"
        )));
    }
    let mut summary: GraphSummary = serde_json::from_str(body)
        .map_err(|error| bad(format!("its summary does not decode: {error}")))?;
    summary.org = org.to_owned();
    summary.name = name.to_owned();
    summary.version = u32::try_from(version).map_err(|_| bad("bad version".to_owned()))?;
    summary.stored_at = parse_time(stored_at);
    Ok(summary)
}

/// The result every operation of a batch gets.
type Answer = Result<(), OrchestratorError>;

macro_rules! backend {
    ($module:ident, $pool:ty, $sql:ident, $skip_locked:expr, $renew:expr, $begin:expr) => {
        mod $module {
            use super::*;

            /// Writes a batch in one transaction; per-operation answers, or
            /// an error for the whole batch when the database failed.
            pub(crate) async fn write_batch(
                pool: &$pool,
                batch: &[&Op],
                stats: &WriteStats,
                replica: &str,
                until: i64,
            ) -> Result<Vec<Answer>, sqlx::Error> {
                let mut transaction = pool.begin_with($begin).await?;
                let mut answers = Vec::with_capacity(batch.len());
                let mut rows = 0u64;
                let mut bytes = 0u64;
                for op in batch {
                    match op {
                        Op::Create { run, .. } => {
                            let header = serde_json::to_string(&run.header).unwrap_or_default();
                            let last = run.steps.last();
                            let status = last.map(|step| step.status).unwrap_or(RunStatus::Running);
                            let inserted = sqlx::query(&$sql(
                                "INSERT INTO runs (run_id, graph_id, owner, format, header, source, \
                                 status, seq, lease_owner, lease_expires_ms, created_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                                 ON CONFLICT (run_id) DO NOTHING",
                            ))
                            .bind(run.header.run_id.to_string())
                            .bind(&run.header.graph_id)
                            .bind(&run.owner)
                            .bind(FORMAT_VERSION)
                            .bind(&header)
                            .bind(&run.source)
                            .bind(status.as_str())
                            .bind(run.steps.len() as i64)
                            .bind(replica)
                            .bind(until)
                            .bind(Utc::now().to_rfc3339())
                            .execute(&mut *transaction)
                            .await?
                            .rows_affected();
                            if inserted == 0 {
                                answers.push(Err(OrchestratorError::RunActive {
                                    run_id: run.header.run_id.to_string(),
                                }));
                                continue;
                            }
                            rows += 1;
                            bytes += (header.len() + run.source.len()) as u64;
                            for step in &run.steps {
                                let body = serde_json::to_string(step).unwrap_or_default();
                                sqlx::query(&$sql(
                                    "INSERT INTO run_steps (run_id, seq, format, body) \
                                     VALUES ($1, $2, $3, $4)",
                                ))
                                .bind(run.header.run_id.to_string())
                                .bind(step.seq as i64)
                                .bind(FORMAT_VERSION)
                                .bind(&body)
                                .execute(&mut *transaction)
                                .await?;
                                rows += 1;
                                bytes += body.len() as u64;
                            }
                            answers.push(Ok(()));
                        }
                        Op::Append { run_id, delta, .. } => {
                            // A cancelled run takes no more steps, whoever
                            // drives it (issue 15).
                            let updated = sqlx::query(&$sql(
                                "UPDATE runs SET seq = $1, status = $2, lease_owner = \
                                 CASE WHEN $2 = 'running' THEN lease_owner ELSE NULL END \
                                 WHERE run_id = $3 AND seq = $4 AND status <> 'cancelled'",
                            ))
                            .bind(delta.seq as i64)
                            .bind(delta.status.as_str())
                            .bind(run_id.to_string())
                            .bind(delta.seq as i64 - 1)
                            .execute(&mut *transaction)
                            .await?
                            .rows_affected();
                            if updated == 0 {
                                let status: Option<String> = sqlx::query_scalar(&$sql(
                                    "SELECT status FROM runs WHERE run_id = $1",
                                ))
                                .bind(run_id.to_string())
                                .fetch_optional(&mut *transaction)
                                .await?;
                                let run_id = run_id.to_string();
                                answers.push(Err(if status.as_deref() == Some("cancelled") {
                                    OrchestratorError::RunCancelled { run_id }
                                } else {
                                    OrchestratorError::RunActive { run_id }
                                }));
                                continue;
                            }
                            let body = serde_json::to_string(delta).unwrap_or_default();
                            sqlx::query(&$sql(
                                "INSERT INTO run_steps (run_id, seq, format, body) \
                                 VALUES ($1, $2, $3, $4)",
                            ))
                            .bind(run_id.to_string())
                            .bind(delta.seq as i64)
                            .bind(FORMAT_VERSION)
                            .bind(&body)
                            .execute(&mut *transaction)
                            .await?;
                            rows += 2;
                            bytes += body.len() as u64;
                            answers.push(Ok(()));
                        }
                    }
                }
                transaction.commit().await?;
                stats.rows.fetch_add(rows, Ordering::Relaxed);
                stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                Ok(answers)
            }

            pub(crate) async fn load(
                pool: &$pool,
                run_id: Uuid,
                up_to: Option<u64>,
            ) -> Result<StoredRun, OrchestratorError> {
                let row = sqlx::query(&$sql(
                    "SELECT format, header, source, owner, status, lease_owner \
                     FROM runs WHERE run_id = $1",
                ))
                .bind(run_id.to_string())
                .fetch_optional(pool)
                .await
                .map_err(storage_error)?
                .ok_or_else(|| OrchestratorError::RunNotFound {
                    run_id: run_id.to_string(),
                })?;
                let format: i64 = row.try_get("format").map_err(storage_error)?;
                if format != FORMAT_VERSION {
                    return Err(corrupt(
                        run_id,
                        format!("it is stored in format {format}; this build reads format {FORMAT_VERSION}"),
                    ));
                }
                let header_text: String = row.try_get("header").map_err(storage_error)?;
                let header: RunHeader = serde_json::from_str(&header_text)
                    .map_err(|error| corrupt(run_id, format!("its run row does not decode: {error}")))?;
                let status_text: String = row.try_get("status").map_err(storage_error)?;
                let status = parse_status(run_id, &status_text)?;
                let step_rows = sqlx::query(&$sql(
                    "SELECT seq, format, body FROM run_steps \
                     WHERE run_id = $1 AND seq <= $2 ORDER BY seq",
                ))
                .bind(run_id.to_string())
                .bind(up_to.map(|seq| seq as i64).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(storage_error)?;
                let mut steps = Vec::with_capacity(step_rows.len());
                for step_row in step_rows {
                    let seq: i64 = step_row.try_get("seq").map_err(storage_error)?;
                    let format: i64 = step_row.try_get("format").map_err(storage_error)?;
                    if format != FORMAT_VERSION {
                        return Err(corrupt(
                            run_id,
                            format!("step {seq} is stored in format {format}; this build reads format {FORMAT_VERSION}"),
                        ));
                    }
                    let body: String = step_row.try_get("body").map_err(storage_error)?;
                    let delta: StepDelta = serde_json::from_str(&body).map_err(|error| {
                        corrupt(run_id, format!("step {seq} does not decode: {error}"))
                    })?;
                    if delta.seq != seq as u64 {
                        return Err(corrupt(run_id, format!("step {seq} says it is step {}", delta.seq)));
                    }
                    steps.push(delta);
                }
                Ok(StoredRun {
                    header,
                    source: row.try_get("source").map_err(storage_error)?,
                    owner: row.try_get("owner").map_err(storage_error)?,
                    status,
                    lease_owner: row.try_get("lease_owner").map_err(storage_error)?,
                    steps,
                })
            }

            pub(crate) async fn name_checkpoint(
                pool: &$pool,
                run_id: Uuid,
                name: &str,
            ) -> Result<Checkpoint, OrchestratorError> {
                let mut transaction = pool.begin_with($begin).await.map_err(storage_error)?;
                let seq: i64 = sqlx::query_scalar(&$sql("SELECT seq FROM runs WHERE run_id = $1"))
                    .bind(run_id.to_string())
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(storage_error)?
                    .ok_or_else(|| OrchestratorError::RunNotFound {
                        run_id: run_id.to_string(),
                    })?;
                let created_at = Utc::now();
                let inserted = sqlx::query(&$sql(
                    "INSERT INTO run_checkpoints (run_id, name, seq, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, name) DO NOTHING",
                ))
                .bind(run_id.to_string())
                .bind(name)
                .bind(seq)
                .bind(created_at.to_rfc3339())
                .execute(&mut *transaction)
                .await
                .map_err(storage_error)?
                .rows_affected();
                if inserted == 0 {
                    return Err(OrchestratorError::CheckpointExists {
                        run_id: run_id.to_string(),
                        name: name.to_owned(),
                    });
                }
                transaction.commit().await.map_err(storage_error)?;
                Ok(Checkpoint {
                    name: name.to_owned(),
                    seq: seq as u64,
                    created_at: parse_time(&created_at.to_rfc3339()),
                })
            }

            pub(crate) async fn checkpoints(
                pool: &$pool,
                run_id: Uuid,
            ) -> Result<Vec<Checkpoint>, OrchestratorError> {
                let exists: Option<i64> =
                    sqlx::query_scalar(&$sql("SELECT seq FROM runs WHERE run_id = $1"))
                        .bind(run_id.to_string())
                        .fetch_optional(pool)
                        .await
                        .map_err(storage_error)?;
                if exists.is_none() {
                    return Err(OrchestratorError::RunNotFound {
                        run_id: run_id.to_string(),
                    });
                }
                let rows = sqlx::query(&$sql(
                    "SELECT name, seq, created_at FROM run_checkpoints \
                     WHERE run_id = $1 ORDER BY seq, created_at, name",
                ))
                .bind(run_id.to_string())
                .fetch_all(pool)
                .await
                .map_err(storage_error)?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get("seq").map_err(storage_error)?;
                        let created_at: String = row.try_get("created_at").map_err(storage_error)?;
                        Ok(Checkpoint {
                            name: row.try_get("name").map_err(storage_error)?,
                            seq: seq as u64,
                            created_at: parse_time(&created_at),
                        })
                    })
                    .collect()
            }

            pub(crate) async fn claim(
                pool: &$pool,
                run_id: Uuid,
                replica: &str,
                until: i64,
            ) -> Result<bool, OrchestratorError> {
                let claimed = sqlx::query(&$sql(
                    "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 \
                     WHERE run_id = $3 AND (lease_owner IS NULL OR lease_owner = $1 \
                     OR lease_expires_ms < $4)",
                ))
                .bind(replica)
                .bind(until)
                .bind(run_id.to_string())
                .bind(crate::now_ms())
                .execute(pool)
                .await
                .map_err(storage_error)?
                .rows_affected();
                Ok(claimed == 1)
            }

            pub(crate) async fn renew(
                pool: &$pool,
                replica: &str,
                until: i64,
                ids: &str,
            ) -> Result<u64, OrchestratorError> {
                Ok(sqlx::query(&$sql($renew))
                .bind(until)
                .bind(replica)
                .bind(ids)
                .execute(pool)
                .await
                .map_err(storage_error)?
                .rows_affected())
            }

            pub(crate) async fn claim_expired(
                pool: &$pool,
                replica: &str,
                until: i64,
                limit: u32,
            ) -> Result<Vec<Uuid>, OrchestratorError> {
                let sql = if $skip_locked {
                    "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 WHERE run_id IN \
                     (SELECT run_id FROM runs WHERE status = 'running' AND lease_expires_ms < $3 \
                     ORDER BY lease_expires_ms LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING run_id"
                } else {
                    "UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 WHERE run_id IN \
                     (SELECT run_id FROM runs WHERE status = 'running' AND lease_expires_ms < $3 \
                     ORDER BY lease_expires_ms LIMIT $4) RETURNING run_id"
                };
                let ids: Vec<String> = sqlx::query_scalar(&$sql(sql))
                    .bind(replica)
                    .bind(until)
                    .bind(crate::now_ms())
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(storage_error)?;
                Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
            }

            pub(crate) async fn cancel(
                pool: &$pool,
                run_id: Uuid,
            ) -> Result<bool, OrchestratorError> {
                // The lease is dropped too: nobody drives a cancelled run.
                let cancelled = sqlx::query(&$sql(
                    "UPDATE runs SET status = 'cancelled', lease_owner = NULL \
                     WHERE run_id = $1 AND status IN ('running', 'waiting_for_human')",
                ))
                .bind(run_id.to_string())
                .execute(pool)
                .await
                .map_err(storage_error)?
                .rows_affected();
                if cancelled == 1 {
                    return Ok(true);
                }
                let exists: Option<String> =
                    sqlx::query_scalar(&$sql("SELECT status FROM runs WHERE run_id = $1"))
                        .bind(run_id.to_string())
                        .fetch_optional(pool)
                        .await
                        .map_err(storage_error)?;
                match exists {
                    Some(_) => Ok(false),
                    None => Err(OrchestratorError::RunNotFound {
                        run_id: run_id.to_string(),
                    }),
                }
            }

            pub(crate) async fn list_runs(
                pool: &$pool,
                filter: &RunFilter,
            ) -> Result<Vec<RunListing>, OrchestratorError> {
                // Run ids are UUIDv7 in their text form, whose byte order is
                // start order: time bounds and the paging cursor are id
                // bounds. PostgreSQL compares them bytewise whatever the
                // database's collation.
                let id = if $skip_locked { "run_id COLLATE \"C\"" } else { "run_id" };
                let sql = format!(
                    "SELECT run_id, graph_id, status, created_at FROM runs \
                     WHERE owner = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR graph_id = $3) AND ($4 IS NULL OR {id} >= $4) \
                     AND ($5 IS NULL OR {id} < $5) AND ($6 IS NULL OR {id} < $6) \
                     ORDER BY {id} DESC LIMIT $7"
                );
                let sql = if $skip_locked { sql } else { sql.replace('$', "?") };
                let rows = sqlx::query(&sql)
                    .bind(&filter.owner)
                    .bind(filter.status.map(RunStatus::as_str))
                    .bind(filter.graph_id.as_deref())
                    .bind(filter.since.map(time_bound))
                    .bind(filter.until.map(time_bound))
                    .bind(filter.before.map(|id| id.to_string()))
                    .bind(i64::from(filter.limit))
                    .fetch_all(pool)
                    .await
                    .map_err(storage_error)?;
                let mut runs = Vec::with_capacity(rows.len());
                for row in rows {
                    let text: String = row.try_get("run_id").map_err(storage_error)?;
                    let Ok(run_id) = Uuid::parse_str(&text) else {
                        tracing::warn!(run_id = %text, "a stored run id does not parse; not listed");
                        continue;
                    };
                    let status: String = row.try_get("status").map_err(storage_error)?;
                    let created_at: String = row.try_get("created_at").map_err(storage_error)?;
                    runs.push(RunListing {
                        run_id,
                        graph_id: row.try_get("graph_id").map_err(storage_error)?,
                        status: parse_status(run_id, &status)?,
                        started_at: parse_time(&created_at),
                    });
                }
                Ok(runs)
            }

            pub(crate) async fn put_graph(
                pool: &$pool,
                summary: &GraphSummary,
                source: &str,
            ) -> Result<GraphSummary, OrchestratorError> {
                let body = serde_json::to_string(summary).map_err(|error| {
                    OrchestratorError::Storage { message: error.to_string() }
                })?;
                // Two stores of one name at once may pick the same version on
                // PostgreSQL; the primary key refuses the second, which
                // tries again with the next number.
                let mut attempts = 0;
                loop {
                    let stored_at = Utc::now();
                    let inserted = sqlx::query_scalar::<_, i64>(&$sql(
                        "INSERT INTO graphs (org, name, version, format, summary, source, stored_at) \
                         SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6 \
                         FROM graphs WHERE org = $1 AND name = $2 RETURNING version",
                    ))
                    .bind(&summary.org)
                    .bind(&summary.name)
                    .bind(GRAPH_FORMAT)
                    .bind(&body)
                    .bind(source)
                    .bind(stored_at.to_rfc3339())
                    .fetch_one(pool)
                    .await;
                    match inserted {
                        Ok(version) => {
                            let mut stored = summary.clone();
                            stored.version = u32::try_from(version).unwrap_or(u32::MAX);
                            stored.stored_at = parse_time(&stored_at.to_rfc3339());
                            return Ok(stored);
                        }
                        Err(error) if attempts < 16 && is_unique_violation(&error) => attempts += 1,
                        Err(error) => return Err(storage_error(error)),
                    }
                }
            }

            pub(crate) async fn get_graph(
                pool: &$pool,
                org: &str,
                name: &str,
                version: Option<u32>,
            ) -> Result<Option<GraphDocument>, OrchestratorError> {
                let row = sqlx::query(&$sql(
                    "SELECT version, format, summary, source, stored_at FROM graphs \
                     WHERE org = $1 AND name = $2 AND ($3 IS NULL OR version = $3) \
                     ORDER BY version DESC LIMIT 1",
                ))
                .bind(org)
                .bind(name)
                .bind(version.map(i64::from))
                .fetch_optional(pool)
                .await
                .map_err(storage_error)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let summary = graph_summary(
                    org,
                    name,
                    row.try_get("version").map_err(storage_error)?,
                    row.try_get("format").map_err(storage_error)?,
                    &row.try_get::<String, _>("summary").map_err(storage_error)?,
                    &row.try_get::<String, _>("stored_at").map_err(storage_error)?,
                )?;
                Ok(Some(GraphDocument {
                    summary,
                    source: row.try_get("source").map_err(storage_error)?,
                }))
            }

            pub(crate) async fn list_graphs(
                pool: &$pool,
                org: &str,
            ) -> Result<Vec<GraphSummary>, OrchestratorError> {
                let rows = sqlx::query(&$sql(
                    "SELECT name, version, format, summary, stored_at FROM graphs AS g \
                     WHERE org = $1 AND version = \
                     (SELECT MAX(version) FROM graphs WHERE org = g.org AND name = g.name) \
                     ORDER BY name",
                ))
                .bind(org)
                .fetch_all(pool)
                .await
                .map_err(storage_error)?;
                rows.iter()
                    .map(|row| {
                        graph_summary(
                            org,
                            &row.try_get::<String, _>("name").map_err(storage_error)?,
                            row.try_get("version").map_err(storage_error)?,
                            row.try_get("format").map_err(storage_error)?,
                            &row.try_get::<String, _>("summary").map_err(storage_error)?,
                            &row.try_get::<String, _>("stored_at").map_err(storage_error)?,
                        )
                    })
                    .collect()
            }

            pub(crate) async fn overwrite_step(
                pool: &$pool,
                run_id: Uuid,
                seq: u64,
                format: i64,
                body: &str,
            ) -> Result<(), OrchestratorError> {
                sqlx::query(&$sql(
                    "UPDATE run_steps SET format = $1, body = $2 WHERE run_id = $3 AND seq = $4",
                ))
                .bind(format)
                .bind(body)
                .bind(run_id.to_string())
                .bind(seq as i64)
                .execute(pool)
                .await
                .map_err(storage_error)?;
                Ok(())
            }
        }
    };
}

// Renewal names the runs this replica drives, as a JSON array of ids.
backend!(
    on_sqlite,
    sqlx::SqlitePool,
    sqlite,
    false,
    "UPDATE runs SET lease_expires_ms = $1 WHERE lease_owner = $2 AND status = 'running' \
     AND run_id IN (SELECT value FROM json_each($3))",
    // Write transactions take the write lock up front: a deferred one that
    // read first fails at once (SQLITE_BUSY) when another connection of the
    // file (the audit writer, the registry) is writing.
    "BEGIN IMMEDIATE"
);
backend!(
    on_postgres,
    sqlx::PgPool,
    postgres,
    true,
    "UPDATE runs SET lease_expires_ms = $1 WHERE lease_owner = $2 AND status = 'running' \
     AND run_id IN (SELECT jsonb_array_elements_text($3::jsonb))",
    "BEGIN"
);

/// The writer task: takes everything queued into one transaction.
pub(crate) async fn write_loop(
    pool: Pool,
    mut queue: mpsc::Receiver<Op>,
    config: RunStoreConfig,
    stats: Arc<WriteStats>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let until = crate::now_ms() + config.lease_ttl.as_millis() as i64;
        let refs: Vec<&Op> = batch.iter().collect();
        let outcome = match &pool {
            Pool::Sqlite(pool) => {
                on_sqlite::write_batch(pool, &refs, &stats, &config.replica, until).await
            }
            Pool::Postgres(pool) => {
                on_postgres::write_batch(pool, &refs, &stats, &config.replica, until).await
            }
        };
        let answers: Vec<Answer> = match outcome {
            Ok(answers) => answers,
            Err(error) => {
                tracing::error!(error = %error, "committing run steps failed");
                batch
                    .iter()
                    .map(|_| Err(storage_error_text(&error)))
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

fn storage_error_text(error: &sqlx::Error) -> OrchestratorError {
    OrchestratorError::Storage {
        message: error.to_string(),
    }
}

pub(crate) async fn load(
    pool: &Pool,
    run_id: Uuid,
    up_to: Option<u64>,
) -> Result<StoredRun, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::load(pool, run_id, up_to).await,
        Pool::Postgres(pool) => on_postgres::load(pool, run_id, up_to).await,
    }
}

pub(crate) async fn name_checkpoint(
    pool: &Pool,
    run_id: Uuid,
    name: &str,
) -> Result<Checkpoint, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::name_checkpoint(pool, run_id, name).await,
        Pool::Postgres(pool) => on_postgres::name_checkpoint(pool, run_id, name).await,
    }
}

pub(crate) async fn checkpoints(
    pool: &Pool,
    run_id: Uuid,
) -> Result<Vec<Checkpoint>, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::checkpoints(pool, run_id).await,
        Pool::Postgres(pool) => on_postgres::checkpoints(pool, run_id).await,
    }
}

pub(crate) async fn claim(
    pool: &Pool,
    run_id: Uuid,
    replica: &str,
    until: i64,
) -> Result<bool, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::claim(pool, run_id, replica, until).await,
        Pool::Postgres(pool) => on_postgres::claim(pool, run_id, replica, until).await,
    }
}

pub(crate) async fn renew(
    pool: &Pool,
    replica: &str,
    until: i64,
    ids: &str,
) -> Result<u64, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::renew(pool, replica, until, ids).await,
        Pool::Postgres(pool) => on_postgres::renew(pool, replica, until, ids).await,
    }
}

pub(crate) async fn claim_expired(
    pool: &Pool,
    replica: &str,
    until: i64,
    limit: u32,
) -> Result<Vec<Uuid>, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::claim_expired(pool, replica, until, limit).await,
        Pool::Postgres(pool) => on_postgres::claim_expired(pool, replica, until, limit).await,
    }
}

pub(crate) async fn cancel(pool: &Pool, run_id: Uuid) -> Result<bool, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::cancel(pool, run_id).await,
        Pool::Postgres(pool) => on_postgres::cancel(pool, run_id).await,
    }
}

pub(crate) async fn overwrite_step(
    pool: &Pool,
    run_id: Uuid,
    seq: u64,
    format: i64,
    body: &str,
) -> Result<(), OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::overwrite_step(pool, run_id, seq, format, body).await,
        Pool::Postgres(pool) => on_postgres::overwrite_step(pool, run_id, seq, format, body).await,
    }
}

pub(crate) async fn list_runs(
    pool: &Pool,
    filter: &RunFilter,
) -> Result<Vec<RunListing>, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::list_runs(pool, filter).await,
        Pool::Postgres(pool) => on_postgres::list_runs(pool, filter).await,
    }
}

pub(crate) async fn put_graph(
    pool: &Pool,
    summary: &GraphSummary,
    source: &str,
) -> Result<GraphSummary, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::put_graph(pool, summary, source).await,
        Pool::Postgres(pool) => on_postgres::put_graph(pool, summary, source).await,
    }
}

pub(crate) async fn get_graph(
    pool: &Pool,
    org: &str,
    name: &str,
    version: Option<u32>,
) -> Result<Option<GraphDocument>, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::get_graph(pool, org, name, version).await,
        Pool::Postgres(pool) => on_postgres::get_graph(pool, org, name, version).await,
    }
}

pub(crate) async fn list_graphs(
    pool: &Pool,
    org: &str,
) -> Result<Vec<GraphSummary>, OrchestratorError> {
    match pool {
        Pool::Sqlite(pool) => on_sqlite::list_graphs(pool, org).await,
        Pool::Postgres(pool) => on_postgres::list_graphs(pool, org).await,
    }
}
