//! The official A2A JavaScript SDK (`@a2a-js/sdk`, pinned by
//! interop/js/package-lock.json, installed by scripts/js-sdk-env.sh) as a
//! client of the gateway (issue 24): from the agent base URL the gateway
//! advertises (`/agents/{name}/`, with its trailing slash) it finds the
//! agent's card (the SDK resolves `.well-known/agent-card.json` relative to
//! the base URL) and sends a message over JSON-RPC and HTTP+JSON through the
//! gateway. A base URL without the slash loses the agent's name in that
//! resolution; the gateway then says what is missing.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::{spawn_fake, spawn_gateway, FakeMode};
use tokio::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs interop/js/client.mjs against `base_urls`: one JSON line each per
/// transport.
async fn js_client(base_urls: &[String]) -> Vec<Value> {
    let root = repo_root();
    let status = Command::new(root.join("scripts/js-sdk-env.sh"))
        .status()
        .await
        .expect("run scripts/js-sdk-env.sh");
    assert!(status.success(), "scripts/js-sdk-env.sh failed");
    let js_env = std::env::var("CONVERGIO_JS_SDK_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".js-sdk-env"));
    let run = Command::new("node")
        .arg(root.join("interop/js/client.mjs"))
        .env("CONVERGIO_JS_SDK_ENV", js_env)
        .env("A2A_BASE_URLS", json!(base_urls).to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the JS client finished in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn the_js_sdk_reaches_an_agent_from_the_base_url_its_card_gives() {
    let fake = spawn_fake(FakeMode::V1).await;
    let gateway = spawn_gateway().await;
    gateway.register("echo", fake.card());
    // The base URL a user copies from the served card (or the catalog).
    let card: Value = gateway
        .http
        .get(gateway.url("/agents/echo/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    let advertised = card["supportedInterfaces"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_eq!(advertised, gateway.url("/agents/echo/"));

    let results = js_client(&[advertised, gateway.url("/agents/echo")]).await;
    assert_eq!(results.len(), 4, "{results:?}");
    // With its trailing slash, the SDK's card URL resolves to the agent's
    // card, and both transports reach the agent through the gateway.
    for line in &results[..2] {
        assert_eq!(
            line["cardUrl"],
            json!(gateway.url("/agents/echo/.well-known/agent-card.json")),
            "{line}"
        );
        assert_eq!(line["error"], Value::Null, "{line}");
        assert_eq!(line["state"], json!("TASK_STATE_COMPLETED"), "{line}");
        assert!(
            line["text"]
                .as_str()
                .is_some_and(|text| text.starts_with("echo: hello over")),
            "{line}"
        );
    }
    // Without it, URL resolution drops the agent's name (`/agents/` +
    // `.well-known/agent-card.json`): nothing names the agent any more, and
    // the gateway says what the base URL lacks.
    for line in &results[2..] {
        assert_eq!(
            line["cardUrl"],
            json!(gateway.url("/agents/.well-known/agent-card.json")),
            "{line}"
        );
        assert!(
            line["error"]
                .as_str()
                .is_some_and(|error| error.ends_with("404")),
            "{line}"
        );
    }
    let response = gateway
        .http
        .get(gateway.url("/agents/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("trailing slash")),
        "{body}"
    );
}
