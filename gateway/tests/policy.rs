//! Authorisation end to end: the whole application (`build_router`) over a
//! real SQLite registry and policy store, a fake upstream on loopback, and
//! real HTTP. Test-only headers stand in for authentication:
//! `x-test-principal` (JSON `Principal`) and `x-test-graph-run` (a
//! `GraphCall` extension, as the orchestrator's dispatcher sets it).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use convergio_gateway::app::{build_router, serve, AppConfig, PolicyServices};
use convergio_gateway::authorize::AuditChanges;
use convergio_policy::quota::RateLimit;
use convergio_policy::{AuditSink, AuditWriter, PolicyAdmin, PolicyEngine, QuotaConfig, Quotas};
use convergio_registry::{Actor, Registration, Registry, RegistryConfig};
use convergio_schemas::{GraphCall, Principal, TrustLevel};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use support::{send_params, spawn_fake, FakeAgent, FakeMode};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const ORG: &str = "acme.example";

struct App {
    base: String,
    http: reqwest::Client,
    registry: Registry,
    fake: FakeAgent,
    _writer: AuditWriter,
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
    let run = request
        .headers()
        .get("x-test-graph-run")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(run_id) = run {
        request.extensions_mut().insert(GraphCall {
            run_id,
            graph: "review".to_owned(),
            node_id: "n1".to_owned(),
            agent: None,
        });
    }
    next.run(request).await
}

async fn start(quotas: Option<QuotaConfig>) -> App {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let store = Arc::new(convergio_store::policy::PolicyStore::new(db.clone()));
    let admin = PolicyAdmin::new(
        Arc::new(PolicyEngine::with_defaults().expect("defaults")),
        store,
    );
    admin.bootstrap().await.expect("bootstrap");
    let (audit, writer) = AuditSink::spawn(admin.audit().clone(), 64);
    // Built as `convergio serve` builds it: registry changes are audited
    // through the registry's change hook, upstreams checked by the same
    // allow list the A2A routes use.
    let registry = Registry::builder(
        agents,
        RegistryConfig {
            org_domain: ORG.to_owned(),
            ..RegistryConfig::default()
        },
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    )
    .change_hook(Arc::new(AuditChanges::new(audit.clone())))
    .build();
    let fake = spawn_fake(FakeMode::V1JsonRpcOnly).await;
    let router = build_router(
        registry.clone(),
        AppConfig {
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            policy: Some(PolicyServices {
                admin,
                audit,
                quotas: quotas.map(|config| Arc::new(Quotas::new(config))),
            }),
            a2a: convergio_gateway::a2a::A2aConfig {
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..Default::default()
            },
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
        registry,
        fake,
        _writer: writer,
        _dir: dir,
    }
}

fn user(subject: &str, org: Option<&str>, scopes: &[&str]) -> String {
    json!({"subject": subject, "org": org, "scopes": scopes, "method": "jwt"}).to_string()
}

impl App {
    /// Registers the fake upstream as `name` with `trust`.
    async fn agent(&self, name: &str, trust: TrustLevel, tags: &[&str]) {
        let mut card = self.fake.card();
        card["name"] = json!(name);
        card["skills"][0]["tags"] = json!(tags);
        let registration = Registration {
            name: Some(name.to_owned()),
            org: None,
            role: None,
            card,
            upstreams: None,
            trust: None,
        };
        let record = self
            .registry
            .register(&Actor::admin(), registration)
            .await
            .expect("register");
        if trust != TrustLevel::Registered {
            self.registry
                .set_trust(&Actor::admin(), &record.id, trust, "test", None)
                .await
                .expect("trust");
        }
    }

    async fn rpc(
        &self,
        agent: &str,
        principal: &str,
        graph_run: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/agents/{agent}", self.base))
            .header("A2A-Version", "1.0")
            .header("x-test-principal", principal)
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": send_params("hi")}));
        if let Some(run) = graph_run {
            request = request.header("x-test-graph-run", run);
        }
        request.send().await.expect("rpc")
    }

    async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("get");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }

    /// Audit records, once one with `action` has been appended (the writer
    /// is asynchronous; polled for at most 10 s).
    async fn audit_records_with(&self, action: &str) -> Vec<Value> {
        self.audit_records_where(action, |record| record["action"] == json!(action))
            .await
    }

    /// Polls the audit log until a record matches `wanted` (entries are
    /// written by a queue, so the newest may not be there yet).
    async fn audit_records_where(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.audit_records_until(what, |records| records.iter().any(&wanted))
            .await
    }

    /// Polls the audit log until `complete` holds of all its records.
    async fn audit_records_until(
        &self,
        what: &str,
        complete: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let page = self.admin_get("/v1/audit?limit=500").await;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            if complete(&records) {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} record: {records:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn calls_are_decided_by_policy_before_the_upstream_and_audited() {
    let app = start(None).await;
    app.agent("echo", TrustLevel::Registered, &["echo"]).await;
    let alice = user("alice", Some(ORG), &[]);
    let outsider = user("eve", Some("other.example"), &[]);

    // Same organisation: allowed by internal-same-org, forwarded.
    let response = app.rpc("echo", &alice, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("result").is_some(), "{body}");
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 1);

    // Another organisation, agent not opted in: it may not even discover
    // it, so the answer is the unknown-agent one, and nothing went upstream.
    let response = app.rpc("echo", &outsider, None).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!(-32601), "{body}");
    assert_eq!(body["error"]["data"][0]["reason"], json!("AGENT_NOT_FOUND"));
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 1);

    // A caller that may discover but not send: 403 PERMISSION_DENIED.
    let policy = format!(
        "{}\n@id(\"viewers-discover\") permit (principal, action == Action::\"discover\", resource is Agent) when {{ context.scopes.contains(\"viewer\") }};\n",
        convergio_policy::engine::EXAMPLE_POLICIES
    );
    let put = app
        .http
        .put(format!("{}/v1/policies", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"policies": policy, "reason": "viewers"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let viewer = user("vic", Some("other.example"), &["viewer"]);
    let response = app.rpc("echo", &viewer, None).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!(-32603), "{body}");
    assert_eq!(
        body["error"]["data"][0]["reason"],
        json!("PERMISSION_DENIED")
    );
    // HTTP+JSON binding: the A2A REST error shape with 403.
    let response = app
        .http
        .get(format!("{}/agents/echo/tasks/t1", app.base))
        .header("A2A-Version", "1.0")
        .header("x-test-principal", &viewer)
        .send()
        .await
        .expect("rest");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["error"]["status"],
        json!("PERMISSION_DENIED"),
        "{body}"
    );
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 1);

    // Every decision is in the chain: who, action, resource, policies, request id.
    // Decisions reach the chain through a queue: wait for all three.
    let is_alice = |record: &Value| {
        record["subject"] == json!("alice") && record["action"] == json!("send_message")
    };
    let is_eve_denied =
        |record: &Value| record["subject"] == json!("eve") && record["decision"] == json!("deny");
    let is_policy_put = |record: &Value| record["action"] == json!("policy.put");
    let records = app
        .audit_records_until("alice's, eve's and the policy change", |records| {
            [
                &is_alice as &dyn Fn(&Value) -> bool,
                &is_eve_denied,
                &is_policy_put,
            ]
            .iter()
            .all(|wanted| records.iter().any(wanted))
        })
        .await;
    let allow = records
        .iter()
        .find(|record| is_alice(record))
        .expect("alice's decision is audited");
    assert_eq!(allow["decision"], json!("allow"));
    assert_eq!(allow["determining"], json!(["internal-same-org"]));
    assert_eq!(allow["resource"], json!("agent:convergio://agents/echo"));
    assert_eq!(allow["detail"]["a2a_method"], json!("SendMessage"));
    assert!(allow["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let text = serde_json::to_string(&records).expect("json");
    assert!(
        !text.contains("hi\""),
        "message bodies never reach the audit log"
    );
    let verified = app.admin_get("/v1/audit:verify").await;
    assert!(verified["records"].as_i64().is_some_and(|count| count >= 5));
}

#[tokio::test]
async fn graph_runs_send_only_to_agents_at_or_above_registered() {
    let app = start(None).await;
    app.agent("draft", TrustLevel::Untrusted, &["draft"]).await;
    let alice = user("alice", Some(ORG), &[]);
    let response = app.rpc("draft", &alice, None).await;
    assert_eq!(
        response.status(),
        200,
        "outside a graph the call is allowed"
    );
    let response = app.rpc("draft", &alice, Some("run-42")).await;
    assert_eq!(response.status(), 403, "graph-min-trust forbids it");
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 1);
    let is_denial = |record: &Value| {
        record["decision"] == json!("deny") && record["action"] == json!("send_message")
    };
    let records = app
        .audit_records_where("send_message denial", is_denial)
        .await;
    let denied = records
        .iter()
        .find(|record| is_denial(record))
        .expect("the graph call's denial is audited");
    assert_eq!(denied["determining"], json!(["graph-min-trust"]));
    assert_eq!(denied["detail"]["graph_run"], json!("run-42"));
}

#[tokio::test]
async fn spent_quota_answers_429_with_retry_after_before_the_upstream() {
    let quotas = QuotaConfig {
        per_principal: Some(RateLimit {
            per_second: 0.01,
            burst: 1.0,
        }),
        ..QuotaConfig::default()
    };
    let app = start(Some(quotas)).await;
    app.agent("echo", TrustLevel::Registered, &["echo"]).await;
    let alice = user("alice", Some(ORG), &[]);
    assert_eq!(app.rpc("echo", &alice, None).await.status(), 200);
    let response = app.rpc("echo", &alice, None).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["error"]["data"][0]["reason"],
        json!("RATE_LIMITED"),
        "{body}"
    );
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn discovery_lists_only_what_the_caller_may_discover_across_pages() {
    let app = start(None).await;
    // Anonymous callers may discover internal agents only (example set).
    for index in 0..7 {
        let trust = if index % 2 == 0 {
            TrustLevel::Internal
        } else {
            TrustLevel::Registered
        };
        app.agent(&format!("a{index}"), trust, &["demo"]).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut url = format!("{}/v1/agents?page_size=2", app.base);
        if let Some(token) = &token {
            url.push_str(&format!("&page_token={token}"));
        }
        let page: Value = app
            .http
            .get(url)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        for agent in page["agents"].as_array().expect("agents") {
            seen.push(agent["name"].as_str().expect("name").to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["a0", "a2", "a4", "a6"],
        "each visible agent exactly once"
    );

    // A hidden agent reads as unknown; the admin token sees it.
    let hidden = app
        .http
        .get(format!("{}/v1/agents/a1", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(hidden.status(), 404);
    let shown = app.admin_get("/v1/agents/a1").await;
    assert_eq!(shown["name"], json!("a1"));
    let all = app.admin_get("/v1/agents?page_size=100").await;
    assert_eq!(all["agents"].as_array().map(Vec::len), Some(7));

    // The gateway's own card lists only discoverable agents' skills.
    let card: Value = app
        .http
        .get(format!("{}/.well-known/agent-card.json", app.base))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    let mut skills: Vec<&str> = card["skills"]
        .as_array()
        .expect("skills")
        .iter()
        .filter_map(|skill| skill["id"].as_str())
        .collect();
    skills.sort();
    assert_eq!(skills, vec!["a0", "a2", "a4", "a6"]);
}

#[tokio::test]
async fn only_those_who_may_update_an_agent_see_where_it_lives() {
    let app = start(None).await;
    app.agent("inside", TrustLevel::Internal, &["external"])
        .await;
    let upstream = app.fake.card()["supportedInterfaces"][0]["url"]
        .as_str()
        .expect("the fake's url")
        .to_owned();
    let get = |path: &str, principal: Option<String>| {
        let mut request = app
            .http
            .get(format!("{}{path}", app.base))
            .header("host", "gw.example:8443");
        if let Some(principal) = principal {
            request = request.header("x-test-principal", principal);
        }
        let path = path.to_owned();
        async move {
            let response = request.send().await.expect("answer");
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Value>().await.expect("json")
        }
    };
    // Anonymous callers and other organisations' readers discover and read
    // the agent as the gateway serves it: no upstream, no internal address.
    let outsider = user("eve", Some("other.example"), &["agents:read"]);
    for principal in [None, Some(outsider)] {
        let listing = get("/v1/agents", principal.clone()).await;
        let record = get("/v1/agents/inside", principal.clone()).await;
        let versions = get("/v1/agents/inside/versions", principal).await;
        for shown in [&listing["agents"][0], &record, &versions["versions"][0]] {
            let text = shown.to_string();
            assert!(!text.contains(&upstream), "{shown:#}");
            assert_eq!(shown["upstreams"], json!([]), "{shown:#}");
            assert_eq!(
                shown["card"]["supportedInterfaces"][0]["url"],
                "http://gw.example:8443/agents/inside/",
                "{shown:#}"
            );
        }
    }
    // Whoever may update it (the administrator, a writer of its own
    // organisation) sees the record as registered.
    let writer = user("olga", Some(ORG), &["agents:write"]);
    let record = get("/v1/agents/inside", Some(writer)).await;
    assert_eq!(
        record["upstreams"][0]["url"],
        upstream.as_str(),
        "{record:#}"
    );
    let record = app.admin_get("/v1/agents/inside").await;
    assert_eq!(
        record["upstreams"][0]["url"],
        upstream.as_str(),
        "{record:#}"
    );
    assert_eq!(
        record["card"]["supportedInterfaces"][0]["url"],
        upstream.as_str()
    );
}

#[tokio::test]
async fn registry_writes_follow_policy_and_changes_are_audited() {
    let app = start(None).await;
    let card = {
        let mut card = app.fake.card();
        card["name"] = json!("weather");
        card
    };
    let post = |principal: Option<String>, bearer: Option<&str>| {
        let mut request = app
            .http
            .post(format!("{}/v1/agents", app.base))
            .json(&json!({"card": card, "name": "weather"}));
        if let Some(principal) = principal {
            request = request.header("x-test-principal", principal);
        }
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    // No credentials: 401. Another organisation's writer: 403.
    assert_eq!(post(None, None).await.expect("post").status(), 401);
    let foreign = user("ci", Some("other.example"), &["agents:write"]);
    assert_eq!(post(Some(foreign), None).await.expect("post").status(), 403);
    // A writer of this organisation (register-own-org).
    let writer = user("ci", Some(ORG), &["agents:write"]);
    assert_eq!(post(Some(writer), None).await.expect("post").status(), 201);
    // The bootstrap admin token still works (trust change).
    let response = app
        .http
        .put(format!("{}/v1/agents/weather/trust", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"level": "trusted", "reason": "reviewed"}))
        .send()
        .await
        .expect("trust");
    assert_eq!(response.status(), 200);
    // A refused change to an agent the caller may not even discover gets
    // the unknown-agent answer: the refusal does not reveal it exists.
    let outsider = user("ci", Some("other.example"), &["agents:write"]);
    let response = app
        .http
        .put(format!("{}/v1/agents/weather/trust", app.base))
        .header("x-test-principal", outsider)
        .json(&json!({"level": "registered", "reason": "probing"}))
        .send()
        .await
        .expect("trust");
    assert_eq!(response.status(), 404);
    let records = app.audit_records_with("agent.set_trust").await;
    let actions: Vec<&str> = records
        .iter()
        .filter_map(|record| record["action"].as_str())
        .collect();
    assert!(actions.contains(&"agent.register"), "{actions:?}");
    assert!(actions.contains(&"agent.set_trust"), "{actions:?}");
    let trust = records
        .iter()
        .find(|record| record["action"] == json!("agent.set_trust"))
        .expect("trust change");
    assert_eq!(trust["detail"]["to"], json!("trusted"));
}

/// Issue 14: the cause of a failed upstream call (its address, the
/// transport error) is for callers policy lets read the agent's card; a
/// caller who may only send learns the category.
#[tokio::test]
async fn upstream_causes_are_shown_only_to_callers_who_may_read_the_card() {
    let app = start(None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let mut card = app.fake.card();
    card["name"] = json!("dead");
    card["supportedInterfaces"] = json!([{"url": format!("http://{address}/"),
        "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]);
    app.registry
        .register(
            &Actor::admin(),
            Registration {
                name: Some("dead".to_owned()),
                org: None,
                role: None,
                card,
                upstreams: None,
                trust: None,
            },
        )
        .await
        .expect("register");
    let policy = format!(
        "{}\n@id(\"callers-send\") permit (principal, action in [Action::\"discover\", Action::\"send_message\"], resource is Agent) when {{ context.scopes.contains(\"caller\") }};\n",
        convergio_policy::engine::EXAMPLE_POLICIES
    );
    let put = app
        .http
        .put(format!("{}/v1/policies", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"policies": policy, "reason": "callers"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);

    let upstream_info = |body: &Value| -> Value {
        body["error"]["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|info| info["domain"] == json!("convergio.dev"))
            .cloned()
            .unwrap_or_else(|| panic!("no convergio.dev ErrorInfo: {body}"))
    };
    let root = user("root", Some(ORG), &["admin"]);
    let admin: Value = app
        .rpc("dead", &root, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(admin["error"]["code"], json!(-32006), "{admin}");
    let info = upstream_info(&admin);
    assert_eq!(info["reason"], json!("UPSTREAM_UNREACHABLE"), "{admin}");
    assert!(
        info["metadata"]["cause"]
            .as_str()
            .is_some_and(|cause| cause.contains(&address)),
        "{admin}"
    );

    let caller = user("carol", Some("other.example"), &["caller"]);
    let response = app.rpc("dead", &caller, None).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!(-32006), "{body}");
    assert_eq!(
        body["error"]["message"],
        json!("Invalid agent response: upstream unreachable")
    );
    let info = upstream_info(&body);
    assert_eq!(info["metadata"]["category"], json!("unreachable"), "{body}");
    assert!(info["metadata"].get("cause").is_none(), "{body}");
    assert!(!body.to_string().contains(&address), "{body}");
}

/// Issue #25: decisions are cached per active policy set and keyed by the
/// agent's attributes, so a cached allow is refused right after a trust
/// change and right after a policy activation.
#[tokio::test]
async fn a_cached_allow_is_refused_right_after_a_trust_change_or_policy_activation() {
    let app = start(None).await;
    app.agent("echo", TrustLevel::Trusted, &["external"]).await;
    // external-opt-in: another organisation reaches an agent at or above
    // verified that opted in. Asked twice, so the second answer comes from the cache.
    let outsider = user("eve", Some("other.example"), &[]);
    for _ in 0..2 {
        assert_eq!(app.rpc("echo", &outsider, None).await.status(), 200);
    }
    let id = convergio_schemas::AgentId::internal("echo").expect("name");
    app.registry
        .set_trust(&Actor::admin(), &id, TrustLevel::Untrusted, "test", None)
        .await
        .expect("trust");
    // Below verified the agent is invisible to other organisations.
    assert_eq!(app.rpc("echo", &outsider, None).await.status(), 404);
    app.registry
        .set_trust(&Actor::admin(), &id, TrustLevel::Trusted, "test", None)
        .await
        .expect("trust");
    for _ in 0..2 {
        assert_eq!(app.rpc("echo", &outsider, None).await.status(), 200);
    }
    let put = app
        .http
        .put(format!("{}/v1/policies", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"policies": convergio_policy::engine::ADMIN_ONLY_POLICIES, "reason": "lock down"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    assert_eq!(app.rpc("echo", &outsider, None).await.status(), 404);
    assert_eq!(app.fake.state.requests.load(Ordering::SeqCst), 4);
}

/// Issue #25: a burst of calls followed by the writer's shutdown leaves one
/// decision per call in the chain, and the chain verifies.
#[tokio::test]
async fn a_burst_of_calls_then_shutdown_leaves_every_decision_verifiable() {
    const CALLS: usize = 120;
    let app = start(None).await;
    app.agent("echo", TrustLevel::Registered, &["echo"]).await;
    let burster = user("burster", Some(ORG), &[]);
    let calls = (0..CALLS).map(|_| app.rpc("echo", &burster, None));
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.status(), 200);
    }
    let App {
        base,
        http,
        _writer: writer,
        ..
    } = app;
    // What `serve` does once the server stopped: close the queue, drain it.
    writer.finish().await;
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(path)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("get");
            assert!(response.status().is_success());
            response.json::<Value>().await.expect("json")
        }
    };
    let page = get(format!(
        "{base}/v1/audit?principal=burster&action=send_message&limit=500"
    ))
    .await;
    let records = page["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), CALLS, "one decision per call, none lost");
    assert!(records
        .iter()
        .all(|record| record["decision"] == json!("allow")));
    let verified = get(format!("{base}/v1/audit:verify")).await;
    assert!(
        verified["records"]
            .as_u64()
            .is_some_and(|count| count >= CALLS as u64),
        "{verified}"
    );
}

/// The identifiers' names in the AI Catalog at `path`, read as `principal`
/// (`None`: anonymous): the status, and the sorted names.
async fn catalog_names(app: &App, path: &str, principal: Option<&str>) -> (u16, Vec<String>) {
    let mut request = app.http.get(format!("{}{path}", app.base));
    if let Some(principal) = principal {
        request = request.header("x-test-principal", principal);
    }
    let response = request.send().await.expect("catalog");
    let status = response.status().as_u16();
    if status != 200 {
        return (status, Vec::new());
    }
    assert_eq!(
        response.headers()["content-type"],
        "application/ai-catalog+json"
    );
    let catalog: Value = response.json().await.expect("json");
    assert_eq!(catalog["specVersion"], json!("1.0"));
    let mut names: Vec<String> = catalog["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            assert_eq!(entry["type"], json!("application/a2a-agent-card+json"));
            let identifier = entry["identifier"].as_str().expect("identifier");
            let name = identifier.rsplit(':').next().expect("name").to_owned();
            assert_eq!(
                entry["url"],
                json!(format!(
                    "{}/agents/{name}/.well-known/agent-card.json",
                    app.base
                )),
                "the card on the gateway"
            );
            name
        })
        .collect();
    names.sort();
    (status, names)
}

#[tokio::test]
async fn the_ai_catalog_lists_what_each_caller_may_discover() {
    let app = start(None).await;
    app.agent("internal-one", TrustLevel::Internal, &["demo"])
        .await;
    app.agent("registered-one", TrustLevel::Registered, &["demo"])
        .await;
    app.agent("shared-one", TrustLevel::Trusted, &["external"])
        .await;
    let colleague = user("alice", Some(ORG), &[]);
    let partner = user("bob", Some("partner.example"), &[]);

    // Anonymous callers: internal agents only (policy anonymous-internal-cards).
    assert_eq!(
        catalog_names(&app, "/.well-known/ai-catalog.json", None).await,
        (200, vec!["internal-one".to_owned()])
    );
    // The same organisation sees all its agents; a partner only the
    // trusted one that opted in to external callers.
    assert_eq!(
        catalog_names(&app, "/.well-known/ai-catalog.json", Some(&colleague)).await,
        (
            200,
            vec![
                "internal-one".to_owned(),
                "registered-one".to_owned(),
                "shared-one".to_owned()
            ]
        )
    );
    assert_eq!(
        catalog_names(&app, "/.well-known/ai-catalog.json", Some(&partner)).await,
        (200, vec!["shared-one".to_owned()])
    );
    // The same filter as GET /v1/agents.
    let listed: Value = app
        .http
        .get(format!("{}/v1/agents", app.base))
        .header("x-test-principal", &partner)
        .send()
        .await
        .expect("discover")
        .json()
        .await
        .expect("json");
    let listed: Vec<&str> = listed["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|agent| agent["name"].as_str())
        .collect();
    assert_eq!(listed, vec!["shared-one"]);

    // Per organisation.
    let own_org = format!("/.well-known/ai-catalog.json?org={ORG}");
    assert_eq!(
        catalog_names(&app, &own_org, Some(&colleague))
            .await
            .1
            .len(),
        3
    );
    assert_eq!(
        catalog_names(
            &app,
            "/.well-known/ai-catalog.json?org=elsewhere.example",
            Some(&colleague)
        )
        .await,
        (200, Vec::new())
    );

    // Per tenant path: the agent's own base URL and the gateway interface's
    // tenant; an agent the caller may not discover is an unknown one.
    for prefix in ["/agents", "/a2a"] {
        assert_eq!(
            catalog_names(
                &app,
                &format!("{prefix}/internal-one/.well-known/ai-catalog.json"),
                None
            )
            .await,
            (200, vec!["internal-one".to_owned()]),
            "{prefix}"
        );
        assert_eq!(
            catalog_names(
                &app,
                &format!("{prefix}/registered-one/.well-known/ai-catalog.json"),
                None
            )
            .await
            .0,
            404,
            "{prefix}"
        );
        assert_eq!(
            catalog_names(
                &app,
                &format!("{prefix}/registered-one/.well-known/ai-catalog.json"),
                Some(&colleague)
            )
            .await,
            (200, vec!["registered-one".to_owned()]),
            "{prefix}"
        );
    }
    // Listings are audited like the other discovery answers.
    app.audit_records_with("discover").await;
}
