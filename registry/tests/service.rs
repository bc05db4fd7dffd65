//! The registry service's rules: the trust ladder, registration defaults,
//! system agents, and the lookup cache never serving a card older than the
//! last completed write.

mod support;

use std::sync::Arc;

use convergio_registry::model::{Actor, Registration};
use convergio_registry::{AnyUpstream, Registry, RegistryConfig, RegistryError};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use serde_json::{json, Value};
use support::simple_card;

fn registration(card: Value) -> Registration {
    Registration {
        name: None,
        org: None,
        role: None,
        card,
        upstreams: None,
        trust: None,
    }
}

async fn registry() -> (Registry, support::Backend) {
    let backend = support::sqlite().await;
    let registry = Registry::new(
        backend.store.clone(),
        RegistryConfig::default(),
        Arc::new(AnyUpstream),
    );
    (registry, backend)
}

#[tokio::test]
async fn registration_defaults_name_org_role_and_trust() {
    let (registry, _backend) = registry().await;
    let record = registry
        .register(&Actor::admin(), registration(simple_card("Weather Bot 2")))
        .await
        .expect("register");
    assert_eq!(record.id.to_string(), "convergio://agents/weather_bot_2");
    assert_eq!(record.org, "convergio.local");
    assert_eq!(record.role, AgentRole::Worker);
    assert_eq!(record.trust, TrustLevel::Registered);
    assert_eq!(record.version, 1);
    assert_eq!(record.upstreams.len(), 1);

    let mut external = registration(simple_card("Ledger"));
    external.org = Some("Acme.Example".into());
    let record = registry
        .register(&Actor::admin(), external)
        .await
        .expect("external");
    assert_eq!(
        record.id.to_string(),
        "external://acme.example/agents/ledger"
    );
}

#[tokio::test]
async fn non_admins_cannot_write() {
    let (registry, _backend) = registry().await;
    let anonymous = Actor::anonymous();
    let error = registry
        .register(&anonymous, registration(simple_card("Weather")))
        .await
        .expect_err("anonymous register");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
    let record = registry
        .register(&Actor::admin(), registration(simple_card("Weather")))
        .await
        .expect("register");
    let error = registry
        .set_trust(&anonymous, &record.id, TrustLevel::Trusted, "because", None)
        .await
        .expect_err("anonymous trust");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
    let error = registry
        .deregister(&anonymous, &record.id, None)
        .await
        .expect_err("anonymous delete");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
    assert!(registry
        .trust_history(&record.id)
        .await
        .expect("history")
        .is_empty());
}

#[tokio::test]
async fn an_agent_registered_at_a_trust_is_never_read_below_or_above_it() {
    let (registry, _backend) = registry().await;
    let admin = Actor::admin();
    let mut external = registration(simple_card("Ledger"));
    external.org = Some("acme.example".into());
    let error = registry
        .register_at_trust(&admin, external.clone(), TrustLevel::Internal, "synced")
        .await
        .expect_err("internal for another org");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
    let id: AgentId = "external://acme.example/agents/ledger".parse().expect("id");
    assert!(matches!(
        registry.get(&id).await,
        Err(RegistryError::AgentNotFound { .. })
    ));

    let record = registry
        .register_at_trust(&admin, external, TrustLevel::Untrusted, "peer untrusted")
        .await
        .expect("registered");
    assert_eq!((record.version, record.trust), (1, TrustLevel::Untrusted));
    assert_eq!(registry.versions(&id).await.expect("versions").len(), 1);
    let history = registry.trust_history(&id).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from, history[0].to, history[0].reason.as_str()),
        (
            TrustLevel::Registered,
            TrustLevel::Untrusted,
            "peer untrusted"
        )
    );
}

#[tokio::test]
async fn trust_ladder_rules_are_enforced_and_recorded() {
    let (registry, _backend) = registry().await;
    let admin = Actor::admin();
    let ours = registry
        .register(&admin, registration(simple_card("Weather")))
        .await
        .expect("register");
    let mut external = registration(simple_card("Ledger"));
    external.org = Some("acme.example".into());
    let theirs = registry.register(&admin, external).await.expect("register");

    let error = registry
        .set_trust(&admin, &ours.id, TrustLevel::Verified, "signed", None)
        .await
        .expect_err("no keys, so nothing verifies");
    assert!(matches!(error, RegistryError::Verification { .. }));
    assert!(
        error.to_string().contains("the card is not signed"),
        "{error}"
    );
    let error = registry
        .set_trust(&admin, &theirs.id, TrustLevel::Internal, "ours now", None)
        .await
        .expect_err("internal for another org");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
    for reason in ["", "   ", &"x".repeat(1001)] {
        let error = registry
            .set_trust(&admin, &ours.id, TrustLevel::Trusted, reason, None)
            .await
            .expect_err("bad reason");
        assert!(matches!(error, RegistryError::InvalidInput { .. }));
    }
    assert!(registry
        .trust_history(&ours.id)
        .await
        .expect("history")
        .is_empty());

    let record = registry
        .set_trust(&admin, &ours.id, TrustLevel::Internal, "we run it", None)
        .await
        .expect("internal for our org");
    assert_eq!(record.trust, TrustLevel::Internal);
    let history = registry.trust_history(&ours.id).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor, admin);
    assert_eq!(history[0].reason, "we run it");
    assert_eq!(history[0].from, TrustLevel::Registered);

    let mut higher = registration(simple_card("Other"));
    higher.trust = Some(TrustLevel::Trusted);
    let error = registry
        .register(&admin, higher)
        .await
        .expect_err("starts high");
    assert!(matches!(error, RegistryError::Forbidden { .. }));
}

#[tokio::test]
async fn update_keeps_trust_and_refuses_trust_changes() {
    let (registry, _backend) = registry().await;
    let admin = Actor::admin();
    let record = registry
        .register(&admin, registration(simple_card("Weather")))
        .await
        .expect("register");
    let record = registry
        .set_trust(&admin, &record.id, TrustLevel::Trusted, "reviewed", None)
        .await
        .expect("trust");
    let mut change = registration(simple_card("Weather"));
    change.role = Some(AgentRole::Critic);
    let updated = registry
        .update(&admin, &record.id, record.version, change)
        .await
        .expect("update");
    assert_eq!(updated.trust, TrustLevel::Trusted);
    assert_eq!(updated.role, AgentRole::Critic);
    let mut sneaky = registration(simple_card("Weather"));
    sneaky.trust = Some(TrustLevel::Internal);
    let error = registry
        .update(&admin, &record.id, updated.version, sneaky)
        .await
        .expect_err("trust via update");
    assert!(matches!(error, RegistryError::InvalidInput { .. }));
}

#[tokio::test]
async fn system_agents_are_internal_and_refreshed_only_when_changed() {
    let (registry, _backend) = registry().await;
    let first = registry
        .upsert_system(registration(simple_card("Echo")))
        .await
        .expect("first start");
    assert_eq!(first.trust, TrustLevel::Internal);
    assert_eq!(first.version, 1);
    let again = registry
        .upsert_system(registration(simple_card("Echo")))
        .await
        .expect("second start");
    assert_eq!(again.version, 1, "an unchanged card makes no new version");
    let mut changed = simple_card("Echo");
    changed["description"] = json!("Echoes, now louder");
    let refreshed = registry
        .upsert_system(registration(changed.clone()))
        .await
        .expect("changed card");
    assert_eq!(refreshed.version, 2);
    assert_eq!(refreshed.card, changed);
    assert_eq!(refreshed.trust, TrustLevel::Internal);
}

/// An agent the server hosts for another organisation (a plugin, model or
/// graph agent it uploaded): served here, so `convergio://agents/{name}`,
/// owned by that organisation, at the trust that organisation's own
/// registration would start at, never `internal`; one identity across
/// restarts; what an administrator set kept.
#[tokio::test]
async fn agents_hosted_for_another_org_are_theirs_at_registered_trust() {
    let (registry, _backend) = registry().await;
    let hosted = |card: Value| Registration {
        org: Some("B.example".into()),
        ..registration(card)
    };
    let at_port = |port: u16| {
        let mut card = simple_card("Shout");
        card["supportedInterfaces"][0]["url"] = json!(format!("http://127.0.0.1:{port}/"));
        card
    };
    let first = registry
        .upsert_system(hosted(at_port(9001)))
        .await
        .expect("first start");
    assert_eq!(first.id.to_string(), "convergio://agents/shout");
    assert_eq!(first.org, "b.example");
    assert_eq!(first.trust, TrustLevel::Registered);
    assert_eq!(first.version, 1);
    let moved = registry
        .upsert_system(hosted(at_port(9002)))
        .await
        .expect("a restart");
    assert_eq!(moved.version, 1, "a new port is not a new version");
    assert_eq!(moved.trust, TrustLevel::Registered);
    // Discovered under its organisation.
    let page = registry
        .discover(&convergio_registry::DiscoveryQuery {
            org: Some("b.example".into()),
            ..Default::default()
        })
        .await
        .expect("discover");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, first.id);
    // An administrator's trust survives a restart that changes the card.
    registry
        .set_trust(
            &Actor::admin(),
            &first.id,
            TrustLevel::Trusted,
            "vetted",
            None,
        )
        .await
        .expect("trusted");
    let mut louder = at_port(9003);
    louder["description"] = json!("Shouts, louder");
    let changed = registry
        .upsert_system(hosted(louder))
        .await
        .expect("a changed card");
    assert_eq!(changed.version, 3, "trust change, then the card");
    assert_eq!(changed.id, first.id);
    assert_eq!(changed.trust, TrustLevel::Trusted);
    // It can never be made internal.
    let error = registry
        .set_trust(
            &Actor::system(),
            &first.id,
            TrustLevel::Internal,
            "ours?",
            None,
        )
        .await
        .expect_err("internal for another organisation");
    assert!(matches!(error, RegistryError::Forbidden { .. }), "{error}");
    // A name this deployment's own agent holds is not taken over.
    registry
        .upsert_system(registration(simple_card("Echo")))
        .await
        .expect("the deployment's echo");
    let error = registry
        .upsert_system(hosted(simple_card("Echo")))
        .await
        .expect_err("another organisation's echo");
    assert!(
        matches!(error, RegistryError::AgentExists { .. }),
        "{error}"
    );
}

/// Issue #14: `convergio serve` starts its agents on a new loopback port at
/// each start; that is the same agent at a new address, not a new version.
#[tokio::test]
async fn system_agents_keep_one_version_when_only_their_address_moves() {
    let (registry, _backend) = registry().await;
    let at_port = |port: u16| {
        let mut card = simple_card("Echo");
        card["supportedInterfaces"][0]["url"] = json!(format!("http://127.0.0.1:{port}/"));
        card
    };
    let first = registry
        .upsert_system(registration(at_port(9001)))
        .await
        .expect("first start");
    // Read once so the lookup cache holds the old address.
    let id = first.id.clone();
    assert_eq!(
        registry.get(&id).await.expect("get").upstreams[0].url,
        "http://127.0.0.1:9001/"
    );
    let moved = registry
        .upsert_system(registration(at_port(9002)))
        .await
        .expect("second start");
    assert_eq!(moved.version, 1, "a new port is not a new version");
    assert_eq!(moved.trust, TrustLevel::Internal);
    let read = registry.get(&id).await.expect("get after the move");
    assert_eq!(read.upstreams[0].url, "http://127.0.0.1:9002/");
    assert_eq!(read.card, at_port(9002));
    assert_eq!(
        registry.versions(&id).await.expect("versions").len(),
        1,
        "no history row either"
    );
    // Anything else that changes is still a new version.
    let mut louder = at_port(9003);
    louder["description"] = json!("Echoes, now louder");
    let changed = registry
        .upsert_system(registration(louder))
        .await
        .expect("changed card");
    assert_eq!(changed.version, 2);
}

#[tokio::test]
async fn read_after_write_never_sees_the_old_card() {
    let (registry, _backend) = registry().await;
    let admin = Actor::admin();
    let mut record = registry
        .register(&admin, registration(simple_card("Weather")))
        .await
        .expect("register");
    let id: AgentId = record.id.clone();
    // Readers hammer the cache while the writer updates; after each write
    // returns, the next read must show that write.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let registry = registry.clone();
        let id = id.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = registry.get(&id).await;
                tokio::task::yield_now().await;
            }
        }));
    }
    for round in 0..30 {
        let mut card = simple_card("Weather");
        card["description"] = json!(format!("round {round}"));
        record = registry
            .update(&admin, &id, record.version, registration(card.clone()))
            .await
            .expect("update");
        let seen = registry.get(&id).await.expect("get");
        assert_eq!(seen.card, card, "round {round} read an old card");
        assert_eq!(seen.version, record.version);
    }
    let trusted = registry
        .set_trust(&admin, &id, TrustLevel::Trusted, "ok", None)
        .await
        .expect("trust");
    assert_eq!(registry.get(&id).await.expect("get").trust, trusted.trust);
    registry
        .deregister(&admin, &id, None)
        .await
        .expect("delete");
    assert!(matches!(
        registry.get(&id).await,
        Err(RegistryError::AgentNotFound { .. })
    ));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader joins");
    }
}

#[tokio::test]
async fn oversized_cards_are_refused() {
    let backend = support::sqlite().await;
    let registry = Registry::new(
        backend.store.clone(),
        RegistryConfig {
            max_card_bytes: 512,
            ..RegistryConfig::default()
        },
        Arc::new(AnyUpstream),
    );
    let mut card = simple_card("Weather");
    card["description"] = json!("x".repeat(1000));
    let error = registry
        .register(&Actor::admin(), registration(card))
        .await
        .expect_err("too big");
    assert!(matches!(error, RegistryError::InvalidCard { .. }));
}
