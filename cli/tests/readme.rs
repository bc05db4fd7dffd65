//! The README's tour, checked against the real binary (issue 14): its
//! API-key example reaches the echo agent as printed, and its curl calls on
//! runs act as the same caller as the CLI (runs belong to the principal that
//! started them), so each sees the other's runs.

mod support;

use serde_json::Value;
use support::{admin_token, cli, start};

const README: &str = include_str!("../../README.md");

/// The shell lines of the README's fenced blocks, continuation lines
/// (ending in `\`) joined.
fn commands() -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in README.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block || line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// The single-quoted argument after `flag` in a shell command.
fn quoted_after<'a>(command: &'a str, flag: &str) -> &'a str {
    let start = command.find(&format!("{flag} '")).expect("the flag") + flag.len() + 2;
    let rest = &command[start..];
    &rest[..rest.find('\'').expect("a closing quote")]
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_api_key_example_reaches_the_echo_agent() {
    let commands = commands();
    let issue = commands
        .iter()
        .find(|command| command.starts_with("convergio keys issue"))
        .expect("the README issues a key");
    let call = commands
        .iter()
        .find(|command| command.contains("X-API-Key: cvg_…"))
        .expect("the README calls an agent with the key");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());

    let args: Vec<&str> = issue.split_whitespace().skip(1).collect();
    let (ok, stdout, stderr) = cli(Some((&server, data_dir.path())), &args);
    assert!(ok, "{stderr}");
    let key = stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(key.starts_with("cvg_"), "{stdout}");
    // The CLI says whose key it is and what it reaches.
    assert!(stdout.contains("org convergio.local"), "{stdout}");
    assert!(
        stdout.contains("reaches") && stdout.contains("echo"),
        "{stdout}"
    );

    let url = call
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:8080/"))
        .expect("a URL")
        .replace("http://127.0.0.1:8080", &server.base);
    let body = quoted_after(call, "-d");
    let response = reqwest::Client::new()
        .post(url)
        .header("X-API-Key", &key)
        .header("A2A-Version", "1.0")
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("JSON-RPC");
    assert!(answer.get("error").is_none(), "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
}

/// The CLI starts a run with the admin token; the README's curl calls on
/// runs send it too, so they see that run (an anonymous call would not).
#[tokio::test(flavor = "multi_thread")]
async fn readme_curl_calls_on_runs_are_the_same_caller_as_the_cli() {
    for command in commands() {
        let on_runs = ["/v1/runs", "/v1/graphs", "/metrics"]
            .iter()
            .any(|path| command.contains(path));
        if command.starts_with("curl") && on_runs {
            assert!(
                command.contains("-H \"Authorization: Bearer $TOKEN\""),
                "the README's {command:?} must send the admin token like the CLI"
            );
        }
    }
    assert!(
        commands()
            .iter()
            .any(|command| command == "TOKEN=$(cat .convergio/admin-token)"),
        "the README defines $TOKEN"
    );

    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let pipeline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/graphs/code_review_pipeline.yaml"
    );
    let (ok, stdout, stderr) = cli(
        Some((&server, data_dir.path())),
        &[
            "graph",
            "run",
            pipeline,
            "--mode",
            "async",
            "--input",
            "source_code=eval(x)",
        ],
    );
    assert!(ok, "{stderr}");
    let run_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run ")?.strip_suffix(" started"))
        .unwrap_or_else(|| panic!("the run id: {stdout}"))
        .to_owned();
    let url = format!("{}/v1/runs/{run_id}", server.base);
    let http = reqwest::Client::new();
    let with_token = http
        .get(&url)
        .bearer_auth(admin_token(data_dir.path()))
        .send()
        .await
        .expect("answers");
    assert_eq!(with_token.status().as_u16(), 200);
    let anonymous = http.get(&url).send().await.expect("answers");
    assert_eq!(
        anonymous.status().as_u16(),
        404,
        "runs belong to their principal"
    );
}
