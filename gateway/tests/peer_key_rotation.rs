//! Issue 18: a signed call with a key we do not know makes the gateway fetch
//! the peer's JWKS again, at most once per `jwks_refetch_interval` per peer.
//! With `accept_rotated_keys` a peer that rotated its key is accepted after
//! the refetch; without it the new key waits for approval. Real sockets: a
//! JWKS server on loopback that counts its fetches and can be changed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use convergio_auth::{sign_call, AuthError, OrgSigningKey, PeerCallClaims};
use convergio_gateway::federation::card_keys::FederationCardKeys;
use convergio_gateway::federation::{Federation, FederationConfig, PeerSpec};
use convergio_registry::{Registry, RegistryConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The peer's published keys and how often they were fetched.
#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    fn publish(&self, keys: &[&OrgSigningKey]) {
        *self.keys.lock().expect("keys") = keys.iter().map(|key| key.public_jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Serves the keys at `/jwks.json`: the server's base URL.
    async fn serve(&self) -> String {
        async fn answer(State(jwks): State<Jwks>) -> axum::Json<Value> {
            jwks.fetches.fetch_add(1, Ordering::SeqCst);
            let keys = jwks.keys.lock().expect("keys").clone();
            axum::Json(json!({ "keys": keys }))
        }
        let app = Router::new()
            .route("/jwks.json", get(answer))
            .with_state(self.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{address}")
    }
}

/// `a.example`'s federation (over a fresh SQLite file in `dir`) knowing
/// `b.example` from `jwks`, its first key approved by an administrator.
async fn federation(
    dir: &tempfile::TempDir,
    jwks: &Jwks,
    accept_rotated_keys: bool,
) -> Arc<Federation> {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::new(
        agents,
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let store = Arc::new(convergio_store::registry::Peers::new(&db));
    let config = FederationConfig {
        allow: convergio_gateway::ssrf::AllowList::loopback(),
        accept_rotated_keys,
        ..FederationConfig::new("a.example")
    };
    let key = Arc::new(OrgSigningKey::generate().expect("key"));
    let card_keys = Arc::new(FederationCardKeys::new(&key, ["a.example"]));
    let federation =
        Arc::new(Federation::new(config, key, store, registry, card_keys).expect("federation"));
    let base = jwks.serve().await;
    let spec = PeerSpec {
        domain: "b.example".to_owned(),
        url: base.clone(),
        keys: Vec::new(),
        jwks_url: Some(format!("{base}/jwks.json")),
        trust: None,
    };
    federation.add(&spec, false).await.expect("peer added");
    federation
        .approve("b.example", None)
        .await
        .expect("key approved");
    federation
}

/// A call from `b.example` signed with `key`, verified by `federation`.
async fn call(federation: &Federation, key: &OrgSigningKey) -> Result<(), AuthError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let path = "/agents/echo";
    let body = br#"{"jsonrpc":"2.0"}"#;
    let claims = PeerCallClaims::new("b.example", "a.example", "user", "POST", path, body, now);
    let token = sign_call(key, &claims);
    federation
        .verify_call("POST", path, &token, body)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_a_refetch_and_unknown_kids_do_not_flood_the_peer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = Jwks::default();
    let first = OrgSigningKey::generate().expect("key");
    jwks.publish(&[&first]);
    let federation = federation(&dir, &jwks, true).await;
    assert_eq!(jwks.fetches(), 1, "fetched when the peer was added");
    call(&federation, &first)
        .await
        .expect("the approved key verifies");
    assert_eq!(jwks.fetches(), 1, "a known key costs no fetch");

    // The peer rotates: its JWKS publishes the new key, and its next call
    // is signed with it.
    let second = OrgSigningKey::generate().expect("key");
    jwks.publish(&[&second, &first]);
    call(&federation, &second)
        .await
        .expect("the rotated key verifies after the refetch");
    assert_eq!(jwks.fetches(), 2);
    let peer = federation.get("b.example").await.expect("peer");
    let rotated = peer
        .keys
        .iter()
        .find(|key| key.kid == second.kid())
        .expect("the new key is stored");
    assert_eq!(
        serde_json::to_value(rotated.state).expect("state"),
        "approved"
    );

    // A flood of calls with keys nobody published: refused, and within the
    // refetch interval none of them makes the gateway fetch again.
    for _ in 0..20 {
        let stranger = OrgSigningKey::generate().expect("key");
        let refused = call(&federation, &stranger).await;
        assert!(
            matches!(refused, Err(AuthError::UnknownKey { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(jwks.fetches(), 2, "unknown kids are rate-limited per peer");
}

#[tokio::test]
async fn without_accept_rotated_keys_a_refetched_key_waits_for_approval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks = Jwks::default();
    let first = OrgSigningKey::generate().expect("key");
    jwks.publish(&[&first]);
    let federation = federation(&dir, &jwks, false).await;
    let second = OrgSigningKey::generate().expect("key");
    jwks.publish(&[&second, &first]);
    let refused = call(&federation, &second).await;
    assert!(
        matches!(refused, Err(AuthError::UnknownKey { .. })),
        "{refused:?}"
    );
    assert_eq!(jwks.fetches(), 2, "the unknown kid made one refetch");
    let peer = federation.get("b.example").await.expect("peer");
    let pending = peer
        .keys
        .iter()
        .find(|key| key.kid == second.kid())
        .expect("the new key is stored");
    assert_eq!(
        serde_json::to_value(pending.state).expect("state"),
        "pending"
    );
    // Once an administrator approves it, the peer's calls verify.
    federation
        .approve("b.example", None)
        .await
        .expect("approved");
    call(&federation, &second)
        .await
        .expect("verifies once approved");
}
