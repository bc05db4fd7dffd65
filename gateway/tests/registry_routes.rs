//! Routes built from registry records are kept between calls, and every
//! write to an agent (new card, new upstreams, trust, deregistration) is
//! seen by the next call: a kept route is used only while the registry
//! still hands out the record it was built from. A context's holder is
//! kept once claimed.

use std::sync::Arc;

use convergio_gateway::a2a::{RouteTable, RouteTarget};
use convergio_gateway::RegistryRoutes;
use convergio_registry::{Actor, AnyUpstream, Registration, Registry, RegistryConfig};
use convergio_schemas::{AgentId, TrustLevel};
use serde_json::{json, Value};

fn card(port: u16, description: &str) -> Value {
    json!({
        "name": "weather", "description": description, "version": "1",
        "supportedInterfaces": [{"url": format!("http://127.0.0.1:{port}/"),
            "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "forecast", "name": "forecast", "description": "forecasts", "tags": ["weather"]}]
    })
}

async fn register(registry: &Registry, port: u16, description: &str) {
    registry
        .upsert_system(Registration {
            name: Some("weather".to_owned()),
            org: None,
            role: None,
            card: card(port, description),
            upstreams: None,
            trust: None,
        })
        .await
        .expect("registers");
}

fn url_of(target: &RouteTarget) -> &str {
    target
        .interfaces
        .first()
        .map(|interface| interface.url.as_str())
        .unwrap_or_default()
}

/// The route to `weather`, which must be known.
async fn weather(routes: &RegistryRoutes) -> Arc<RouteTarget> {
    routes
        .resolve("weather")
        .await
        .expect("resolves")
        .expect("known")
}

/// Routes over a registry on a fresh SQLite file holding `weather` (its
/// upstream on port 1111), with the database handle and what keeps the
/// file alive.
async fn weather_on_sqlite() -> (
    convergio_tests::db::TestPlace,
    convergio_store::Db,
    Registry,
    RegistryRoutes,
) {
    let place = convergio_tests::db::TestPlace::sqlite();
    let (db, agents) = convergio_tests::db::agent_store(place.url()).await;
    let registry = Registry::new(agents, RegistryConfig::default(), Arc::new(AnyUpstream));
    let routes = RegistryRoutes::new(registry.clone());
    register(&registry, 1111, "first").await;
    (place, db, registry, routes)
}

#[tokio::test]
async fn a_kept_route_never_outlives_the_record_it_came_from() {
    let (_place, _db, registry, routes) = weather_on_sqlite().await;

    let first = weather(&routes).await;
    assert_eq!(url_of(&first), "http://127.0.0.1:1111/");
    let again = weather(&routes).await;
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged agent is not rebuilt"
    );

    // A new card with another upstream: the very next call goes there.
    register(&registry, 2222, "moved").await;
    let moved = weather(&routes).await;
    assert_eq!(url_of(&moved), "http://127.0.0.1:2222/");
    assert_eq!(moved.card["description"], json!("moved"));

    // A trust change is a write too: policy must see the new level.
    let id = AgentId::internal("weather").expect("id");
    registry
        .set_trust(&Actor::system(), &id, TrustLevel::Trusted, "vetted", None)
        .await
        .expect("trust");
    let trusted = weather(&routes).await;
    assert_eq!(
        trusted.facts.as_ref().map(|facts| facts.trust),
        Some(TrustLevel::Trusted)
    );

    // Deregistered: unknown at once; registered again: routed again.
    registry
        .deregister(&Actor::system(), &id, None)
        .await
        .expect("deregisters");
    assert!(routes.resolve("weather").await.expect("resolves").is_none());
    register(&registry, 3333, "back").await;
    let back = weather(&routes).await;
    assert_eq!(url_of(&back), "http://127.0.0.1:3333/");
}

/// Issue #25: a context's holder, once claimed, is kept in memory (a claim
/// never changes), so a conversation's later calls need no database read;
/// a context nobody claimed yet still goes to the database, the truth.
#[tokio::test]
async fn a_claimed_context_is_answered_from_memory_and_a_new_one_from_the_database() {
    let (_place, db, registry, routes) = weather_on_sqlite().await;

    assert!(routes
        .claim_context("alice", "weather", "ctx-1")
        .await
        .expect("claims"));
    assert!(!routes
        .claim_context("bob", "weather", "ctx-1")
        .await
        .expect("answers"));
    // Stored: another replica (a second table over the same database) agrees.
    let replica = RegistryRoutes::new(registry.clone());
    assert!(!replica
        .claim_context("bob", "weather", "ctx-1")
        .await
        .expect("answers"));

    // With the database gone, the held context is still alice's alone ...
    db.close().await;
    assert!(routes
        .claim_context("alice", "weather", "ctx-1")
        .await
        .expect("from memory"));
    assert!(!routes
        .claim_context("bob", "weather", "ctx-1")
        .await
        .expect("from memory"));
    // ... and a new context is claimed in the database or not at all.
    assert!(routes
        .claim_context("carol", "weather", "ctx-2")
        .await
        .is_err());
}
