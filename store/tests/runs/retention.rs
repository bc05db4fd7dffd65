//! Retention of durable runs (issue 15): finished runs older than the
//! window go with their steps and checkpoints, oldest first and in bounded
//! batches; running and waiting runs and younger runs stay; a pruned run is
//! unknown afterwards.

use std::sync::Arc;

use chrono::{Duration, Utc};
use convergio_orchestrator::{OrchestratorError, RunJournal};
use convergio_store::runs::{RunStore, RunStoreConfig};
use convergio_store::{Db, DbConfig};
use uuid::Uuid;

use crate::raw::Raw;

/// The store under test and raw access to its database.
async fn open(url: &str) -> (Arc<RunStore>, Raw) {
    let db = Db::open(url, &DbConfig::default())
        .await
        .expect("database opens");
    let store = RunStore::open(db, RunStoreConfig::default());
    (store, Raw::connect(url).await)
}

/// Seeds a run row of `status` created `age_minutes` ago, with two steps
/// and a named checkpoint.
pub async fn seed(raw: &Raw, run_id: Uuid, status: &str, age_minutes: i64) {
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

async fn prunes_finished_runs((store, raw): (Arc<RunStore>, Raw)) {
    let old_succeeded = Uuid::new_v4();
    let old_failed = Uuid::new_v4();
    let old_running = Uuid::new_v4();
    let old_waiting = Uuid::new_v4();
    let young_succeeded = Uuid::new_v4();
    seed(&raw, old_succeeded, "succeeded", 300).await;
    seed(&raw, old_failed, "failed", 200).await;
    seed(&raw, old_running, "running", 400).await;
    seed(&raw, old_waiting, "waiting_for_human", 400).await;
    seed(&raw, young_succeeded, "succeeded", 1).await;
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

convergio_tests::on_both_backends!(super::open; prunes_finished_runs);
