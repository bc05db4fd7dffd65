//! Issue 14: a peer whose JWKS could not be fetched is stored, and its
//! document says so — the error, when, and when the fetch is retried — until
//! a retry succeeds and the fetched keys wait for approval. Real sockets: a
//! JWKS server on loopback that fails until told otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use convergio_auth::OrgSigningKey;
use convergio_gateway::federation::card_keys::FederationCardKeys;
use convergio_gateway::federation::{Federation, FederationConfig, PeerSpec};
use convergio_registry::{Registry, RegistryConfig};
use serde_json::Value;
use tokio::net::TcpListener;

/// Serves `jwks` at `/jwks.json` once `healthy` is set, 500 before.
async fn spawn_jwks_server(jwks: Value, healthy: Arc<AtomicBool>) -> String {
    async fn serve(State((jwks, healthy)): State<(Value, Arc<AtomicBool>)>) -> Response {
        if healthy.load(Ordering::SeqCst) {
            axum::Json(jwks).into_response()
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "not yet").into_response()
        }
    }
    let app = Router::new()
        .route("/jwks.json", get(serve))
        .with_state((jwks, healthy));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_failed_jwks_fetch_is_shown_with_its_retry_until_a_retry_succeeds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    // Opening the database applies the migrations (peers, nonces).
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::new(
        agents,
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let store = Arc::new(convergio_store::registry::Peers::new(&db));
    let config = FederationConfig {
        allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..FederationConfig::new("a.example")
    };
    let key = Arc::new(OrgSigningKey::generate().expect("key"));
    let card_keys = Arc::new(FederationCardKeys::new(&key, ["a.example"]));
    let federation = Arc::new(
        Federation::new(config, key, store, registry, card_keys)
            .expect("federation")
            .with_jwks_retry(Duration::from_millis(200)),
    );

    let peer_key = OrgSigningKey::generate().expect("peer key");
    let healthy = Arc::new(AtomicBool::new(false));
    let base = spawn_jwks_server(peer_key.jwks(), healthy.clone()).await;
    let spec = PeerSpec {
        domain: "b.example".to_owned(),
        url: base.clone(),
        keys: Vec::new(),
        jwks_url: Some(format!("{base}/jwks.json")),
        trust: None,
    };
    let added = federation.add(&spec, false).await.expect("stored anyway");
    let failure = added
        .jwks_fetch_failure
        .clone()
        .expect("the failed fetch is reported");
    assert!(failure.error.contains("500"), "{failure:?}");
    assert_eq!(failure.attempts, 1);
    assert!(failure.next_retry_at >= failure.failed_at, "{failure:?}");
    assert!(added.keys.is_empty());
    let shown = federation.get("b.example").await.expect("get");
    assert_eq!(shown.jwks_fetch_failure, Some(failure));

    // The peer's JWKS comes back: the retry fetches it, the failure goes,
    // and the key waits for an administrator.
    healthy.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fetched = loop {
        let peer = federation.get("b.example").await.expect("get");
        if peer.jwks_fetch_failure.is_none() {
            break peer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful retry: {peer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fetched.keys.len(), 1, "{fetched:?}");
    assert_eq!(fetched.keys[0].kid, peer_key.kid());
    assert_eq!(
        serde_json::to_value(fetched.keys[0].state).expect("state"),
        serde_json::json!("pending")
    );
    assert!(serde_json::to_value(&fetched)
        .expect("json")
        .get("jwks_fetch_failure")
        .is_none());
}
