//! Recorded stream events (issue 24, migration 0015) on SQLite and
//! PostgreSQL alike: numbered from 1 per task in the insert, so appends
//! racing from two pools (two replicas) all land with distinct numbers;
//! read back in order after a number; pruned oldest first.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use convergio_registry::stream_events::StreamEventStore;
use convergio_store::registry::StreamEvents;
use convergio_store::{Db, DbConfig};
use serde_json::json;

fn event(task: &str, n: u64) -> serde_json::Value {
    json!({"statusUpdate": {"taskId": task, "metadata": {"n": n}}})
}

async fn events_are_numbered_per_task_and_read_in_order(backend: support::Backend) {
    let log = StreamEvents::new(&backend.db);
    assert_eq!(log.last_seq("t1").await.expect("last"), 0);
    for n in 1..=3 {
        assert_eq!(
            log.append_event("t1", &event("t1", n), 100)
                .await
                .expect("append"),
            n
        );
    }
    assert_eq!(
        log.append_event("t2", &event("t2", 1), 100)
            .await
            .expect("append"),
        1,
        "numbers are per task"
    );
    let after_one = log.events_after("t1", 1, 10).await.expect("read");
    assert_eq!(
        after_one.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(after_one[0].event, event("t1", 2));
    assert_eq!(log.events_after("t1", 0, 2).await.expect("page").len(), 2);
    assert!(log
        .events_after("t1", 3, 10)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(log.last_seq("t1").await.expect("last"), 3);
    assert_eq!(log.count_events().await.expect("count"), 4);
    assert_eq!(log.prune_events(Some(101), 2).await.expect("prune"), 2);
    assert_eq!(log.count_events().await.expect("count"), 2);
    assert_eq!(log.prune_events(None, 10).await.expect("prune all"), 2);
}

async fn appends_racing_from_two_replicas_all_land_once(backend: support::Backend) {
    let other = Db::open(&backend.url, &DbConfig::default())
        .await
        .expect("a second pool");
    let logs: [Arc<dyn StreamEventStore>; 2] = [
        Arc::new(StreamEvents::new(&backend.db)),
        Arc::new(StreamEvents::new(&other)),
    ];
    let mut appends = Vec::new();
    for n in 0..16u64 {
        let log = Arc::clone(&logs[usize::try_from(n % 2).expect("small")]);
        appends.push(tokio::spawn(async move {
            log.append_event("busy", &event("busy", n), 100).await
        }));
    }
    let mut numbers = BTreeSet::new();
    for append in appends {
        numbers.insert(append.await.expect("joined").expect("appended"));
    }
    assert_eq!(numbers, (1..=16).collect::<BTreeSet<u64>>());
    let stored = logs[0].events_after("busy", 0, 100).await.expect("read");
    assert_eq!(stored.len(), 16);
}

convergio_tests::on_both_backends!(crate::support::open;
    events_are_numbered_per_task_and_read_in_order,
    appends_racing_from_two_replicas_all_land_once);
