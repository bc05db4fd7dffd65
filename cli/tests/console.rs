//! The web console in a real browser (issue 23): a real `convergio serve`,
//! prepared through the REST API (stored graphs, a run waiting for a human,
//! an API key without rights, a peer, 10,000 agents and a 200-node run),
//! then headless Chromium driven by `cli/tests/browser/console.mjs`
//! (playwright-core, axe-core) through the issue's scenario: sign in, search
//! agents by free text and by skill, open a card, set trust with a reason
//! and see it in the history and the audit page, apply a policy change and
//! roll it back, run `code_review_pipeline` and watch its six nodes turn
//! green, approve a run waiting for a human, and see a refused action's
//! problem message; an accessibility check on every page; and the time to
//! first render of the agent list and of the 200-node run's graph, printed.
//! Beyond the issue's list it also shows: the agents filtered by mode,
//! organisation and federated (a second `convergio serve`, a peer
//! organisation), a failed run resumed from a named checkpoint with one
//! button, a node seen `running` live (held by an agent the script
//! releases) before it turns `succeeded`, signing in with a bearer JWT the
//! server verifies (and what that principal may not see or do), and the
//! plans (make, review, approve, reject) and memory (namespaces, items,
//! search) pages.
//!
//! `scripts/browser-env.sh` installs what the browser needs (Debian's
//! chromium, the pinned npm packages); screenshots go to
//! `target/console-artifacts/` (not committed).

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_agents::logic::text_parts;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use convergio_tests::embeddings::FakeEmbeddings;
use serde_json::{json, Value};
use support::{admin_token, start_with, Server};
use tokio::sync::Semaphore;

/// Agents registered for the scale check.
const MANY_AGENTS: usize = 10_000;
/// Nodes of the large run: `LAYERS` layers of `CHAINS` parallel chains.
const LAYERS: usize = 10;
const CHAINS: usize = 20;

/// A graph whose middle node calls the flaky agent and asks a human when
/// it fails.
const HUMAN_GATE: &str = r#"
name: human_gate
description: A node that fails once and waits for a human
nodes:
  - {id: first, agent: echo, inputs: [topic]}
  - {id: gate, agent: flaky, inputs: [first.output], on_error: human}
  - {id: last, agent: echo, inputs: [gate.output]}
edges:
  - {from: first, to: gate}
  - {from: gate, to: last}
config: {checkpoint_enabled: true}
"#;

/// Fails the first call with each text and answers every later one: each
/// run of `human_gate` (with its own topic) waits for a human, and
/// approving it (the node runs again with the same text) lets it finish.
#[derive(Default)]
struct Flaky {
    seen: Mutex<HashSet<String>>,
}

#[async_trait]
impl AgentLogic for Flaky {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let first_time = self
            .seen
            .lock()
            .expect("seen texts")
            .insert(text_parts(message).join(","));
        if first_time {
            // No direct reply: `execute` fails the task.
            return None;
        }
        let text = format!("approved({})", text_parts(message).join(","));
        Some(json!({"parts": [{"text": text}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "fails once, for the console test".to_owned(),
        })
    }
}

/// A graph whose middle node calls the held agent, checkpointed: a run
/// fails there once, and resuming it from a checkpoint named before lets
/// it finish.
const HELD_GATE: &str = r#"
name: held_gate
description: A node that waits until it is released, and fails once
nodes:
  - {id: first, agent: echo, inputs: [topic]}
  - {id: hold, agent: held, inputs: [first.output]}
  - {id: last, agent: echo, inputs: [hold.output]}
edges:
  - {from: first, to: hold}
  - {from: hold, to: last}
config: {checkpoint_enabled: true}
"#;

/// The text that releases one held call (sent to the held agent itself).
const RELEASE: &str = "release";

/// Holds every call until it is released (a `release` message, or
/// [`Held::release`]), then fails the first call with each text and
/// answers every later one. While a call is held its node is `running`,
/// for as long as the test needs to see it so; no timing is involved.
struct Held {
    /// A permit per call that entered (the test waits on these).
    entered: Semaphore,
    /// A permit per release.
    released: Semaphore,
    seen: Mutex<HashSet<String>>,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            entered: Semaphore::new(0),
            released: Semaphore::new(0),
            seen: Mutex::default(),
        }
    }
}

// === impl Held ===

impl Held {
    fn release(&self) {
        self.released.add_permits(1);
    }
}

#[async_trait]
impl AgentLogic for Held {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let text = text_parts(message).join(",");
        if text == RELEASE {
            self.release();
            return Some(json!({"parts": [{"text": "released"}]}));
        }
        self.entered.add_permits(1);
        self.released.acquire().await.ok()?.forget();
        let first_time = self.seen.lock().expect("seen texts").insert(text.clone());
        if first_time {
            return None;
        }
        Some(json!({"parts": [{"text": format!("held({text})")}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "fails once after its release, for the console test".to_owned(),
        })
    }
}

/// The issuer of the console's JWT and its audience.
const JWT_ISSUER: &str = "https://idp.console.test";
const JWT_AUDIENCE: &str = "convergio-console";

/// An EdDSA JWT for `subject` of `org` with `scope`, signed by `key`, valid
/// for an hour.
fn mint_jwt(key: &convergio_auth::OrgSigningKey, subject: &str, org: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let header = json!({"alg": "EdDSA", "kid": key.kid(), "typ": "JWT"});
    let claims = json!({
        "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": subject, "org": org,
        "scope": scope, "exp": now + 3600, "nbf": now - 5,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn card(name: &str, skill: &str) -> Value {
    json!({
        "name": name,
        "description": format!("{name}: an agent of the console test."),
        "version": "1.0.0",
        "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": skill, "name": skill, "description": "Answers for the console test.", "tags": ["console-test"]}]
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

struct Api<'a> {
    server: &'a Server,
    token: String,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn store_graph(&self, yaml: &str) {
        let response = self
            .client
            .post(format!("{}/v1/graphs", self.server.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .await
            .expect("stores the graph");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }
}

/// The large run's graph: `CHAINS` chains of `LAYERS` echo nodes.
fn large_graph() -> String {
    let mut yaml = String::from("name: large_fanout\nnodes:\n");
    for layer in 0..LAYERS {
        for chain in 0..CHAINS {
            let input = if layer == 0 {
                "topic".to_owned()
            } else {
                format!("n{}_{chain}.output", layer - 1)
            };
            yaml.push_str(&format!(
                "  - {{id: n{layer}_{chain}, agent: echo, inputs: [{input}]}}\n"
            ));
        }
    }
    yaml.push_str("edges:\n");
    for layer in 1..LAYERS {
        for chain in 0..CHAINS {
            yaml.push_str(&format!(
                "  - {{from: n{}_{chain}, to: n{layer}_{chain}}}\n",
                layer - 1
            ));
        }
    }
    yaml
}

/// Names a checkpoint of a `held_gate` run while its held node waits, then
/// lets the run fail there: the browser resumes it from the checkpoint.
async fn failed_run_with_checkpoint(api: &Api<'_>, held: &Held) -> Value {
    let (status, accepted) = api
        .send(
            reqwest::Method::POST,
            "/v1/runs",
            Some(json!({"graph": "held_gate", "mode": "async", "input": {"topic": "resume-me"}})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().expect("a run id").to_owned();
    // `first` has finished (and its step is committed) once `hold` calls.
    held.entered.acquire().await.expect("entered").forget();
    let (status, checkpoint) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/runs/{run_id}/checkpoints"),
            Some(json!({"name": "before-hold"})),
        )
        .await;
    assert_eq!(status, 201, "{checkpoint}");
    held.release();
    // The event stream ends when the run does.
    let events = api
        .client
        .get(format!("{}/v1/runs/{run_id}/events", api.server.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("the events")
        .text()
        .await
        .expect("to their end");
    assert!(events.contains("run_finished"), "{events}");
    let (status, summary) = api
        .send(reqwest::Method::GET, &format!("/v1/runs/{run_id}"), None)
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["status"], "failed", "{summary}");
    json!(run_id)
}

/// A second organisation, `partner.example`, whose `partner-echo` opted in
/// to federation (tag `external`, trusted), peered both ways with the
/// console's server: a federated search finds it.
async fn federate(
    server: &Server,
    data_dir: &Path,
    partner: &Server,
    partner_dir: &Path,
    echo: &RunningAgent,
) {
    let client = reqwest::Client::new();
    let (token, partner_token) = (admin_token(data_dir), admin_token(partner_dir));
    let mut card = echo.card();
    card["name"] = json!("partner-echo");
    for skill in card["skills"].as_array_mut().expect("skills") {
        skill["tags"] = json!(["external"]);
    }
    let partner_api = Api {
        server: partner,
        token: partner_token,
        client: client.clone(),
    };
    let (status, registered) = partner_api
        .send(
            reqwest::Method::POST,
            "/v1/agents",
            Some(json!({"name": "partner-echo", "card": card})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let id = registered["id"].as_str().expect("agent id");
    let (status, trusted) = partner_api
        .send(
            reqwest::Method::PUT,
            &format!(
                "/v1/agents/{}/trust",
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
            ),
            Some(json!({"level": "trusted", "reason": "console test partner"})),
        )
        .await;
    assert!((200..300).contains(&status), "{trusted}");
    // The partner learns this server's key from its JWKS and approves it.
    let (status, peer) = partner_api
        .send(
            reqwest::Method::POST,
            "/v1/peers",
            Some(json!({"domain": "convergio.local", "url": server.base,
                        "jwks_url": format!("{}/.well-known/jwks.json", server.base)})),
        )
        .await;
    assert_eq!(status, 201, "{peer}");
    let (status, peer) = partner_api
        .send(
            reqwest::Method::POST,
            "/v1/peers/convergio.local/approve",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{peer}");
    // This server pins the partner's key, read from its JWKS.
    let jwks: Value = client
        .get(format!("{}/.well-known/jwks.json", partner.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let api = Api {
        server,
        token,
        client,
    };
    let (status, peer) = api
        .send(
            reqwest::Method::POST,
            "/v1/peers",
            Some(json!({"domain": "partner.example", "url": partner.base, "keys": jwks["keys"]})),
        )
        .await;
    assert_eq!(status, 201, "{peer}");
}

/// Memory to browse: a structured namespace with a record and a vector
/// namespace (embedded by the fake provider) with two documents.
async fn memory(api: &Api<'_>, embeddings: &FakeEmbeddings) {
    let stored = api
        .client
        .put(format!("{}/v1/secrets/embeddings", api.server.base))
        .bearer_auth(&api.token)
        .body(EMBEDDING_KEY)
        .send()
        .await
        .expect("answers");
    assert_eq!(stored.status(), 204);
    for (path, body) in [
        ("/v1/memory/profiles", json!({"kind": "structured"})),
        (
            "/v1/memory/profiles/items/ann",
            json!({"name": "Ann", "team": "console"}),
        ),
        (
            "/v1/memory/kb",
            json!({"kind": "vector", "embedding": {"provider": "openai",
                "base_url": embeddings.base_url, "model": "bag",
                "api_key": "secret:embeddings", "dimensions": 32}}),
        ),
        (
            "/v1/memory/kb/items/pets",
            json!({"text": "the kitten sleeps on the sofa"}),
        ),
        (
            "/v1/memory/kb/items/tax",
            json!({"text": "quarterly tax filing is due"}),
        ),
    ] {
        let (status, answer) = api.send(reqwest::Method::PUT, path, Some(body)).await;
        assert_eq!(status, 201, "{path}: {answer}");
    }
}

/// The fake embedding provider's key, kept as the organisation's secret.
const EMBEDDING_KEY: &str = "sk-console-memory-test";

/// Agents that only the mode and organisation filters tell apart.
async fn distinct_agents(api: &Api<'_>, flaky_card: &Value) {
    let mut pdf = flaky_card.clone();
    pdf["name"] = json!("pdf-reader");
    pdf["defaultInputModes"] = json!(["application/pdf"]);
    pdf["defaultOutputModes"] = json!(["text/csv"]);
    let mut outsider = flaky_card.clone();
    outsider["name"] = json!("outsider");
    for body in [
        json!({"name": "pdf-reader", "card": pdf}),
        json!({"name": "outsider", "org": "elsewhere.example", "card": outsider}),
    ] {
        let (status, registered) = api
            .send(reqwest::Method::POST, "/v1/agents", Some(body))
            .await;
        assert_eq!(status, 201, "{registered}");
    }
}

/// What the browser script gets: run ids, the plain key, the peer.
async fn prepare(
    server: &Server,
    data_dir: &Path,
    flaky: &RunningAgent,
    held: (&RunningAgent, &Held),
    embeddings: &FakeEmbeddings,
) -> Value {
    let api = Api {
        server,
        token: admin_token(data_dir),
        client: reqwest::Client::new(),
    };
    let mut flaky_card = flaky.card();
    flaky_card["name"] = json!("flaky");
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "/v1/agents",
            Some(flaky_card.clone()),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let pipeline =
        std::fs::read_to_string(workspace_root().join("examples/graphs/code_review_pipeline.yaml"))
            .expect("the example pipeline");
    api.store_graph(&pipeline).await;
    api.store_graph(HUMAN_GATE).await;
    let (held_agent, held_logic) = held;
    let mut held_card = held_agent.card();
    held_card["name"] = json!("held");
    let (status, body) = api
        .send(reqwest::Method::POST, "/v1/agents", Some(held_card))
        .await;
    assert_eq!(status, 201, "{body}");
    api.store_graph(HELD_GATE).await;
    let failed_run = failed_run_with_checkpoint(&api, held_logic).await;
    distinct_agents(&api, &flaky_card).await;
    memory(&api, embeddings).await;
    // Three runs waiting for a human: to approve, reject and answer.
    let mut waiting = Vec::new();
    for topic in ["approve-me", "reject-me", "answer-me"] {
        let (status, run) = api
            .send(
                reqwest::Method::POST,
                "/v1/runs",
                Some(json!({"graph": "human_gate", "mode": "sync", "input": {"topic": topic}})),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "waiting_for_human", "{run}");
        waiting.push(run["run_id"].clone());
    }

    // A card signed with this organisation's key (generated into the data
    // dir): registered as verified, its signature shown as verifying.
    let pem = std::fs::read_to_string(data_dir.join("federation-key.pem")).expect("the org key");
    let key = convergio_auth::OrgSigningKey::from_pem(&pem).expect("parses");
    let weather: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("examples/cards/weather.json"))
            .expect("example card"),
    )
    .expect("json");
    let signed = convergio_auth::sign_card(&weather, &key).expect("signs");
    let (status, signed_record) = api
        .send(reqwest::Method::POST, "/v1/agents", Some(signed))
        .await;
    assert_eq!(status, 201, "{signed_record}");
    assert_eq!(signed_record["trust"], "verified", "{signed_record}");

    // A key of this deployment's organisation with no scopes: it may read
    // the organisation's agents but not change their trust.
    let (status, key) = api
        .send(
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(json!({"subject": "console-viewer", "org": "convergio.local"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");

    // A peer whose key set cannot be fetched: the page shows the failure.
    let (status, peer) = api
        .send(
            reqwest::Method::POST,
            "/v1/peers",
            Some(json!({
                "domain": "peer.example",
                "url": "http://127.0.0.1:9",
                "jwks_url": "http://127.0.0.1:9/.well-known/jwks.json"
            })),
        )
        .await;
    assert_eq!(status, 201, "{peer}");
    // A peer whose key set is fetched (this server's own): its key waits
    // for approval.
    let (status, peer) = api
        .send(
            reqwest::Method::POST,
            "/v1/peers",
            Some(json!({
                "domain": "mirror.example",
                "url": server.base,
                "jwks_url": format!("{}/.well-known/jwks.json", server.base)
            })),
        )
        .await;
    assert_eq!(status, 201, "{peer}");
    assert_eq!(peer["keys"][0]["state"], "pending", "{peer}");

    // 10,000 agents, registered 16 at a time.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (next, base, token) = (next.clone(), server.base.clone(), api.token.clone());
        let mut template = flaky_card.clone();
        workers.spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= MANY_AGENTS {
                    return;
                }
                let generated = card(
                    &format!("bulk-{index:05}"),
                    &format!("bulk-skill-{}", index % 50),
                );
                for field in ["name", "description", "skills"] {
                    template[field] = generated[field].clone();
                }
                let response = client
                    .post(format!("{base}/v1/agents"))
                    .bearer_auth(&token)
                    .json(&template)
                    .send()
                    .await
                    .expect("registers");
                assert_eq!(response.status(), 201, "{:?}", response.text().await);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("a registering worker");
    }

    api.store_graph(&large_graph()).await;
    let (status, large) = api
        .send(
            reqwest::Method::POST,
            "/v1/runs",
            Some(json!({"graph": "large_fanout", "mode": "sync", "input": {"topic": "scale"}})),
        )
        .await;
    assert_eq!(status, 200, "{large}");
    assert_eq!(large["status"], "succeeded", "{large}");

    json!({
        "failed_run": failed_run,
        "held_url": held_agent.base_url,
        "release": RELEASE,
        "waiting_run": waiting[0],
        "reject_run": waiting[1],
        "input_run": waiting[2],
        "limited_key": key["key"],
        "peer": "peer.example",
        "pending_peer": "mirror.example",
        "signed_agent": signed_record["id"],
        "many_agents": MANY_AGENTS,
        "big_run": large["run_id"],
        "big_run_nodes": LAYERS * CHAINS,
    })
}

#[test]
fn the_console_walks_the_issue_scenario_in_headless_chromium() {
    let root = workspace_root();
    let ready = Command::new(root.join("scripts/browser-env.sh"))
        .status()
        .expect("scripts/browser-env.sh runs");
    assert!(ready.success(), "scripts/browser-env.sh failed");

    let data_dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let flaky = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        spawn_logic(
            Arc::new(Flaky::default()),
            card("flaky", "fail-once"),
            listener,
            ServeOptions::default(),
        )
        .await
        .expect("the flaky agent starts")
    });
    let held = Arc::new(Held::default());
    let held_agent = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        spawn_logic(
            held.clone(),
            card("held", "hold-then-answer"),
            listener,
            ServeOptions::default(),
        )
        .await
        .expect("the held agent starts")
    });
    let embeddings = runtime.block_on(FakeEmbeddings::start(EMBEDDING_KEY, 32));
    // Bearer JWTs of a test issuer, its key set in the data dir.
    let issuer = convergio_auth::OrgSigningKey::generate().expect("an issuer key");
    let jwks_file = data_dir.path().join("issuer-jwks.json");
    std::fs::write(&jwks_file, issuer.jwks().to_string()).expect("writes the jwks");
    let jwks_path = jwks_file.to_str().expect("a utf-8 path");
    let server = start_with(
        data_dir.path(),
        &[
            ("CONVERGIO_REPLICA_ID", "console-test"),
            ("CONVERGIO_JWT_ISSUER", JWT_ISSUER),
            ("CONVERGIO_JWT_AUDIENCE", JWT_AUDIENCE),
            ("CONVERGIO_JWKS_FILE", jwks_path),
            // The partner answers federated discovery on a machine that
            // may be busy with a parallel suite: more than the 2 s default.
            ("CONVERGIO_FEDERATION_DISCOVERY_TIMEOUT_MS", "30000"),
        ],
    );
    let mut scenario = runtime.block_on(prepare(
        &server,
        data_dir.path(),
        &flaky,
        (&held_agent, held.as_ref()),
        &embeddings,
    ));
    // A second organisation for federated discovery.
    let partner_dir = tempfile::tempdir().expect("temp dir");
    let partner = start_with(
        partner_dir.path(),
        &[
            ("CONVERGIO_ORG_DOMAIN", "partner.example"),
            ("CONVERGIO_EXAMPLES", "false"),
        ],
    );
    runtime.block_on(federate(
        &server,
        data_dir.path(),
        &partner,
        partner_dir.path(),
        &flaky,
    ));
    // A member of this organisation who may read memory, and nothing more.
    scenario["jwt"] = json!(mint_jwt(
        &issuer,
        "jwt-reader",
        "convergio.local",
        "memory:read"
    ));

    let artifacts = root.join("target/console-artifacts");
    let browser_env = std::env::var("CONVERGIO_BROWSER_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".browser-env"));
    let output = Command::new("node")
        .arg(root.join("cli/tests/browser/console.mjs"))
        .env("CONVERGIO_BROWSER_ENV", &browser_env)
        .env("CONSOLE_BASE", &server.base)
        .env("CONSOLE_ADMIN_TOKEN", admin_token(data_dir.path()))
        .env("CONSOLE_ARTIFACTS", &artifacts)
        .env("CONSOLE_SCENARIO", scenario.to_string())
        .output()
        .expect("node runs the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The steps, the accessibility report and the timings, for the log.
    println!("{stdout}");
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    assert!(
        output.status.success() && summary["ok"] == true,
        "the browser scenario failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    let timings = &summary["timings"];
    for name in ["agent_list_ms", "run_graph_ms"] {
        assert!(timings[name].is_u64(), "no {name} measured: {summary}");
    }
    // From navigation (a hash change in the signed-in console) to the
    // first page of 50 agents, and to every node of the run drawn.
    println!(
        "time to first render: agent list among {MANY_AGENTS} agents {} ms; {}-node run graph {} ms; target 1000 ms each",
        timings["agent_list_ms"],
        LAYERS * CHAINS,
        timings["run_graph_ms"],
    );
    drop(server);
    drop(partner);
    runtime.block_on(flaky.shutdown());
    runtime.block_on(held_agent.shutdown());
}
