//! The README's main command, for real: the `convergio` binary serves on an
//! embedded SQLite data dir with the example agents, the CLI client talks to
//! it, and a restart on the same data dir keeps everything (issue #2).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::{start, start_with, Server, BINARY};

fn cli(server: &Server, data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .arg("agents")
        .args(["--server", &server.base, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .output()
        .expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("request")
        .json()
        .await
        .expect("json body")
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_registers_examples_routes_a2a_and_survives_a_restart() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let card = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cards/weather.json"
    );
    let token_before;
    {
        let server = start(data_dir.path());
        let page = get_json(&format!("{}/v1/agents?page_size=100", server.base)).await;
        let names: Vec<&str> = page["agents"]
            .as_array()
            .expect("agents list")
            .iter()
            .filter_map(|agent| agent["name"].as_str())
            .collect();
        for expected in [
            "echo",
            "code_analyzer",
            "security_expert",
            "report_generator",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }

        // A2A 1.0 through the gateway to the example echo agent.
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/agents/echo", server.base))
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {
                "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}}}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(reply["id"], 7);
        assert_eq!(
            reply["result"]["task"]["status"]["state"],
            "TASK_STATE_COMPLETED"
        );

        // The CLI finds the generated admin token in the data dir.
        token_before = std::fs::read_to_string(data_dir.path().join("admin-token"))
            .expect("admin token stored");
        let (ok, stdout, stderr) = cli(&server, data_dir.path(), &["register", card]);
        assert!(ok, "register failed: {stderr}");
        assert!(stdout.contains("convergio://agents/weather"), "{stdout}");
        let (ok, _, stderr) = cli(
            &server,
            data_dir.path(),
            &["trust", "set", "weather", "trusted", "--reason", "e2e"],
        );
        assert!(ok, "trust set failed: {stderr}");

        // Failures exit non-zero with the server's explanation.
        let (ok, _, stderr) = cli(&server, data_dir.path(), &["show", "no-such-agent"]);
        assert!(!ok);
        assert!(stderr.contains("404"), "{stderr}");
        let (ok, _, stderr) = cli(&server, data_dir.path(), &["register", card]);
        assert!(!ok, "a duplicate registration must fail");
        assert!(stderr.contains("409"), "{stderr}");
    }

    // Same data dir: same token, the registered agent and its trust are still there.
    let server = start(data_dir.path());
    let token_after =
        std::fs::read_to_string(data_dir.path().join("admin-token")).expect("admin token kept");
    assert_eq!(token_before, token_after);
    // Policy: an anonymous caller sees internal agents only; the admin sees all.
    let record: Value = reqwest::Client::new()
        .get(format!("{}/v1/agents/weather", server.base))
        .bearer_auth(token_after.trim())
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(record["trust"], "trusted");
    let (ok, stdout, _) = cli(&server, data_dir.path(), &["search", "forecast"]);
    assert!(ok);
    assert!(stdout.contains("convergio://agents/weather"), "{stdout}");
}

#[test]
fn config_check_explains_bad_files_and_accepts_the_sample() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/convergio.yaml");
    let output = Command::new(BINARY)
        .args(["config", "check", sample])
        .output()
        .expect("runs");
    assert!(output.status.success());

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nlisten: nowhere\n").expect("write");
    let output = Command::new(BINARY)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid listen"));
}

/// Issue #6: without an allow-list, `convergio serve` still reaches its own
/// example agents (exactly their loopback sockets are allowed), while an
/// agent whose upstream is on loopback is refused at registration with a
/// problem naming the address.
#[tokio::test(flavor = "multi_thread")]
async fn default_allow_list_serves_examples_but_refuses_loopback_upstreams() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    // An empty value: no allow-list at all, as `convergio serve` defaults.
    let server = start_with(data_dir.path(), &[("CONVERGIO_NETWORK_ALLOW_CIDRS", "")]);
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/agents/echo", server.base))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}),
        )
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        reply["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{reply}"
    );
    let mut card: Value = serde_json::from_str(include_str!("../../examples/cards/weather.json"))
        .expect("example card");
    card["supportedInterfaces"] = json!([{
        "url": "http://127.0.0.1:9101/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"
    }]);
    let card_file = data_dir.path().join("loopback-weather.json");
    std::fs::write(&card_file, card.to_string()).expect("write card");
    let card_path = card_file.to_str().expect("utf-8 path");
    let (ok, _, stderr) = cli(&server, data_dir.path(), &["register", card_path]);
    assert!(!ok, "a loopback upstream must be refused");
    assert!(stderr.contains("400"), "{stderr}");
    assert!(stderr.contains("not allow-listed"), "{stderr}");
}
