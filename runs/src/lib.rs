//! Durable graph runs (issue 8): the orchestrator's [`RunJournal`] on SQLite
//! and PostgreSQL.
//!
//! It is also the [`GraphStore`] of stored graph documents (issue 14:
//! table `graphs`, one row per version of an organisation's graph), as
//! graphs and the runs that name them live in the same database.
//!
//! Tables (`runs`, `run_steps`, `run_checkpoints`, `graphs`; `schema/*.sql`) are
//! created by the journal itself with idempotent DDL, like the policy
//! crate's: the registry's migrator owns `_sqlx_migrations` in the same
//! database and would see another migrator's rows as unknown.
//!
//! **Group commit.** Every create and append goes to one writer task per
//! journal, which takes everything queued (from any number of runs) into one
//! transaction and answers each caller only after the commit. A step is thus
//! never reported done before it is durable, while many runs in flight share
//! one fsync.
//!
//! **Ordering.** An append names its step number; the run row's `seq` must be
//! the one before (`UPDATE … WHERE seq = ?`), so a stale writer (a replica
//! that lost its lease) cannot interleave steps: its append fails and
//! nothing is changed.
//!
//! **Leases.** A run row carries `lease_owner` and `lease_expires_ms`; the
//! replica driving a run renews it, and a replica claims a `running` run
//! whose lease expired (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
//! serialises writers anyway). Times are the replicas' wall clocks.
//!
//! **Retention** (`retention.rs`, issue 15): finished runs older than a
//! cut-off are deleted with their steps, a bounded batch at a time.

mod error;
mod retention;
mod sql;

use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convergio_orchestrator::api::{GraphDocument, GraphSummary};
use convergio_orchestrator::{
    Checkpoint, GraphStore, NewRun, OrchestratorError, RunFilter, RunJournal, RunListing,
    StepDelta, StoredRun,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use error::storage_error;

/// Settings of a run journal.
#[derive(Debug, Clone)]
pub struct RunStoreConfig {
    /// The replica's name in leases (default: a random id per process).
    pub replica: String,
    /// How long a lease lasts without renewal (default 30 s).
    pub lease_ttl: Duration,
    /// SQLite `synchronous=FULL` (default) or `NORMAL`: FULL makes every
    /// committed step survive a power cut, NORMAL only a process crash.
    pub sqlite_full_sync: bool,
    /// Most operations committed in one transaction (default 512).
    pub max_batch: usize,
}

impl Default for RunStoreConfig {
    fn default() -> Self {
        Self {
            replica: format!("replica-{}", Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(30),
            sqlite_full_sync: true,
            max_batch: 512,
        }
    }
}

/// Rows and bytes written, for the bench.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Rows inserted or updated.
    pub rows: AtomicU64,
    /// Bytes of run documents and step bodies written.
    pub bytes: AtomicU64,
    /// Transactions committed by the writer.
    pub transactions: AtomicU64,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// One write for the group-commit writer.
pub(crate) enum Op {
    Create {
        run: NewRun,
        done: oneshot::Sender<Result<(), OrchestratorError>>,
    },
    Append {
        run_id: Uuid,
        delta: StepDelta,
        done: oneshot::Sender<Result<(), OrchestratorError>>,
    },
}

/// The run journal on one database.
pub struct RunStore {
    pool: Pool,
    config: RunStoreConfig,
    writer: mpsc::Sender<Op>,
    stats: Arc<WriteStats>,
}

/// Opens the journal on `url` (`sqlite:` or `postgres://`), creating its
/// tables, and starts its writer task.
pub async fn connect(
    url: &str,
    config: RunStoreConfig,
) -> Result<Arc<RunStore>, OrchestratorError> {
    let pool = if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(storage_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if config.sqlite_full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(storage_error)?;
        sqlx::raw_sql(include_str!("../schema/sqlite.sql"))
            .execute(&pool)
            .await
            .map_err(storage_error)?;
        Pool::Sqlite(pool)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(storage_error)?;
        // Concurrent first starts of several replicas race on CREATE … IF
        // NOT EXISTS; an advisory lock makes them take turns.
        let mut transaction = pool.begin().await.map_err(storage_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(8008)")
            .execute(&mut *transaction)
            .await
            .map_err(storage_error)?;
        sqlx::raw_sql(include_str!("../schema/postgres.sql"))
            .execute(&mut *transaction)
            .await
            .map_err(storage_error)?;
        transaction.commit().await.map_err(storage_error)?;
        Pool::Postgres(pool)
    } else {
        return Err(OrchestratorError::Storage {
            message: "the run store needs a sqlite: or postgres:// URL".to_owned(),
        });
    };
    let stats = Arc::new(WriteStats::default());
    let (writer, queue) = mpsc::channel(config.max_batch.max(1) * 4);
    tokio::spawn(sql::write_loop(
        pool.clone(),
        queue,
        config.clone(),
        stats.clone(),
    ));
    Ok(Arc::new(RunStore {
        pool,
        config,
        writer,
        stats,
    }))
}

// === impl RunStore ===

impl RunStore {
    /// Rows and bytes written so far.
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Overwrites a stored step's body (tests use it to corrupt rows).
    pub async fn overwrite_step(
        &self,
        run_id: Uuid,
        seq: u64,
        format: i64,
        body: &str,
    ) -> Result<(), OrchestratorError> {
        sql::overwrite_step(&self.pool, run_id, seq, format, body).await
    }

    async fn submit(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), OrchestratorError>>) -> Op,
    ) -> Result<(), OrchestratorError> {
        let (done, answer) = oneshot::channel();
        let stopped = || OrchestratorError::Storage {
            message: "the run journal's writer stopped".to_owned(),
        };
        self.writer.send(op(done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease_ttl.as_millis() as i64
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl RunJournal for RunStore {
    fn replica(&self) -> &str {
        &self.config.replica
    }

    async fn create(&self, run: &NewRun) -> Result<(), OrchestratorError> {
        let run = run.clone();
        self.submit(|done| Op::Create { run, done }).await
    }

    async fn append(&self, run_id: Uuid, delta: &StepDelta) -> Result<(), OrchestratorError> {
        let delta = delta.clone();
        self.submit(|done| Op::Append {
            run_id,
            delta,
            done,
        })
        .await
    }

    async fn load(&self, run_id: Uuid, up_to: Option<u64>) -> Result<StoredRun, OrchestratorError> {
        sql::load(&self.pool, run_id, up_to).await
    }

    async fn name_checkpoint(
        &self,
        run_id: Uuid,
        name: &str,
    ) -> Result<Checkpoint, OrchestratorError> {
        sql::name_checkpoint(&self.pool, run_id, name).await
    }

    async fn checkpoints(&self, run_id: Uuid) -> Result<Vec<Checkpoint>, OrchestratorError> {
        sql::checkpoints(&self.pool, run_id).await
    }

    async fn claim(&self, run_id: Uuid) -> Result<bool, OrchestratorError> {
        sql::claim(&self.pool, run_id, &self.config.replica, self.lease_until()).await
    }

    async fn renew(&self, runs: &[Uuid]) -> Result<u64, OrchestratorError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = runs.iter().map(Uuid::to_string).collect();
        let ids = serde_json::to_string(&ids).map_err(|error| OrchestratorError::Storage {
            message: error.to_string(),
        })?;
        sql::renew(&self.pool, &self.config.replica, self.lease_until(), &ids).await
    }

    async fn claim_expired(&self, limit: u32) -> Result<Vec<Uuid>, OrchestratorError> {
        sql::claim_expired(&self.pool, &self.config.replica, self.lease_until(), limit).await
    }

    async fn cancel(&self, run_id: Uuid) -> Result<bool, OrchestratorError> {
        sql::cancel(&self.pool, run_id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunListing>, OrchestratorError> {
        sql::list_runs(&self.pool, filter).await
    }
}

#[async_trait]
impl GraphStore for RunStore {
    async fn put(
        &self,
        summary: &GraphSummary,
        source: &str,
    ) -> Result<GraphSummary, OrchestratorError> {
        sql::put_graph(&self.pool, summary, source).await
    }

    async fn get(
        &self,
        org: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<GraphDocument>, OrchestratorError> {
        sql::get_graph(&self.pool, org, name, version).await
    }

    async fn list(&self, org: &str) -> Result<Vec<GraphSummary>, OrchestratorError> {
        sql::list_graphs(&self.pool, org).await
    }
}
