//! G1 (`code_review_pipeline`) through the real gateway with the example
//! agents (not a timed test; run `cargo bench -p convergio-gateway --bench
//! graphs`). The application `convergio serve` builds runs in this process
//! on an SQLite registry with the example agents on loopback ports.
//! It prints, per run, p50/p99 and runs/s of:
//!
//! - `http sync`: `POST /v1/runs` (mode sync) over a real socket;
//! - `in-process`: the server's executor with the gateway dispatcher (every
//!   node call through the layered router, then HTTP to the agent);
//! - `direct`: the same executor logic with a dispatcher that posts straight
//!   to each agent, timing every call: the agents' own time on the critical
//!   path (analyzer + slowest reviewer + aggregator + reporter).
//!
//! The orchestrator's (and gateway's) own overhead per node is the
//! in-process p50 minus the agents' critical-path p50, divided by the four
//! nodes on that path; the figure for all six nodes is printed too, and the
//! split between the executor alone (direct minus agents) and the gateway
//! hop (in-process minus direct).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The allocator the `convergio` binary serves with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use convergio_agents::{ExampleAgent, RunningAgent, ServeOptions};
use convergio_gateway::app::{build_app, serve, AppConfig};
use convergio_orchestrator::{
    parse_yaml, validate, AgentCall, AgentReply, AnyAgent, Dispatch, DispatchError, Executor,
    ExecutorConfig, Graph, Limits, RunStatus,
};
use convergio_registry::{Registration, Registry, RegistryConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const PIPELINE: &str = include_str!("../../examples/graphs/code_review_pipeline.yaml");
const SOURCE: &str = "import os\n\ndef run(cmd):\n    password = \"hunter2\"\n    os.system(cmd)\n    for i in range(10):\n        for j in range(10):\n            print(i, j)\n";

/// Posts JSON-RPC straight to the agents and times every call.
struct Direct {
    http: reqwest::Client,
    urls: Vec<(String, String)>,
    timings: Mutex<Vec<(String, Duration)>>,
}

#[async_trait]
impl Dispatch for Direct {
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError> {
        let url = self
            .urls
            .iter()
            .find(|(name, _)| *name == call.agent)
            .map(|(_, url)| url.clone())
            .ok_or_else(|| DispatchError::AgentNotFound {
                agent: call.agent.clone(),
            })?;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": call.message, "configuration": {"returnImmediately": false}}});
        let started = Instant::now();
        let response = self
            .http
            .post(url)
            .header("A2A-Version", "1.0")
            .json(&body)
            .send()
            .await
            .map_err(|error| DispatchError::Unavailable {
                message: error.to_string(),
            })?;
        let value: Value = response
            .json()
            .await
            .map_err(|error| DispatchError::Failed {
                message: error.to_string(),
                retryable: false,
            })?;
        let elapsed = started.elapsed();
        if let Ok(mut timings) = self.timings.lock() {
            timings.push((call.node_id.clone(), elapsed));
        }
        Ok(AgentReply::from_response(value["result"].clone()))
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn report(name: &str, mut latencies: Vec<Duration>, throughput: Option<f64>) -> Duration {
    latencies.sort();
    let p50 = percentile(&latencies, 0.5);
    println!(
        "{name:<12} p50={:>9.2?}  p99={:>9.2?}{}",
        p50,
        percentile(&latencies, 0.99),
        throughput
            .map(|runs| format!("  runs/s={runs:.0} (8 concurrent)"))
            .unwrap_or_default()
    );
    p50
}

async fn start_agents(registry: &Registry) -> (Vec<RunningAgent>, Vec<(String, String)>) {
    let mut agents = Vec::new();
    let mut urls = Vec::new();
    for agent in ExampleAgent::ALL {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let running = convergio_agents::spawn(agent, listener, ServeOptions::default())
            .await
            .expect("agent starts");
        registry
            .upsert_system(Registration {
                name: Some(agent.name().to_owned()),
                org: None,
                role: None,
                card: running.card(),
                upstreams: None,
                trust: None,
            })
            .await
            .expect("agent registers");
        urls.push((agent.name().to_owned(), format!("{}/", running.base_url)));
        agents.push(running);
    }
    (agents, urls)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let runs: usize = std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|runs| runs.parse().ok())
            .unwrap_or(300);
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let (_db, agents) = convergio_tests::db::agent_store(&url).await;
        let registry = Registry::new(
            agents,
            RegistryConfig::default(),
            Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
        );
        let (_agents, urls) = start_agents(&registry).await;
        let config = AppConfig {
            a2a: convergio_gateway::a2a::A2aConfig {
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..Default::default()
            },
            ..AppConfig::default()
        };
        let (router, runs_api) = build_app(registry, config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { serve(listener, router, std::future::pending()).await });
        let graph: Arc<Graph> = Arc::new(
            validate(
                &parse_yaml(PIPELINE).expect("G1 parses"),
                &AnyAgent,
                &Limits::default(),
            )
            .expect("G1 validates"),
        );
        let input = json!({"source_code": SOURCE});
        let http = reqwest::Client::new();
        let body = json!({"graph_yaml": PIPELINE, "mode": "sync", "input": input});

        println!("G1 code_review_pipeline through the real gateway, {runs} runs each");
        // HTTP sync mode.
        let mut latencies = Vec::with_capacity(runs);
        for index in 0..runs + 20 {
            let started = Instant::now();
            let outcome: Value = http
                .post(format!("{base}/v1/runs"))
                .json(&body)
                .send()
                .await
                .expect("run answers")
                .json()
                .await
                .expect("json");
            assert_eq!(outcome["status"], "succeeded", "{outcome}");
            if index >= 20 {
                latencies.push(started.elapsed());
            }
        }
        let started = Instant::now();
        let mut loops = Vec::new();
        for _ in 0..8 {
            let http = http.clone();
            let base = base.clone();
            let body = body.clone();
            loops.push(tokio::spawn(async move {
                for _ in 0..runs / 8 {
                    let response = http
                        .post(format!("{base}/v1/runs"))
                        .json(&body)
                        .send()
                        .await
                        .expect("run answers");
                    assert!(response.status().is_success());
                }
            }));
        }
        for task in loops {
            task.await.expect("loop");
        }
        let throughput = (runs / 8 * 8) as f64 / started.elapsed().as_secs_f64();
        report("http sync", latencies, Some(throughput));

        // In-process: the server's executor and dispatcher, no client HTTP.
        let executor = runs_api.executor().clone();
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let result = executor
                .run(graph.clone(), input.clone())
                .await
                .expect("run");
            assert_eq!(result.status, RunStatus::Succeeded);
            latencies.push(started.elapsed());
        }
        let gateway_p50 = report("in-process", latencies, None);

        // Direct to the agents: their own time on the critical path.
        let direct = Arc::new(Direct {
            http: reqwest::Client::new(),
            urls,
            timings: Mutex::new(Vec::new()),
        });
        let executor = Executor::new(direct.clone(), ExecutorConfig::default());
        let mut latencies = Vec::with_capacity(runs);
        let mut agent_paths = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let result = executor
                .run(graph.clone(), input.clone())
                .await
                .expect("run");
            latencies.push(started.elapsed());
            assert_eq!(result.status, RunStatus::Succeeded);
            let timings = std::mem::take(&mut *direct.timings.lock().expect("timings"));
            let time = |node: &str| {
                timings
                    .iter()
                    .filter(|(id, _)| id == node)
                    .map(|(_, time)| *time)
                    .max()
                    .unwrap_or_default()
            };
            let reviewers = time("security_reviewer")
                .max(time("performance_reviewer"))
                .max(time("style_reviewer"));
            agent_paths.push(time("analyzer") + reviewers + time("aggregator") + time("reporter"));
        }
        let direct_p50 = report("direct", latencies, None);
        let agents_p50 = report("agents only", agent_paths, None);
        let overhead = gateway_p50.saturating_sub(agents_p50);
        println!(
            "total overhead (in-process - agents): {overhead:.2?} per run, {:.2?} per critical-path node (4), {:.2?} per node (6)",
            overhead / 4,
            overhead / 6
        );
        let executor_only = direct_p50.saturating_sub(agents_p50);
        let gateway_hop = gateway_p50.saturating_sub(direct_p50);
        println!(
            "  executor alone (direct - agents): {executor_only:.2?} per run, {:.2?} per node (6); gateway hop (in-process - direct): {:.2?} per critical-path node",
            executor_only / 6,
            gateway_hop / 4
        );
    });
}
