//! Guardrail benchmark (not a timed test; run `cargo bench -p
//! convergio-plugins --bench guardrails`). Prints, in one run, the CPU a
//! guardrail chain adds per A2A request — the request's message and one
//! response artifact of the same size, as an echoing agent answers — with
//! no guardrail, with the built-ins (part size, media types, redaction of
//! e-mail addresses, card numbers and secrets) and with the example
//! WebAssembly guardrail (`examples/keyword-guardrail.wasm`), on 1 KB and
//! 100 KB text parts. CPU is this process's utime+stime from
//! /proc/self/stat (clock ticks, assumed 100 Hz) over the loop, divided by
//! the requests; the wall-clock mean is printed beside it. Each chain runs
//! as the gateway runs it, as a future on a tokio runtime (a plugin on a
//! fiber of its own that yields at every epoch tick). For comparison the
//! plugin row is measured once more through `spawn_blocking`, as the
//! gateway ran plugins before (the thread hop's own cost included).
//!
//! Targets (issue 21): built-ins <= 10 us and a WebAssembly guardrail <= 30
//! us added CPU per 1 KB request. Figures depend on the machine and its load.

use std::sync::Arc;
use std::time::Instant;

use convergio_plugins::builtin::{Detector, MediaTypes, PartSize, Redact, RedactAction};
use convergio_plugins::chain::{Outcome, Selector};
use convergio_plugins::{
    Direction, GuardFacts, Guardrail, Guardrails, PluginRuntime, SandboxLimits, WasmGuardrail,
};
use serde_json::{json, Value};

const EXAMPLE: &[u8] = include_bytes!("../examples/keyword-guardrail.wasm");

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the line, 12th and 13th after it.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clean prose of about `bytes` bytes (nothing any guardrail refuses).
fn text_of(bytes: usize) -> String {
    let sentence =
        "The quarterly report shows steady growth in all regions and a small rise in costs. ";
    sentence.repeat(bytes / sentence.len() + 1)[..bytes].to_owned()
}

fn payloads(bytes: usize) -> (Value, Value) {
    let text = text_of(bytes);
    let request =
        json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]}});
    let response = json!({"artifactUpdate": {"taskId": "t1", "contextId": "c1",
        "artifact": {"artifactId": "a1", "parts": [{"text": text}]}}});
    (request, response)
}

fn facts(direction: Direction) -> GuardFacts<'static> {
    GuardFacts {
        direction,
        agent: "echo",
        skill: None,
        org: Some("acme.example"),
        subject: "alice",
        switched_on: &[],
    }
}

async fn one_request(guardrails: &Guardrails, request: &Value, response: &Value) {
    for (direction, payload) in [
        (Direction::Request, request),
        (Direction::Response, response),
    ] {
        match guardrails.check(&facts(direction), payload).await {
            Outcome::Unchanged => {}
            other => panic!("the bench payload must pass unchanged, got {other:?}"),
        }
    }
}

/// Runs `requests` requests; returns (CPU µs per request, wall µs per request).
fn measure(requests: u32, mut run: impl FnMut()) -> (f64, f64) {
    for _ in 0..requests / 10 + 1 {
        run();
    }
    let ticks = cpu_ticks();
    let started = Instant::now();
    for _ in 0..requests {
        run();
    }
    let wall = started.elapsed().as_secs_f64() * 1e6 / f64::from(requests);
    let cpu = (cpu_ticks() - ticks) as f64 * 10_000.0 / f64::from(requests);
    (cpu, wall)
}

fn main() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("engine");
    let builtins: Vec<(Selector, Arc<dyn Guardrail>)> = vec![
        (
            Selector::default(),
            Arc::new(PartSize::new("size", 1024 * 1024)),
        ),
        (
            Selector::default(),
            Arc::new(MediaTypes::new(
                "mime",
                vec!["text/*".into(), "application/json".into()],
            )),
        ),
        (
            Selector::default(),
            Arc::new(
                Redact::new(
                    "pii",
                    &[Detector::Email, Detector::Card, Detector::Secret],
                    RedactAction::Redact,
                )
                .expect("valid"),
            ),
        ),
    ];
    let wasm: Vec<(Selector, Arc<dyn Guardrail>)> = vec![(
        Selector::default(),
        Arc::new(WasmGuardrail::load(&runtime, "keywords", EXAMPLE).expect("loads")),
    )];
    let sets = [
        ("none", Guardrails::default()),
        ("built-ins", Guardrails::new(builtins)),
        ("wasm example", Guardrails::new(wasm)),
    ];
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    println!("guardrail CPU per request (request message + one response artifact)");
    println!(
        "{:<28} {:>8} {:>14} {:>14}",
        "guardrails", "size", "CPU us/req", "wall us/req"
    );
    let mut baseline = std::collections::HashMap::new();
    for (size_name, bytes, requests) in [("1 KB", 1024, 20_000u32), ("100 KB", 100 * 1024, 400)] {
        let (request, response) = payloads(bytes);
        for (name, guardrails) in &sets {
            let (cpu, wall) = measure(requests, || {
                tokio.block_on(one_request(guardrails, &request, &response))
            });
            if *name == "none" {
                baseline.insert(size_name, cpu);
            }
            println!("{name:<28} {size_name:>8} {cpu:>14.2} {wall:>14.2}");
        }
        // How the gateway ran plugin chains before: on the blocking pool.
        let (_, guardrails) = &sets[2];
        let request = Arc::new(request);
        let response = Arc::new(response);
        let (cpu, wall) = measure(requests, || {
            let guardrails = guardrails.clone();
            let (request, response) = (Arc::clone(&request), Arc::clone(&response));
            tokio.block_on(async move {
                tokio::task::spawn_blocking(move || {
                    futures_executor::block_on(one_request(&guardrails, &request, &response))
                })
                .await
                .expect("no panic");
            });
        });
        println!(
            "{:<28} {size_name:>8} {cpu:>14.2} {wall:>14.2}",
            "wasm example, blocking pool"
        );
    }
    println!("targets: built-ins <= 10 us, wasm <= 30 us added CPU per 1 KB request");
}
