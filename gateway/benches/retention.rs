//! Retention under load (issue 15; not a timed test: run `cargo bench -p
//! convergio-gateway --bench retention`). Writes the rows of N proxied
//! calls into a fresh SQLite database, as the gateway does per call: one
//! task route (`put_task_route`) and one audit record (appended in batches
//! of up to 256, as the audit writer does). Time is simulated: call `i`
//! happens at `i` ms, so the window is a number of calls. The same load
//! runs twice: without retention, and with the pruner running beside the
//! writer (a pass every `CONVERGIO_BENCH_PASS_MS` of real time, default
//! 200) on a window of W calls. It prints the database size (main file plus
//! write-ahead log) every N/10 calls for both, rows pruned, and the p99 and
//! largest write latency of the per-call task route write, with and
//! without the pruner beside it (what pruning costs traffic).
//!
//! `CONVERGIO_BENCH_CALLS` (default 100,000; the figure is for
//! 1,000,000), `CONVERGIO_BENCH_WINDOW_CALLS` (default N/10) and
//! `CONVERGIO_BENCH_BASELINE_CALLS` (calls of the run without retention,
//! default N; its size grows linearly, so a smaller baseline with its bytes
//! per call saves half the time of a 1M run).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator the `convergio` binary serves with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::{DateTime, TimeZone, Utc};
use convergio_gateway::retention::{
    AuditRetention, KindRetention, Pruner, RetentionConfig, TaskRoutesRetention,
};
use convergio_policy::{AuditEntry, AuditLog};
use convergio_registry::model::TaskRoute;
use convergio_registry::retention::RetentionStore;
use convergio_registry::Store;
use convergio_schemas::{AgentId, AuthMethod, Principal};
use serde_json::json;

/// What one run measured.
struct Outcome {
    /// (calls written, database bytes) every N/10 calls.
    sizes: Vec<(u64, u64)>,
    /// Rows pruned: task routes, audit records.
    pruned: (u64, u64),
    /// p99 and max of the task route write, in microseconds.
    p99_us: u64,
    max_us: u64,
    seconds: f64,
}

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn at(simulated_ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000 + simulated_ms)
        .single()
        .expect("a valid simulated time")
}

fn principal(index: u64) -> Principal {
    Principal {
        subject: format!("client-{}", index % 64),
        org: Some("acme.example".to_owned()),
        scopes: vec!["agents:call".to_owned()],
        method: AuthMethod::ApiKey,
    }
}

/// The audit entry of one allowed `SendMessage`, sized like the gateway's.
fn decision(index: u64, simulated_ms: i64) -> AuditEntry {
    let principal = principal(index);
    let mut entry = AuditEntry::change(
        Some(uuid::Uuid::new_v4().to_string()),
        &principal,
        "send_message",
        "agent:convergio://agents/echo",
        json!({"a2a_method": "SendMessage", "skill": null}),
    );
    entry.decision = "allow".to_owned();
    entry.determining = vec!["policy0".to_owned()];
    entry.at = at(simulated_ms);
    entry
}

async fn run(calls: u64, window_calls: Option<u64>, pass_ms: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let store: Arc<dyn Store> = agents;
    let audit = AuditLog::new(Arc::new(convergio_store::policy::PolicyStore::new(
        db.clone(),
    )));
    let retention: Arc<dyn RetentionStore> =
        Arc::new(convergio_store::registry::Retention::new(&db));
    let agent = AgentId::internal("echo").expect("valid id");
    let now_ms = Arc::new(AtomicI64::new(0));

    let pruner = window_calls.map(|window| {
        let keep = KindRetention {
            max_age_seconds: None,
            max_rows: None,
        };
        let config = RetentionConfig {
            // The clock below is in simulated milliseconds; one simulated
            // second is a thousand calls.
            task_routes: KindRetention {
                max_age_seconds: Some(window / 1000),
                max_rows: None,
            },
            audit: KindRetention {
                max_age_seconds: Some(window / 1000),
                max_rows: None,
            },
            runs: keep.clone(),
            nonces: keep,
            ..RetentionConfig::default()
        };
        let clock_ms = now_ms.clone();
        let pruner = Pruner::new(config, Some(retention.clone()))
            .with_target(Arc::new(TaskRoutesRetention(retention.clone())))
            .with_target(Arc::new(AuditRetention(audit.clone())))
            .with_clock(Arc::new(move || at(clock_ms.load(Ordering::Relaxed))));
        let metrics = pruner.metrics();
        let task = tokio::spawn(async move {
            loop {
                pruner.run_pass().await;
                tokio::time::sleep(Duration::from_millis(pass_ms)).await;
            }
        });
        (task, metrics)
    });

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(calls as usize);
    let mut sizes = Vec::new();
    let mut pending = Vec::with_capacity(256);
    let step = (calls / 10).max(1);
    for index in 0..calls {
        let simulated = index as i64;
        now_ms.store(simulated, Ordering::Relaxed);
        let route = TaskRoute {
            task_id: uuid::Uuid::new_v4().to_string(),
            context_id: Some(uuid::Uuid::new_v4().to_string()),
            agent_id: agent.clone(),
            owner: principal(index).subject,
            created_at: at(simulated),
            updated_at: at(simulated),
        };
        let write = Instant::now();
        store.put_task_route(&route).await.expect("task route");
        latencies.push(write.elapsed().as_micros() as u64);
        pending.push(decision(index, simulated));
        if pending.len() == 256 {
            audit.append_batch(&pending).await.expect("audit");
            pending.clear();
        }
        if (index + 1) % step == 0 {
            let size = retention.database_size().await.expect("size");
            sizes.push((index + 1, size.bytes));
        }
    }
    audit.append_batch(&pending).await.expect("audit");
    let seconds = started.elapsed().as_secs_f64();
    let pruned = match pruner {
        Some((task, metrics)) => {
            task.abort();
            (
                metrics.pruned(convergio_gateway::retention::RetentionKind::TaskRoutes),
                metrics.pruned(convergio_gateway::retention::RetentionKind::Audit),
            )
        }
        None => (0, 0),
    };
    latencies.sort_unstable();
    let p99_us = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let max_us = latencies.last().copied().unwrap_or(0);
    Outcome {
        sizes,
        pruned,
        p99_us,
        max_us,
        seconds,
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[tokio::main]
async fn main() {
    let calls = env_number("CONVERGIO_BENCH_CALLS", 100_000).max(10);
    let window = env_number("CONVERGIO_BENCH_WINDOW_CALLS", calls / 10).max(1000);
    let pass_ms = env_number("CONVERGIO_BENCH_PASS_MS", 200);
    println!(
        "retention bench: {calls} calls (task route + audit record each), window {window} calls, \
         a pass every {pass_ms} ms"
    );
    let baseline_calls = env_number("CONVERGIO_BENCH_BASELINE_CALLS", calls).max(10);
    let without = run(baseline_calls, None, pass_ms).await;
    let with = run(calls, Some(window), pass_ms).await;
    println!("without retention ({baseline_calls} calls):");
    println!("{:>10}  {:>10}", "calls", "MB");
    for (calls, bytes) in &without.sizes {
        println!("{calls:>10}  {:>10.1}", mb(*bytes));
    }
    println!("with retention ({calls} calls, {window}-call window):");
    println!("{:>10}  {:>10}", "calls", "MB");
    for (calls, bytes) in &with.sizes {
        println!("{calls:>10}  {:>10.1}", mb(*bytes));
    }
    let final_plain = without.sizes.last().map_or(0, |size| size.1);
    let final_kept = with.sizes.last().map_or(0, |size| size.1);
    let per_call = final_plain as f64 / baseline_calls as f64;
    println!(
        "final: without retention {:.1} MB ({per_call:.0} B/call, so {:.1} MB at {calls} calls); \
         with a {window}-call window {:.1} MB ({:.0} B per retained call)",
        mb(final_plain),
        mb((per_call * calls as f64) as u64),
        mb(final_kept),
        final_kept as f64 / window as f64
    );
    println!(
        "pruned: {} task routes, {} audit records",
        with.pruned.0, with.pruned.1
    );
    println!(
        "task route write: p99 {} us / max {} us without the pruner, p99 {} us / max {} us with it",
        without.p99_us, without.max_us, with.p99_us, with.max_us
    );
    println!(
        "load took {:.1} s without, {:.1} s with retention",
        without.seconds, with.seconds
    );
}
