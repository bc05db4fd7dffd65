//! Retention of durable runs (issue 15) on SQLite and PostgreSQL: finished
//! runs older than the window go with their steps and checkpoints, oldest
//! first and in bounded batches; running and waiting runs and younger runs
//! stay; a pruned run is unknown afterwards.

use std::sync::Arc;

use chrono::{Duration, Utc};
use convergio_orchestrator::{OrchestratorError, RunJournal};
use convergio_runs::{connect, RunStore, RunStoreConfig};
use convergio_tests::postgres::TestDatabase;
use uuid::Uuid;

/// Raw SQL against the test database, to seed rows of chosen ages.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn execute(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect("sql runs");
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count")
    }
}

async fn sqlite() -> (Arc<RunStore>, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/runs.db", dir.path().display());
    let store = connect(&url, RunStoreConfig::default())
        .await
        .expect("run store opens");
    let raw = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
    (store, Raw::Sqlite(raw), dir)
}

async fn postgres() -> (Arc<RunStore>, Raw, TestDatabase) {
    let database = TestDatabase::create("convergio_rr").await;
    let store = connect(database.url(), RunStoreConfig::default())
        .await
        .expect("run store opens");
    let raw = sqlx::PgPool::connect(database.url())
        .await
        .expect("postgres");
    (store, Raw::Postgres(raw), database)
}

/// Seeds a run row of `status` created `age_minutes` ago, with two steps
/// and a named checkpoint.
async fn seed(raw: &Raw, run_id: Uuid, status: &str, age_minutes: i64) {
    let created_at = (Utc::now() - Duration::minutes(age_minutes)).to_rfc3339();
    raw.execute(&format!(
        "INSERT INTO runs (run_id, graph_id, owner, format, header, source, status, seq, created_at) \
         VALUES ('{run_id}', 'g', 'alice', 1, '{{}}', '', '{status}', 2, '{created_at}')"
    ))
    .await;
    for seq in 1..=2 {
        raw.execute(&format!(
            "INSERT INTO run_steps (run_id, seq, format, body) VALUES ('{run_id}', {seq}, 1, '{{}}')"
        ))
        .await;
    }
    raw.execute(&format!(
        "INSERT INTO run_checkpoints (run_id, name, seq, created_at) \
         VALUES ('{run_id}', 'c', 1, '{created_at}')"
    ))
    .await;
}

async fn prunes_finished_runs(store: &RunStore, raw: &Raw) {
    let old_succeeded = Uuid::new_v4();
    let old_failed = Uuid::new_v4();
    let old_running = Uuid::new_v4();
    let old_waiting = Uuid::new_v4();
    let young_succeeded = Uuid::new_v4();
    seed(raw, old_succeeded, "succeeded", 300).await;
    seed(raw, old_failed, "failed", 200).await;
    seed(raw, old_running, "running", 400).await;
    seed(raw, old_waiting, "waiting_for_human", 400).await;
    seed(raw, young_succeeded, "succeeded", 1).await;
    assert_eq!(store.count_runs().await.expect("count"), 5);

    let cutoff = Some(Utc::now() - Duration::hours(1));
    assert_eq!(store.prune_finished(cutoff, 1).await.expect("batch"), 1);
    assert!(
        matches!(
            store.load(old_succeeded, None).await,
            Err(OrchestratorError::RunNotFound { .. })
        ),
        "the oldest finished run went first and is unknown now"
    );
    assert_eq!(store.prune_finished(cutoff, 1).await.expect("batch"), 1);
    assert_eq!(store.prune_finished(cutoff, 1).await.expect("none"), 0);
    for kept in [old_running, old_waiting, young_succeeded] {
        let rows = raw
            .count(&format!(
                "SELECT COUNT(*) FROM runs WHERE run_id = '{kept}'"
            ))
            .await;
        assert_eq!(rows, 1, "run {kept} is kept");
    }
    for table in ["run_steps", "run_checkpoints"] {
        let left = raw
            .count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE run_id IN ('{old_succeeded}', '{old_failed}')"
            ))
            .await;
        assert_eq!(left, 0, "{table} of pruned runs");
    }
    assert_eq!(raw.count("SELECT COUNT(*) FROM run_steps").await, 6);

    // Without a cut-off (a row cap), only finished runs are candidates.
    assert_eq!(store.prune_finished(None, 10).await.expect("cap"), 1);
    assert_eq!(store.count_runs().await.expect("count"), 2);
}

#[tokio::test]
async fn prunes_finished_runs_on_sqlite() {
    let (store, raw, _dir) = sqlite().await;
    prunes_finished_runs(&store, &raw).await;
}

#[tokio::test]
async fn prunes_finished_runs_on_postgres() {
    let (store, raw, _database) = postgres().await;
    prunes_finished_runs(&store, &raw).await;
    if let Raw::Postgres(pool) = raw {
        pool.close().await;
    }
}
