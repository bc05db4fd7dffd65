//! Card signatures decide `verified` (issue #6): a card signed by its owning
//! organisation's key starts verified, a tampered one is refused with a
//! problem document and nothing stored, keys of another organisation or
//! revoked keys verify nothing, and a verified agent's card must keep
//! verifying. Run on SQLite and PostgreSQL.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use convergio_auth::card_signature::{sign_card, CardKey, Ed25519CardSigner};
use convergio_registry::api::{router, ApiConfig};
use convergio_registry::model::{Actor, Registration};
use convergio_registry::{
    AnyUpstream, Registry, RegistryConfig, RegistryError, StaticOrgKeys, Store,
};
use convergio_schemas::{AgentId, TrustLevel};
use http_body_util::BodyExt;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};
use support::simple_card;
use tower::ServiceExt;

const ACME: &str = "acme.example";

convergio_tests::on_both_backends!(
    crate::support::open_store;
    card_signed_by_its_organisation_starts_verified,
    tampered_card_is_refused_and_not_stored,
    signature_by_another_organisation_or_a_revoked_key_verifies_nothing,
    verified_agent_card_must_keep_verifying,
    registered_agent_updated_with_a_signed_card_becomes_verified,
    administrator_can_verify_only_a_verifying_card,
    tampered_card_gets_a_problem_document,
);

fn signer(kid: &str) -> Ed25519CardSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    Ed25519CardSigner::new(Arc::new(pair), kid)
}

fn key(signer: &Ed25519CardSigner) -> CardKey {
    CardKey::from_jwk(&signer.public_jwk()).expect("jwk")
}

fn registration(org: &str, card: Value) -> Registration {
    Registration {
        name: None,
        org: Some(org.to_owned()),
        role: None,
        card,
        upstreams: None,
        trust: None,
    }
}

fn signed(name: &str, signer: &Ed25519CardSigner) -> Value {
    sign_card(&simple_card(name), signer).expect("object")
}

struct Setup {
    registry: Registry,
    acme: Ed25519CardSigner,
    other: Ed25519CardSigner,
}

fn setup(store: Arc<dyn Store>) -> Setup {
    let acme = signer("acme-1");
    let other = signer("other-1");
    let mut revoked = key(&signer("acme-old"));
    revoked.revoked = true;
    let keys = StaticOrgKeys::new()
        .with_key(ACME, key(&acme))
        .with_key(ACME, revoked)
        .with_key("other.example", key(&other));
    let registry = Registry::builder(store, RegistryConfig::default(), Arc::new(AnyUpstream))
        .org_keys(Arc::new(keys))
        .build();
    Setup {
        registry,
        acme,
        other,
    }
}

async fn card_signed_by_its_organisation_starts_verified(store: Arc<dyn Store>) {
    let setup = setup(store);
    let record = setup
        .registry
        .register(
            &Actor::admin(),
            registration(ACME, signed("ledger", &setup.acme)),
        )
        .await
        .expect("register");
    assert_eq!(record.trust, TrustLevel::Verified);
    let stored = setup.registry.get(&record.id).await.expect("get");
    assert_eq!(stored.trust, TrustLevel::Verified);
    assert!(
        stored.card.get("signatures").is_some(),
        "signatures are kept"
    );
    // An unsigned card of the same organisation stays registered.
    let unsigned = setup
        .registry
        .register(&Actor::admin(), registration(ACME, simple_card("plain")))
        .await
        .expect("register");
    assert_eq!(unsigned.trust, TrustLevel::Registered);
}

async fn tampered_card_is_refused_and_not_stored(store: Arc<dyn Store>) {
    let setup = setup(store);
    let mut card = signed("ledger", &setup.acme);
    card["supportedInterfaces"][0]["url"] = json!("http://attacker.example/a2a");
    let error = setup
        .registry
        .register(&Actor::admin(), registration(ACME, card))
        .await
        .expect_err("tampered");
    assert!(
        matches!(error, RegistryError::SignatureInvalid { .. }),
        "{error:?}"
    );
    let id = AgentId::external(ACME, "ledger").expect("id");
    assert!(matches!(
        setup.registry.get(&id).await,
        Err(RegistryError::AgentNotFound { .. })
    ));
    // Even a level that needs no signature refuses a forged one.
    let mut forged = signed("ledger", &setup.acme);
    forged["signatures"][0]["signature"] =
        signed("other", &setup.acme)["signatures"][0]["signature"].clone();
    let mut request = registration(ACME, forged);
    request.trust = Some(TrustLevel::Registered);
    assert!(matches!(
        setup.registry.register(&Actor::admin(), request).await,
        Err(RegistryError::SignatureInvalid { .. })
    ));
}

async fn signature_by_another_organisation_or_a_revoked_key_verifies_nothing(
    store: Arc<dyn Store>,
) {
    let setup = setup(store);
    // Signed by other.example's key, but claimed for acme.example.
    let record = setup
        .registry
        .register(
            &Actor::admin(),
            registration(ACME, signed("spoof", &setup.other)),
        )
        .await
        .expect("stored, unverified");
    assert_eq!(record.trust, TrustLevel::Registered);
    let old = signer("acme-old");
    let record = setup
        .registry
        .register(&Actor::admin(), registration(ACME, signed("stale", &old)))
        .await
        .expect("stored, unverified");
    assert_eq!(record.trust, TrustLevel::Registered);
    let mut asks = registration(ACME, signed("asks", &setup.other));
    asks.trust = Some(TrustLevel::Verified);
    assert!(matches!(
        setup.registry.register(&Actor::admin(), asks).await,
        Err(RegistryError::Verification { .. })
    ));
}

async fn verified_agent_card_must_keep_verifying(store: Arc<dyn Store>) {
    let setup = setup(store);
    let admin = Actor::admin();
    let record = setup
        .registry
        .register(&admin, registration(ACME, signed("ledger", &setup.acme)))
        .await
        .expect("register");
    let error = setup
        .registry
        .update(
            &admin,
            &record.id,
            record.version,
            registration(ACME, simple_card("ledger")),
        )
        .await
        .expect_err("unsigned update of a verified agent");
    assert!(
        matches!(error, RegistryError::Verification { .. }),
        "{error:?}"
    );
    let mut card = simple_card("ledger");
    card["description"] = json!("a newer description");
    let card = sign_card(&card, &setup.acme).expect("object");
    let updated = setup
        .registry
        .update(&admin, &record.id, record.version, registration(ACME, card))
        .await
        .expect("signed update");
    assert_eq!(updated.trust, TrustLevel::Verified);
    assert_eq!(updated.card["description"], json!("a newer description"));
}

async fn registered_agent_updated_with_a_signed_card_becomes_verified(store: Arc<dyn Store>) {
    let setup = setup(store);
    let admin = Actor::admin();
    let record = setup
        .registry
        .register(&admin, registration(ACME, simple_card("ledger")))
        .await
        .expect("register");
    assert_eq!(record.trust, TrustLevel::Registered);
    let updated = setup
        .registry
        .update(
            &admin,
            &record.id,
            record.version,
            registration(ACME, signed("ledger", &setup.acme)),
        )
        .await
        .expect("update");
    assert_eq!(updated.trust, TrustLevel::Verified);
    let history = setup
        .registry
        .trust_history(&record.id)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].from, TrustLevel::Registered);
    assert_eq!(history[0].to, TrustLevel::Verified);
    assert!(
        history[0].reason.contains("acme-1"),
        "{}",
        history[0].reason
    );
}

async fn administrator_can_verify_only_a_verifying_card(store: Arc<dyn Store>) {
    let setup = setup(store);
    let admin = Actor::admin();
    let record = setup
        .registry
        .register(&admin, registration(ACME, simple_card("plain")))
        .await
        .expect("register");
    let error = setup
        .registry
        .set_trust(&admin, &record.id, TrustLevel::Verified, "looks fine", None)
        .await
        .expect_err("unsigned");
    assert!(matches!(error, RegistryError::Verification { .. }));
    let trusted = setup
        .registry
        .set_trust(&admin, &record.id, TrustLevel::Trusted, "we vouch", None)
        .await
        .expect("trusted needs no signature");
    assert_eq!(trusted.trust, TrustLevel::Trusted);
}

async fn tampered_card_gets_a_problem_document(store: Arc<dyn Store>) {
    let setup = setup(store);
    let app = router(
        setup.registry.clone(),
        ApiConfig {
            admin_token: Some("t0ken".to_owned()),
            max_body_bytes: 64 * 1024,
        },
    );
    let mut card = signed("ledger", &setup.acme);
    card["description"] = json!("changed after signing");
    let body = json!({"org": ACME, "card": card});
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/agents")
        .header("authorization", "Bearer t0ken")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/problem+json")
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let problem: Value = serde_json::from_slice(&bytes).expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("signature does not verify")),
        "{problem}"
    );
    assert_eq!(
        problem["violations"][0]["pointer"],
        json!("/card/signatures")
    );
}
