//! Interop with the official Python SDK (`a2a-sdk` 1.3.0): an SDK agent
//! (interop/agent.py) runs as a subprocess on a loopback port, registered
//! behind the gateway; the SDK client (interop/client.py) talks to it through
//! the gateway over JSON-RPC and HTTP+JSON (card, blocking and streaming
//! sends, get, list, cancel, subscribe); raw 0.3 JSON-RPC reaches it through
//! the gateway; and the gateway reaches the SDK's own 0.3 compat endpoint
//! with 1.0 requests; and the SDK's signature verifier accepts the card the
//! gateway re-signed (interop/verify_card.py). The venv is created once by
//! scripts/interop-venv.sh.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::process::{Child, Command};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the venv script (idempotent, quick when the venv exists).
async fn python() -> PathBuf {
    let root = repo_root();
    let status = Command::new("bash")
        .arg(root.join("scripts/interop-venv.sh"))
        .status()
        .await
        .expect("run scripts/interop-venv.sh");
    assert!(status.success(), "scripts/interop-venv.sh failed");
    root.join(".venv-interop/bin/python")
}

/// The SDK agent subprocess; killed when dropped.
struct SdkAgent {
    child: Child,
    base_url: String,
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn spawn_sdk_agent(python: &Path) -> SdkAgent {
    spawn_sdk_agent_with(python, false).await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// The SDK agent; with `grpc_only`, its card offers only the SDK's gRPC
/// server (on a second port; the card is still served over HTTP).
async fn spawn_sdk_agent_with(python: &Path, grpc_only: bool) -> SdkAgent {
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("interop/agent.py"))
        .arg(port.to_string());
    if grpc_only {
        command.arg(free_port().to_string());
    }
    let child = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the SDK agent");
    let agent = SdkAgent {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let card_url = format!("{}/.well-known/agent-card.json", agent.base_url);
    loop {
        if let Ok(response) = http.get(&card_url).send().await {
            if response.status().is_success() {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SDK agent did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent
}

async fn run_sdk_client(python: &Path, url: &str, binding: &str) {
    run_sdk_client_with(python, url, binding, None).await;
}

/// Runs the SDK client, optionally sending `token` as a bearer token.
async fn run_sdk_client_with(python: &Path, url: &str, binding: &str, token: Option<&str>) {
    let output = sdk_client_output(python, url, binding, token, None).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK client over {binding} failed:\n{stdout}\n{stderr}"
    );
    assert_all_checks(binding, &stdout);
}

async fn sdk_client_output(
    python: &Path,
    url: &str,
    binding: &str,
    token: Option<&str>,
    mode: Option<&str>,
) -> std::process::Output {
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("interop/client.py"))
        .arg(url)
        .arg(binding)
        .kill_on_drop(true);
    if let Some(mode) = mode {
        command.arg(mode);
    }
    if let Some(token) = token {
        command.env("INTEROP_BEARER_TOKEN", token);
    }
    let output = command.output();
    tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the SDK client finished in time")
        .expect("run the SDK client")
}

fn assert_all_checks(binding: &str, stdout: &str) {
    for check in [
        "card",
        "blocking-task",
        "blocking-message",
        "streaming-task",
        "streaming-message",
        "get",
        "list",
        "cancel",
        "subscribe",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {check}")),
            "{binding}: missing {check}\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_through_the_gateway() {
    let python = python().await;
    let agent = spawn_sdk_agent(&python).await;
    let gateway = spawn_gateway_with(
        convergio_gateway::a2a::A2aConfig {
            upstream_timeout: Duration::from_secs(20),
            upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
            ..Default::default()
        },
        convergio_gateway::layers::LimitsConfig::default(),
    )
    .await;
    let card: Value = gateway
        .http
        .get(format!("{}/.well-known/agent-card.json", agent.base_url))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("card json");
    gateway.register("sdk-echo", card);
    let agent_url = gateway.url("/agents/sdk-echo");

    run_sdk_client(&python, &agent_url, "JSONRPC").await;
    run_sdk_client(&python, &agent_url, "HTTP+JSON").await;

    // A 0.3-dialect client (raw JSON-RPC, no version header).
    let request = json!({"jsonrpc": "2.0", "id": "old-1", "method": "message/send", "params": {
        "message": {"kind": "message", "messageId": "m-old", "role": "user", "parts": [{"kind": "text", "text": "legacy"}]}}});
    let body: Value = gateway
        .http
        .post(&agent_url)
        .json(&request)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["id"], json!("old-1"));
    assert_eq!(body["result"]["kind"], json!("task"), "{body}");
    assert_eq!(
        body["result"]["status"]["state"],
        json!("completed"),
        "{body}"
    );
    assert_eq!(
        body["result"]["artifacts"][0]["parts"][0]["kind"],
        json!("text"),
        "{body}"
    );

    let request = json!({"jsonrpc": "2.0", "id": 2, "method": "message/stream", "params": {
        "message": {"kind": "message", "messageId": "m-old2", "role": "user", "parts": [{"kind": "text", "text": "legacy"}]}}});
    let response = gateway
        .http
        .post(&agent_url)
        .json(&request)
        .send()
        .await
        .expect("stream");
    let events = sse_events(response).await;
    let last = &events.last().expect("events")["result"];
    assert_eq!(last["kind"], json!("status-update"), "{events:?}");
    assert_eq!(last["final"], json!(true), "{events:?}");
    assert_eq!(last["status"]["state"], json!("completed"), "{events:?}");

    // The gateway as a 1.0 client of the SDK's 0.3 compat endpoint.
    gateway.register(
        "sdk-echo-03",
        json!({"name": "sdk-echo-03", "description": "0.3 view", "version": "1", "url": format!("{}/", agent.base_url),
               "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC", "capabilities": {"streaming": true},
               "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": []}),
    );
    let body = gateway
        .rpc(
            "sdk-echo-03",
            "anonymous",
            "SendMessage",
            send_params("via 0.3"),
        )
        .await;
    let task = &body["result"]["task"];
    assert_eq!(
        task["status"]["state"],
        json!("TASK_STATE_COMPLETED"),
        "{body}"
    );
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        json!("echo: via 0.3"),
        "{body}"
    );
    drop(agent);
}

/// Issue 24: the SDK's gRPC client (`a2a-sdk[grpc]`) talks gRPC through the
/// gateway to a JSON-RPC agent and to a gRPC-only agent (the SDK's gRPC
/// server), and the SDK's JSON-RPC and HTTP+JSON clients reach that
/// gRPC-only agent: card, blocking and streaming sends, get, list, cancel
/// and subscribe on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_speaks_grpc_through_the_gateway() {
    let python = python().await;
    let json_agent = spawn_sdk_agent(&python).await;
    let grpc_agent = spawn_sdk_agent_with(&python, true).await;
    let gateway = support::spawn_gateway_h2c_with(convergio_gateway::a2a::A2aConfig {
        upstream_timeout: Duration::from_secs(20),
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..Default::default()
    })
    .await;
    for (name, agent) in [("sdk-echo", &json_agent), ("sdk-grpc", &grpc_agent)] {
        let card: Value = gateway
            .http
            .get(format!("{}/.well-known/agent-card.json", agent.base_url))
            .send()
            .await
            .expect("card")
            .json()
            .await
            .expect("card json");
        gateway.register(name, card);
    }
    run_sdk_client(&python, &gateway.url("/agents/sdk-echo"), "GRPC").await;
    for binding in ["GRPC", "JSONRPC", "HTTP+JSON"] {
        run_sdk_client(&python, &gateway.url("/agents/sdk-grpc"), binding).await;
    }
    drop(json_agent);
    drop(grpc_agent);
}

/// Issue 4: the same SDK client through a gateway with authentication on —
/// it succeeds with a bearer JWT on both bindings, and a wrong token is
/// refused with 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_authenticates_with_a_bearer_token() {
    use support::security::{spawn_secure_gateway, Issuer, SecureOptions};

    let python = python().await;
    let agent = spawn_sdk_agent(&python).await;
    let issuer = Issuer::new("interop");
    let mut options = SecureOptions::new(&issuer);
    options.a2a.upstream_timeout = Duration::from_secs(20);
    let secure = spawn_secure_gateway(options).await;
    let card: Value = secure
        .gateway
        .http
        .get(format!("{}/.well-known/agent-card.json", agent.base_url))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("card json");
    secure.gateway.register("sdk-echo", card);
    let agent_url = secure.gateway.url("/agents/sdk-echo");
    let token = issuer.token("sdk-user", "acme.example");

    for binding in ["JSONRPC", "HTTP+JSON"] {
        run_sdk_client_with(&python, &agent_url, binding, Some(&token)).await;
        let stranger = Issuer::new("interop").token("sdk-user", "acme.example");
        let output = sdk_client_output(
            &python,
            &agent_url,
            binding,
            Some(&stranger),
            Some("refused"),
        )
        .await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("ok refused"),
            "{binding}: a wrong token was not refused:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("401"),
            "{binding}: expected a 401, got {stdout}"
        );
    }
    drop(agent);
}

/// Issue #6: the card the gateway re-signs after rewriting its interfaces
/// verifies with the a2a-sdk's own verifier (its JCS and empty-value rule)
/// against the gateway's public key, and the SDK refuses a tampered copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_verifies_the_card_the_gateway_re_signed() {
    use std::sync::Arc;

    let python = python().await;
    let agent = spawn_sdk_agent(&python).await;
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let signer = convergio_auth::Ed25519CardSigner::new(Arc::new(pair), "gateway-key-1");
    let public_jwk = signer.public_jwk();
    let gateway = spawn_gateway_with(
        convergio_gateway::a2a::A2aConfig {
            upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
            card_signer: Some(convergio_gateway::a2a::CardSignerHandle(Arc::new(signer))),
            ..Default::default()
        },
        convergio_gateway::layers::LimitsConfig::default(),
    )
    .await;
    let card: Value = gateway
        .http
        .get(format!("{}/.well-known/agent-card.json", agent.base_url))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("card json");
    gateway.register("sdk-echo", card);
    let card_url = gateway.url("/agents/sdk-echo/.well-known/agent-card.json");
    let output = Command::new(&python)
        .arg(repo_root().join("interop/verify_card.py"))
        .arg(&card_url)
        .arg(public_jwk.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the SDK verifier finished in time")
        .expect("run the SDK verifier");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|line| line == "ok verified"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line == "ok tampered-refused"),
        "{stdout}"
    );
}

/// Issue #6: a card signed by the a2a-sdk's signer (ES256, fresh key,
/// non-ASCII text, an empty list the SDK drops) registers as `verified`
/// when the key is its organisation's, and a tampered copy is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_signed_by_the_python_sdk_is_verified_by_the_registry() {
    use std::sync::Arc;

    use convergio_registry::model::{Actor, Registration};
    use convergio_registry::{AnyUpstream, Registry, RegistryConfig, RegistryError, StaticOrgKeys};
    use tokio::io::AsyncWriteExt;

    let python = python().await;
    let card = json!({
        "name": "Ledger", "description": "Books entries", "version": "2.0.0",
        "supportedInterfaces": [{"url": "https://ledger.acme.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "provider": {"url": "https://acme.example", "organization": "Acme"},
        "capabilities": {"streaming": false, "pushNotifications": false},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"],
        "skills": [{"id": "post", "name": "Post entry", "description": "Posts a \"débit\" / crédit ✓",
                    "tags": ["ledger"], "examples": []}]
    });
    let mut child = Command::new(&python)
        .arg(repo_root().join("interop/sign_card.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run the SDK signer");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(card.to_string().as_bytes())
        .await
        .expect("write the card");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the SDK signer finished in time")
        .expect("the SDK signer ran");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signed: Value = serde_json::from_slice(&output.stdout).expect("signer output");
    let key = convergio_auth::CardKey::from_jwk(&signed["jwk"]).expect("jwk");

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let (_db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::builder(agents, RegistryConfig::default(), Arc::new(AnyUpstream))
        .org_keys(Arc::new(StaticOrgKeys::new().with_key("acme.example", key)))
        .build();
    let registration = |card: Value| Registration {
        name: None,
        org: Some("acme.example".to_owned()),
        role: None,
        card,
        upstreams: None,
        trust: None,
    };
    let mut tampered = signed["card"].clone();
    tampered["skills"][0]["description"] = json!("Posts anything");
    let error = registry
        .register(&Actor::admin(), registration(tampered))
        .await
        .expect_err("tampered");
    assert!(
        matches!(error, RegistryError::SignatureInvalid { .. }),
        "{error:?}"
    );
    let record = registry
        .register(&Actor::admin(), registration(signed["card"].clone()))
        .await
        .expect("register");
    assert_eq!(record.trust, convergio_schemas::TrustLevel::Verified);
}
