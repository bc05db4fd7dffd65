//! Push configs and deliveries (issue 24, migration 0016) on SQLite and
//! PostgreSQL alike: a task's config ids are unique, a webhook finds its
//! config, deletes are exact, and a delivery's attempts and end state are
//! kept in order.

mod support;

use convergio_registry::push::{Delivery, DeliveryStatus, PushConfig, PushStore};
use convergio_store::registry::PushTables;
use serde_json::json;

fn config(task: &str, id: &str, hook: &str) -> PushConfig {
    PushConfig {
        task_id: task.to_owned(),
        id: id.to_owned(),
        agent: "echo".to_owned(),
        owner: "alice".to_owned(),
        config: json!({"url": "https://caller.example/hook", "token": "mine"}),
        hook: hook.to_owned(),
        hook_token: format!("secret-{hook}"),
        created_at: 100,
    }
}

async fn configs_and_deliveries_round_trip(backend: support::Backend) {
    let push = PushTables::new(&backend.db);
    assert!(push
        .insert_config(&config("t1", "a", "h1"))
        .await
        .expect("insert"));
    assert!(
        !push
            .insert_config(&config("t1", "a", "h2"))
            .await
            .expect("insert again"),
        "a task's config ids are unique"
    );
    assert!(push
        .insert_config(&config("t1", "b", "h3"))
        .await
        .expect("insert"));
    assert!(push
        .insert_config(&config("t2", "a", "h4"))
        .await
        .expect("insert"));
    let listed = push.configs("t1").await.expect("list");
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(listed[0], config("t1", "a", "h1"));
    let hooked = push
        .config_by_hook("h3")
        .await
        .expect("by hook")
        .expect("found");
    assert_eq!((hooked.task_id.as_str(), hooked.id.as_str()), ("t1", "b"));
    assert!(push
        .config_by_hook("nope")
        .await
        .expect("by hook")
        .is_none());
    assert!(push.config("t1", "b").await.expect("get").is_some());
    assert!(push.delete_config("t1", "b").await.expect("delete"));
    assert!(!push.delete_config("t1", "b").await.expect("delete again"));
    assert!(push.config("t1", "b").await.expect("get").is_none());
    // A config stored before its task was known gets it once.
    assert!(push
        .insert_config(&config("?h5", "c", "h5"))
        .await
        .expect("insert"));
    assert!(push.bind_task("h5", "?h5", "t3").await.expect("bind"));
    assert!(!push.bind_task("h5", "?h5", "t4").await.expect("bind again"));
    assert_eq!(
        push.config_by_hook("h5")
            .await
            .expect("hook")
            .expect("found")
            .task_id,
        "t3"
    );
    assert!(push.delete_config("t3", "c").await.expect("delete"));

    let delivery = Delivery {
        id: "d1".to_owned(),
        task_id: "t1".to_owned(),
        config_id: "a".to_owned(),
        owner: "alice".to_owned(),
        payload: json!({"statusUpdate": {"taskId": "t1"}}),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: 100,
        last_error: None,
        created_at: 100,
        updated_at: 100,
    };
    push.insert_delivery(&delivery).await.expect("delivery");
    push.update_delivery("d1", DeliveryStatus::Pending, 1, Some("503"), 102, 101)
        .await
        .expect("attempt");
    // Overdue: another replica may take it over, once.
    assert!(push.orphaned(102, 10).await.expect("orphans").is_empty());
    let orphans = push.orphaned(103, 10).await.expect("orphans");
    assert_eq!(orphans.len(), 1);
    assert!(push.claim(&orphans[0], 110).await.expect("claim"));
    assert!(!push.claim(&orphans[0], 111).await.expect("claim again"));
    assert!(push.orphaned(103, 10).await.expect("orphans").is_empty());
    push.update_delivery("d1", DeliveryStatus::Dead, 2, Some("503 again"), 110, 103)
        .await
        .expect("dead");
    assert!(push
        .orphaned(i64::MAX, 10)
        .await
        .expect("orphans")
        .is_empty());
    let stored = push.deliveries("t1").await.expect("deliveries");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, DeliveryStatus::Dead);
    assert_eq!(stored[0].attempts, 2);
    assert_eq!(stored[0].last_error.as_deref(), Some("503 again"));
    assert_eq!(stored[0].updated_at, 103);
    assert_eq!(stored[0].payload, delivery.payload);
    assert!(push.deliveries("t2").await.expect("none").is_empty());
    // Pruning takes the oldest deliveries first, then configs.
    assert_eq!(push.count().await.expect("count"), 3);
    assert_eq!(push.prune(Some(101), 2).await.expect("prune"), 2);
    assert!(push.deliveries("t1").await.expect("deliveries").is_empty());
    assert_eq!(push.prune(None, 10).await.expect("prune all"), 1);
    assert_eq!(push.count().await.expect("count"), 0);
}

convergio_tests::on_both_backends!(crate::support::open; configs_and_deliveries_round_trip);
