//! Remote node against local node (issue 18): what a graph node costs when
//! its agent lives in another organisation, over loopback.
//!
//! Two real `convergio serve` processes of this build (`a.example` and
//! `b.example`, each with its own SQLite database and signing key, peered
//! both ways) and one echo agent in this process, registered in both: at A
//! as the local `echo`, at B as `echo` (opted in), which A's graphs call as
//! `external://b.example/agents/echo`. The same agent answers both, so the
//! difference is the federation path: A's dispatch, signing, B's
//! verification, policy and audit, B's forward, and the way back.
//!
//! Printed side by side, one run:
//! - a one-node graph, sync and stream modes: wall time per run, p50/p99,
//!   local, remote, and the difference (target: ≤ 1 ms p50 more);
//! - a 20-node chain alternating between the two organisations against a
//!   20-node local chain: runs/s and p50/p99.
//!
//! `CONVERGIO_BENCH_RUNS` sets the runs per case (default 300). Run with
//! `cargo bench -p convergio-cli --bench federation`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use convergio_agents::{spawn_logic, AgentLogic, AgentsError, ServeOptions, TaskContext};
use serde_json::{json, Value};
use support::{admin_token, start_with, Server};

/// Answers every message with its parts.
struct Echo;

#[async_trait]
impl AgentLogic for Echo {
    async fn reply(&self, message: &Value) -> Option<Value> {
        Some(json!({"parts": message["parts"].clone()}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: "the echo answers directly".to_owned(),
        })
    }
}

fn card() -> Value {
    json!({
        "name": "echo",
        "description": "Answers its input (federation bench).",
        "version": "1.0.0",
        "provider": {"organization": "Convergio bench", "url": "https://convergio.dev/bench"},
        "capabilities": {"streaming": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "Answers its input.", "tags": ["external"]}]
    })
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &Value,
) -> Value {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

async fn register(http: &reqwest::Client, server: &Server, token: &str, card: &Value) {
    let registered = send(
        http,
        reqwest::Method::POST,
        &format!("{}/v1/agents", server.base),
        token,
        card,
    )
    .await;
    let id = registered["id"].as_str().expect("agent id");
    let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    send(
        http,
        reqwest::Method::PUT,
        &format!("{}/v1/agents/{id}/trust", server.base),
        token,
        &json!({"level": "trusted", "reason": "federation bench"}),
    )
    .await;
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// A chain of `length` nodes; `remote(i)` says whether node i is in B.
fn chain(name: &str, length: usize, remote: impl Fn(usize) -> bool) -> String {
    let mut yaml = format!("name: {name}\nnodes:\n");
    for index in 0..length {
        let agent = if remote(index) {
            "external://b.example/agents/echo"
        } else {
            "echo"
        };
        let inputs = if index == 0 {
            "[text]".to_owned()
        } else {
            format!("[n{}.output]", index - 1)
        };
        yaml.push_str(&format!(
            "  - {{id: n{index}, agent: \"{agent}\", inputs: {inputs}}}\n"
        ));
    }
    if length > 1 {
        yaml.push_str("edges:\n");
        for index in 1..length {
            yaml.push_str(&format!("  - {{from: n{}, to: n{index}}}\n", index - 1));
        }
    }
    yaml
}

/// Wall time of each of `runs` runs of `graph` in `mode`.
async fn time_runs(
    http: &reqwest::Client,
    a: &Server,
    token: &str,
    graph: &str,
    mode: &str,
    runs: usize,
) -> Vec<Duration> {
    let body = json!({"graph_yaml": graph, "mode": mode, "input": {"text": "hello"}});
    let url = format!("{}/v1/runs", a.base);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let response = http
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert!(response.status().is_success(), "{}", response.status());
        let text = response.text().await.expect("body");
        assert!(
            text.contains("succeeded") || text.contains("run_completed"),
            "{mode}: {text}"
        );
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("CONVERGIO_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(300);
    let a_dir = tempfile::tempdir().expect("temp dir");
    let b_dir = tempfile::tempdir().expect("temp dir");
    let a = start_with(
        a_dir.path(),
        &[
            ("CONVERGIO_ORG_DOMAIN", "a.example"),
            ("CONVERGIO_EXAMPLES", "false"),
        ],
    );
    let b = start_with(
        b_dir.path(),
        &[
            ("CONVERGIO_ORG_DOMAIN", "b.example"),
            ("CONVERGIO_EXAMPLES", "false"),
        ],
    );
    let (a_token, b_token) = (admin_token(a_dir.path()), admin_token(b_dir.path()));
    let http = reqwest::Client::new();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let echo = spawn_logic(Arc::new(Echo), card(), listener, ServeOptions::default())
        .await
        .expect("the echo starts");
    let card = echo.card();
    register(&http, &a, &a_token, &card).await;
    register(&http, &b, &b_token, &card).await;

    // Peered both ways, keys approved.
    send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/peers", b.base),
        &b_token,
        &json!({"domain": "a.example", "url": a.base, "jwks_url": format!("{}/.well-known/jwks.json", a.base)}),
    )
    .await;
    send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/peers/a.example/approve", b.base),
        &b_token,
        &json!({}),
    )
    .await;
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", b.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    send(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/peers", a.base),
        &a_token,
        &json!({"domain": "b.example", "url": b.base, "keys": jwks["keys"], "trust": "trusted"}),
    )
    .await;

    let local = chain("local", 1, |_| false);
    let remote = chain("remote", 1, |_| true);
    // Warm both paths (connections, caches, keys).
    for graph in [&local, &remote] {
        time_runs(&http, &a, &a_token, graph, "sync", 20).await;
    }

    println!("federation bench: {runs} runs per case, one echo agent in this process");
    println!("{:<28} {:>10} {:>10}", "one-node graph", "p50 ms", "p99 ms");
    for mode in ["sync", "stream"] {
        let (local_p50, local_p99) =
            percentiles(&mut time_runs(&http, &a, &a_token, &local, mode, runs).await);
        let (remote_p50, remote_p99) =
            percentiles(&mut time_runs(&http, &a, &a_token, &remote, mode, runs).await);
        println!(
            "{:<28} {local_p50:>10.3} {local_p99:>10.3}",
            format!("local node, {mode}")
        );
        println!(
            "{:<28} {remote_p50:>10.3} {remote_p99:>10.3}",
            format!("remote node, {mode}")
        );
        println!(
            "{:<28} {:>10.3} {:>10.3}   (target: p50 ≤ 1 ms more)",
            format!("remote - local, {mode}"),
            remote_p50 - local_p50,
            remote_p99 - local_p99
        );
    }

    let chain_runs = (runs / 5).max(10);
    let local_chain = chain("local20", 20, |_| false);
    let mixed_chain = chain("mixed20", 20, |index| index % 2 == 1);
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "20-node chain", "runs/s", "p50 ms", "p99 ms"
    );
    for (label, graph) in [
        ("local only", &local_chain),
        ("alternating a/b", &mixed_chain),
    ] {
        let started = Instant::now();
        let mut samples = time_runs(&http, &a, &a_token, graph, "sync", chain_runs).await;
        let rate = chain_runs as f64 / started.elapsed().as_secs_f64();
        let (p50, p99) = percentiles(&mut samples);
        println!("{label:<28} {rate:>10.1} {p50:>10.3} {p99:>10.3}");
    }
    echo.shutdown().await;
}
