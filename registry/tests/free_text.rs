//! Free-text discovery follows every kind of write and survives reopening
//! the database, on SQLite (whose ranked index lives in memory and is built
//! at open) and PostgreSQL alike.

mod support;

use std::sync::Arc;

use convergio_registry::model::{now, Actor, TrustChange};
use convergio_registry::{DiscoveryQuery, Store};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use support::{card, record, record_in, Backend};

fn text(q: &str) -> DiscoveryQuery {
    DiscoveryQuery {
        q: Some(q.into()),
        ..Default::default()
    }
}

async fn found(store: &Arc<dyn Store>, query: DiscoveryQuery) -> Vec<String> {
    store
        .discover(&query)
        .await
        .expect("discovery works")
        .items
        .iter()
        .map(|record| record.id.to_string())
        .collect()
}

/// Two agents that share the word "harbour", one of them by name.
async fn seed(store: &Arc<dyn Store>) -> (AgentId, AgentId) {
    let pilot = record_in(
        "pilot",
        None,
        AgentRole::Worker,
        TrustLevel::Registered,
        card(
            "Harbour pilot",
            "Guides ships into port",
            &[("berth", "Berth", &["maritime"])],
            "text/plain",
            "application/json",
        ),
    );
    let tides = record_in(
        "tides",
        None,
        AgentRole::Planner,
        TrustLevel::Registered,
        card(
            "Tides",
            "Tide tables for every harbour",
            &[("tide-table", "Tide table", &["maritime"])],
            "text/plain",
            "text/plain",
        ),
    );
    store.insert(&pilot).await.expect("insert pilot");
    store.insert(&tides).await.expect("insert tides");
    (pilot.id, tides.id)
}

async fn free_text_follows_updates_trust_changes_and_deregistration(backend: Backend) {
    let store = &backend.store;
    let (pilot, tides) = seed(store).await;
    let both = vec![pilot.to_string(), tides.to_string()];
    assert_eq!(found(store, text("harbour")).await, both);

    // An update replaces the text: the old words stop matching.
    let renamed = record(
        "pilot",
        card(
            "River pilot",
            "Guides barges upstream",
            &[("lock", "Lock", &["inland"])],
            "text/plain",
            "application/json",
        ),
    );
    store.update(&pilot, 1, &renamed).await.expect("update");
    assert_eq!(found(store, text("harbour")).await, vec![tides.to_string()]);
    assert!(found(store, text("ships")).await.is_empty());
    assert_eq!(found(store, text("barges")).await, vec![pilot.to_string()]);

    // A trust change is seen by the trust filter of a ranked query.
    let mut trusted = text("pilot");
    trusted.min_trust = Some(TrustLevel::Trusted);
    assert!(found(store, trusted.clone()).await.is_empty());
    store
        .set_trust(
            &pilot,
            Some(2),
            &TrustChange {
                agent_id: pilot.clone(),
                from: TrustLevel::Registered,
                to: TrustLevel::Trusted,
                actor: Actor::admin(),
                reason: "checked".into(),
                at: now(),
            },
        )
        .await
        .expect("trust");
    assert_eq!(found(store, trusted).await, vec![pilot.to_string()]);

    // Deregistration hides the agent unless deleted agents are asked for.
    store.delete(&tides, None, now()).await.expect("delete");
    assert!(found(store, text("tide")).await.is_empty());
    let mut with_deleted = text("tide");
    with_deleted.include_deleted = true;
    assert_eq!(found(store, with_deleted).await, vec![tides.to_string()]);

    // Registered again: found again, with its new text.
    let back = record(
        "tides",
        card(
            "Tides",
            "Tide tables for every estuary",
            &[("tide-table", "Tide table", &["maritime"])],
            "text/plain",
            "text/plain",
        ),
    );
    store.insert(&back).await.expect("register again");
    assert_eq!(found(store, text("estuary")).await, vec![tides.to_string()]);
    assert!(found(store, text("harbour")).await.is_empty());
}

async fn a_reopened_store_ranks_as_before(backend: Backend) {
    let store = &backend.store;
    let (pilot, _) = seed(store).await;
    store.delete(&pilot, None, now()).await.expect("delete");
    let queries = [
        text("harbour"),
        text("maritime tide"),
        DiscoveryQuery {
            include_deleted: true,
            ..text("harbour")
        },
        DiscoveryQuery {
            role: Some(AgentRole::Planner),
            output_mode: Some("text/plain".into()),
            ..text("tables")
        },
    ];
    let mut before = Vec::new();
    for query in &queries {
        before.push(found(store, query.clone()).await);
    }
    // A second database handle on the same data: its agent store builds
    // SQLite's text index from the rows again.
    let reopened = support::open_store(&backend.url).await;
    for (query, expected) in queries.iter().zip(&before) {
        assert_eq!(
            &found(&reopened, query.clone()).await,
            expected,
            "{query:?}"
        );
    }
    assert_eq!(
        before[2].len(),
        2,
        "the deregistered agent is still indexed"
    );
}

convergio_tests::on_both_backends!(
    crate::support::open;
    free_text_follows_updates_trust_changes_and_deregistration,
    a_reopened_store_ranks_as_before,
);
