//! Durable graph runs (issue 8): the orchestrator's [`RunJournal`] on the
//! process's one [`Db`], and its [`GraphStore`] of stored graph documents
//! (issue 14), as graphs and the runs that name them live in the same
//! database.
//!
//! Tables (migration `0009_runs.sql` of each tree, applied by [`Db::open`]
//! under sqlx's migration lock, so replicas starting together take turns):
//!
//! | table | one row per | holds |
//! |---|---|---|
//! | `runs` | run | header (id, graph, trace id, input, caller), graph document, owner, status, last step `seq`, `lease_owner`, `lease_expires_ms`, format version, `created_at` |
//! | `run_steps` | step | the JSON `StepDelta` (what the step changed), format version |
//! | `run_checkpoints` | named checkpoint | name → step, `created_at` |
//! | `graphs` | version of an organisation's graph | the JSON `GraphSummary`, the document, `stored_at` |
//! | `graph_agents` (0017) | graph published as an agent | name, organisation, the JSON publication, version, `updated_at` |
//!
//! Invariants:
//!
//! - **Group commit.** Every create and append goes to one writer task per
//!   journal (`journal.rs`), which takes everything queued (from
//!   any number of runs) into one transaction and answers each caller only
//!   after the commit. A step is thus never reported done before it is
//!   durable, while many runs in flight share one fsync. Rows are encoded by
//!   the callers, before they queue, so the writer only writes.
//! - **Durability on SQLite.** The shared pool runs `synchronous=NORMAL`
//!   (a committed write survives a process crash); with
//!   [`RunStoreConfig::sqlite_full_sync`] the writer switches its connection
//!   to `FULL` around its own commits, so a committed step also survives a
//!   power cut, and switches it back before the connection returns to the
//!   pool that the other stores share.
//! - **Ordering.** An append names its step number; the run row's `seq` must
//!   be the one before (`UPDATE … WHERE seq = $n`), so a stale writer (a
//!   replica that lost its lease) cannot interleave steps: its append fails
//!   and nothing is changed.
//! - **Leases.** A run row carries `lease_owner` and `lease_expires_ms`; the
//!   replica driving a run renews it, and a replica claims a `running` run
//!   whose lease expired (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
//!   serialises writers anyway). Times are the replicas' wall clocks. A run
//!   that leaves `running` drops its lease.
//! - **Bad rows.** A row of another format version, or one that does not
//!   decode (a step body, a status, a timestamp), is an error
//!   ([`OrchestratorError::CorruptRun`] for runs, a corrupt
//!   [`StorageError`] for stored graphs), never a default; nothing is
//!   written.
//! - **Retention** (`retention.rs`, issue 15): finished runs older than a
//!   cut-off are deleted with their steps and checkpoints, a bounded batch
//!   at a time.
//!
//! Statements are written once with `$N` placeholders and instantiated per
//! backend by `on_pool!`; per-backend text remains only for the write
//! lock (`BEGIN IMMEDIATE`), row locks (`SKIP LOCKED`), reading a JSON list
//! of ids, and PostgreSQL's collation.
//!
//! ## Bench figures (2026-11-25, 2 shared cores, release build)
//!
//! `cargo bench -p convergio-orchestrator --bench graphs` (checkpointed
//! section; every run journaled, a commit per step, group commit across runs
//! in flight; G1 with 256 runs in flight, G2/G3 with 2). Rows count the step
//! insert and the `runs` update of each step. Figures from the journal's
//! own pools, before it moved to the shared [`Db`].
//!
//! | backend | graph | runs/s | p50 | p99 | rows/run | bytes/run |
//! |---|---|---|---|---|---|---|
//! | SQLite FULL | G1 code review | 658 | 3.2 ms | 39.2 ms | 11 | 5,028 |
//! | SQLite FULL | G2 fan-out 1,000 | 26 | 52 ms | 100 ms | 9 | 553,571 |
//! | SQLite FULL | G3 chain 1,000 | <1 | 1.3 s | 1.3 s | 2,003 | 750,517 |
//! | SQLite NORMAL | G1 | 1,605 | 1.7 ms | 21.7 ms | 11 | 5,028 |
//! | SQLite NORMAL | G2 | 37 | 28 ms | 53 ms | 9 | 553,566 |
//! | SQLite NORMAL | G3 | 3 | 748 ms | 748 ms | 2,003 | 750,514 |
//! | PostgreSQL | G1 | 435 | 27.7 ms | 60 ms | 11 | 5,028 |
//! | PostgreSQL | G2 | 25 | 48 ms | 106 ms | 9 | 553,570 |
//! | PostgreSQL | G3 | <1 | 5.0 s | 5.0 s | 2,003 | 750,514 |
//!
//! Targets: G3 ≤ 1 MB per run (750 KB); G1 ≥ 500 runs/s on SQLite FULL.
//! G3's latency is 1,000 sequential commits (one fsync each on FULL): a
//! chain cannot share commits within one run, only across runs.
//!
//! The move onto the shared [`Db`] (issue #16), measured with
//! `BENCH_DURABLE=only` on a fresh PostgreSQL database each time, on the
//! same machine under other engineers' builds (load 12–17, so only large
//! differences mean anything). Rows and bytes per run are unchanged.
//!
//! | backend | graph | before: runs/s, p50 | after: runs/s, p50 |
//! |---|---|---|---|
//! | SQLite FULL | G1 | 354, 42.8 ms | 709, 21.1 ms |
//! | SQLite FULL | G2 | 12, 88.9 ms | 29, 39.8 ms |
//! | SQLite FULL | G3 | <1, 7.1 s | <1, 2.8 s |
//! | SQLite NORMAL | G1 | 499, 4.6 ms | 785, 1.3 ms |
//! | SQLite NORMAL | G2 | 27, 30.4 ms | 35, 21.1 ms |
//! | SQLite NORMAL | G3 | 1, 1.1 s | 2, 561 ms |
//! | PostgreSQL | G1 | 188, 57.1 ms | 347, 22.7 ms |
//! | PostgreSQL | G2 | 17, 79.9 ms | 36, 35.8 ms |
//! | PostgreSQL | G3 | <1, 10.3 s | <1, 4.2 s |

/// Runs `$body` once per backend, with `$pool` bound to that backend's sqlx
/// pool and `$backend` to its [`Backend`](crate::Backend): a statement is
/// written once and compiled for both sqlx database types (whose
/// connection and transaction types differ, so one generic function would
/// have to name every sqlx trait bound instead).
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $backend:ident| $body:expr) => {
        match $db.pool() {
            crate::Pool::Sqlite($pool) => {
                let $backend = crate::Backend::Sqlite;
                $body
            }
            crate::Pool::Postgres($pool) => {
                let $backend = crate::Backend::Postgres;
                $body
            }
        }
    };
}

/// `<$head> IN` the ids of a JSON array bound as text at `$param`: SQLite
/// reads it with `json_each`, PostgreSQL with `jsonb_array_elements_text`
/// (the backends bind no array type in common).
macro_rules! in_json_ids {
    ($backend:expr, $head:literal, $param:literal) => {
        match $backend {
            crate::Backend::Sqlite => {
                concat!($head, " IN (SELECT value FROM json_each(", $param, "))")
            }
            crate::Backend::Postgres => concat!(
                $head,
                " IN (SELECT jsonb_array_elements_text(",
                $param,
                "::jsonb))"
            ),
        }
    };
}

mod graph_agents;
mod graphs;
mod journal;
mod retention;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_orchestrator::api::{GraphDocument, GraphSummary};
use convergio_orchestrator::{
    Checkpoint, GraphAgentRow, GraphAgentStore, GraphStore, NewRun, OrchestratorError, RunFilter,
    RunJournal, RunListing, StepDelta, StoredRun,
};
use convergio_schemas::{StorageError, StorageFailure};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::Db;

/// Settings of a run journal.
#[derive(Debug, Clone)]
pub struct RunStoreConfig {
    /// The replica's name in leases (default: a random id per process).
    pub replica: String,
    /// How long a lease lasts without renewal (default 30 s).
    pub lease_ttl: Duration,
    /// On SQLite, commit steps with `synchronous=FULL` (default) rather than
    /// the pool's `NORMAL`: FULL makes every committed step survive a power
    /// cut, NORMAL only a process crash. PostgreSQL ignores it.
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

/// The result every operation of a batch gets.
type Answer = Result<(), OrchestratorError>;

/// A run row and its first steps, encoded by the caller.
struct RunRow {
    run_id: String,
    graph_id: String,
    owner: String,
    header: String,
    source: String,
    status: &'static str,
    steps: Vec<StepRow>,
}

/// A step, encoded by the caller.
struct StepRow {
    seq: i64,
    status: &'static str,
    body: String,
}

/// One write for the group-commit writer.
enum Op {
    Create {
        run: RunRow,
        done: oneshot::Sender<Answer>,
    },
    Append {
        run_id: Uuid,
        step: StepRow,
        done: oneshot::Sender<Answer>,
    },
}

/// The run journal and graph store on one database.
pub struct RunStore {
    db: Db,
    config: RunStoreConfig,
    writer: mpsc::Sender<Op>,
    stats: Arc<WriteStats>,
}

// === impl RunStore ===

impl RunStore {
    /// The journal on `db` (already migrated by [`Db::open`]), with its
    /// writer task spawned on the current tokio runtime: call it from inside
    /// one. The writer ends once the store is dropped.
    pub fn open(db: Db, config: RunStoreConfig) -> Arc<Self> {
        let stats = Arc::new(WriteStats::default());
        let (writer, queue) = mpsc::channel(config.max_batch.max(1) * 4);
        tokio::spawn(journal::write_loop(
            db.clone(),
            queue,
            config.clone(),
            stats.clone(),
        ));
        Arc::new(Self {
            db,
            config,
            writer,
            stats,
        })
    }

    /// Rows and bytes written so far.
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.db.backend().name()
    }

    /// Overwrites a stored step's body (tests use it to corrupt rows).
    pub async fn overwrite_step(
        &self,
        run_id: Uuid,
        seq: u64,
        format: i64,
        body: &str,
    ) -> Result<(), OrchestratorError> {
        journal::overwrite_step(&self.db, run_id, seq, format, body).await
    }

    async fn submit(&self, op: impl FnOnce(oneshot::Sender<Answer>) -> Op) -> Answer {
        let (done, answer) = oneshot::channel();
        let stopped = || {
            OrchestratorError::Storage(StorageError::plain(
                StorageFailure::Unavailable,
                "the run journal's writer stopped",
            ))
        };
        self.writer.send(op(done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn lease_until(&self) -> i64 {
        lease_until(&self.config)
    }
}

/// Now, in milliseconds since the epoch (lease times).
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// When a lease taken or renewed now expires.
fn lease_until(config: &RunStoreConfig) -> i64 {
    let ttl = i64::try_from(config.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_add(ttl)
}

/// JSON of `value`, or an error saying what was being encoded.
fn encode(
    value: &impl serde::Serialize,
    what: impl FnOnce() -> String,
) -> Result<String, StorageError> {
    serde_json::to_string(value)
        .map_err(|error| StorageError::new(StorageFailure::Other, what(), error))
}

/// A stored time: RFC 3339 as written by `to_rfc3339`, or `None` when the
/// text is not one.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[async_trait]
impl RunJournal for RunStore {
    fn replica(&self) -> &str {
        &self.config.replica
    }

    async fn create(&self, run: &NewRun) -> Result<(), OrchestratorError> {
        let run = journal::encode_run(run)?;
        self.submit(|done| Op::Create { run, done }).await
    }

    async fn append(&self, run_id: Uuid, delta: &StepDelta) -> Result<(), OrchestratorError> {
        let step = journal::encode_step(run_id, delta)?;
        self.submit(|done| Op::Append { run_id, step, done }).await
    }

    async fn load(&self, run_id: Uuid, up_to: Option<u64>) -> Result<StoredRun, OrchestratorError> {
        journal::load(&self.db, run_id, up_to).await
    }

    async fn name_checkpoint(
        &self,
        run_id: Uuid,
        name: &str,
    ) -> Result<Checkpoint, OrchestratorError> {
        journal::name_checkpoint(&self.db, run_id, name).await
    }

    async fn checkpoints(&self, run_id: Uuid) -> Result<Vec<Checkpoint>, OrchestratorError> {
        journal::checkpoints(&self.db, run_id).await
    }

    async fn claim(&self, run_id: Uuid) -> Result<bool, OrchestratorError> {
        journal::claim(&self.db, run_id, &self.config.replica, self.lease_until()).await
    }

    async fn renew(&self, runs: &[Uuid]) -> Result<u64, OrchestratorError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = runs.iter().map(Uuid::to_string).collect();
        let ids = encode(&ids, || "encoding the run ids to renew".to_owned())?;
        journal::renew(&self.db, &self.config.replica, self.lease_until(), &ids).await
    }

    async fn claim_expired(&self, limit: u32) -> Result<Vec<Uuid>, OrchestratorError> {
        journal::claim_expired(&self.db, &self.config.replica, self.lease_until(), limit).await
    }

    async fn cancel(&self, run_id: Uuid) -> Result<bool, OrchestratorError> {
        journal::cancel(&self.db, run_id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunListing>, OrchestratorError> {
        journal::list_runs(&self.db, filter).await
    }
}

#[async_trait]
impl GraphStore for RunStore {
    async fn put(
        &self,
        summary: &GraphSummary,
        source: &str,
    ) -> Result<GraphSummary, OrchestratorError> {
        graphs::put(&self.db, summary, source)
            .await
            .map_err(OrchestratorError::from)
    }

    async fn get(
        &self,
        org: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<GraphDocument>, OrchestratorError> {
        graphs::get(&self.db, org, name, version)
            .await
            .map_err(OrchestratorError::from)
    }

    async fn list(&self, org: &str) -> Result<Vec<GraphSummary>, OrchestratorError> {
        graphs::list(&self.db, org)
            .await
            .map_err(OrchestratorError::from)
    }
}

#[async_trait]
impl GraphAgentStore for RunStore {
    async fn put_graph_agent(
        &self,
        org: &str,
        name: &str,
        spec: &serde_json::Value,
        at: i64,
    ) -> Result<Option<GraphAgentRow>, OrchestratorError> {
        graph_agents::put(&self.db, org, name, spec, at)
            .await
            .map_err(OrchestratorError::from)
    }

    async fn get_graph_agent(
        &self,
        name: &str,
    ) -> Result<Option<GraphAgentRow>, OrchestratorError> {
        graph_agents::get(&self.db, name)
            .await
            .map_err(OrchestratorError::from)
    }

    async fn list_graph_agents(
        &self,
        org: Option<&str>,
    ) -> Result<Vec<GraphAgentRow>, OrchestratorError> {
        graph_agents::list(&self.db, org)
            .await
            .map_err(OrchestratorError::from)
    }

    async fn delete_graph_agent(&self, org: &str, name: &str) -> Result<bool, OrchestratorError> {
        graph_agents::delete(&self.db, org, name)
            .await
            .map_err(OrchestratorError::from)
    }
}
