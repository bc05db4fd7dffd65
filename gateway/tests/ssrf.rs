//! The SSRF guard end to end (issue #6): registration refuses upstreams on
//! loopback, private, link-local and metadata addresses unless
//! allow-listed; the connector refuses them again at connect time (after
//! resolving names), so no byte reaches such an upstream; redirects are
//! not followed; and served cards are re-signed with the gateway's key.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::any;
use axum::Router;
use convergio_auth::card_signature::{verify_card, CardCheck, CardKey, Ed25519CardSigner};
use convergio_gateway::a2a::{A2aConfig, CardSignerHandle};
use convergio_gateway::app::{build_router, AppConfig};
use convergio_gateway::layers::LimitsConfig;
use convergio_gateway::ssrf::AllowList;
use convergio_registry::{Actor, Registration, Registry, RegistryConfig, RegistryError};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::{send_params, spawn_fake, spawn_gateway_with, FakeMode};
use tokio::net::TcpListener;
use tower::ServiceExt;

const ADMIN: &str = "ssrf-test-admin-token";

fn card_at(url: &str) -> Value {
    json!({
        "name": "target", "description": "an upstream", "version": "1",
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "s", "name": "s", "description": "s", "tags": ["t"]}]
    })
}

struct App {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn app(allow: AllowList) -> App {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let (_db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::new(agents, RegistryConfig::default(), Arc::new(allow.clone()));
    let router = build_router(
        registry,
        AppConfig {
            admin_token: Some(ADMIN.to_owned()),
            a2a: A2aConfig {
                upstream_allow: allow,
                ..A2aConfig::default()
            },
            ..AppConfig::default()
        },
    );
    App { router, _dir: dir }
}

async fn register(app: &App, url: &str) -> (StatusCode, Value) {
    let body = json!({"card": card_at(url)});
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/agents")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn registration_refuses_non_public_upstreams_without_the_allow_list() {
    let app = app(AllowList::none()).await;
    for url in [
        "http://127.0.0.1:9101/a2a",
        "http://10.1.2.3/a2a",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://192.168.0.10/",
        "http://100.64.1.1/",
        "http://localhost:8080/",
    ] {
        let (status, problem) = register(&app, url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {problem}");
        assert_eq!(
            problem["violations"][0]["pointer"],
            json!("/upstreams/0/url"),
            "{url}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("not allow-listed")),
            "{url}: {problem}"
        );
    }
}

// Regression: issue #16
#[tokio::test]
async fn a_registry_refuses_private_upstreams_from_construction_without_any_attach() {
    // The check is a constructor argument: nothing is attached afterwards,
    // no router is built, and the registry still refuses.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let (_db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::new(
        agents,
        RegistryConfig::default(),
        Arc::new(AllowList::none()),
    );
    for upstream in ["http://127.0.0.1:9101/a2a", "http://10.1.2.3/a2a"] {
        let registration = Registration {
            name: None,
            org: None,
            role: None,
            card: card_at(upstream),
            upstreams: None,
            trust: None,
        };
        let error = registry
            .register(&Actor::admin(), registration)
            .await
            .expect_err(upstream);
        assert!(
            matches!(error, RegistryError::UpstreamRefused { index: 0, .. }),
            "{upstream}: {error}"
        );
    }
}

#[tokio::test]
async fn allow_listed_ranges_register_and_others_stay_refused() {
    let app = app(AllowList::parse(["127.0.0.0/8"]).expect("cidr")).await;
    let (status, body) = register(&app, "http://127.0.0.1:9101/a2a").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = register(&app, "http://10.0.0.1/a2a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

fn config(allow: AllowList) -> A2aConfig {
    A2aConfig {
        upstream_timeout: Duration::from_secs(5),
        upstream_retries: 0,
        upstream_allow: allow,
        ..A2aConfig::default()
    }
}

#[tokio::test]
async fn connector_refuses_a_loopback_upstream_before_any_byte_is_sent() {
    let fake = spawn_fake(FakeMode::V1).await;
    // A route that never passed registration (as if stored before the guard
    // existed): only the connector stands between the call and the upstream.
    let gateway = spawn_gateway_with(config(AllowList::none()), LimitsConfig::default()).await;
    gateway.register("fake", fake.card());
    let reply = gateway
        .rpc("fake", "alice", "SendMessage", send_params("hi"))
        .await;
    assert_eq!(reply["error"]["code"], json!(-32006), "{reply}");
    assert_eq!(fake.state.requests.load(Ordering::SeqCst), 0);

    // A name is resolved and every address checked: localhost is loopback.
    let port = fake.base_url.rsplit(':').next().expect("port").to_owned();
    gateway.register("named", card_at(&format!("http://localhost:{port}/")));
    let reply = gateway
        .rpc("named", "alice", "SendMessage", send_params("hi"))
        .await;
    assert_eq!(reply["error"]["code"], json!(-32006), "{reply}");
    assert_eq!(fake.state.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allow_listed_upstream_is_reached_by_address_and_by_name() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway_with(config(AllowList::loopback()), LimitsConfig::default()).await;
    gateway.register("fake", fake.card());
    let reply = gateway
        .rpc("fake", "alice", "SendMessage", send_params("hi"))
        .await;
    assert_eq!(
        reply["result"]["task"]["status"]["state"],
        json!("TASK_STATE_COMPLETED"),
        "{reply}"
    );
    let port = fake.base_url.rsplit(':').next().expect("port").to_owned();
    gateway.register("named", card_at(&format!("http://localhost:{port}/")));
    let reply = gateway
        .rpc("named", "alice", "SendMessage", send_params("hi"))
        .await;
    assert!(reply.get("result").is_some(), "{reply}");
}

/// Counts requests; answers every one with `status` and `location`.
async fn spawn_counter(status: StatusCode, location: Option<String>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(any(move || {
        let counted = counted.clone();
        let location = location.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut response = axum::response::Response::new(Body::from("moved"));
            *response.status_mut() = status;
            if let Some(location) = location {
                response
                    .headers_mut()
                    .insert("location", location.parse().expect("header value"));
            }
            response
        }
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), hits)
}

#[tokio::test]
async fn redirects_are_an_upstream_error_and_never_followed() {
    let (target, target_hits) = spawn_counter(StatusCode::OK, None).await;
    let (redirector, redirector_hits) =
        spawn_counter(StatusCode::FOUND, Some(format!("{target}/"))).await;
    let gateway = spawn_gateway_with(config(AllowList::loopback()), LimitsConfig::default()).await;
    gateway.register("moved", card_at(&format!("{redirector}/")));
    let reply = gateway
        .rpc("moved", "alice", "SendMessage", send_params("hi"))
        .await;
    assert!(reply.get("error").is_some(), "{reply}");
    assert_eq!(redirector_hits.load(Ordering::SeqCst), 1);
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "redirect followed");
}

#[tokio::test]
async fn served_card_is_re_signed_by_the_gateway_and_verifies() {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let signer = Ed25519CardSigner::new(Arc::new(pair), "gateway-key-1");
    // What the gateway publishes in its JWKS for this key.
    let published = signer.public_jwk();
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway_with(
        A2aConfig {
            card_signer: Some(CardSignerHandle(Arc::new(signer))),
            ..config(AllowList::loopback())
        },
        LimitsConfig::default(),
    )
    .await;
    gateway.register("fake", fake.card());
    let served: Value = gateway
        .http
        .get(gateway.url("/agents/fake/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    let interfaces = served["supportedInterfaces"]
        .as_array()
        .expect("interfaces");
    assert!(interfaces
        .iter()
        .filter(|interface| interface["protocolBinding"] != json!("GRPC"))
        .all(|interface| interface["url"] == json!(gateway.url("/agents/fake/"))));
    let key = CardKey::from_jwk(&published).expect("jwk");
    assert_eq!(
        verify_card(&served, std::slice::from_ref(&key), 0),
        CardCheck::Verified {
            kid: "gateway-key-1".to_owned(),
            alg: convergio_auth::Algorithm::EdDsa
        }
    );
    let mut tampered = served.clone();
    tampered["supportedInterfaces"][0]["url"] = json!("http://evil.example/");
    assert!(matches!(
        verify_card(&tampered, &[key], 0),
        CardCheck::Invalid { .. }
    ));
    // The gateway's own card is signed too.
    let own: Value = gateway
        .http
        .get(gateway.url("/.well-known/agent-card.json"))
        .header("x-test-subject", "alice")
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    assert!(own["signatures"]
        .as_array()
        .is_some_and(|list| list.len() == 1));
}
