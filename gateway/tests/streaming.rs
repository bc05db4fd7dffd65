//! Streaming guarantees that need a real stateful upstream: two subscribers
//! to one task, relayed through the gateway, see the same event sequence (the
//! upstream is the real `echo` example agent, whose task store broadcasts
//! every event to every subscriber); and a client that goes away mid-stream
//! makes the gateway drop its upstream request, so no upstream work is left
//! running for nobody (issue #3).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use convergio_agents::{ExampleAgent, ServeOptions};
use convergio_gateway::a2a::{A2aConfig, SseParser, StreamEventStore};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use support::{spawn_gateway, sse_events};

/// Opens `SubscribeToTask` for `task_id` on the JSON-RPC binding as `alice`.
async fn subscribe(gateway: &support::Gateway, task_id: &str) -> reqwest::Response {
    gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .json(
            &json!({"jsonrpc": "2.0", "id": 7, "method": "SubscribeToTask",
                      "params": {"id": task_id}}),
        )
        .send()
        .await
        .expect("subscribe")
}

#[tokio::test]
async fn two_subscribers_through_the_gateway_see_the_same_sequence() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let echo = convergio_agents::spawn(ExampleAgent::Echo, listener, ServeOptions::default())
        .await
        .expect("echo agent");
    let gateway = spawn_gateway().await;
    gateway.register("echo", echo.card());

    // The task stays WORKING for a while, so both subscriptions are open
    // before anything else happens to it.
    let mut params = support::send_params("sleep:1500 hello");
    params["configuration"] = json!({"returnImmediately": true});
    let sent = gateway.rpc("echo", "alice", "SendMessage", params).await;
    let task_id = sent["result"]["task"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {sent}"))
        .to_owned();

    let (first, second) =
        tokio::join!(subscribe(&gateway, &task_id), subscribe(&gateway, &task_id));
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    assert_eq!(second.headers()["content-type"], "text/event-stream");
    let (first, second) = tokio::join!(sse_events(first), sse_events(second));

    let results = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .map(|event| event["result"].clone())
            .collect()
    };
    let (first, second) = (results(first), results(second));
    assert!(
        first.len() >= 2,
        "a snapshot then at least the final event: {first:?}"
    );
    assert_eq!(first, second, "both subscribers see one sequence");
    let last = first.last().expect("events");
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "the stream ends with the terminal state: {last}"
    );
    echo.shutdown().await;
}

/// Fires its sender when dropped: the upstream's response stream owns one,
/// so the test learns when the upstream stopped serving.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

/// An upstream whose streams send one event and then stay open, holding a
/// [`DropSignal`] until hyper drops the body.
async fn spawn_endless_upstream(signals: Arc<Mutex<Vec<oneshot::Sender<()>>>>) -> String {
    let app = Router::new().route(
        "/",
        post(move |body: Bytes| {
            let signals = signals.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = request["id"].clone();
                let signal = DropSignal(signals.lock().expect("lock").pop());
                let stream = async_stream::stream! {
                    let _signal = signal;
                    let event = json!({"jsonrpc": "2.0", "id": id, "result": {"statusUpdate": {
                        "taskId": "endless", "contextId": "c",
                        "status": {"state": "TASK_STATE_WORKING"}}}});
                    yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {event}\n\n")));
                    futures_util::future::pending::<()>().await;
                };
                let mut response = Response::new(Body::from_stream(stream));
                response.headers_mut().insert(
                    "content-type",
                    "text/event-stream".parse().expect("static header"),
                );
                response
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/")
}

/// Registers the endless `upstream` on `gateway` and opens a stream to it.
async fn stream_endless(gateway: &support::Gateway, upstream: &str) -> reqwest::Response {
    gateway.register(
        "endless",
        json!({"name": "endless", "description": "never finishes", "version": "1",
               "supportedInterfaces": [{"url": upstream, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
               "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
               "defaultOutputModes": ["text/plain"], "skills": []}),
    );
    gateway
        .http
        .post(gateway.url("/agents/endless"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
                      "params": support::send_params("forever")}),
        )
        .send()
        .await
        .expect("stream")
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_stream() {
    let (dropped_sender, dropped) = oneshot::channel();
    let signals = Arc::new(Mutex::new(vec![dropped_sender]));
    let upstream = spawn_endless_upstream(signals).await;
    let gateway = spawn_gateway().await;
    let response = stream_endless(&gateway, &upstream).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // Read until the first event has been relayed, so the upstream stream
    // is known to be live end to end.
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new();
    let mut first = None;
    while first.is_none() {
        let chunk = body
            .next()
            .await
            .expect("an event before the stream ends")
            .expect("chunk");
        first = parser.push(&chunk).into_iter().next();
    }
    let first: Value = serde_json::from_str(&first.expect("event")).expect("event json");
    assert_eq!(
        first["result"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_WORKING"
    );

    // The client goes away: reqwest closes the connection when the body
    // and its client are dropped.
    drop(body);
    drop(gateway);
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the upstream stream is dropped once the client is gone")
        .expect("signal sent");
}

/// Issue 24: a recorded stream is read on after its caller leaves (so a
/// resume gets every event), but not forever: once the caller has been
/// gone `max_upstream_timeout`, the upstream is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_stream_outlives_its_caller_for_a_bounded_time() {
    let place = convergio_tests::db::TestPlace::sqlite();
    let db = convergio_store::Db::open(place.url(), &convergio_store::DbConfig::default())
        .await
        .expect("the database opens");
    let log = Arc::new(convergio_store::registry::StreamEvents::new(&db));
    let (dropped_sender, mut dropped) = oneshot::channel();
    let upstream = spawn_endless_upstream(Arc::new(Mutex::new(vec![dropped_sender]))).await;
    let gateway = support::spawn_gateway_recording(
        A2aConfig {
            upstream_timeout: Duration::from_millis(1500),
            max_upstream_timeout: Duration::from_secs(2),
            upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
            ..A2aConfig::default()
        },
        log.clone(),
    )
    .await;
    let response = stream_endless(&gateway, &upstream).await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = body.next().await.expect("an event").expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with("id: 1\n"),
        "the event carries its id: {seen:?}"
    );
    assert_eq!(log.last_seq("endless").await.expect("recorded"), 1);
    drop(body);
    drop(gateway);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut dropped)
            .await
            .is_err(),
        "a recorded stream is read on after its caller left"
    );
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the upstream is dropped once the caller has been gone the bound")
        .expect("signal sent");
}
