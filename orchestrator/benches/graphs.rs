//! Orchestrator throughput and latency with an in-process dispatcher whose
//! agents do trivial deterministic work (no sleep, no I/O):
//!
//! - G1 `codereview`: analyzer → security, performance, style (parallel) →
//!   aggregator → reporter; each node appends its name, the reporter joins
//!   them (`analyzer,security,performance,style,aggregator`).
//! - G2 `fanout`: 1 source → 1,000 parallel workers (worker i returns i) →
//!   join (sums to 499500).
//! - G3 `chain`: 1,000 sequential nodes each incrementing a counter (1000).
//!
//! Prints runs/s, p50/p99 per run, CPU per run and peak RSS. Targets on a
//! 2-core machine: G1 ≥ 20,000 runs/s; G2 and G3 ≤ 5 ms per run.
//! Run with `cargo bench -p convergio-orchestrator --bench graphs`.
//!
//! Durable runs (issue 8): the same graphs again with every run checkpointed
//! (a commit per step, group-committed across runs in flight) on a SQLite
//! file with `synchronous=FULL`, again with `NORMAL`, and on PostgreSQL
//! (`CONVERGIO_BENCH_POSTGRES_URL`, default a fresh database on the tests'
//! server, dropped at the end; skipped when it is unreachable), printing
//! rows and bytes written per run as well.
//! Targets: G3 ≤ 1 MB per run; G1 ≥ 500 runs/s on SQLite FULL.
//! `BENCH_DURABLE=only` runs just these, `BENCH_DURABLE=off` skips them.
//! `BENCH_ONLY=G1` runs just the graphs whose name contains it;
//! `BENCH_RUNS=N` runs each in-memory graph N times, `BENCH_EVENTS=on|off`
//! just one half of them (for a profile of a fixed amount of work).
//!
//! The bench uses mimalloc as its global allocator, like the `convergio`
//! binary: profiles showed glibc's malloc, free and consolidation at over
//! half of the CPU of G2 (the executor allocates per node: the A2A message,
//! its metadata, the reply), and a global allocator is the binary's choice.
//! With glibc on a loaded 2-core box G2 took 6.7 ms p50 (3.1 ms CPU); with
//! mimalloc 1.7 ms (2.0 ms CPU).

use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use convergio_orchestrator::dsl::ExecutionSpec;
use convergio_orchestrator::{
    AgentCall, AgentReply, AnyAgent, Dispatch, DispatchError, Executor, ExecutorConfig, Graph,
    Limits, RunStatus, Usage,
};
use serde_json::{json, Map, Value};

/// Trivial agents, keyed by agent name.
struct Bench;

fn data_part(call: &AgentCall) -> Option<&Value> {
    call.message
        .get("parts")?
        .as_array()?
        .iter()
        .find_map(|part| part.get("data"))
}

fn reply(value: Value) -> Result<AgentReply, DispatchError> {
    let mut part = Map::with_capacity(1);
    part.insert("data".to_owned(), value);
    let mut message = Map::with_capacity(1);
    message.insert("parts".to_owned(), Value::Array(vec![Value::Object(part)]));
    let mut response = Map::with_capacity(1);
    response.insert("message".to_owned(), Value::Object(message));
    Ok(AgentReply {
        response: Value::Object(response),
        usage: Usage::default(),
        report: Default::default(),
    })
}

#[async_trait]
impl Dispatch for Bench {
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError> {
        match call.agent.as_str() {
            "analyzer" => reply(json!(["analyzer"])),
            "security" | "performance" | "style" | "aggregator" => {
                // Union of the input lists, in input order, then this name.
                let mut names: Vec<Value> = Vec::with_capacity(6);
                if let Some(Value::Object(inputs)) = data_part(&call) {
                    for list in inputs.values().filter_map(Value::as_array) {
                        for name in list {
                            if !names.contains(name) {
                                names.push(name.clone());
                            }
                        }
                    }
                }
                names.push(Value::String(call.agent.clone()));
                reply(Value::Array(names))
            }
            "reporter" => {
                let list = data_part(&call)
                    .and_then(|data| data.get("aggregator.output"))
                    .and_then(Value::as_array);
                let joined: Vec<&str> = list
                    .map(|list| list.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                reply(Value::String(joined.join(",")))
            }
            "source" => reply(json!(0)),
            "worker" => {
                let index: u64 = call.node_id.trim_start_matches('w').parse().unwrap_or(0);
                reply(json!(index))
            }
            "join" => {
                let sum: u64 = match data_part(&call) {
                    Some(Value::Object(inputs)) => inputs.values().filter_map(Value::as_u64).sum(),
                    _ => 0,
                };
                reply(json!(sum))
            }
            "increment" => {
                let value = match data_part(&call) {
                    Some(Value::Object(inputs)) => {
                        inputs.values().next().and_then(Value::as_u64).unwrap_or(0)
                    }
                    Some(value) => value.as_u64().unwrap_or(0),
                    None => 0,
                };
                reply(json!(value + 1))
            }
            other => Err(DispatchError::AgentNotFound {
                agent: other.to_owned(),
            }),
        }
    }
}

fn codereview() -> Graph {
    Graph::new("codereview")
        .add_node("analyzer", "analyzer")
        .add_parallel("reviewers", ["security", "performance", "style"])
        .add_node("aggregator", "aggregator")
        .add_node("reporter", "reporter")
        .connect("analyzer", "reviewers")
        .connect("reviewers", "aggregator")
        .connect("aggregator", "reporter")
        .build(&AnyAgent, &Limits::default())
        .expect("G1 is valid")
}

fn fanout() -> Graph {
    let workers: Vec<(String, String)> = (0..1000)
        .map(|index| (format!("w{index}"), "worker".to_owned()))
        .collect();
    let members: Vec<(&str, &str)> = workers
        .iter()
        .map(|(id, agent)| (id.as_str(), agent.as_str()))
        .collect();
    Graph::new("fanout")
        .add_node("source", "source")
        .add_parallel("workers", members)
        .add_node("join", "join")
        .connect("source", "workers")
        .connect("workers", "join")
        .execution(ExecutionSpec {
            max_concurrent_agents: Some(1000),
            ..ExecutionSpec::default()
        })
        .build(&AnyAgent, &Limits::default())
        .expect("G2 is valid")
}

fn chain() -> Graph {
    let mut builder = Graph::new("chain");
    for index in 0..1000 {
        builder = builder.add_node(&format!("n{index}"), "increment");
    }
    for index in 1..1000 {
        builder = builder.connect(&format!("n{}", index - 1), &format!("n{index}"));
    }
    builder
        .build(&AnyAgent, &Limits::default())
        .expect("G3 is valid")
}

/// CPU time (user + system) of this process.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start after ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// How many runs and how: `runs` in `parallel` loops for throughput after
/// `latency_runs` one at a time; `stats` counts what a journal wrote.
struct Plan<'a> {
    runs: usize,
    parallel: usize,
    latency_runs: usize,
    stats: Option<&'a convergio_store::runs::WriteStats>,
}

async fn measure(
    name: &str,
    executor: &Executor,
    graph: Arc<Graph>,
    input: Value,
    expected: Value,
    runs: usize,
    parallel: usize,
) {
    let plan = Plan {
        runs,
        parallel,
        latency_runs: runs.min(2000),
        stats: None,
    };
    measure_plan(name, executor, graph, input, expected, plan).await;
}

async fn measure_plan(
    name: &str,
    executor: &Executor,
    graph: Arc<Graph>,
    input: Value,
    expected: Value,
    plan: Plan<'_>,
) {
    let Plan {
        runs,
        parallel,
        latency_runs,
        stats,
    } = plan;
    let written = |stats: Option<&convergio_store::runs::WriteStats>| {
        stats.map(|stats| {
            (
                stats.rows.load(std::sync::atomic::Ordering::Relaxed),
                stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .transactions
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    };
    let written_before = written(stats);
    // `BENCH_ONLY=G2` runs just the graphs whose name contains it.
    if std::env::var("BENCH_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    // Latency: one run at a time.
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..latency_runs {
        let started = Instant::now();
        let result = executor
            .run(graph.clone(), input.clone())
            .await
            .expect("run starts");
        latencies.push(started.elapsed());
        assert_eq!(
            result.status,
            RunStatus::Succeeded,
            "{name}: {:?}",
            result.error
        );
        assert_eq!(result.output, expected, "{name}: wrong result");
    }
    latencies.sort();
    // Throughput: `parallel` loops sharing the runtime's worker threads.
    let per_loop = runs / parallel;
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut loops = Vec::with_capacity(parallel);
    for _ in 0..parallel {
        let executor = executor.clone();
        let graph = graph.clone();
        let input = input.clone();
        let expected = expected.clone();
        loops.push(tokio::spawn(async move {
            for _ in 0..per_loop {
                let result = executor
                    .run(graph.clone(), input.clone())
                    .await
                    .expect("run starts");
                assert_eq!(result.output, expected);
            }
        }));
    }
    for task in loops {
        task.await.expect("bench loop");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let total = per_loop * parallel;
    if let (Some((rows_before, bytes_before, commits_before)), Some((rows, bytes, commits))) =
        (written_before, written(stats))
    {
        let all = (total + latency_runs).max(1) as u64;
        println!(
            "{name:<11} journal: rows/run={}  bytes/run={}  commits={}  (over {all} runs)",
            (rows - rows_before) / all,
            (bytes - bytes_before) / all,
            commits - commits_before,
        );
    }
    println!(
        "{name:<11} runs={total:<6} runs/s={:>9.0}  p50={:>9.1?}  p99={:>9.1?}  cpu/run={:>9.1?}  peak_rss={} KiB",
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        cpu / total.max(1) as u32,
        peak_rss_kib()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let durable = std::env::var("BENCH_DURABLE").unwrap_or_default();
    runtime.block_on(async {
        if durable != "only" {
            in_memory().await;
        }
        if durable != "off" {
            checkpointed().await;
        }
    });
}

/// The graphs with every run journaled, per backend.
async fn checkpointed() {
    let dir = std::env::temp_dir().join(format!("convergio-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    // A fresh database on the tests' server, dropped when the bench ends
    // (writing into a shared one left it on a schema older builds refuse).
    let mut fresh = None;
    let postgres = match std::env::var("CONVERGIO_BENCH_POSTGRES_URL") {
        Ok(url) => Ok(url),
        Err(_) => {
            let admin_url = convergio_tests::postgres::admin_url();
            match convergio_store::admin::database_exists(&admin_url, "postgres").await {
                Ok(_) => Ok(fresh
                    .insert(
                        convergio_tests::postgres::TestDatabase::create("convergio_bench").await,
                    )
                    .url()
                    .to_owned()),
                Err(error) => Err(format!("not reachable at {admin_url}: {error}")),
            }
        }
    };
    let backends = [
        (
            "SQLite synchronous=FULL",
            Ok(format!("sqlite://{}/full.db", dir.display())),
            true,
        ),
        (
            "SQLite synchronous=NORMAL",
            Ok(format!("sqlite://{}/normal.db", dir.display())),
            false,
        ),
        ("PostgreSQL", postgres, true),
    ];
    for (label, url, full_sync) in backends {
        let opened = match url {
            Ok(url) => convergio_store::Db::open(&url, &convergio_store::DbConfig::default())
                .await
                .map_err(|error| error.to_string()),
            Err(why) => Err(why),
        };
        let db = match opened {
            Ok(db) => db,
            Err(error) => {
                println!("-- checkpointed on {label}: skipped ({error})");
                continue;
            }
        };
        let store = convergio_store::runs::RunStore::open(
            db,
            convergio_store::runs::RunStoreConfig {
                sqlite_full_sync: full_sync,
                ..convergio_store::runs::RunStoreConfig::default()
            },
        );
        println!("-- checkpointed on {label} (a commit per step)");
        let executor = Executor::with_journal(
            Arc::new(Bench),
            ExecutorConfig {
                record_events: false,
                checkpoint_by_default: true,
                ..ExecutorConfig::default()
            },
            store.clone(),
        );
        let stats = Some(store.stats());
        measure_plan(
            "G1 codereview",
            &executor,
            Arc::new(codereview()),
            json!({"source_code": "fn main() {}"}),
            json!("analyzer,security,performance,style,aggregator"),
            Plan {
                runs: 4096,
                parallel: 256,
                latency_runs: 200,
                stats,
            },
        )
        .await;
        measure_plan(
            "G2 fanout",
            &executor,
            Arc::new(fanout()),
            json!(null),
            json!(499500),
            Plan {
                runs: 8,
                parallel: 2,
                latency_runs: 4,
                stats,
            },
        )
        .await;
        measure_plan(
            "G3 chain",
            &executor,
            Arc::new(chain()),
            json!(0),
            json!(1000),
            Plan {
                runs: 4,
                parallel: 2,
                latency_runs: 2,
                stats,
            },
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The run count of every in-memory graph: `BENCH_RUNS` when set (a fixed,
/// small count keeps a profile under callgrind short and comparable across
/// builds; the first 2,000 runs go one at a time, the rest in the loops),
/// `default` otherwise.
fn in_memory_runs(default: usize) -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(default)
}

/// The graphs in memory, with and without the event log
/// (`BENCH_EVENTS=on` or `off` runs just one of them).
async fn in_memory() {
    let events = std::env::var("BENCH_EVENTS").unwrap_or_default();
    {
        for (label, record_events) in [("events on", true), ("events off", false)] {
            if !events.is_empty() && label != format!("events {events}") {
                continue;
            }
            println!("-- executor with the run event log {label}");
            let executor = Executor::new(
                Arc::new(Bench),
                ExecutorConfig {
                    record_events,
                    ..ExecutorConfig::default()
                },
            );
            measure(
                "G1 codereview",
                &executor,
                Arc::new(codereview()),
                json!({"source_code": "fn main() {}"}),
                json!("analyzer,security,performance,style,aggregator"),
                in_memory_runs(40_000),
                8,
            )
            .await;
            measure(
                "G2 fanout",
                &executor,
                Arc::new(fanout()),
                json!(null),
                json!(499500),
                in_memory_runs(400),
                2,
            )
            .await;
            measure(
                "G3 chain",
                &executor,
                Arc::new(chain()),
                json!(0),
                json!(1000),
                in_memory_runs(400),
                2,
            )
            .await;
        }
    }
}
