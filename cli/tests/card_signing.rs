//! The organisation key at work on cards, through the real binary (issue
//! #6): the card the gateway serves for an agent is re-signed with the key
//! it publishes at `/.well-known/jwks.json`, and a card signed with that key
//! is registered as `verified` while a tampered copy is refused.

mod support;

use convergio_auth::{sign_card, verify_card, CardCheck, CardKey, OrgSigningKey};
use serde_json::Value;
use support::{admin_token, start};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("request")
        .json()
        .await
        .expect("json body")
}

#[tokio::test(flavor = "multi_thread")]
async fn served_cards_are_signed_and_owner_signed_cards_are_verified() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());

    let jwks = get_json(&format!("{}/.well-known/jwks.json", server.base)).await;
    let keys: Vec<CardKey> = jwks["keys"]
        .as_array()
        .expect("a key set")
        .iter()
        .map(|jwk| CardKey::from_jwk(jwk).expect("a usable key"))
        .collect();
    let served = get_json(&format!(
        "{}/agents/echo/.well-known/agent-card.json",
        server.base
    ))
    .await;
    assert!(
        matches!(
            verify_card(&served, &keys, now()),
            CardCheck::Verified { .. }
        ),
        "the served card verifies against the served JWKS: {served}"
    );

    // A card signed with this organisation's key (the one generated into
    // the data dir) is verified on registration; a tampered copy is refused.
    let pem = std::fs::read_to_string(data_dir.path().join("federation-key.pem"))
        .expect("the generated key");
    let key = OrgSigningKey::from_pem(&pem).expect("parses");
    let card: Value = serde_json::from_str(include_str!("../../examples/cards/weather.json"))
        .expect("example card");
    let signed = sign_card(&card, &key).expect("signs");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/agents", server.base))
        .bearer_auth(admin_token(data_dir.path()))
        .json(&signed)
        .send()
        .await
        .expect("registers");
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("record");
    assert_eq!(record["trust"], "verified", "{record}");

    let mut tampered = signed.clone();
    tampered["name"] = Value::from("Weather (tampered)");
    tampered["description"] = Value::from("rewritten after signing");
    let response = client
        .post(format!("{}/v1/agents", server.base))
        .bearer_auth(admin_token(data_dir.path()))
        .json(&tampered)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    assert!(
        problem.to_string().contains("signature"),
        "the problem names the signature: {problem}"
    );
}
