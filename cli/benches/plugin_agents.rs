//! Plugin agent calls per second (issue 21): a WebAssembly plugin agent
//! against the built-in Rust echo agent, through the same gateway.
//!
//! One real `convergio serve` of this build (the shipped example agents and
//! policies, SQLite), one plugin agent uploaded through the CLI: `const`, a
//! core module answering a fixed part (agent ABI v1). Both agents are
//! called with the same JSON-RPC `SendMessage` (blocking) as the
//! administrator, by 1 and then 8 concurrent clients; the difference is
//! what a plugin agent costs over an in-process Rust agent: a pooled
//! instance, the input and answer through linear memory, the sandbox's
//! bounds, all on a fiber of the event loop.
//!
//! Printed side by side, one run: calls per second, p50/p99 latency, and
//! the server's CPU per call (its utime+stime from /proc), with the
//! plugin-to-echo ratios.
//!
//! `CONVERGIO_BENCH_CALLS` sets the calls per case (default 3000). Run with
//! `cargo bench -p convergio-cli --bench plugin_agents`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{admin_token, cli, start, Server};

/// A plugin agent answering `{"parts":[{"text":"hello from wasm"}]}` to
/// every message (bump allocator, no `describe`).
fn constant_agent() -> Vec<u8> {
    let answer = r#"{"parts":[{"text":"hello from wasm"}]}"#;
    let text = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (data (i32.const 0) "{escaped}")
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16)) (i32.const 1))) (i32.const 0))
        (then unreachable))))
    (global.set $next (local.get $end))
    (local.get $ptr))
  (func (export "handle") (param i32 i32) (result i64)
    (i64.const {length})))"#,
        escaped = answer.replace('"', "\\\""),
        length = answer.len(),
    );
    wat::parse_str(text).expect("the WAT compiles")
}

fn body(text: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {
            "messageId": uuid::Uuid::new_v4().to_string(),
            "role": "ROLE_USER",
            "parts": [{"text": text}],
        }, "configuration": {"returnImmediately": false}},
    })
}

/// One blocking `SendMessage` to `agent`; panics unless it completed.
async fn call(http: &reqwest::Client, server: &Server, token: &str, agent: &str) -> Duration {
    let started = Instant::now();
    let answer: Value = http
        .post(format!("{}/agents/{agent}", server.base))
        .bearer_auth(token)
        .header("A2A-Version", "1.0")
        .json(&body("bench"))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON-RPC answer");
    let elapsed = started.elapsed();
    let result = &answer["result"];
    let done = result["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        || result.get("message").is_some();
    assert!(done, "{agent}: {answer}");
    elapsed
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
}

async fn measure(
    http: &reqwest::Client,
    server: &Arc<Server>,
    token: &str,
    agent: &str,
    clients: usize,
    calls: usize,
) -> Figures {
    // Warm-up: connections, the instance pool, the route caches.
    for _ in 0..clients.max(20) {
        call(http, server, token, agent).await;
    }
    let cpu_before = convergio_tests::proc::cpu_seconds(server.pid());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, server, token, agent) = (
            http.clone(),
            Arc::clone(server),
            token.to_owned(),
            agent.to_owned(),
        );
        let mine = calls / clients + usize::from(client < calls % clients);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(mine);
            for _ in 0..mine {
                samples.push(call(&http, &server, &token, &agent).await);
            }
            samples
        }));
    }
    let mut samples = Vec::with_capacity(calls);
    for task in tasks {
        samples.extend(task.await.expect("no panic"));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_seconds = convergio_tests::proc::cpu_seconds(server.pid()) - cpu_before;
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[index].as_secs_f64() * 1e3
    };
    Figures {
        per_second: calls as f64 / wall,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        cpu_us: cpu_seconds * 1e6 / calls as f64,
    }
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("CONVERGIO_BENCH_CALLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3000);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let modules = tempfile::tempdir().expect("temp dir");
    let server = Arc::new(start(data_dir.path()));
    let token = admin_token(data_dir.path());
    let file = modules.path().join("const.wasm");
    std::fs::write(&file, constant_agent()).expect("writes the module");
    let (ok, stdout, stderr) = cli(
        Some((&server, data_dir.path())),
        &[
            "plugins",
            "add",
            file.to_str().expect("utf-8"),
            "--name",
            "const",
            "--kind",
            "agent",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!(
            "{}/agents/const/.well-known/agent-card.json",
            server.base
        ))
        .send()
        .await
        .map_or(true, |response| response.status() != 200)
    {
        assert!(
            Instant::now() < deadline,
            "the plugin agent is never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("plugin agent vs echo agent through one gateway, {calls} blocking SendMessage calls per case");
    println!(
        "{:<8} {:>8} {:>10} {:>9} {:>9} {:>12}",
        "agent", "clients", "calls/s", "p50 ms", "p99 ms", "server CPU us"
    );
    for clients in [1, 8] {
        let mut row = Vec::new();
        for agent in ["const", "echo"] {
            let figures = measure(&http, &server, &token, agent, clients, calls).await;
            println!(
                "{agent:<8} {clients:>8} {:>10.0} {:>9.2} {:>9.2} {:>12.0}",
                figures.per_second, figures.p50_ms, figures.p99_ms, figures.cpu_us
            );
            row.push(figures);
        }
        println!(
            "plugin/echo at {clients} client(s): calls/s x{:.2}, p50 x{:.2}, server CPU per call x{:.2}",
            row[0].per_second / row[1].per_second,
            row[0].p50_ms / row[1].p50_ms,
            row[0].cpu_us / row[1].cpu_us
        );
    }
}
