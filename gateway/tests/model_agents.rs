//! `/v1/model-agents` and `/v1/secrets` (issue 17) end to end: the whole
//! application over a real SQLite database, the example policy set, real
//! HTTP. A test-only header stands in for authentication
//! (`x-test-principal`, a JSON `Principal`). Administrators may, anonymous
//! callers may not; another organisation's declaration is unknown to a
//! caller; bad declarations answer each violation with its JSON pointer;
//! a secret's value never comes back in any answer or audit record, and
//! the stored bytes do not hold it.
//!
//! Its own binary because it captures every log line at TRACE (the
//! subscriber is process-global) to check no secret value reaches them.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use convergio_auth::SecretsKey;
use convergio_gateway::app::{build_router, serve, AppConfig, PolicyServices};
use convergio_gateway::model_agents::{AgentStatus, ModelAgentHost, ModelAgents};
use convergio_gateway::secrets::Secrets;
use convergio_policy::{AuditFilter, AuditSink, AuditWriter, PolicyAdmin, PolicyEngine};
use convergio_registry::model_agents::ModelAgentRow;
use convergio_registry::{Registry, RegistryConfig};
use convergio_schemas::{ModelAgentSpec, Principal};
use convergio_store::models::ModelStore;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ORG: &str = "acme.example";
const SECRET: &str = "sk-model-decl-gateway-test-9f8e7d6c5b4a";

/// Records what the API told it.
#[derive(Default)]
struct RecordingHost {
    events: Mutex<Vec<String>>,
}

#[async_trait]
impl ModelAgentHost for RecordingHost {
    async fn applied(&self, row: &ModelAgentRow, spec: &ModelAgentSpec) {
        self.events.lock().expect("lock").push(format!(
            "applied {} v{} {}",
            row.name, row.version, spec.model
        ));
    }

    async fn removed(&self, org: &str, name: &str) {
        self.events
            .lock()
            .expect("lock")
            .push(format!("removed {org}/{name}"));
    }

    async fn status(&self, row: &ModelAgentRow) -> AgentStatus {
        if row.name == "offline" {
            AgentStatus::unavailable("the key env:MISSING is not available")
        } else {
            AgentStatus::available()
        }
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct App {
    base: String,
    http: reqwest::Client,
    host: Arc<RecordingHost>,
    secrets: Arc<Secrets>,
    admin: PolicyAdmin,
    url: String,
    writer: AuditWriter,
    _dir: tempfile::TempDir,
}

async fn test_identity(mut request: Request, next: Next) -> Response {
    let principal = request
        .headers()
        .get("x-test-principal")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| serde_json::from_str::<Principal>(text).ok());
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

async fn start() -> App {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let admin = PolicyAdmin::new(
        Arc::new(PolicyEngine::with_defaults().expect("defaults")),
        Arc::new(convergio_store::policy::PolicyStore::new(db.clone())),
    );
    admin.bootstrap().await.expect("bootstrap");
    let (audit, writer) = AuditSink::spawn(admin.audit().clone(), 64);
    let registry = Registry::builder(
        agents,
        RegistryConfig {
            org_domain: ORG.to_owned(),
            ..RegistryConfig::default()
        },
        Arc::new(convergio_gateway::ssrf::AllowList::none()),
    )
    .build();
    let store = Arc::new(ModelStore::new(&db));
    let host = Arc::new(RecordingHost::default());
    let (key, _) = SecretsKey::generate().expect("random works");
    let secrets = Arc::new(Secrets::new(store.clone(), Arc::new(key), ORG));
    let router = build_router(
        registry,
        AppConfig {
            policy: Some(PolicyServices {
                admin: admin.clone(),
                audit,
                quotas: None,
            }),
            model_agents: Some(Arc::new(ModelAgents::new(store, host.clone(), ORG))),
            secrets: Some(secrets.clone()),
            ..AppConfig::default()
        },
    )
    .layer(middleware::from_fn(test_identity));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, router, std::future::pending()));
    App {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        host,
        secrets,
        admin,
        url,
        writer,
        _dir: dir,
    }
}

fn admin() -> String {
    json!({"subject": "root", "org": null, "scopes": ["admin"], "method": "admin_token"})
        .to_string()
}

fn member(org: &str, scopes: &[&str]) -> String {
    json!({"subject": "alice", "org": org, "scopes": scopes, "method": "api_key"}).to_string()
}

fn declaration(name: &str, model: &str) -> Value {
    json!({
        "apiVersion": "convergio/v1",
        "kind": "ModelAgent",
        "name": name,
        "description": "writes code",
        "provider": "openai",
        "model": model,
        "api_key": "secret:openai",
        "tools": ["echo"]
    })
}

/// One answer: status, body text, parsed body.
struct Answer {
    status: u16,
    text: String,
    body: Value,
}

impl App {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        principal: Option<&str>,
        body: Option<reqwest::Body>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(principal) = principal {
            request = request.header("x-test-principal", principal);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, body }
    }

    async fn put_agent(&self, name: &str, document: &Value, principal: Option<&str>) -> Answer {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/model-agents/{name}"),
            principal,
            Some(document.to_string().into()),
        )
        .await
    }

    fn events(&self) -> Vec<String> {
        self.host.events.lock().expect("lock").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_agents_and_secrets_over_rest() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    let app = start().await;
    let admin = admin();
    let get = reqwest::Method::GET;
    let delete = reqwest::Method::DELETE;
    let put = reqwest::Method::PUT;

    // An administrator declares, updates, reads and lists.
    let created = app
        .put_agent("writer", &declaration("writer", "m1"), Some(&admin))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["version"], json!(1));
    assert_eq!(created.body["org"], json!(ORG));
    assert_eq!(created.body["status"]["available"], json!(true));
    let updated = app
        .put_agent("writer", &declaration("writer", "m2"), Some(&admin))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["version"], json!(2));
    assert_eq!(
        app.events(),
        vec!["applied writer v1 m1", "applied writer v2 m2"]
    );
    let shown = app
        .call(get.clone(), "/v1/model-agents/writer", Some(&admin), None)
        .await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["spec"]["model"], json!("m2"));
    app.put_agent("offline", &declaration("offline", "m"), Some(&admin))
        .await;
    let listed = app
        .call(get.clone(), "/v1/model-agents", Some(&admin), None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let rows = listed.body["model_agents"].as_array().expect("a list");
    assert_eq!(rows.len(), 2);
    let offline = rows
        .iter()
        .find(|row| row["name"] == "offline")
        .expect("listed");
    assert_eq!(offline["status"]["available"], json!(false));
    assert!(offline["status"]["reason"]
        .as_str()
        .is_some_and(|reason| reason.contains("env:MISSING")));

    // Anonymous callers may not; members of the owning organisation need
    // the scope; another organisation's agent is unknown to its members.
    let anonymous = app
        .put_agent("sneaky", &declaration("sneaky", "m"), None)
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    let anonymous_list = app.call(get.clone(), "/v1/model-agents", None, None).await;
    assert_eq!(anonymous_list.status, 401);
    let unscoped = app
        .put_agent("mine", &declaration("mine", "m"), Some(&member(ORG, &[])))
        .await;
    assert_eq!(unscoped.status, 403, "{}", unscoped.text);
    let writer_member = member(ORG, &["agents:write"]);
    let own = app
        .put_agent("mine", &declaration("mine", "m"), Some(&writer_member))
        .await;
    assert_eq!(own.status, 201, "{}", own.text);
    let stranger = member("other.example", &["agents:write"]);
    let hidden = app
        .call(
            get.clone(),
            "/v1/model-agents/writer",
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    let hidden_delete = app
        .call(
            delete.clone(),
            "/v1/model-agents/writer",
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(hidden_delete.status, 404);
    let taken = app
        .put_agent("writer", &declaration("writer", "m"), Some(&stranger))
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text);

    // Bad declarations: 400 with each violation's pointer.
    let mut bad = declaration("broken", "m");
    bad["provider"] = json!("gemini");
    bad["api_key"] = json!("sk-inline-key");
    let refused = app.put_agent("broken", &bad, Some(&admin)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    let pointers: Vec<&str> = refused.body["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|violation| violation["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/provider"), "{pointers:?}");
    assert!(pointers.contains(&"/api_key"), "{pointers:?}");
    let renamed = app
        .put_agent("other-name", &declaration("writer", "m"), Some(&admin))
        .await;
    assert_eq!(renamed.status, 400, "{}", renamed.text);
    assert!(renamed.text.contains("/name"), "{}", renamed.text);
    let malformed = app
        .call(
            put.clone(),
            "/v1/model-agents/x",
            Some(&admin),
            Some("{".into()),
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);

    // Delete.
    let deleted = app
        .call(
            delete.clone(),
            "/v1/model-agents/writer",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert!(app.events().contains(&format!("removed {ORG}/writer")));
    let gone = app
        .call(get.clone(), "/v1/model-agents/writer", Some(&admin), None)
        .await;
    assert_eq!(gone.status, 404);

    // Secrets: set answers 204 with no body; listing shows names only.
    let anonymous_set = app
        .call(put.clone(), "/v1/secrets/openai", None, Some(SECRET.into()))
        .await;
    assert_eq!(anonymous_set.status, 401);
    let set = app
        .call(
            put.clone(),
            "/v1/secrets/openai",
            Some(&admin),
            Some(SECRET.into()),
        )
        .await;
    assert_eq!(set.status, 204);
    assert!(set.text.is_empty());
    let listed = app
        .call(get.clone(), "/v1/secrets", Some(&admin), None)
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["secrets"][0]["name"], json!("openai"));
    assert!(!listed.text.contains(SECRET));
    let bad_name = app
        .call(
            put.clone(),
            "/v1/secrets/..",
            Some(&admin),
            Some(SECRET.into()),
        )
        .await;
    assert!(
        bad_name.status == 400 || bad_name.status == 404,
        "{}",
        bad_name.status
    );
    assert!(!bad_name.text.contains(SECRET));
    let member_secrets = app
        .call(
            get.clone(),
            "/v1/secrets",
            Some(&member(ORG, &["secrets:write"])),
            None,
        )
        .await;
    assert_eq!(member_secrets.status, 200);
    assert_eq!(member_secrets.body["secrets"][0]["name"], json!("openai"));
    let other_secrets = app
        .call(
            get.clone(),
            "/v1/secrets",
            Some(&member("other.example", &["secrets:write"])),
            None,
        )
        .await;
    assert_eq!(other_secrets.body["secrets"], json!([]));
    let resolved = app.secrets.resolve(ORG, "openai").await.expect("reads");
    assert_eq!(resolved.as_ref().map(|value| value.expose()), Some(SECRET));

    // Rotation: the next resolve sees the new value.
    let rotated = app
        .call(
            put.clone(),
            "/v1/secrets/openai",
            Some(&admin),
            Some("sk-rotated-value".into()),
        )
        .await;
    assert_eq!(rotated.status, 204);
    let resolved = app.secrets.resolve(ORG, "openai").await.expect("reads");
    assert_eq!(
        resolved.as_ref().map(|value| value.expose()),
        Some("sk-rotated-value")
    );
    let put_back = app
        .call(
            put.clone(),
            "/v1/secrets/openai",
            Some(&admin),
            Some(SECRET.into()),
        )
        .await;
    assert_eq!(put_back.status, 204);

    // The stored bytes do not hold the value.
    let pool = sqlx_free_read(&app.url).await;
    assert!(!pool.contains(SECRET), "the database file holds the secret");

    let removed = app
        .call(delete.clone(), "/v1/secrets/openai", Some(&admin), None)
        .await;
    assert_eq!(removed.status, 204);
    let removed_again = app
        .call(delete, "/v1/secrets/openai", Some(&admin), None)
        .await;
    assert_eq!(removed_again.status, 404);

    // Every decision was audited, and no audit record or log line holds
    // the value.
    let App {
        writer,
        admin: policy,
        _dir,
        ..
    } = app;
    writer.finish().await;
    let page = policy
        .audit()
        .query(&AuditFilter::default())
        .await
        .expect("audit reads");
    let audited = serde_json::to_string(&page.records).expect("serialises");
    assert!(audited.contains("manage_secret"), "{audited}");
    assert!(audited.contains("manage_model_agent"));
    assert!(!audited.contains(SECRET));
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(logs.contains("secret set"), "TRACE logs were captured");
    assert!(!logs.contains(SECRET), "a log line holds the secret");
}

/// Every byte of the SQLite database and its WAL, as text (lossy).
async fn sqlx_free_read(url: &str) -> String {
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}
