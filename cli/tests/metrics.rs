//! `/metrics` on the real `convergio serve` (issue #22): after calls that
//! succeed, stream, hit a spent quota, fail upstream and are denied by
//! policy, every gateway family appears with its labels, and agent names
//! beyond `graphs.max_metric_labels` share the `other` series.

mod support;

use std::path::Path;

use convergio_agents::{ExampleAgent, RunningAgent, ServeOptions};
use serde_json::json;
use support::{admin_token, start_logged, Server};

/// Starts one example agent in this process on a loopback port.
async fn spawn_agent(agent: ExampleAgent) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    convergio_agents::spawn(agent, listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

/// Registers `agent`'s card as the administrator.
async fn register(server: &Server, data_dir: &Path, agent: &RunningAgent) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/agents", server.base))
        .bearer_auth(admin_token(data_dir))
        .json(&agent.card())
        .send()
        .await
        .expect("registers");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

/// One A2A JSON-RPC call to `agent` as the administrator: status, body text.
async fn call(server: &Server, data_dir: &Path, agent: &str, method: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/agents/{agent}", server.base))
        .bearer_auth(admin_token(data_dir))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {
            "message": {"messageId": uuid_like(), "role": "ROLE_USER",
                "parts": [{"text": "count me"}]}}}),
        )
        .send()
        .await
        .expect("call");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("m{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// The value of the series `line_prefix` (the name and labels), if shown.
fn value_of(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_gateway_family_appears_after_matching_traffic_with_agents_folded() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    // Two agent names get series of their own; two calls per agent, then
    // the quota refuses.
    std::fs::write(
        &config,
        "version: 1\ngraphs:\n  max_metric_labels: 2\nquotas:\n  per_agent: { per_second: 0.001, burst: 2 }\n",
    )
    .expect("config");
    let stderr = data_dir.path().join("stderr.log");
    let config_flag = config.to_string_lossy().into_owned();
    let server = start_logged(
        data_dir.path(),
        &["--no-examples", "--config", &config_flag],
        &[],
        &stderr,
    );
    let dir = data_dir.path();
    let echo = spawn_agent(ExampleAgent::Echo).await;
    let summarizer = spawn_agent(ExampleAgent::Summarizer).await;
    let planner = spawn_agent(ExampleAgent::Planner).await;
    for agent in [&echo, &summarizer, &planner] {
        register(&server, dir, agent).await;
    }

    // echo: one call, one stream, then the quota refuses.
    assert_eq!(call(&server, dir, "echo", "SendMessage").await.0, 200);
    let (status, stream) = call(&server, dir, "echo", "SendStreamingMessage").await;
    assert_eq!(status, 200, "{stream}");
    assert!(stream.contains("data:"), "{stream}");
    let (status, refused) = call(&server, dir, "echo", "SendMessage").await;
    assert_eq!(status, 429, "{refused}");
    // summarizer takes the second agent label; planner folds into `other`,
    // once answered and once unreachable.
    assert_eq!(call(&server, dir, "summarizer", "SendMessage").await.0, 200);
    assert_eq!(call(&server, dir, "planner", "SendMessage").await.0, 200);
    planner.shutdown().await;
    let (_, unreachable) = call(&server, dir, "planner", "SendMessage").await;
    assert!(unreachable.contains("error"), "{unreachable}");

    // An anonymous scrape is denied by policy (a decision counted), the
    // administrator's is served.
    let anonymous = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("scrape");
    assert_eq!(anonymous.status(), 403);
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(admin_token(dir))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("metrics text");

    let expect = |series: &str, value: f64| {
        assert_eq!(value_of(&text, series), Some(value), "{series} in:\n{text}");
    };
    expect(
        "convergio_http_requests_total{route=\"a2a\",method=\"POST\",agent=\"echo\",status=\"200\"}",
        2.0,
    );
    expect(
        "convergio_http_requests_total{route=\"a2a\",method=\"POST\",agent=\"echo\",status=\"429\"}",
        1.0,
    );
    expect(
        "convergio_http_requests_total{route=\"a2a\",method=\"POST\",agent=\"summarizer\",status=\"200\"}",
        1.0,
    );
    expect(
        "convergio_http_requests_total{route=\"metrics\",method=\"GET\",agent=\"\",status=\"403\"}",
        1.0,
    );
    expect(
        "convergio_http_request_duration_seconds_count{route=\"a2a\",method=\"POST\"}",
        6.0,
    );
    expect(
        "convergio_upstream_errors_total{agent=\"other\",kind=\"unreachable\"}",
        1.0,
    );
    expect("convergio_quota_refusals_total{agent=\"echo\"}", 1.0);
    expect(
        "convergio_policy_decisions_total{action=\"read_metrics\",decision=\"deny\"}",
        1.0,
    );
    expect(
        "convergio_policy_decisions_total{action=\"stream\",decision=\"allow\"}",
        1.0,
    );
    expect("convergio_upstream_circuit_open{agent=\"echo\"}", 0.0);
    expect("convergio_sse_streams_open", 0.0);
    assert!(
        !text.contains("agent=\"planner\""),
        "planner not folded:\n{text}"
    );
    for series in [
        "convergio_audit_queue_depth ",
        "convergio_db_pool_connections{state=\"in_use\"} ",
        "convergio_db_pool_connections{state=\"idle\"} ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "convergio_http_request_duration_seconds_bucket{route=\"a2a\",method=\"POST\",le=\"0.001\"} ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    let rss = value_of(&text, "process_resident_memory_bytes").expect("rss");
    assert!(rss > 1_000_000.0, "rss {rss}");
    echo.shutdown().await;
    summarizer.shutdown().await;
}
