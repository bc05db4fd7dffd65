//! The federation tables (issue 6, migration 0004) on SQLite and PostgreSQL
//! alike: peers insert once, replace, list by domain, delete; a nonce is
//! remembered once (the second insert is a replay) and purged after expiry.

mod support;

use convergio_registry::peers::{PeerKeyRow, PeerKeyState, PeerRow, PeerStore};
use convergio_store::registry::Peers;
use serde_json::json;

fn row(domain: &str, state: PeerKeyState) -> PeerRow {
    PeerRow {
        domain: domain.to_owned(),
        base_url: format!("http://{domain}:8080"),
        jwks_url: Some(format!("http://{domain}:8080/.well-known/jwks.json")),
        keys: vec![PeerKeyRow {
            kid: "kid-1".to_owned(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            state,
        }],
        trust: "verified".to_owned(),
        created_at: 10,
        updated_at: 10,
    }
}

async fn peers_and_nonces(backend: support::Backend) {
    let peers = Peers::new(&backend.db);
    assert!(peers.get("b.example").await.expect("get").is_none());
    assert!(peers
        .insert(&row("b.example", PeerKeyState::Pending))
        .await
        .expect("insert"));
    assert!(peers
        .insert(&row("a.example", PeerKeyState::Pending))
        .await
        .expect("insert"));
    assert!(
        !peers
            .insert(&row("b.example", PeerKeyState::Approved))
            .await
            .expect("insert again"),
        "a domain is inserted once"
    );
    let approved = row("b.example", PeerKeyState::Approved);
    peers.put(&approved).await.expect("replace");
    assert_eq!(peers.get("b.example").await.expect("get"), Some(approved));
    let listed: Vec<String> = peers
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|row| row.domain)
        .collect();
    assert_eq!(listed, ["a.example", "b.example"]);
    assert!(peers.delete("a.example").await.expect("delete"));
    assert!(!peers.delete("a.example").await.expect("delete again"));

    assert!(peers
        .remember_nonce("b.example", "n1", 100)
        .await
        .expect("nonce"));
    assert!(!peers
        .remember_nonce("b.example", "n1", 100)
        .await
        .expect("replay"));
    assert!(
        peers
            .remember_nonce("c.example", "n1", 100)
            .await
            .expect("other peer"),
        "nonces are per peer"
    );
    assert_eq!(peers.purge_nonces(50).await.expect("purge none"), 0);
    assert_eq!(peers.purge_nonces(101).await.expect("purge"), 2);
    assert!(peers
        .remember_nonce("b.example", "n1", 200)
        .await
        .expect("after purge"));
}

convergio_tests::on_both_backends!(crate::support::open; peers_and_nonces);
