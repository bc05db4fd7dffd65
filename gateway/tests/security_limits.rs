//! Abuse that must not take the gateway down (issue 4): oversized and
//! deeply nested bodies, huge headers, a client dripping one byte at a
//! time, 10,000 idle connections, connections beyond the bound, and a flood
//! beyond an upstream's concurrency bound — each gets its clear error while
//! a well-behaved client running alongside keeps getting correct answers.
//! Also: plaintext serves both HTTP/1 and h2c with prior knowledge, and
//! connections can be served thread-per-core.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::security::{spawn_secure_gateway, Issuer, SecureGateway, SecureOptions};
use support::{send_params, spawn_fake, FakeMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A well-behaved caller: asks who it is and expects the right answer.
async fn well_behaved(gateway: &SecureGateway, issuer: &Issuer) {
    let response = gateway
        .gateway
        .http
        .get(gateway.gateway.url("/whoami"))
        .bearer_auth(issuer.token("carol", "acme.example"))
        .send()
        .await
        .expect("well-behaved request");
    assert_eq!(response.status(), 200);
    let principal: Value = response.json().await.expect("json");
    assert_eq!(principal["subject"], "carol");
}

/// Reads until the peer closes (or `limit` bytes), returning what came.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer).await;
    String::from_utf8_lossy(&buffer).into_owned()
}

#[tokio::test]
async fn oversized_and_deeply_nested_bodies_are_refused() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.limits.max_body_bytes = 64 * 1024;
    let gateway = spawn_secure_gateway(options).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("echo", fake.card());
    let token = issuer.token("alice", "acme.example");

    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params(&"x".repeat(128 * 1024))});
    let response = gateway
        .gateway
        .http
        .post(gateway.gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .bearer_auth(&token)
        .json(&big)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);

    let depth = 20_000;
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{{"message":{{"messageId":"m","role":"ROLE_USER","parts":[{{"data":{}{}}}]}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let response = gateway
        .gateway
        .http
        .post(gateway.gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(nested.clone())
        .send()
        .await
        .expect("send");
    let body: Value = response.json().await.expect("json-rpc error");
    assert!(
        [-32700, -32600].contains(&body["error"]["code"].as_i64().unwrap_or_default()),
        "{body}"
    );
    let response = gateway
        .gateway
        .http
        .post(gateway.gateway.url("/agents/echo/message:send"))
        .header("A2A-Version", "1.0")
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(nested)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert_eq!(
        fake.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    well_behaved(&gateway, &issuer).await;
}

#[tokio::test]
async fn huge_headers_get_431() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.server.max_header_bytes = 16 * 1024;
    let gateway = spawn_secure_gateway(options).await;
    let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(problem_body(&answer)["status"], 431);
    well_behaved(&gateway, &issuer).await;
}

/// The problem document after an answer's head.
fn problem_body(answer: &str) -> Value {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    serde_json::from_str(body).expect("a problem document")
}

// Regression: issue #15, defect 12
#[tokio::test]
async fn over_limit_heads_get_a_problem_body() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.server.max_header_bytes = 256 * 1024;
    let gateway = spawn_secure_gateway(options).await;

    let too_many: String = (0..150).map(|index| format!("x-h{index}: v\r\n")).collect();
    let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{too_many}\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(problem_body(&answer)["kind"], "headers_too_large");

    let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
    let request = format!(
        "GET /healthz?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert_eq!(problem_body(&answer)["status"], 414);
    well_behaved(&gateway, &issuer).await;
}

#[tokio::test]
async fn a_client_dripping_one_byte_at_a_time_is_cut_off() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.server.header_read_timeout = Duration::from_millis(500);
    let gateway = spawn_secure_gateway(options).await;
    let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
    let request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // The client's pace is the behaviour under test: one byte per 100 ms
    // takes ~10 s for the head, far beyond the 500 ms header timeout.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut cut_off = false;
    for byte in request.iter() {
        pace.tick().await;
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(read)) => {
                let answer = String::from_utf8_lossy(&probe[..read]).into_owned();
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut_off, "the slow client was served instead of cut off");
    well_behaved(&gateway, &issuer).await;
}

#[tokio::test]
async fn ten_thousand_idle_connections_do_not_starve_a_well_behaved_client() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.server.max_connections = 12_000;
    options.server.header_read_timeout = Duration::from_secs(120);
    let gateway = spawn_secure_gateway(options).await;
    // The idle clients live in another process: 10,000 sockets on each side
    // would not fit one process's descriptor limit.
    let script = r#"
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    held.append(s)
print("ready", len(held), flush=True)
sys.stdin.read()
"#;
    let mut holder = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(gateway.address.port().to_string())
        .arg("10000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 for the idle connections");
    let stdout = holder.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("holder output");
    assert_eq!(line.trim(), "ready 10000");
    for _ in 0..20 {
        well_behaved(&gateway, &issuer).await;
    }
    drop(holder.stdin.take());
    let _ = holder.wait().await;
}

#[tokio::test]
async fn connections_beyond_the_bound_get_503() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.server.max_connections = 4;
    let gateway = spawn_secure_gateway(options).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
        // A first byte, so each really holds a served connection.
        stream.write_all(b"G").await.expect("write");
        held.push(stream);
    }
    // The server takes the slots asynchronously: keep knocking until the
    // fifth connection is the one refused.
    let mut refused = String::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).await.unwrap_or_default();
        refused = String::from_utf8_lossy(&answer[..read]).into_owned();
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after"));
    drop(held);
}

#[tokio::test]
async fn a_flood_beyond_an_upstreams_bound_gets_503_while_others_keep_working() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.a2a.upstream_concurrency = 4;
    options.a2a.upstream_timeout = Duration::from_secs(30);
    let gateway = spawn_secure_gateway(options).await;
    let slow = spawn_fake(FakeMode::V1).await;
    let healthy = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("slow", slow.card());
    gateway.gateway.register("healthy", healthy.card());
    let token = issuer.token("mallory", "evil.example");

    let send = |agent: &'static str, text: &'static str| {
        let http = gateway.gateway.http.clone();
        let url = gateway.gateway.url(&format!("/agents/{agent}"));
        let token = token.clone();
        async move {
            http.post(url)
                .header("A2A-Version", "1.0")
                .bearer_auth(token)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params(text)}))
                .send()
                .await
        }
    };
    let hanging: Vec<_> = (0..4).map(|_| tokio::spawn(send("slow", "hang"))).collect();
    support::eventually(|| {
        slow.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 4
    })
    .await;
    let mut shed = 0;
    for _ in 0..16 {
        let response = send("slow", "hang").await.expect("flood request");
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
            shed += 1;
        }
    }
    assert_eq!(shed, 16, "every call beyond the bound is shed, none queued");
    let response = send("healthy", "hello").await.expect("healthy request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body["result"].is_object(), "{body}");
    well_behaved(&gateway, &issuer).await;
    for task in hanging {
        task.abort();
    }
}

#[tokio::test]
async fn an_unreachable_upstream_opens_its_circuit_and_gets_a_fast_503() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.a2a.breaker_failures = 3;
    options.a2a.breaker_cooldown = Duration::from_secs(3600);
    let gateway = spawn_secure_gateway(options).await;
    // A port that was just free: connecting is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    let healthy = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register(
        "gone",
        json!({"name": "gone", "description": "down", "version": "1",
               "supportedInterfaces": [{"url": format!("http://{closed}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
               "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": []}),
    );
    gateway.gateway.register("healthy", healthy.card());
    let token = issuer.token("alice", "acme.example");
    let call = |agent: &str, method: &str, params: Value| {
        gateway
            .gateway
            .http
            .post(gateway.gateway.url(&format!("/agents/{agent}")))
            .header("A2A-Version", "1.0")
            .bearer_auth(&token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
    };
    for _ in 0..3 {
        let response = call("gone", "ListTasks", json!({})).await.expect("call");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], -32006, "unreachable: {body}");
    }
    let response = call("gone", "ListTasks", json!({})).await.expect("call");
    assert_eq!(response.status(), 503, "the circuit is open");
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["error"]["data"][0]["reason"], "UPSTREAM_UNAVAILABLE",
        "{body}"
    );
    let response = call("healthy", "SendMessage", send_params("hi"))
        .await
        .expect("call");
    assert_eq!(response.status(), 200, "other upstreams are unaffected");
}

#[tokio::test]
async fn plaintext_serves_http1_and_h2c_prior_knowledge() {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let token = issuer.token("carol", "acme.example");

    // h2c with prior knowledge: the preface picks HTTP/2.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("http://{}/whoami", gateway.address))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = client.request(request).await.expect("h2c answer");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), 200);

    // HTTP/1 whose first bytes look like the preface ("P…"), sent in two
    // pieces so the first peek sees only them: still served as HTTP/1.
    let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
    stream.write_all(b"P").await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rest = format!(
        "UT /whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

    // Plain HTTP/1 (the direct path) keeps working alongside.
    well_behaved(&gateway, &issuer).await;
}

/// Thread-per-core serving (issue #25): with `serve_threads`, connections
/// are served on those threads in turn, over HTTP/1 and h2c, and a request
/// in flight when shutdown begins still completes.
#[tokio::test]
async fn serve_threads_take_connections_in_turn_and_drain_on_shutdown() {
    use axum::routing::get;
    use convergio_gateway::server::{serve_with, ServerConfig};

    let router = axum::Router::new()
        .route(
            "/thread",
            get(|| async { std::thread::current().name().unwrap_or_default().to_owned() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        serve_threads: 2,
        ..ServerConfig::default()
    };
    let server = tokio::spawn(serve_with(listener, router, config, None, async {
        let _ = stopped.await;
    }));
    let url = |path: &str| format!("http://{address}{path}");

    // Each fresh client opens its own connection; the threads take turns.
    let mut threads = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let answer = reqwest::Client::new()
            .get(url("/thread"))
            .send()
            .await
            .expect("an answer");
        threads.insert(answer.text().await.expect("body"));
    }
    let expected: std::collections::BTreeSet<String> = ["convergio-serve-0", "convergio-serve-1"]
        .map(str::to_owned)
        .into();
    assert_eq!(threads, expected);

    // h2c with prior knowledge is served there too.
    let h2c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(url("/thread"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let answer = h2c.request(request).await.expect("h2c answer");
    assert_eq!(answer.version(), hyper::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert!(body.starts_with(b"convergio-serve-"), "{body:?}");

    // Shutdown waits for the request in flight.
    let slow = tokio::spawn(reqwest::get(url("/slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).expect("the server listens for the stop");
    let slow = slow
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(slow.text().await.expect("body"), "done");
    server
        .await
        .expect("server task")
        .expect("the server stops cleanly");
    assert!(
        TcpStream::connect(address).await.is_err(),
        "the listener is closed"
    );
}
