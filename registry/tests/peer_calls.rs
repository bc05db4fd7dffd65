//! The outcomes of idempotent peer calls (issue 18, migration 0011) on
//! SQLite and PostgreSQL alike: the first outcome of a key wins, keys are
//! per peer, agent and subject, and pruning deletes the oldest first.

mod support;

use convergio_registry::peer_calls::{PeerCallKey, PeerCallStore};
use convergio_store::registry::PeerCalls;
use serde_json::json;

fn key(peer: &str, subject: &str, call_key: &str) -> PeerCallKey {
    PeerCallKey {
        peer: peer.to_owned(),
        agent: "partner-echo".to_owned(),
        subject: subject.to_owned(),
        key: call_key.to_owned(),
    }
}

async fn first_outcome_wins_and_old_ones_are_pruned(backend: support::Backend) {
    let calls = PeerCalls::new(&backend.db);
    let first = key("a.example", "alice", "run/node/1");
    assert_eq!(calls.outcome(&first).await.expect("read"), None);
    let answer = json!({"task": {"id": "t1", "status": {"state": "TASK_STATE_COMPLETED"}}});
    assert!(calls
        .remember_outcome(&first, &answer, 100)
        .await
        .expect("store"));
    assert!(
        !calls
            .remember_outcome(&first, &json!({"other": true}), 101)
            .await
            .expect("store again"),
        "the first outcome of a key wins"
    );
    assert_eq!(calls.outcome(&first).await.expect("read"), Some(answer));
    for other in [
        key("c.example", "alice", "run/node/1"),
        key("a.example", "bob", "run/node/1"),
    ] {
        assert_eq!(
            calls.outcome(&other).await.expect("read"),
            None,
            "{other:?}"
        );
    }
    assert!(calls
        .remember_outcome(&key("a.example", "alice", "later"), &json!(1), 200)
        .await
        .expect("store"));
    assert_eq!(calls.count_outcomes().await.expect("count"), 2);
    assert_eq!(calls.prune_outcomes(Some(150), 10).await.expect("prune"), 1);
    assert_eq!(calls.outcome(&first).await.expect("read"), None);
    assert_eq!(calls.prune_outcomes(None, 10).await.expect("prune all"), 1);
    assert_eq!(calls.count_outcomes().await.expect("count"), 0);
}

convergio_tests::on_both_backends!(crate::support::open; first_outcome_wins_and_old_ones_are_pruned);
