//! `/v1/memory` (issue 20) end to end: the whole application over a real
//! SQLite database, the example policy set, real HTTP, and a project-written
//! OpenAI-compatible embedding provider on loopback (a bag-of-words
//! embedder behind the real `/embeddings` wire format). A test-only header
//! stands in for authentication (`x-test-principal`, a JSON `Principal`).
//!
//! Shown here: an organisation's members create namespaces and write,
//! read, list and search them within their scopes; another organisation's
//! namespace is answered exactly as a missing one for every verb; records
//! breaking the schema are 400 with pointers; `If-Match` is honoured (412
//! when stale); documents are embedded with the organisation's own key
//! (BYOK, from `/v1/secrets`) and a failing provider writes nothing; a
//! namespace on the local all-MiniLM-L6-v2 model (`CONVERGIO_TEST_MINILM_DIR`,
//! from `scripts/minilm-model.sh`) ranks by meaning, and one naming a model
//! the deployment does not have is refused (400).
//! Agent and global contexts: a namespace scoped to one agent is that
//! agent's (it reads and writes it as principal `agent:NAME`; another agent
//! of the organisation is refused, another organisation finds nothing),
//! the organisation's global namespaces are readable by its agents, and a
//! scope naming no agent of the organisation is refused at creation.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use convergio_auth::{SecretValue, SecretsKey};
use convergio_gateway::app::{build_router, serve, AppConfig, PolicyServices};
use convergio_gateway::memory_api::{MemoryApi, SecretKeys};
use convergio_gateway::secrets::Secrets;
use convergio_gateway::ssrf::AllowList;
use convergio_memory::embed::ProviderEmbedders;
use convergio_memory::local::LocalModels;
use convergio_memory::Memory;
use convergio_policy::{AuditSink, PolicyAdmin, PolicyEngine};
use convergio_registry::{Actor, Registration, Registry, RegistryConfig};
use convergio_schemas::Principal;
use convergio_store::memory::MemoryTables;
use convergio_store::models::ModelStore;
use convergio_tests::embeddings::FakeEmbeddings;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ORG: &str = "acme.example";
const OTHER: &str = "other.example";
const KEY: &str = "sk-memory-gateway-test-1a2b3c";
const DIMENSIONS: usize = 32;

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

struct App {
    base: String,
    provider: FakeEmbeddings,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> App {
    start_with(LocalModels::none()).await
}

async fn start_with(local: LocalModels) -> App {
    let provider = FakeEmbeddings::start(KEY, DIMENSIONS).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let admin = PolicyAdmin::new(
        Arc::new(PolicyEngine::with_defaults().expect("defaults")),
        Arc::new(convergio_store::policy::PolicyStore::new(db.clone())),
    );
    admin.bootstrap().await.expect("bootstrap");
    let (audit, _writer) = AuditSink::spawn(admin.audit().clone(), 64);
    let registry = Registry::builder(
        agents,
        RegistryConfig {
            org_domain: ORG.to_owned(),
            ..RegistryConfig::default()
        },
        // The test's agents name a loopback address nothing serves: they
        // are never called, only named by namespaces' scopes.
        Arc::new(AllowList::loopback()),
    )
    .build();
    for (name, org) in [("writer", ORG), ("critic", ORG), ("outsider", OTHER)] {
        registry
            .register(
                &Actor::admin(),
                Registration {
                    name: Some(name.to_owned()),
                    org: Some(org.to_owned()),
                    role: None,
                    card: agent_card(name),
                    upstreams: None,
                    trust: None,
                },
            )
            .await
            .expect("registered");
    }
    // An agent this server hosts for the other organisation (as its model
    // and plugin agents are): served here, owned there.
    registry
        .upsert_system(Registration {
            name: Some("helper".to_owned()),
            org: Some(OTHER.to_owned()),
            role: None,
            card: agent_card("helper"),
            upstreams: None,
            trust: None,
        })
        .await
        .expect("hosted");
    let (key, _) = SecretsKey::generate().expect("random works");
    let secrets = Arc::new(Secrets::new(
        Arc::new(ModelStore::new(&db)),
        Arc::new(key),
        ORG,
    ));
    secrets
        .set(ORG, "embeddings", &SecretValue::new(KEY))
        .await
        .expect("secret set");
    let embedders = ProviderEmbedders::new(
        Arc::new(SecretKeys(secrets.clone())),
        reqwest::Client::new(),
        Arc::new(local),
    );
    let memory = Arc::new(Memory::new(
        Arc::new(MemoryTables::new(&db)),
        Arc::new(embedders),
    ));
    let router = build_router(
        registry,
        AppConfig {
            policy: Some(PolicyServices {
                admin,
                audit,
                quotas: None,
            }),
            secrets: Some(secrets),
            memory: Some(MemoryApi {
                memory,
                default_org: ORG.to_owned(),
                allow: AllowList::loopback(),
            }),
            ..AppConfig::default()
        },
    )
    .layer(middleware::from_fn(test_identity));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, router, std::future::pending()));
    App {
        base: format!("http://{address}"),
        provider,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// A card for an agent that is named, never called.
fn agent_card(name: &str) -> Value {
    json!({
        "name": name, "description": "named by memory scopes", "version": "1",
        "supportedInterfaces": [
            {"url": "http://127.0.0.1:9/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "s", "name": "s", "description": "s", "tags": ["t"]}]
    })
}

/// The server acting as one of `org`'s agents (a model or graph agent).
fn agent(name: &str, org: &str) -> String {
    json!({"subject": format!("agent:{name}"), "org": org, "scopes": [], "method": "system"})
        .to_string()
}

fn member(org: &str, scopes: &[&str]) -> String {
    json!({"subject": "alice", "org": org, "scopes": scopes, "method": "api_key"}).to_string()
}

fn admin() -> String {
    json!({"subject": "root", "org": null, "scopes": ["admin"], "method": "admin_token"})
        .to_string()
}

struct Answer {
    status: u16,
    etag: Option<String>,
    text: String,
    body: Value,
}

impl App {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        principal: Option<&str>,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(principal) = principal {
            request = request.header("x-test-principal", principal);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            etag,
            text,
            body,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_memory_is_owned_checked_and_versioned() {
    let app = start().await;
    let (get, put, delete) = (
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    );
    let writer = member(ORG, &["memory:write"]);
    let reader = member(ORG, &["memory:read"]);
    let stranger = member(OTHER, &["memory:write", "memory:read"]);
    let schema = json!({
        "kind": "structured",
        "schema": {"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}}},
        "retention": {"ttl_seconds": 3600, "max_items": 10}
    });

    let anonymous = app
        .call(
            put.clone(),
            "/v1/memory/profiles",
            None,
            Some(schema.clone()),
            None,
        )
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    let read_only = app
        .call(
            put.clone(),
            "/v1/memory/profiles",
            Some(&reader),
            Some(schema.clone()),
            None,
        )
        .await;
    assert_eq!(read_only.status, 403, "{}", read_only.text);
    let created = app
        .call(
            put.clone(),
            "/v1/memory/profiles",
            Some(&writer),
            Some(schema.clone()),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["org"], json!(ORG));
    let taken = app
        .call(
            put.clone(),
            "/v1/memory/profiles",
            Some(&stranger),
            Some(schema.clone()),
            None,
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text);

    let stored = app
        .call(
            put.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            Some(json!({"name": "Ann"})),
            None,
        )
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    let etag = stored.etag.clone().expect("an ETag");
    let broken = app
        .call(
            put.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            Some(json!({"name": 3})),
            None,
        )
        .await;
    assert_eq!(broken.status, 400, "{}", broken.text);
    assert!(broken.text.contains("/name"), "{}", broken.text);
    let updated = app
        .call(
            put.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            Some(json!({"name": "Anne"})),
            Some(&etag),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let stale = app
        .call(
            put.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            Some(json!({"name": "Old"})),
            Some(&etag),
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    let read = app
        .call(
            get.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&reader),
            None,
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["value"], json!({"name": "Anne"}));
    assert_eq!(read.body["version"], json!(2));
    assert_eq!(read.etag, updated.etag);
    let listed = app
        .call(
            get.clone(),
            "/v1/memory/profiles/items",
            Some(&reader),
            None,
            None,
        )
        .await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );
    let namespaces = app
        .call(get.clone(), "/v1/memory", Some(&reader), None, None)
        .await;
    assert_eq!(namespaces.body["namespaces"][0]["name"], json!("profiles"));

    // Another organisation sees nothing: every verb answers as missing.
    let missing = app
        .call(
            get.clone(),
            "/v1/memory/nothing-here",
            Some(&stranger),
            None,
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
    for (method, path, body) in [
        (get.clone(), "/v1/memory/profiles", None),
        (get.clone(), "/v1/memory/profiles/items", None),
        (get.clone(), "/v1/memory/profiles/items/u1", None),
        (
            put.clone(),
            "/v1/memory/profiles/items/u2",
            Some(json!({"name": "x"})),
        ),
        (delete.clone(), "/v1/memory/profiles/items/u1", None),
        (delete.clone(), "/v1/memory/profiles", None),
        (
            reqwest::Method::POST,
            "/v1/memory/profiles:search",
            Some(json!({"query": "x"})),
        ),
    ] {
        let answer = app
            .call(method.clone(), path, Some(&stranger), body, None)
            .await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.text);
        assert_eq!(
            answer.body["detail"],
            missing.body["detail"]
                .as_str()
                .map(|d| d.replace("nothing-here", "profiles"))
                .map(Value::from)
                .unwrap_or_default(),
            "{}",
            answer.text
        );
    }
    let theirs = app
        .call(get.clone(), "/v1/memory", Some(&stranger), None, None)
        .await;
    assert_eq!(theirs.body["namespaces"], json!([]), "{}", theirs.text);
    // An administrator reaches every organisation's namespaces.
    let by_admin = app
        .call(
            get.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&admin()),
            None,
            None,
        )
        .await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.text);

    let deleted = app
        .call(
            delete.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = app
        .call(
            get.clone(),
            "/v1/memory/profiles/items/u1",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_memory_embeds_with_the_orgs_key_and_searches() {
    let app = start().await;
    let (put, post, get) = (
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::GET,
    );
    let writer = member(ORG, &["memory:write"]);
    let declaration = |model: &str| {
        json!({
            "kind": "vector",
            "chunking": {"size": 200, "overlap": 20},
            "embedding": {"provider": "openai", "base_url": app.provider.base_url, "model": model,
                          "api_key": "secret:embeddings", "dimensions": DIMENSIONS}
        })
    };
    let created = app
        .call(
            put.clone(),
            "/v1/memory/notes",
            Some(&writer),
            Some(declaration("bag")),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    for (key, text, topic) in [
        ("cat", "a kitten sleeps on the sofa", "pets"),
        ("tax", "quarterly tax filing for the company", "finance"),
        ("dog", "the dog sleeps in the garden", "pets"),
    ] {
        let stored = app
            .call(
                put.clone(),
                &format!("/v1/memory/notes/items/{key}"),
                Some(&writer),
                Some(json!({"text": text, "metadata": {"topic": topic}})),
                None,
            )
            .await;
        assert_eq!(stored.status, 201, "{}", stored.text);
        assert_eq!(stored.body["chunks"], json!(1));
    }
    assert!(app
        .provider
        .authorizations()
        .iter()
        .all(|seen| seen == &format!("Bearer {KEY}")));
    let found = app
        .call(
            post.clone(),
            "/v1/memory/notes:search",
            Some(&writer),
            Some(json!({"query": "kitten on a sofa", "top_k": 2})),
            None,
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["hits"][0]["key"], json!("cat"), "{}", found.text);
    assert!(found.body["hits"][0]["score"].as_f64().unwrap_or(0.0) > 0.5);
    let filtered = app
        .call(
            post.clone(),
            "/v1/memory/notes:search",
            Some(&writer),
            Some(json!({"query": "kitten on a sofa", "top_k": 5, "filter": {"topic": "finance"}})),
            None,
        )
        .await;
    assert_eq!(
        filtered.body["hits"].as_array().map(Vec::len),
        Some(1),
        "{}",
        filtered.text
    );
    assert_eq!(filtered.body["hits"][0]["key"], json!("tax"));
    let bad_search = app
        .call(
            post.clone(),
            "/v1/memory/notes:search",
            Some(&writer),
            Some(json!({"query": "x", "top_k": 1000})),
            None,
        )
        .await;
    assert_eq!(bad_search.status, 400, "{}", bad_search.text);
    let oversize = app
        .call(
            put.clone(),
            "/v1/memory/notes/items/big",
            Some(&writer),
            Some(json!({"text": "word ".repeat(60_000)})),
            None,
        )
        .await;
    assert_eq!(oversize.status, 413, "{}", oversize.text);

    // A failing provider: a clear 502, and nothing written.
    let broken = app
        .call(
            put.clone(),
            "/v1/memory/broken",
            Some(&writer),
            Some(declaration("fail")),
            None,
        )
        .await;
    assert_eq!(broken.status, 201, "{}", broken.text);
    let failed = app
        .call(
            put.clone(),
            "/v1/memory/broken/items/d1",
            Some(&writer),
            Some(json!({"text": "some text"})),
            None,
        )
        .await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert!(!failed.text.contains(KEY));
    let nothing = app
        .call(
            get.clone(),
            "/v1/memory/broken/items/d1",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(nothing.status, 404, "{}", nothing.text);
    let listed = app
        .call(
            get.clone(),
            "/v1/memory/broken/items",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.text);

    // A namespace whose key is not set: a clear 400 naming the reference.
    let other_writer = member(OTHER, &["memory:write"]);
    let keyless = app
        .call(
            put.clone(),
            "/v1/memory/theirs",
            Some(&other_writer),
            Some(declaration("bag")),
            None,
        )
        .await;
    assert_eq!(keyless.status, 201, "{}", keyless.text);
    let refused = app
        .call(
            put.clone(),
            "/v1/memory/theirs/items/d1",
            Some(&other_writer),
            Some(json!({"text": "hello"})),
            None,
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("secret:embeddings"),
        "{}",
        refused.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_model_namespace_ranks_by_meaning_and_an_unknown_model_is_refused() {
    let Some(directory) = std::env::var_os("CONVERGIO_TEST_MINILM_DIR") else {
        panic!(
            "CONVERGIO_TEST_MINILM_DIR is not set: run scripts/minilm-model.sh and export the \
             directory it prints (scripts/test.sh does both)"
        );
    };
    let app = start_with(LocalModels::new(std::collections::BTreeMap::from([(
        "all-minilm-l6-v2".to_owned(),
        std::path::PathBuf::from(directory),
    )])))
    .await;
    let (put, post) = (reqwest::Method::PUT, reqwest::Method::POST);
    let writer = member(ORG, &["memory:write"]);
    let unknown = app
        .call(
            put.clone(),
            "/v1/memory/elsewhere",
            Some(&writer),
            Some(json!({"kind": "vector",
                        "embedding": {"provider": "local", "model": "no-such-model"}})),
            None,
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(unknown.text.contains("no-such-model"), "{}", unknown.text);

    let created = app
        .call(
            put.clone(),
            "/v1/memory/local-notes",
            Some(&writer),
            Some(json!({"kind": "vector",
                        "embedding": {"provider": "local", "model": "all-minilm-l6-v2"}})),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    for (key, text) in [
        ("tax", "quarterly tax filing"),
        ("cat", "a kitten sleeps on the sofa"),
        ("car", "changing the oil of a diesel engine"),
    ] {
        let stored = app
            .call(
                put.clone(),
                &format!("/v1/memory/local-notes/items/{key}"),
                Some(&writer),
                Some(json!({"text": text, "metadata": {"source": "test"}})),
                None,
            )
            .await;
        assert_eq!(stored.status, 201, "{}", stored.text);
    }
    let found = app
        .call(
            post,
            "/v1/memory/local-notes:search",
            Some(&writer),
            Some(json!({"query": "cat resting on a couch", "top_k": 3})),
            None,
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    let keys: Vec<&str> = found.body["hits"]
        .as_array()
        .map(|hits| hits.iter().filter_map(|hit| hit["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys.first(), Some(&"cat"), "{}", found.text);
    let score = |key: &str| {
        found.body["hits"]
            .as_array()
            .and_then(|hits| hits.iter().find(|hit| hit["key"] == json!(key)))
            .and_then(|hit| hit["score"].as_f64())
            .unwrap_or(f64::NAN)
    };
    assert!(score("cat") > score("tax") + 0.3, "{}", found.text);
    // The provider of the other tests was never called.
    assert!(app.provider.authorizations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_memory_is_its_agents_and_global_memory_is_shared() {
    let app = start().await;
    let (put, get) = (reqwest::Method::PUT, reqwest::Method::GET);
    let writer_member = member(ORG, &["memory:write"]);
    let reader_member = member(ORG, &["memory:read"]);
    let writer = agent("writer", ORG);
    let critic = agent("critic", ORG);
    let outsider = agent("outsider", OTHER);
    let structured = |scope: Value| json!({"kind": "structured", "scope": scope});

    // Members create the writer's memory and the organisation's shared one.
    let created = app
        .call(
            put.clone(),
            "/v1/memory/writer-notes",
            Some(&writer_member),
            Some(structured(json!({"agent": "writer"}))),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["scope"], json!({"agent": "writer"}));
    assert_eq!(created.body["spec"]["scope"], json!({"agent": "writer"}));
    let shared = app
        .call(
            put.clone(),
            "/v1/memory/shared",
            Some(&writer_member),
            Some(structured(json!("global"))),
            None,
        )
        .await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    assert_eq!(shared.body["scope"], json!("global"));
    // A scope naming no agent of the organisation is refused, clearly.
    for (agent_name, namespace) in [("ghost", "ghost-notes"), ("outsider", "outsider-notes")] {
        let refused = app
            .call(
                put.clone(),
                &format!("/v1/memory/{namespace}"),
                Some(&writer_member),
                Some(structured(json!({"agent": agent_name}))),
                None,
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(
            refused.text.contains(&format!(
                "scope.agent: {agent_name} is not an agent of {ORG}"
            )),
            "{}",
            refused.text
        );
    }

    // The writer reads and writes its own memory.
    let written = app
        .call(
            put.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&writer),
            Some(json!({"tone": "dry"})),
            None,
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    let read = app
        .call(
            get.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["value"], json!({"tone": "dry"}));

    // Another agent of the organisation may not, either way (403).
    let peeked = app
        .call(
            get.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&critic),
            None,
            None,
        )
        .await;
    assert_eq!(peeked.status, 403, "{}", peeked.text);
    let scribbled = app
        .call(
            put.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&critic),
            Some(json!({"tone": "harsh"})),
            None,
        )
        .await;
    assert_eq!(scribbled.status, 403, "{}", scribbled.text);
    // A client credential whose subject merely looks like the agent is no agent.
    let spoofed = json!({"subject": "agent:writer", "org": ORG, "scopes": [], "method": "api_key"})
        .to_string();
    let spoof = app
        .call(
            get.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&spoofed),
            None,
            None,
        )
        .await;
    assert_eq!(spoof.status, 403, "{}", spoof.text);
    // Another organisation finds nothing: its agent and its members.
    for stranger in [&outsider, &member(OTHER, &["memory:write"])] {
        for path in [
            "/v1/memory/writer-notes",
            "/v1/memory/writer-notes/items/style",
        ] {
            let hidden = app
                .call(get.clone(), path, Some(stranger), None, None)
                .await;
            assert_eq!(hidden.status, 404, "{path}: {}", hidden.text);
        }
    }

    // The shared knowledge: members write it, every agent of the
    // organisation reads it, no agent writes it.
    let fact = app
        .call(
            put.clone(),
            "/v1/memory/shared/items/motto",
            Some(&writer_member),
            Some(json!({"text": "measure twice"})),
            None,
        )
        .await;
    assert_eq!(fact.status, 201, "{}", fact.text);
    for reader in [&writer, &critic] {
        let known = app
            .call(
                get.clone(),
                "/v1/memory/shared/items/motto",
                Some(reader),
                None,
                None,
            )
            .await;
        assert_eq!(known.status, 200, "{}", known.text);
    }
    let overwritten = app
        .call(
            put.clone(),
            "/v1/memory/shared/items/motto",
            Some(&critic),
            Some(json!({"text": "cut once"})),
            None,
        )
        .await;
    assert_eq!(overwritten.status, 403, "{}", overwritten.text);
    let foreign = app
        .call(
            get.clone(),
            "/v1/memory/shared/items/motto",
            Some(&outsider),
            None,
            None,
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);

    // Members with memory:read read an agent's memory (administration)
    // and may not write it.
    let audited = app
        .call(
            get.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&reader_member),
            None,
            None,
        )
        .await;
    assert_eq!(audited.status, 200, "{}", audited.text);
    let meddled = app
        .call(
            put.clone(),
            "/v1/memory/writer-notes/items/style",
            Some(&reader_member),
            Some(json!({"tone": "wet"})),
            None,
        )
        .await;
    assert_eq!(meddled.status, 403, "{}", meddled.text);

    // Listing: members see both with their scopes; an agent lists its own
    // (`?agent=`), never another's nor the whole organisation's.
    let listed = app
        .call(get.clone(), "/v1/memory", Some(&reader_member), None, None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let scopes: Vec<(Value, Value)> = listed.body["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|view| (view["name"].clone(), view["scope"].clone()))
        .collect();
    assert_eq!(
        scopes,
        vec![
            (json!("shared"), json!("global")),
            (json!("writer-notes"), json!({"agent": "writer"}))
        ]
    );
    let own = app
        .call(
            get.clone(),
            "/v1/memory?agent=writer",
            Some(&writer),
            None,
            None,
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(
        own.body["namespaces"].as_array().map(Vec::len),
        Some(1),
        "{}",
        own.text
    );
    assert_eq!(own.body["namespaces"][0]["name"], json!("writer-notes"));
    for path in ["/v1/memory?agent=writer", "/v1/memory"] {
        let refused = app.call(get.clone(), path, Some(&critic), None, None).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
    }
}

/// An agent the server hosts for another organisation (a model or plugin
/// agent of it) gets agent memory in its own organisation, like the
/// deployment's own agents; it names no agent of this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_hosted_for_another_organisation_has_its_own_memory() {
    let app = start().await;
    let (put, get) = (reqwest::Method::PUT, reqwest::Method::GET);
    let structured = json!({"kind": "structured", "scope": {"agent": "helper"}});
    let created = app
        .call(
            put.clone(),
            "/v1/memory/helper-notes",
            Some(&member(OTHER, &["memory:write"])),
            Some(structured.clone()),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["org"], OTHER, "{}", created.text);
    let helper = agent("helper", OTHER);
    let written = app
        .call(
            put.clone(),
            "/v1/memory/helper-notes/items/style",
            Some(&helper),
            Some(json!({"tone": "warm"})),
            None,
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    let read = app
        .call(
            get,
            "/v1/memory/helper-notes/items/style",
            Some(&helper),
            None,
            None,
        )
        .await;
    assert_eq!(read.body["value"], json!({"tone": "warm"}), "{}", read.text);
    // Not an agent of this deployment's organisation.
    let refused = app
        .call(
            put,
            "/v1/memory/helper-in-acme",
            Some(&member(ORG, &["memory:write"])),
            Some(structured),
            None,
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused
            .text
            .contains(&format!("scope.agent: helper is not an agent of {ORG}")),
        "{}",
        refused.text
    );
}
