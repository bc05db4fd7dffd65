//! Stored plans (issue 19) on SQLite and PostgreSQL
//! (`CONVERGIO_TEST_POSTGRES_URL`, a fresh database per test), each case
//! run on both through `convergio_tests::on_both_backends!`: every change
//! is a new version, older versions stay readable, two replicas writing
//! one plan at once get distinct versions, and a listing shows one owner's
//! latest versions, newest first, paged and filtered by status.

use std::sync::Arc;

use convergio_planner::store::sample_plan;
use convergio_planner::{PlanFilter, PlanStatus, PlanStore};
use convergio_store::plans::SqlPlanStore;
use convergio_store::{Db, DbConfig};
use uuid::Uuid;

async fn open(url: &str) -> String {
    url.to_owned()
}

async fn store(url: &str) -> Arc<dyn PlanStore> {
    let db = Db::open(url, &DbConfig::default())
        .await
        .expect("database opens");
    Arc::new(SqlPlanStore::new(&db))
}

async fn plans_are_versioned_and_read_back(url: String) {
    let plans = store(&url).await;
    let id = Uuid::new_v4();
    let first = plans.put(&sample_plan(id, "alice")).await.expect("stored");
    assert_eq!(first.version, 1);
    let mut waiting = first.clone();
    waiting.status = PlanStatus::AwaitingReview;
    waiting.pending_execution = Some(serde_json::json!({"mode": "async"}));
    let second = plans.put(&waiting).await.expect("stored");
    assert_eq!(second.version, 2);
    let latest = plans.get(id, None).await.expect("read").expect("found");
    assert_eq!(latest.status, PlanStatus::AwaitingReview);
    assert_eq!(latest.version, 2);
    assert_eq!(latest.document, first.document);
    assert_eq!(latest.stored_at, second.stored_at);
    let old = plans.get(id, Some(1)).await.expect("read").expect("found");
    assert_eq!(old.status, PlanStatus::Proposed);
    assert!(plans.get(id, Some(3)).await.expect("read").is_none());
    assert!(plans
        .get(Uuid::new_v4(), None)
        .await
        .expect("read")
        .is_none());
}

async fn two_replicas_get_distinct_versions(url: String) {
    let (left, right) = (store(&url).await, store(&url).await);
    let id = Uuid::new_v4();
    let mut writers = Vec::new();
    for index in 0..8 {
        let plans = if index % 2 == 0 {
            left.clone()
        } else {
            right.clone()
        };
        writers.push(tokio::spawn(async move {
            plans
                .put(&sample_plan(id, "alice"))
                .await
                .map(|plan| plan.version)
        }));
    }
    let mut versions = Vec::new();
    for writer in writers {
        versions.push(writer.await.expect("joined").expect("stored"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
}

async fn an_owners_latest_versions_are_listed_newest_first(url: String) {
    let plans = store(&url).await;
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        plans.put(&sample_plan(*id, "alice")).await.expect("stored");
    }
    plans
        .put(&sample_plan(Uuid::now_v7(), "bob"))
        .await
        .expect("stored");
    let mut rejected = sample_plan(ids[1], "alice");
    rejected.status = PlanStatus::Rejected;
    plans.put(&rejected).await.expect("stored");
    let listed = |filter: PlanFilter| {
        let plans = plans.clone();
        async move {
            plans
                .list(&filter)
                .await
                .expect("listed")
                .iter()
                .map(|plan| (plan.plan_id, plan.version, plan.status))
                .collect::<Vec<_>>()
        }
    };
    let alice = PlanFilter {
        owner: "alice".to_owned(),
        limit: 10,
        ..PlanFilter::default()
    };
    let (proposed, rejected) = (PlanStatus::Proposed, PlanStatus::Rejected);
    assert_eq!(
        listed(alice.clone()).await,
        [
            (ids[2], 1, proposed),
            (ids[1], 2, rejected),
            (ids[0], 1, proposed)
        ]
    );
    let second_page = PlanFilter {
        before: Some(ids[2]),
        limit: 1,
        ..alice.clone()
    };
    assert_eq!(listed(second_page).await, [(ids[1], 2, rejected)]);
    // The status of the latest version decides, not of an older one.
    let only_proposed = PlanFilter {
        status: Some(proposed),
        ..alice
    };
    assert_eq!(
        listed(only_proposed).await,
        [(ids[2], 1, proposed), (ids[0], 1, proposed)]
    );
    let nobody = PlanFilter {
        owner: "carol".to_owned(),
        limit: 10,
        ..PlanFilter::default()
    };
    assert!(listed(nobody).await.is_empty());
}

convergio_tests::on_both_backends!(crate::open;
    plans_are_versioned_and_read_back,
    two_replicas_get_distinct_versions,
    an_owners_latest_versions_are_listed_newest_first,
);
