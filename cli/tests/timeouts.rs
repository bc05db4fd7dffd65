//! Issue 17, "Time": per-agent upstream timeouts replace the fixed cap,
//! and a graph node's `timeout_seconds` bounds its call end to end — both
//! longer and shorter than the agent's own — while every other request
//! keeps the short request timeout. The example `echo` agent stays
//! WORKING for `sleep:<ms>` before it answers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{admin_token, run_to_end, start_with, Server};

/// Request and default upstream bounds of one second; `echo` may take three.
const CONFIG: &str = "
limits: {request_timeout_seconds: 1}
upstream:
  timeout_seconds: 1
  agent_timeouts: {echo: 3}
";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn send(server: &Server, token: &str, agent: &str, text: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/agents/{agent}", server.base))
        .bearer_auth(token)
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": uuid_like(), "role": "ROLE_USER",
                "parts": [{"text": text}]}},
        }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn uuid_like() -> String {
    format!("m-{:x}", rand_nanos())
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default()
}

/// Runs a one-node graph calling `echo` with `text`, the node bounded by
/// `node_timeout` seconds, asynchronously (a `sync` request is bounded by
/// the request timeout by design), and returns the finished run.
async fn run_node(server: &Server, token: &str, node_timeout: u64, text: &str) -> Value {
    let graph = format!(
        "name: slow_node\nnodes:\n  - {{id: wait, agent: echo, inputs: [text], timeout_seconds: {node_timeout}, on_error: abort}}\n"
    );
    run_to_end(
        server,
        token,
        json!({"graph_yaml": graph, "mode": "async", "input": {"text": text}}),
    )
    .await
}

fn write_config(data_dir: &Path) -> String {
    let path = data_dir.join("timeouts.yaml");
    std::fs::write(&path, CONFIG).expect("config written");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn agent_and_node_timeouts_replace_the_default_bound_end_to_end() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(data_dir.path());
    let server = start_with(data_dir.path(), &[("CONVERGIO_CONFIG", &config)]);
    let token = admin_token(data_dir.path());
    runtime().block_on(async {
        // Two seconds: past the request and default bounds, within echo's own.
        let (status, answer) = send(&server, &token, "echo", "sleep:2000").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );

        // Past echo's own three seconds: the gateway's timeout, in time.
        let started = Instant::now();
        let (_, answer) = send(&server, &token, "echo", "sleep:6000").await;
        assert_eq!(
            answer["error"]["data"][1]["reason"], "UPSTREAM_TIMEOUT",
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(6), "{answer}");

        // A node allowed eight seconds outlives echo's three.
        let run = run_node(&server, &token, 8, "sleep:4000").await;
        assert_eq!(run["status"], "succeeded", "{run}");

        // A node allowed one second is cut at one, though echo may take three.
        let run = run_node(&server, &token, 1, "sleep:2000").await;
        assert_eq!(run["status"], "failed", "{run}");
    });
}

#[test]
fn a_timeout_over_the_maximum_is_a_config_error_naming_the_agent() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let path = data_dir.path().join("bad.yaml");
    std::fs::write(&path, "upstream:\n  agent_timeouts: {echo: 100000}\n").expect("written");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_convergio"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("upstream.agent_timeouts.echo"), "{stderr}");
}
