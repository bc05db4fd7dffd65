//! Graphs published as agents (issue 18, migration 0017): versions per
//! write, a name one organisation holds, and a stored spec that does not
//! decode is an error.

use std::sync::Arc;

use convergio_orchestrator::{GraphAgentStore, OrchestratorError};
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use serde_json::json;

use crate::raw::Raw;

async fn open(url: &str) -> (Arc<RunStore>, Raw) {
    let db = Db::open(url, &DbConfig::default())
        .await
        .expect("database opens");
    (
        RunStore::open(db, RunStoreConfig::default()),
        Raw::connect(url).await,
    )
}

async fn publications_are_versioned_and_a_name_belongs_to_one_org(subject: (Arc<RunStore>, Raw)) {
    let (store, raw) = subject;
    let spec = json!({"graph": "review", "tags": ["external"]});
    let first = store
        .put_graph_agent("c.example", "reviewer", &spec, 100)
        .await
        .expect("stored")
        .expect("the name is free");
    assert_eq!((first.version, first.updated_at), (1, 100));
    let again = store
        .put_graph_agent("c.example", "reviewer", &json!({"graph": "other"}), 200)
        .await
        .expect("stored")
        .expect("its own name");
    assert_eq!(again.version, 2);
    let taken = store
        .put_graph_agent("b.example", "reviewer", &spec, 300)
        .await
        .expect("answered");
    assert_eq!(taken, None, "another organisation holds the name");
    let read = store
        .get_graph_agent("reviewer")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, again);
    store
        .put_graph_agent("b.example", "auditor", &spec, 400)
        .await
        .expect("stored")
        .expect("free");
    let names = |rows: Vec<convergio_orchestrator::GraphAgentRow>| {
        rows.into_iter().map(|row| row.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_graph_agents(None).await.expect("listed")),
        ["auditor", "reviewer"]
    );
    assert_eq!(
        names(
            store
                .list_graph_agents(Some("c.example"))
                .await
                .expect("listed")
        ),
        ["reviewer"]
    );
    assert!(!store
        .delete_graph_agent("b.example", "reviewer")
        .await
        .expect("answered"));
    raw.execute("UPDATE graph_agents SET spec = 'not json' WHERE name = 'auditor'")
        .await;
    assert!(matches!(
        store.get_graph_agent("auditor").await,
        Err(OrchestratorError::Storage(error)) if error.failure() == convergio_schemas::StorageFailure::Corrupt
    ));
    assert!(store
        .delete_graph_agent("c.example", "reviewer")
        .await
        .expect("deleted"));
    assert_eq!(store.get_graph_agent("reviewer").await.expect("read"), None);
}

convergio_tests::on_both_backends!(super::open; publications_are_versioned_and_a_name_belongs_to_one_org);
