//! Retention of the per-call registry tables (issue 15) on SQLite and
//! PostgreSQL alike: task routes older than the window are deleted oldest
//! first in bounded batches, a younger one survives, a pruned task id is
//! unknown afterwards, a row cap deletes the oldest beyond it, expired
//! nonces go while live ones stay, and the database reports its size.

mod support;

use chrono::{Duration, Utc};
use convergio_registry::model::TaskRoute;
use convergio_registry::peers::PeerStore;
use convergio_registry::retention::RetentionStore;
use convergio_schemas::AgentId;
use convergio_store::registry::{Peers, Retention};

fn route(task_id: &str, age_minutes: i64) -> TaskRoute {
    let at = Utc::now() - Duration::minutes(age_minutes);
    TaskRoute {
        task_id: task_id.to_owned(),
        context_id: None,
        agent_id: AgentId::internal("echo").expect("valid id"),
        owner: "alice".to_owned(),
        created_at: at,
        updated_at: at,
    }
}

async fn prunes_task_routes_and_nonces(backend: support::Backend) {
    let store = &backend.store;
    let retention = Retention::new(&backend.db);
    for (task, age) in [("old-1", 300), ("old-2", 200), ("old-3", 120), ("young", 1)] {
        store.put_task_route(&route(task, age)).await.expect("put");
    }
    assert_eq!(retention.count_task_routes().await.expect("count"), 4);

    // A one-hour window, in batches of two: the oldest go first.
    let cutoff = Some(Utc::now() - Duration::hours(1));
    assert_eq!(
        retention
            .prune_task_routes(cutoff, 2)
            .await
            .expect("first batch"),
        2
    );
    assert!(store.get_task_route("old-1").await.expect("get").is_none());
    assert!(store.get_task_route("old-2").await.expect("get").is_none());
    assert!(store.get_task_route("old-3").await.expect("get").is_some());
    assert_eq!(
        retention.prune_task_routes(cutoff, 2).await.expect("rest"),
        1
    );
    assert_eq!(
        retention.prune_task_routes(cutoff, 2).await.expect("none"),
        0
    );
    assert!(
        store.get_task_route("young").await.expect("get").is_some(),
        "a route younger than the window survives"
    );
    assert!(
        store.get_task_route("old-3").await.expect("get").is_none(),
        "a pruned task id is unknown"
    );

    // A follow-up rewrites a route and keeps it young.
    store.put_task_route(&route("young", 0)).await.expect("put");
    store
        .put_task_route(&route("second", 5))
        .await
        .expect("put");
    store.put_task_route(&route("third", 3)).await.expect("put");
    // A row cap of one: the two least recently written go.
    assert_eq!(retention.prune_task_routes(None, 2).await.expect("cap"), 2);
    assert!(store.get_task_route("young").await.expect("get").is_some());
    assert_eq!(retention.count_task_routes().await.expect("count"), 1);

    let peers = Peers::new(&backend.db);
    for (nonce, expires) in [("n1", 100), ("n2", 150), ("n3", 300)] {
        assert!(peers
            .remember_nonce("b.example", nonce, expires)
            .await
            .expect("nonce"));
    }
    assert_eq!(retention.prune_nonces(200, 1).await.expect("one"), 1);
    assert_eq!(retention.prune_nonces(200, 10).await.expect("rest"), 1);
    assert!(
        !peers
            .remember_nonce("b.example", "n3", 300)
            .await
            .expect("replay"),
        "a nonce inside its window is kept, so its replay is still refused"
    );

    let size = retention.database_size().await.expect("size");
    assert!(size.bytes > 0, "{size:?}");
    retention.compact().await.expect("compaction");
}

convergio_tests::on_both_backends!(crate::support::open; prunes_task_routes_and_nonces);

/// A new SQLite file gives pruned pages back: its size after pruning most
/// rows and compacting is smaller than before.
#[tokio::test]
async fn compaction_shrinks_a_new_sqlite_file() {
    let backend = support::sqlite().await;
    let retention = Retention::new(&backend.db);
    for index in 0..3000 {
        backend
            .store
            .put_task_route(&route(&format!("task-{index:05}-{}", "x".repeat(200)), 90))
            .await
            .expect("put");
    }
    retention.compact().await.expect("checkpoint");
    let full = retention.database_size().await.expect("size");
    let cutoff = Some(Utc::now() - Duration::hours(1));
    while retention
        .prune_task_routes(cutoff, 1000)
        .await
        .expect("prune")
        > 0
    {}
    let released = retention.compact().await.expect("compaction");
    let pruned = retention.database_size().await.expect("size");
    assert!(released > 0, "nothing released: {full:?} then {pruned:?}");
    assert!(pruned.bytes < full.bytes, "{full:?} then {pruned:?}");
    backend.finish().await;
}
