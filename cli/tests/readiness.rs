//! `/readyz` and the drain on SIGTERM (issue #22), on the real `convergio
//! serve`: ready once the database, the policy set and the example agents
//! are; on SIGTERM `/readyz` answers 503 while the listener still accepts
//! (for `shutdown_delay`), then new connections are refused, every request
//! that was accepted gets its answer, and the audit chain holds a record
//! for each; an SSE stream open at SIGTERM runs to its final event, and one
//! that would outlive `server.drain_timeout_seconds` is closed at it.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{admin_get, count_audit, start_logged};

/// Generous: a stop must not hang, but this is no timing target.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// What one probe of `/readyz` saw.
#[derive(Debug, Clone, PartialEq)]
enum Probe {
    Ready,
    NotReady(String),
    Refused,
}

/// `GET /readyz` on a fresh connection (a pooled one would outlive the
/// listener and hide when it closed).
async fn probe(base: &str) -> Probe {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    match client.get(format!("{base}/readyz")).send().await {
        Ok(response) if response.status().as_u16() == 200 => Probe::Ready,
        Ok(response) => {
            assert_eq!(response.status().as_u16(), 503);
            let problem: Value = response.json().await.unwrap_or(Value::Null);
            Probe::NotReady(problem["detail"].as_str().unwrap_or_default().to_owned())
        }
        // Refused outright, or reset unanswered: a connection the kernel
        // queued just before the listener closed is reset with the backlog,
        // and the application never accepted it.
        Err(error) => {
            assert!(
                error.is_connect() || (error.is_request() && error.status().is_none()),
                "probe failed otherwise: {error:?}"
            );
            Probe::Refused
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_public_and_ready_once_database_policy_and_examples_are() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let stderr = data_dir.path().join("stderr.log");
    let server = start_logged(data_dir.path(), &[], &[], &stderr);
    // Probes carry no credentials: `/readyz` is public like `/healthz`.
    assert_eq!(probe(&server.base).await, Probe::Ready);
    let response = reqwest::get(format!("{}/readyz", server.base))
        .await
        .expect("readyz");
    assert_eq!(response.text().await.expect("body"), "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_turns_readiness_false_before_the_listener_closes_and_loses_no_answer() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let stderr = data_dir.path().join("stderr.log");
    let mut server = start_logged(
        data_dir.path(),
        &["--no-examples"],
        &[("CONVERGIO_SHUTDOWN_DELAY_SECONDS", "2")],
        &stderr,
    );
    assert_eq!(probe(&server.base).await, Probe::Ready);

    // Load: anonymous listings, each one audited decision (`discover`).
    let answered = Arc::new(AtomicU64::new(0));
    let url = format!("{}/v1/agents?page_size=1", server.base);
    let mut loaders = Vec::new();
    for _ in 0..8 {
        let answered = answered.clone();
        let url = url.clone();
        loaders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Until the server stops answering: an error here is a request
            // the server never accepted (refused, or a keep-alive
            // connection it closed between requests).
            while let Ok(response) = client.get(&url).send().await {
                let status = response.status();
                if response.bytes().await.is_err() {
                    break;
                }
                assert!(status.is_success(), "a listing got {status}");
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // The prober: what `/readyz` says, in order, and how many listings had
    // been answered when it first said 503.
    let seen = Arc::new(Mutex::new(Vec::<Probe>::new()));
    let answered_at_first_503 = Arc::new(AtomicU64::new(u64::MAX));
    let prober = {
        let seen = seen.clone();
        let answered = answered.clone();
        let first_503 = answered_at_first_503.clone();
        let base = server.base.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let probe = probe(&base).await;
                if matches!(probe, Probe::NotReady(_)) {
                    let now = answered.load(Ordering::SeqCst);
                    let _ = first_503.compare_exchange(
                        u64::MAX,
                        now,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
                let refused = probe == Probe::Refused;
                seen.lock().expect("probes").push(probe);
                if refused {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 300 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = tokio::task::spawn_blocking(move || {
        let stopped = server.terminate(STOP_DEADLINE);
        stopped.unwrap_or_else(|| panic!("the server did not stop within {STOP_DEADLINE:?}"))
    })
    .await
    .expect("terminate task");
    prober.await.expect("prober");
    for loader in loaders {
        loader.await.expect("loader");
    }
    let log = std::fs::read_to_string(&stderr).expect("stderr log");
    assert!(stopped.success, "exit status not 0; stderr: {log}");
    assert!(
        stopped.took >= Duration::from_secs(2),
        "stopped after {:?}, before the shutdown delay",
        stopped.took
    );

    // Ready, then 503 naming the drain, then refused: never ready again
    // after the first 503, never refused before one.
    let seen = seen.lock().expect("probes").clone();
    let first_503 = seen
        .iter()
        .position(|probe| matches!(probe, Probe::NotReady(_)))
        .unwrap_or_else(|| panic!("/readyz never answered 503: {seen:?}"));
    assert!(seen[..first_503].iter().all(|probe| *probe == Probe::Ready));
    assert_eq!(seen.last(), Some(&Probe::Refused), "{seen:?}");
    for probe in &seen[first_503..seen.len() - 1] {
        assert_eq!(
            probe,
            &Probe::NotReady("not ready: draining: shutting down".to_owned())
        );
    }
    // The listener kept serving the load while readiness was false.
    let answered = answered.load(Ordering::SeqCst);
    let at_503 = answered_at_first_503.load(Ordering::SeqCst);
    assert!(
        answered > at_503,
        "no listing answered after /readyz went 503 ({at_503} before, {answered} in all)"
    );

    // The same data dir again: the chain verifies and holds one record per
    // answered request.
    let stderr = data_dir.path().join("stderr-2.log");
    let server = start_logged(data_dir.path(), &["--no-examples"], &[], &stderr);
    let (status, verified) = admin_get(&server, data_dir.path(), "/v1/audit:verify").await;
    assert_eq!(status, 200, "{verified}");
    let recorded = count_audit(&server, data_dir.path(), "anonymous", "discover").await;
    assert_eq!(
        recorded, answered,
        "{answered} answered listings, {recorded} audit records; chain: {verified}"
    );
}

/// Opens a JSON-RPC `SendStreamingMessage` to the example echo agent with
/// `text` and returns its event stream once the first event arrived (the
/// stream is then surely in flight).
async fn open_stream(base: &str, token: &str, text: &str) -> convergio_tests::sse::EventStream {
    let response = reqwest::Client::new()
        .post(format!("{base}/agents/echo"))
        .bearer_auth(token)
        .header("A2A-Version", "1.0")
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
            "params": {"message": {"messageId": text, "role": "ROLE_USER",
                "parts": [{"text": text}]}}}),
        )
        .send()
        .await
        .expect("stream opens");
    assert_eq!(response.status(), 200);
    let mut events = convergio_tests::sse::EventStream::new(response);
    let first = events.next().await.expect("a first event");
    assert!(first.get("result").is_some(), "{first}");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_open_at_sigterm_finishes_and_one_past_the_drain_bound_is_closed() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(&config, "version: 1\nserver:\n  drain_timeout_seconds: 4\n").expect("config");
    let stderr = data_dir.path().join("stderr.log");
    let config_flag = config.to_string_lossy().into_owned();
    let mut server = start_logged(data_dir.path(), &["--config", &config_flag], &[], &stderr);
    let token = support::admin_token(data_dir.path());
    let short = open_stream(&server.base, &token, "sleep:1500 short").await;
    let long = open_stream(&server.base, &token, "sleep:60000 long").await;

    let stopping = tokio::task::spawn_blocking(move || {
        let stopped = server.terminate(STOP_DEADLINE);
        stopped.unwrap_or_else(|| panic!("the server did not stop within {STOP_DEADLINE:?}"))
    });
    // The stream that ends within the bound gets every event, the last one
    // final and completed.
    let rest = short.collect().await;
    let last = rest.last().expect("events after SIGTERM");
    assert!(
        last.to_string().contains("TASK_STATE_COMPLETED"),
        "the short stream did not complete: {rest:?}"
    );
    assert!(
        last.to_string().contains("echo: sleep:1500 short"),
        "{rest:?}"
    );
    // The one that would outlive the bound is closed, not waited for.
    let stopped = stopping.await.expect("terminate task");
    let log = std::fs::read_to_string(&stderr).expect("stderr log");
    assert!(stopped.success, "exit status not 0; stderr: {log}");
    assert!(
        stopped.took >= Duration::from_secs(4),
        "stopped after {:?}, before the drain bound though a stream was open",
        stopped.took
    );
    drop(long);
}
