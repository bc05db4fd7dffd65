//! Stored rows that do not decode are errors, never defaults.

use std::sync::Arc;

use convergio_orchestrator::api::GraphSummary;
use convergio_orchestrator::{GraphStore, OrchestratorError, RunFilter, RunJournal};
use convergio_schemas::StorageFailure;
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use uuid::Uuid;

use crate::raw::Raw;
use crate::retention::seed;

async fn open(url: &str) -> (Arc<RunStore>, Raw) {
    let db = Db::open(url, &DbConfig::default())
        .await
        .expect("database opens");
    let store = RunStore::open(db, RunStoreConfig::default());
    (store, Raw::connect(url).await)
}

fn alice() -> RunFilter {
    RunFilter {
        owner: "alice".to_owned(),
        limit: 10,
        ..RunFilter::default()
    }
}

fn is_corrupt_graph(result: Result<impl std::fmt::Debug, OrchestratorError>) -> bool {
    matches!(result, Err(OrchestratorError::Storage(error))
        if error.failure() == StorageFailure::Corrupt && error.context().contains("stored_at"))
}

// Regression: issue #16 — a stored time that did not parse was read as
// 1970-01-01 (`unwrap_or_default`): listings, checkpoints and stored graphs
// said so instead of refusing the row.
async fn stored_times_that_do_not_parse_are_errors((store, raw): (Arc<RunStore>, Raw)) {
    let run_id = Uuid::now_v7();
    seed(&raw, run_id, "succeeded", 5).await;
    assert_eq!(store.list_runs(&alice()).await.expect("lists").len(), 1);
    assert_eq!(store.checkpoints(run_id).await.expect("lists").len(), 1);

    raw.execute(&format!(
        "UPDATE runs SET created_at = 'not a time' WHERE run_id = '{run_id}'"
    ))
    .await;
    let listed = store.list_runs(&alice()).await;
    assert!(
        matches!(&listed, Err(OrchestratorError::CorruptRun { message, .. }) if message.contains("created_at")),
        "{listed:?}"
    );

    raw.execute(&format!(
        "UPDATE run_checkpoints SET created_at = '' WHERE run_id = '{run_id}'"
    ))
    .await;
    let checkpoints = store.checkpoints(run_id).await;
    assert!(
        matches!(&checkpoints, Err(OrchestratorError::CorruptRun { message, .. }) if message.contains("created_at")),
        "{checkpoints:?}"
    );

    let summary = GraphSummary {
        name: "chain".to_owned(),
        org: "a.example".to_owned(),
        description: None,
        version: 0,
        nodes: 1,
        edges: 0,
        agents: Vec::new(),
        stored_at: chrono::Utc::now(),
    };
    let stored = store.put(&summary, "v1").await.expect("stores");
    let read = store
        .get("a.example", "chain", None)
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!(read.summary.stored_at, stored.stored_at);
    raw.execute("UPDATE graphs SET stored_at = 'yesterday'")
        .await;
    assert!(is_corrupt_graph(
        store.get("a.example", "chain", None).await
    ));
    assert!(is_corrupt_graph(store.list("a.example").await));
}

convergio_tests::on_both_backends!(super::open; stored_times_that_do_not_parse_are_errors);
