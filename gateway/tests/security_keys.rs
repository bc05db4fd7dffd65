//! Stored API keys end to end (issue 4): the admin issues a key over
//! `/v1/api-keys`, the key authenticates on every replica sharing the
//! database, a key without the admin scope cannot manage keys, and a revoked
//! key is refused at once on the replica that revoked it and within a second
//! on another.

mod support;

use std::sync::Arc;
use std::time::Duration;

use convergio_gateway::api_keys::StoredApiKeys;
use convergio_gateway::app::{build_router, AppConfig};
use convergio_gateway::layers::{AuthenticateConfig, Authenticator};
use convergio_gateway::server::{serve_with, ServerConfig};
use convergio_registry::{Registry, RegistryConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ADMIN: &str = "keys-test-admin-token-0123456789";

/// One replica over the database at `url`; returns its base URL.
async fn replica(url: &str) -> String {
    // A database handle of its own, as each replica process has.
    let db = convergio_store::Db::open(url, &convergio_store::DbConfig::default())
        .await
        .expect("the database opens");
    let store = convergio_store::registry::AgentStore::open(&db)
        .await
        .expect("registry");
    let registry = Registry::new(
        Arc::new(store),
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let keys = Arc::new(StoredApiKeys::new(Arc::new(
        convergio_store::registry::ApiKeys::new(&db),
    )));
    let authenticator = Authenticator::new(AuthenticateConfig {
        anonymous: false,
        admin_token: Some(ADMIN.to_owned()),
        api_keys: Some(keys.clone()),
        ..AuthenticateConfig::default()
    })
    .await
    .expect("authenticator");
    let router = build_router(
        registry,
        AppConfig {
            admin_token: Some(ADMIN.to_owned()),
            authenticator: Some(Arc::new(authenticator)),
            api_keys: Some(keys),
            a2a: convergio_gateway::a2a::A2aConfig {
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..Default::default()
            },
            ..AppConfig::default()
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve_with(
        listener,
        router,
        ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    format!("http://{address}")
}

async fn status(http: &reqwest::Client, url: String, key: &str) -> u16 {
    http.get(url)
        .header("x-api-key", key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn issued_keys_work_on_every_replica_until_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let first = replica(&url).await;
    let second = replica(&url).await;
    let http = reqwest::Client::new();

    let anonymous = http
        .get(format!("{first}/v1/agents"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);

    let issued = http
        .post(format!("{first}/v1/api-keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"subject": "ci-bot", "org": "acme.example", "scopes": ["agents:call"]}))
        .send()
        .await
        .expect("issue");
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.expect("json");
    let key = issued["key"].as_str().expect("key").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with(&format!("cvg_{id}_")));

    for base in [&first, &second] {
        assert_eq!(status(&http, format!("{base}/v1/agents"), &key).await, 200);
    }
    assert_eq!(
        status(&http, format!("{first}/v1/api-keys"), &key).await,
        403,
        "a key without the admin scope cannot manage keys"
    );
    let listed: Value = http
        .get(format!("{first}/v1/api-keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let text = listed.to_string();
    let secret = key.rsplit('_').next().expect("secret");
    assert!(!text.contains(secret) && !text.contains("secret_sha256"));
    assert_eq!(listed["keys"][0]["subject"], "ci-bot");

    let revoked = http
        .delete(format!("{first}/v1/api-keys/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        status(&http, format!("{first}/v1/agents"), &key).await,
        401,
        "refused at once where it was revoked"
    );
    // The other replica's cache entry lives at most a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let answer = status(&http, format!("{second}/v1/agents"), &key).await;
        if answer == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other replica still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = http
        .delete(format!("{first}/v1/api-keys/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("revoke again");
    assert_eq!(again.status(), 404);
}

/// Issue #25: decisions are cached, but a revoked key never reaches the
/// decision: the call that was allowed a moment ago is refused at once.
#[tokio::test]
async fn a_cached_allow_ends_when_its_api_key_is_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let db = convergio_store::Db::open(&url, &convergio_store::DbConfig::default())
        .await
        .expect("the database opens");
    let store = convergio_store::registry::AgentStore::open(&db)
        .await
        .expect("registry");
    let registry = Registry::new(
        Arc::new(store),
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let fake = support::spawn_fake(support::FakeMode::V1JsonRpcOnly).await;
    let mut card = fake.card();
    card["name"] = json!("echo");
    registry
        .register(
            &convergio_registry::Actor::admin(),
            convergio_registry::Registration {
                name: Some("echo".to_owned()),
                org: None,
                role: None,
                card,
                upstreams: None,
                trust: None,
            },
        )
        .await
        .expect("register");
    let admin = convergio_policy::PolicyAdmin::new(
        Arc::new(convergio_policy::PolicyEngine::with_defaults().expect("defaults")),
        Arc::new(convergio_store::policy::PolicyStore::new(db.clone())),
    );
    admin.bootstrap().await.expect("bootstrap");
    let (audit, _writer) = convergio_policy::AuditSink::spawn(admin.audit().clone(), 64);
    let keys = Arc::new(StoredApiKeys::new(Arc::new(
        convergio_store::registry::ApiKeys::new(&db),
    )));
    let authenticator = Authenticator::new(AuthenticateConfig {
        admin_token: Some(ADMIN.to_owned()),
        api_keys: Some(keys.clone()),
        ..AuthenticateConfig::default()
    })
    .await
    .expect("authenticator");
    let router = build_router(
        registry,
        AppConfig {
            admin_token: Some(ADMIN.to_owned()),
            authenticator: Some(Arc::new(authenticator)),
            api_keys: Some(keys),
            policy: Some(convergio_gateway::app::PolicyServices {
                admin,
                audit,
                quotas: None,
            }),
            a2a: convergio_gateway::a2a::A2aConfig {
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..Default::default()
            },
            ..AppConfig::default()
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(serve_with(
        listener,
        router,
        ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    // The registry's own organisation: internal-same-org admits the key.
    let issued: Value = http
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"subject": "ci-bot", "org": RegistryConfig::default().org_domain}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let key = issued["key"].as_str().expect("key").to_owned();
    let id = issued["id"].as_str().expect("id").to_owned();
    let send = || {
        http.post(format!("{base}/agents/echo"))
            .header("x-api-key", &key)
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": support::send_params("hi")}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(send().await.expect("send").status(), 200);
    }
    let revoked = http
        .delete(format!("{base}/v1/api-keys/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    assert_eq!(send().await.expect("send").status(), 401);
    assert_eq!(
        fake.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}
