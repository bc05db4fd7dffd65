//! Gateway benchmark (not a timed test; run `cargo bench -p convergio-gateway
//! --bench gateway`). One invocation starts a minimal Rust A2A upstream (an
//! axum handler) and the gateway, each in a CHILD process (this binary
//! re-executed with `CONVERGIO_BENCH_ROLE=upstream` or `=gateway`; the
//! gateway routes through a SQLite registry, as `convergio serve` does), and
//! a hyper load generator here, then prints direct vs through-gateway figures:
//! - SendMessage with a 1 KB text part: throughput, p50/p99 at concurrency
//!   1, 32 and 256 (closed loop, fixed duration);
//! - added latency at a fixed 2,000 req/s (open loop; tokio's timer has 1 ms
//!   resolution, so requests leave in small bursts that average the rate).
//!   Direct and gateway runs alternate in 250 ms windows, so a stall of the
//!   shared machine lands in both samples instead of deciding the
//!   difference of two p99s taken seconds apart;
//! - gateway CPU per proxied request: the child's utime+stime from
//!   /proc/<pid>/stat (clock ticks, assumed 100 Hz) over a run, divided by the
//!   requests it served — the load generator and upstream are not counted —
//!   beside the upstream's own CPU per request in the direct run: what a bare
//!   axum server costs on this machine, the yardstick for the gateway, which
//!   is a server and a client in one;
//! - 1,000 concurrent SSE streams (5 events each, 400 ms apart) through the
//!   gateway: per-event latency (upstream send → client receipt) and the
//!   gateway's VmRSS while all streams are open;
//! - 10,000 idle keep-alive connections (one answered request each, then
//!   silent): the gateway's VmRSS while all are held.
//!
//! - authentication modes side by side (issue 4): a gateway child per mode —
//!   off (plaintext, no checks), JWT (plaintext, an Ed25519 bearer token whose
//!   key is cached) and mTLS (TLS 1.3 with a client certificate) — each
//!   driven by 32 keep-alive connections for 2 s; CPU per request and
//!   latency, and the JWT and mTLS cost over off. `CONVERGIO_BENCH_ONLY=auth`
//!   runs just this part.
//!
//! - federation (issue 6): a signed cross-organisation call vs an internal
//!   one, and sign + verify + replay check alone, p50/p99 side by side.
//!   `CONVERGIO_BENCH_ONLY=federation` runs just this part.
//!
//! - policy off vs on (issue 5): authorise and audit every call, side by
//!   side; `CONVERGIO_BENCH_ONLY=policy` runs just this part.
//!
//! - `CONVERGIO_BENCH_ONLY=streams` runs only the streams part, after a load
//!   phase, and prints the memory each open stream costs the gateway.
//!
//! - `CONVERGIO_BENCH_ONLY=neighbour` (issue #25): small SendMessages at a
//!   steady rate, alone, beside one connection posting a ~1 MB one every
//!   25 ms and beside one posting them back to back, through a child on the
//!   default runtime and one serving thread-per-core: the latency large
//!   calls cost the calls that share their thread.
//!
//! - `CONVERGIO_BENCH_AUDIT=off` builds the policy children without an audit
//!   log, so the yardstick shows what the audit costs (issue #25).
//!
//! - `CONVERGIO_BENCH_ONLY=main` stops after the first part (the SendMessage
//!   table, fixed rate and streams); `CONVERGIO_BENCH_RUNTIME=current` or
//!   `multi1` runs the gateway child on a current-thread or one-worker tokio
//!   runtime instead of the default multi-thread one, and `percore` serves
//!   its connections thread-per-core (`ServerConfig::serve_threads`, one
//!   per core), to compare schedulers.
//!
//! Targets (issue #25): CPU per request with an API key and the shipped
//! policies <= 4x nginx's and <= 1.25x policy off (the yardstick), added p50
//! <= 150 us and p99 <= 500 us at 2,000 req/s, RSS <= 64 MB with 1,000
//! streams and <= 256 MB with 10,000 idle connections; JWT verification
//! <= 10 us CPU per request.
//! Figures depend on the machine and its load.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use convergio_auth::{JwtConfig, KeySet, MtlsConfig};
use convergio_gateway::a2a::{
    a2a_router, A2aConfig, A2aState, InMemoryRoutes, RouteTarget, SseParser,
};
use convergio_gateway::api_keys::{IssueRequest, StoredApiKeys};
use convergio_gateway::layers::{
    with_layers_auth, AuthenticateConfig, Authenticator, JwksSource, JwtAuthConfig, LimitsConfig,
};
use convergio_gateway::server::{serve_with, ServerConfig};
use convergio_gateway::tls::{ClientAuth, TlsAcceptor, TlsConfig};
use convergio_gateway::with_layers;
use convergio_gateway::RegistryRoutes;
use convergio_registry::{Registration, Registry, RegistryConfig};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ROLE_ENV: &str = "CONVERGIO_BENCH_ROLE";
const AUTH_ENV: &str = "CONVERGIO_BENCH_AUTH";
const JWKS_ENV: &str = "CONVERGIO_BENCH_JWKS";
const ONLY_ENV: &str = "CONVERGIO_BENCH_ONLY";
const UPSTREAM_ENV: &str = "CONVERGIO_BENCH_UPSTREAM";
const RUNTIME_ENV: &str = "CONVERGIO_BENCH_RUNTIME";
/// A command prefix the `streams` part runs its gateway child under.
const WRAP_ENV: &str = "CONVERGIO_BENCH_WRAP";
/// Set in a child that must exit (cleanly) when its stdin closes.
const EXIT_ON_EOF_ENV: &str = "CONVERGIO_BENCH_EXIT_ON_EOF";
/// The organisation of the bench agent and of the API key and JWT callers,
/// so the shipped `internal-same-org` policy admits them.
const BENCH_ORG: &str = "convergio.local";
const STREAMS: usize = 1000;
const EVENTS_PER_STREAM: usize = 5;
const EVENT_INTERVAL: Duration = Duration::from_millis(400);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Wall-clock microseconds: the upstream child stamps events with it and
/// the load generator reads them, so it must be one clock across processes.
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros() as u64)
        .unwrap_or_default()
}

// The `convergio` binary's allocator, so the child costs what the product does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("upstream") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(run_upstream_child());
        return;
    }
    if std::env::var(ROLE_ENV).as_deref() == Ok("gateway") {
        let runtime = match std::env::var(RUNTIME_ENV).as_deref() {
            Ok("current") => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Ok("multi1") | Ok("percore") => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
        .expect("tokio runtime");
        runtime.block_on(run_gateway_child());
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

/// The upstream child: [`upstream_handler`] on a loopback port.
async fn run_upstream_child() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    println!("PORT {}", listener.local_addr().expect("address").port());
    let upstream = Router::new().route("/", post(upstream_handler));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, upstream).await;
}

/// Where a child keeps its databases (left behind: the child is killed).
fn child_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("convergio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench data dir");
    dir
}

/// The child: the gateway with one agent, registered in a SQLite registry
/// and routed through it, as `convergio serve` routes.
async fn run_gateway_child() {
    let upstream = std::env::var(UPSTREAM_ENV).expect("upstream url in the environment");
    let url = format!(
        "sqlite://{}?mode=rwc",
        child_dir().join("registry.db").display()
    );
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    if std::env::var(EXIT_ON_EOF_ENV).is_ok() {
        // The profile's child ends cleanly (callgrind writes its counts at
        // exit, not on SIGKILL) once the parent closes its stdin.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let registry = Registry::new(
        agents,
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    registry
        .upsert_system(Registration {
            name: Some("bench".to_owned()),
            org: None,
            role: None,
            card: json!({"name": "bench", "description": "bench upstream", "version": "1",
                "supportedInterfaces": [{"url": upstream, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
                "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
                "defaultOutputModes": ["text/plain"],
                "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["bench"]}]}),
            upstreams: None,
            trust: None,
        })
        .await
        .expect("bench agent registers");
    let routes = Arc::new(RegistryRoutes::new(registry));
    let limits = LimitsConfig {
        max_concurrency: 8192,
        ..LimitsConfig::default()
    };
    let config = A2aConfig {
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    let state = policy_gate(A2aState::new(routes, config)).await;
    let router = a2a_router(state);
    let auth = std::env::var(AUTH_ENV).unwrap_or_default();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let port = listener.local_addr().expect("address").port();
    // Every mode runs the product's own accept loop (`serve_with`, which
    // sets TCP_NODELAY and the connection bounds), so the modes differ only
    // in authentication.
    if auth.is_empty() {
        let app = with_layers(router, &limits);
        println!("PORT {port}");
        let _ = serve_with(listener, app, server_config(), None, std::future::pending()).await;
        return;
    }
    let mut api_key = None;
    let (config, tls) = match auth.as_str() {
        "api_key" => {
            let keys = Arc::new(StoredApiKeys::new(Arc::new(
                convergio_store::registry::ApiKeys::new(&db),
            )));
            let issued = keys
                .issue(&IssueRequest {
                    subject: "bench".to_owned(),
                    org: Some(BENCH_ORG.to_owned()),
                    scopes: Vec::new(),
                    ttl_seconds: None,
                })
                .await
                .expect("bench api key");
            api_key = Some(issued.key);
            (
                AuthenticateConfig {
                    api_keys: Some(keys),
                    ..AuthenticateConfig::default()
                },
                None,
            )
        }
        "jwt" => {
            let jwks = std::env::var(JWKS_ENV).expect("jwks in the environment");
            let jwt = JwtAuthConfig::new(
                JwtConfig {
                    issuer: BENCH_ISSUER.to_owned(),
                    audience: BENCH_AUDIENCE.to_owned(),
                    ..JwtConfig::default()
                },
                JwksSource::Static(KeySet::from_jwks(&jwks).expect("jwks")),
            );
            (
                AuthenticateConfig {
                    jwt: Some(jwt),
                    ..AuthenticateConfig::default()
                },
                None,
            )
        }
        "mtls" => (
            AuthenticateConfig {
                mtls: Some(MtlsConfig::default()),
                ..AuthenticateConfig::default()
            },
            Some(
                TlsAcceptor::from_config(&TlsConfig {
                    cert_file: fixture("server.pem"),
                    key_file: fixture("server.key"),
                    client_ca_file: Some(fixture("ca.pem")),
                    client_auth: ClientAuth::Required,
                })
                .expect("tls"),
            ),
        ),
        _ => (AuthenticateConfig::anonymous(), None),
    };
    let authenticator = Authenticator::new(config).await.expect("authenticator");
    let app = with_layers_auth(router, &limits, Arc::new(authenticator));
    match api_key {
        Some(key) => println!("PORT {port} KEY {key}"),
        None => println!("PORT {port}"),
    }
    let _ = serve_with(listener, app, server_config(), tls, std::future::pending()).await;
}

/// The child's accept loop settings: `CONVERGIO_BENCH_RUNTIME=percore`
/// serves connections on one single-threaded runtime per core (the
/// database and background tasks stay on a one-worker runtime).
fn server_config() -> ServerConfig {
    let serve_threads = match std::env::var(RUNTIME_ENV).as_deref() {
        Ok("percore") => std::thread::available_parallelism().map_or(1, usize::from),
        _ => 0,
    };
    ServerConfig {
        serve_threads,
        ..ServerConfig::default()
    }
}

/// The upstream: SendMessage answers a Message echoing the parts;
/// SendStreamingMessage streams status updates stamped with their send time.
async fn upstream_handler(body: Bytes) -> Response<Body> {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    if request["method"] == "SendStreamingMessage" {
        let task_id = uuid::Uuid::new_v4().to_string();
        let stream = async_stream::stream! {
            for index in 0..EVENTS_PER_STREAM {
                if index > 0 {
                    tokio::time::sleep(EVENT_INTERVAL).await;
                }
                let state = if index + 1 == EVENTS_PER_STREAM { "TASK_STATE_COMPLETED" } else { "TASK_STATE_WORKING" };
                let event = json!({"jsonrpc": "2.0", "id": id, "result": {"statusUpdate": {
                    "taskId": task_id, "contextId": "c", "status": {"state": state},
                    "metadata": {"sentAtMicros": now_micros()}}}});
                yield Ok::<_, Infallible>(Bytes::from(format!("data: {event}\n\n")));
            }
        };
        let mut response = Response::new(Body::from_stream(stream));
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("static"));
        return response;
    }
    let parts = request["params"]["message"]["parts"].clone();
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"message": {
        "messageId": "reply", "role": "ROLE_AGENT", "parts": parts}}});
    let mut response = Response::new(Body::from(answer.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    response
}

struct BenchChild {
    child: Child,
    port: u16,
    /// The API key the child issued itself (auth mode `api_key`).
    api_key: Option<String>,
}

impl BenchChild {
    fn spawn(upstream_url: &str) -> Self {
        Self::spawn_with(upstream_url, &[])
    }

    /// The gateway child with `settings` (environment pairs: auth mode,
    /// JWKS, policy) on top of its upstream.
    fn spawn_with(upstream_url: &str, settings: &[(&str, &str)]) -> Self {
        let mut settings = settings.to_vec();
        settings.push((UPSTREAM_ENV, upstream_url));
        Self::spawn_role("gateway", &settings)
    }

    /// The upstream server in a process of its own.
    fn spawn_upstream() -> Self {
        Self::spawn_role("upstream", &[])
    }

    fn spawn_role(role: &str, settings: &[(&str, &str)]) -> Self {
        Self::spawn_wrapped(role, settings, &[])
    }

    /// The child run under `wrapper` (a command prefix such as `taskset -c
    /// 1` or valgrind), when not empty. Its stdin is a pipe the parent holds
    /// (closing it ends a child started with [`EXIT_ON_EOF_ENV`]).
    fn spawn_wrapped(role: &str, settings: &[(&str, &str)], wrapper: &[String]) -> Self {
        let own = std::env::current_exe().expect("own path");
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(own);
                command
            }
            None => Command::new(own),
        };
        let mut child = command
            .env(ROLE_ENV, role)
            .envs(settings.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the gateway child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the port line");
        // `PORT <port>`, then `KEY <api key>` when the child issued one.
        let words: Vec<&str> = line.split_whitespace().collect();
        let port = match words.as_slice() {
            ["PORT", port, ..] => port.parse().ok(),
            _ => None,
        }
        .expect("PORT line");
        let api_key = match words.as_slice() {
            [_, _, "KEY", key] => Some((*key).to_owned()),
            _ => None,
        };
        Self {
            child,
            port,
            api_key,
        }
    }

    /// Closes the child's stdin and waits up to `bound` for it to exit;
    /// whether it did.
    fn close_and_wait(&mut self, bound: Duration) -> bool {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// utime + stime in seconds.
    fn cpu_seconds(&self) -> f64 {
        convergio_tests::proc::cpu_seconds(self.child.id())
    }

    fn rss_megabytes(&self) -> f64 {
        convergio_tests::proc::rss_megabytes(self.child.id())
    }
}

impl Drop for BenchChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(2048)
        .build(connector)
}

/// The bench's SendMessage: a 1 KB text part.
fn send_body(id: usize) -> Bytes {
    message_body(id, 1024)
}

/// A SendMessage whose one text part is `text` bytes long.
fn message_body(id: usize, text: usize) -> Bytes {
    let text = "x".repeat(text);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "SendMessage", "params": {"message": {
        "messageId": format!("m{id}"), "role": "ROLE_USER", "parts": [{"text": text}]}}});
    Bytes::from(body.to_string())
}

/// One SendMessage; `None` when it failed (counted, not timed).
async fn send_one(client: &HttpClient, uri: &str, body: Bytes) -> Option<Duration> {
    let started = Instant::now();
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .header("A2A-Version", "1.0")
        .body(Full::new(body))
        .expect("request");
    let response = client.request(request).await.ok()?;
    let ok = response.status().is_success();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let is_result = bytes.windows(8).any(|window| window == b"\"result\"");
    if !(ok && is_result) {
        static REPORTED: std::sync::Once = std::sync::Once::new();
        REPORTED
            .call_once(|| eprintln!("first failed request: {}", String::from_utf8_lossy(&bytes)));
        return None;
    }
    Some(started.elapsed())
}

struct Run {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
}

impl Run {
    fn new(outcomes: Vec<Option<Duration>>, elapsed: Duration) -> Self {
        let failures = outcomes.iter().filter(|outcome| outcome.is_none()).count();
        let mut latencies: Vec<Duration> = outcomes.into_iter().flatten().collect();
        latencies.sort();
        Self {
            latencies,
            failures,
            elapsed,
        }
    }

    fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies[index]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Closed loop: `concurrency` workers send back to back for `duration`.
async fn closed_loop(
    client: &HttpClient,
    uri: &str,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let started = Instant::now();
    let deadline = started + duration;
    let body = send_body(1);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let uri = uri.to_owned();
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                latencies.push(send_one(&client, &uri, body.clone()).await);
            }
            latencies
        }));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }
    Run::new(outcomes, started.elapsed())
}

/// Open loop at `rate` requests per second, alternating between `direct`
/// and `gateway` every `window` for `rounds` windows each, so both see the
/// same moments of a noisy machine; returns the direct run, the gateway run
/// and the gateway's CPU seconds during its own windows.
async fn fixed_rate_interleaved(
    client: &HttpClient,
    direct: &str,
    gateway: (&str, &BenchChild),
    rate: u64,
    window: Duration,
    rounds: usize,
) -> (Run, Run, f64) {
    let (gateway_uri, gateway_child) = gateway;
    let body = send_body(2);
    let per_window = (rate as f64 * window.as_secs_f64()) as usize;
    let mut handles = [Vec::new(), Vec::new()];
    let mut elapsed = [Duration::ZERO, Duration::ZERO];
    let mut gateway_cpu = 0.0;
    for round in 0..rounds * 2 {
        let side = round % 2;
        let uri = if side == 0 { direct } else { gateway_uri };
        let cpu_before = gateway_child.cpu_seconds();
        let started = Instant::now();
        for index in 0..per_window {
            let due = started + Duration::from_secs_f64(index as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let client = client.clone();
            let uri = uri.to_owned();
            let body = body.clone();
            handles[side].push(tokio::spawn(
                async move { send_one(&client, &uri, body).await },
            ));
        }
        tokio::time::sleep_until((started + window).into()).await;
        elapsed[side] += started.elapsed();
        if side == 1 {
            gateway_cpu += gateway_child.cpu_seconds() - cpu_before;
        }
    }
    let [direct_handles, gateway_handles] = handles;
    let mut runs = Vec::new();
    for (handles, elapsed) in [(direct_handles, elapsed[0]), (gateway_handles, elapsed[1])] {
        let mut outcomes = Vec::with_capacity(handles.len());
        for handle in handles {
            outcomes.push(handle.await.expect("request"));
        }
        runs.push(Run::new(outcomes, elapsed));
    }
    let through = runs.pop().expect("gateway run");
    let direct = runs.pop().expect("direct run");
    (direct, through, gateway_cpu)
}

/// Opens `STREAMS` streams at once; returns per-event latencies and the
/// gateway RSS sampled once every stream has had its first event, so all
/// are open (when `gateway` is given).
async fn streams(uri: &str, gateway: Option<&BenchChild>) -> (Vec<Duration>, f64) {
    let client = client();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for index in 0..STREAMS {
        let client = client.clone();
        let uri = uri.to_owned();
        let opened = opened.clone();
        handles.push(tokio::spawn(async move {
            let body = json!({"jsonrpc": "2.0", "id": index, "method": "SendStreamingMessage", "params": {"message": {
                "messageId": format!("s{index}"), "role": "ROLE_USER", "parts": [{"text": "stream"}]}}});
            let request = Request::post(&uri)
                .header("content-type", "application/json")
                .header("A2A-Version", "1.0")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request");
            let response = client.request(request).await.expect("stream response");
            let mut parser = SseParser::new();
            let mut latencies = Vec::new();
            let mut body = response.into_body().into_data_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.expect("chunk");
                for data in parser.push(&chunk) {
                    let event: Value = serde_json::from_str(&data).expect("event json");
                    if let Some(sent) = event["result"]["statusUpdate"]["metadata"]["sentAtMicros"].as_u64() {
                        latencies.push(Duration::from_micros(now_micros().saturating_sub(sent)));
                        if latencies.len() == 1 {
                            opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            latencies
        }));
    }
    // Sample the RSS once every stream is open (its first event arrived),
    // well before the first ends. Opening 1,000 streams takes about a
    // second, so a fixed delay could sample a half-open set.
    let give_up = Instant::now() + EVENT_INTERVAL * (EVENTS_PER_STREAM as u32 - 1);
    while opened.load(std::sync::atomic::Ordering::Relaxed) < STREAMS && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rss = gateway.map(BenchChild::rss_megabytes).unwrap_or(0.0);
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("stream"));
    }
    latencies.sort();
    (latencies, rss)
}

/// `CONVERGIO_BENCH_ONLY=streams`: the streams part alone, after 2 s of
/// SendMessage at concurrency 256 (what the allocator keeps from a load
/// phase is in the "before" figure, as in the main part). With
/// `CONVERGIO_BENCH_WRAP` (a command prefix, e.g. `valgrind --tool=dhat
/// --dhat-out-file=…`) the gateway child runs under it and is ended cleanly
/// at the close. DHAT sees allocations only through the system allocator:
/// for such a run, drop this file's `#[global_allocator]` line.
async fn streams_memory(upstream_url: &str) {
    let wrapper: Vec<String> = std::env::var(WRAP_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let settings = [(UPSTREAM_ENV, upstream_url), (EXIT_ON_EOF_ENV, "1")];
    let mut gateway = BenchChild::spawn_wrapped("gateway", &settings, &wrapper);
    let uri = format!("http://127.0.0.1:{}/agents/bench", gateway.port);
    let client = client();
    closed_loop(&client, &uri, 256, Duration::from_secs(2)).await;
    let before = gateway.rss_megabytes();
    let (events, rss) = streams(&uri, Some(&gateway)).await;
    println!(
        "{STREAMS} concurrent SSE streams: {} events; gateway RSS {before:.1} MB before, {rss:.1} MB with all open, {:.1} KB per stream",
        events.len(),
        (rss - before) * 1024.0 / STREAMS as f64,
    );
    if !gateway.close_and_wait(Duration::from_secs(60)) {
        eprintln!("the gateway child did not exit within 60 s of its stdin closing");
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

async fn run() {
    let upstream = BenchChild::spawn_upstream();
    let upstream_url = format!("http://127.0.0.1:{}/", upstream.port);
    if std::env::var(ONLY_ENV).as_deref() == Ok("auth") {
        auth_modes(&upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("federation") {
        federation_cost(&client(), &upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("policy") {
        policy_on_off(&client(), &upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("yardstick") {
        yardstick(&upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("profile") {
        profile(&upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("streams") {
        streams_memory(&upstream_url).await;
        return;
    }
    if std::env::var(ONLY_ENV).as_deref() == Ok("neighbour") {
        neighbour(&upstream_url).await;
        return;
    }
    let gateway = BenchChild::spawn(&upstream_url);
    let gateway_uri = format!("http://127.0.0.1:{}/agents/bench", gateway.port);
    let client = client();
    // Warm both paths (connections, allocator).
    closed_loop(&client, &upstream_url, 8, Duration::from_millis(300)).await;
    closed_loop(&client, &gateway_uri, 8, Duration::from_millis(300)).await;

    println!("SendMessage, 1 KB text part (closed loop, 2 s per cell)");
    println!(
        "{:>6} | {:>22} | {:>22} | {:>12} | {:>14}",
        "conc",
        "direct req/s p50 p99 us",
        "gateway req/s p50 p99 us",
        "gw CPU us/req",
        "bare server us"
    );
    let mut cpu_per_request = Vec::new();
    let mut server_per_request = Vec::new();
    for concurrency in [1, 32, 256] {
        let server_before = upstream.cpu_seconds();
        let direct = closed_loop(&client, &upstream_url, concurrency, Duration::from_secs(2)).await;
        let server =
            (upstream.cpu_seconds() - server_before) * 1e6 / direct.latencies.len().max(1) as f64;
        server_per_request.push(server);
        let cpu_before = gateway.cpu_seconds();
        let through = closed_loop(&client, &gateway_uri, concurrency, Duration::from_secs(2)).await;
        let cpu =
            (gateway.cpu_seconds() - cpu_before) * 1e6 / through.latencies.len().max(1) as f64;
        cpu_per_request.push(cpu);
        println!(
            "{concurrency:>6} | {:>7.0} {:>6.0} {:>7.0} | {:>7.0} {:>6.0} {:>7.0} | {cpu:>12.1} | {server:>14.1} | failed {}/{}",
            direct.throughput(),
            micros(direct.percentile(0.5)),
            micros(direct.percentile(0.99)),
            through.throughput(),
            micros(through.percentile(0.5)),
            micros(through.percentile(0.99)),
            direct.failures,
            through.failures,
        );
    }

    println!();
    println!(
        "Fixed 2,000 req/s (open loop), direct and gateway alternating every 250 ms, 3 s each"
    );
    let (direct, through, gateway_cpu) = fixed_rate_interleaved(
        &client,
        &upstream_url,
        (&gateway_uri, &gateway),
        2000,
        Duration::from_millis(250),
        12,
    )
    .await;
    let cpu = gateway_cpu * 1e6 / through.latencies.len().max(1) as f64;
    println!(
        "  direct : p50 {:>7.0} us  p99 {:>7.0} us  ({} failed)",
        micros(direct.percentile(0.5)),
        micros(direct.percentile(0.99)),
        direct.failures
    );
    println!(
        "  gateway: p50 {:>7.0} us  p99 {:>7.0} us  ({} failed)",
        micros(through.percentile(0.5)),
        micros(through.percentile(0.99)),
        through.failures
    );
    let added_p50 = micros(through.percentile(0.5)) - micros(direct.percentile(0.5));
    let added_p99 = micros(through.percentile(0.99)) - micros(direct.percentile(0.99));
    println!(
        "  added  : p50 {added_p50:>7.0} us  p99 {added_p99:>7.0} us   (target p50 <= 150 us, p99 <= 500 us)"
    );
    println!("  gateway CPU per request at 2,000 req/s: {cpu:.1} us");

    println!();
    println!("{STREAMS} concurrent SSE streams, {EVENTS_PER_STREAM} events each");
    let (direct_events, _) = streams(&upstream_url, None).await;
    let rss_idle = gateway.rss_megabytes();
    let (gateway_events, rss) = streams(&gateway_uri, Some(&gateway)).await;
    let percentile = |events: &[Duration], fraction: f64| {
        events
            .get(((events.len().max(1) - 1) as f64 * fraction).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "  direct : {} events, per-event latency p50 {:>7.0} us  p99 {:>7.0} us",
        direct_events.len(),
        micros(percentile(&direct_events, 0.5)),
        micros(percentile(&direct_events, 0.99))
    );
    println!(
        "  gateway: {} events, per-event latency p50 {:>7.0} us  p99 {:>7.0} us",
        gateway_events.len(),
        micros(percentile(&gateway_events, 0.5)),
        micros(percentile(&gateway_events, 0.99))
    );
    println!("  gateway RSS: {rss_idle:.1} MB before, {rss:.1} MB with {STREAMS} streams open   (target <= 64 MB)");
    println!();
    let (open, rss_connections) = idle_connections(&gateway).await;
    println!(
        "{IDLE_CONNECTIONS} idle keep-alive connections (one answered request each, then silent)"
    );
    println!("  gateway RSS: {rss_connections:.1} MB with {open} open   (target <= 256 MB)");
    println!();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    println!(
        "summary: gateway CPU {:.1} us/request (closed loop, per concurrency {:?}); added p50 / p99 at 2,000 req/s {added_p50:.0} / {added_p99:.0} us; RSS with {STREAMS} streams {rss:.1} MB",
        mean(&cpu_per_request),
        cpu_per_request.iter().map(|cpu| format!("{cpu:.1}")).collect::<Vec<_>>(),
    );
    println!(
        "yardstick: the bare axum upstream costs {:.1} us/request on this machine (per concurrency {:?}); the gateway, a server and a client in one, costs {:.2}x that",
        mean(&server_per_request),
        server_per_request.iter().map(|cpu| format!("{cpu:.1}")).collect::<Vec<_>>(),
        mean(&cpu_per_request) / mean(&server_per_request).max(1e-9),
    );
    println!();
    if std::env::var(ONLY_ENV).as_deref() == Ok("main") {
        return;
    }
    auth_modes(&upstream_url).await;
    policy_on_off(&client, &upstream_url).await;
    federation_cost(&client, &upstream_url).await;
    yardstick(&upstream_url).await;
}

const BENCH_ISSUER: &str = "https://idp.bench.example";
const BENCH_AUDIENCE: &str = "convergio";

use convergio_tests::tls::fixture;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 key's JWKS and a token it signed.
fn jwt_material() -> (String, String) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "bench",
        "x": b64(key.public_key().as_ref())}]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = b64(json!({"alg": "EdDSA", "kid": "bench"})
        .to_string()
        .as_bytes());
    let claims = b64(
        json!({"iss": BENCH_ISSUER, "aud": BENCH_AUDIENCE, "sub": "bench",
        "org": BENCH_ORG, "exp": now + 3600})
        .to_string()
        .as_bytes(),
    );
    let signed = format!("{header}.{claims}");
    let signature = key.sign(signed.as_bytes());
    (
        jwks.to_string(),
        format!("{signed}.{}", b64(signature.as_ref())),
    )
}

fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(fixture("ca.pem")).expect("ca") {
        roots.add(certificate.expect("ca")).expect("add ca");
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("client-spiffe.pem"))
            .expect("cert")
            .map(|certificate| certificate.expect("cert"))
            .collect();
    let key = PrivateKeyDer::from_pem_file(fixture("client-spiffe.key")).expect("key");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// When a keep-alive connection stops sending.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At this instant.
    At(Instant),
    /// After this many requests.
    After(usize),
}

/// One keep-alive HTTP/1.1 connection sending SendMessage back to back.
async fn connection_loop(
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    bearer: Option<String>,
    deadline: Instant,
) -> Vec<Option<Duration>> {
    keep_alive_loop(port, tls, bearer, Stop::At(deadline)).await
}

/// One keep-alive HTTP/1.1 connection sending SendMessage until `stop`.
async fn keep_alive_loop(
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    bearer: Option<String>,
    stop: Stop,
) -> Vec<Option<Duration>> {
    let mut sender = h1_connection(port, tls).await;
    let body = send_body(3);
    let mut outcomes = Vec::new();
    while match stop {
        Stop::At(deadline) => Instant::now() < deadline,
        Stop::After(count) => outcomes.len() < count,
    } {
        outcomes.push(send_on(&mut sender, body.clone(), bearer.as_deref()).await);
    }
    outcomes
}

type H1Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection to the child on `port`, over TLS when
/// `tls` is given.
async fn h1_connection(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> H1Sender {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    match tls {
        Some(config) => {
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").expect("name"), tcp)
                .await
                .expect("tls handshake");
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("h1");
            tokio::spawn(connection);
            sender
        }
        None => {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("h1");
            tokio::spawn(connection);
            sender
        }
    }
}

/// One SendMessage of `body` on `sender`: its latency, `None` when it failed.
async fn send_on(sender: &mut H1Sender, body: Bytes, bearer: Option<&str>) -> Option<Duration> {
    let started = Instant::now();
    let mut request = Request::post("/agents/bench")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("A2A-Version", "1.0");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = sender.send_request(request).await.ok()?;
    let ok = response.status().is_success();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let is_result = bytes.windows(8).any(|window| window == b"\"result\"");
    (ok && is_result).then(|| started.elapsed())
}

/// How long each run of the neighbour part lasts.
const NEIGHBOUR_RUN: Duration = Duration::from_secs(3);
/// How often the neighbour part sends a small SendMessage.
const SMALL_EVERY: Duration = Duration::from_millis(4);
/// The text of the neighbour's large SendMessage, under the 1 MiB body limit.
const LARGE_TEXT: usize = 1_000_000;
/// How often the paced neighbour sends one: often enough that calls sharing
/// its thread meet it, seldom enough to leave the machine idle between.
const LARGE_EVERY: Duration = Duration::from_millis(25);

/// The large calls beside one run of [`neighbour`]'s small ones.
#[derive(Debug, Clone, Copy)]
enum Large {
    None,
    Every(Duration),
    BackToBack,
}

/// `CONVERGIO_BENCH_ONLY=neighbour`: what thread-per-core serving costs a
/// gateway whose calls are not alike. Small SendMessages, alone, beside one
/// connection posting a large one now and then, and beside one posting them
/// back to back, through a child on the default runtime and one serving
/// thread-per-core.
async fn neighbour(upstream_url: &str) {
    println!(
        "1 KB SendMessage every {} ms over 4 connections for {} s: alone, beside one connection posting a {} KB one every {} ms, and beside one posting them back to back (large/s: how many that one sent)",
        SMALL_EVERY.as_millis(),
        NEIGHBOUR_RUN.as_secs(),
        LARGE_TEXT / 1000,
        LARGE_EVERY.as_millis(),
    );
    println!(
        "{:>9} | {:>17} | {:>17} | {:>17} | large/s | failed",
        "runtime", "alone p50 p99 us", "paced p50 p99 us", "back to back"
    );
    for (label, runtime) in [("default", "default"), ("per-core", "percore")] {
        let gateway = BenchChild::spawn_with(upstream_url, &[(RUNTIME_ENV, runtime)]);
        let mut cells = Vec::new();
        let mut failed = 0;
        let mut large_rate = 0.0;
        for large in [Large::None, Large::Every(LARGE_EVERY), Large::BackToBack] {
            let (run, sent) = beside_large(gateway.port, large).await;
            cells.push(format!(
                "{:>8.0} {:>8.0}",
                micros(run.percentile(0.5)),
                micros(run.percentile(0.99))
            ));
            failed += run.failures;
            if let Large::BackToBack = large {
                large_rate = sent as f64 / NEIGHBOUR_RUN.as_secs_f64();
            }
        }
        println!(
            "{label:>9} | {} | {large_rate:>7.0} | {failed}",
            cells.join(" | ")
        );
    }
}

/// One run of [`neighbour`]: the small calls, and how many large ones the
/// neighbour sent.
async fn beside_large(port: u16, large: Large) -> (Run, usize) {
    // Per-core hands accepted connections to its threads in turn: opened
    // first, the neighbour's shares a thread with two of the four small
    // ones. Opened (and left idle) without a neighbour too, so the turns
    // are the same.
    let mut first = h1_connection(port, None).await;
    let mut small = Vec::new();
    for _ in 0..4 {
        small.push(h1_connection(port, None).await);
    }
    let deadline = Instant::now() + NEIGHBOUR_RUN;
    let neighbour = (!matches!(large, Large::None)).then(|| {
        tokio::spawn(async move {
            let body = message_body(1, LARGE_TEXT);
            let mut ticks = match large {
                Large::Every(every) => {
                    let mut ticks = tokio::time::interval(every);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    Some(ticks)
                }
                Large::None | Large::BackToBack => None,
            };
            let mut sent = 0;
            while Instant::now() < deadline {
                if let Some(ticks) = &mut ticks {
                    ticks.tick().await;
                }
                if send_on(&mut first, body.clone(), None).await.is_some() {
                    sent += 1;
                }
            }
            sent
        })
    });
    let body = send_body(5);
    let mut ticks = tokio::time::interval(SMALL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut outcomes = Vec::new();
    while Instant::now() < deadline {
        ticks.tick().await;
        let index = outcomes.len() % small.len();
        outcomes.push(send_on(&mut small[index], body.clone(), None).await);
    }
    let sent = match neighbour {
        Some(task) => task.await.expect("the large sender"),
        None => 0,
    };
    (Run::new(outcomes, started.elapsed()), sent)
}

/// The three authentication modes side by side.
async fn auth_modes(upstream_url: &str) {
    const CONNECTIONS: usize = 32;
    let (jwks, token) = jwt_material();
    println!(
        "Authentication modes, SendMessage 1 KB, {CONNECTIONS} keep-alive connections, 2 s each"
    );
    println!(
        "{:>6} | {:>8} {:>7} {:>7} | {:>13} | {:>16}",
        "mode", "req/s", "p50 us", "p99 us", "gw CPU us/req", "over off us/req"
    );
    let mut off_cpu = None;
    let mut summary = Vec::new();
    for mode in ["off", "jwt", "mtls"] {
        let gateway = BenchChild::spawn_with(upstream_url, &[(AUTH_ENV, mode), (JWKS_ENV, &jwks)]);
        let tls = (mode == "mtls").then(tls_client_config);
        let bearer = (mode == "jwt").then(|| token.clone());
        // Warm up: connections, allocator, the verified-token cache.
        let warm = Instant::now() + Duration::from_millis(300);
        let _ = connection_loop(gateway.port, tls.clone(), bearer.clone(), warm).await;
        let cpu_before = gateway.cpu_seconds();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        let mut workers = Vec::new();
        for _ in 0..CONNECTIONS {
            workers.push(tokio::spawn(connection_loop(
                gateway.port,
                tls.clone(),
                bearer.clone(),
                deadline,
            )));
        }
        let mut outcomes = Vec::new();
        for worker in workers {
            outcomes.extend(worker.await.expect("worker"));
        }
        let run = Run::new(outcomes, started.elapsed());
        let cpu = (gateway.cpu_seconds() - cpu_before) * 1e6 / run.latencies.len().max(1) as f64;
        let baseline = *off_cpu.get_or_insert(cpu);
        println!(
            "{mode:>6} | {:>8.0} {:>7.0} {:>7.0} | {cpu:>13.1} | {:>16.1} | failed {}",
            run.throughput(),
            micros(run.percentile(0.5)),
            micros(run.percentile(0.99)),
            cpu - baseline,
            run.failures
        );
        summary.push(format!("{mode} {cpu:.1}"));
    }
    println!(
        "auth summary: gateway CPU us/request {}   (target: jwt <= off + 10 us)",
        summary.join(", ")
    );
}

// ===================================================================
// Policy on vs off (issue 5). Kept in its own section: the rest of this
// bench is edited by other work. With `CONVERGIO_BENCH_POLICY=on` the child
// decides every call with the example policies plus a permit for the
// bench's anonymous caller and audits every decision to a SQLite store, as
// `convergio serve` does; `policy_on_off` compares two such children.
// ===================================================================

const POLICY_ENV: &str = "CONVERGIO_BENCH_POLICY";
/// `off` in the bench's environment: children with policy on decide without
/// an audit log, so a yardstick run shows what the audit costs (issue #25).
/// Not a product setting: every decision `convergio serve` makes is audited.
const AUDIT_ENV: &str = "CONVERGIO_BENCH_AUDIT";

async fn policy_gate(state: A2aState) -> A2aState {
    if std::env::var(POLICY_ENV).as_deref() != Ok("on") {
        return state;
    }
    let url = format!(
        "sqlite://{}?mode=rwc",
        child_dir().join("policy.db").display()
    );
    let db = convergio_store::Db::open(&url, &convergio_store::DbConfig::default())
        .await
        .expect("database");
    let store = Arc::new(convergio_store::policy::PolicyStore::new(db));
    let engine = convergio_policy::PolicyEngine::new(convergio_policy::engine::DEFAULT_SCHEMA)
        .expect("schema");
    engine
        .load(
            None,
            &format!(
                "{}\n@id(\"bench\") permit (principal, action == Action::\"send_message\", resource is Agent) when {{ context.auth_method == \"anonymous\" }};\n",
                convergio_policy::engine::EXAMPLE_POLICIES
            ),
        )
        .expect("bench policies");
    let audit = std::env::var(AUDIT_ENV).as_deref() != Ok("off");
    let sink = audit.then(|| {
        let (sink, writer) = convergio_policy::AuditSink::spawn(
            convergio_policy::AuditLog::new(store),
            convergio_policy::DEFAULT_AUDIT_QUEUE,
        );
        // The child runs until it is killed; the writer lives as long.
        std::mem::forget(writer);
        sink
    });
    state.with_gatekeeper(Arc::new(convergio_gateway::authorize::PolicyGate::new(
        Arc::new(engine),
        sink,
        None,
    )))
}

async fn policy_on_off(client: &HttpClient, upstream_url: &str) {
    println!();
    println!("Policy off vs on (authorise + audit every call), SendMessage, closed loop 2 s");
    println!(
        "{:>6} | {:>6} | {:>22} | {:>12}",
        "policy", "conc", "req/s p50 p99 us", "gw CPU us/req"
    );
    for policy in [false, true] {
        let gateway = BenchChild::spawn_with(
            upstream_url,
            &[(POLICY_ENV, if policy { "on" } else { "off" })],
        );
        let uri = format!("http://127.0.0.1:{}/agents/bench", gateway.port);
        closed_loop(client, &uri, 8, Duration::from_millis(300)).await;
        for concurrency in [1, 32] {
            let cpu_before = gateway.cpu_seconds();
            let run = closed_loop(client, &uri, concurrency, Duration::from_secs(2)).await;
            let cpu =
                (gateway.cpu_seconds() - cpu_before) * 1e6 / run.latencies.len().max(1) as f64;
            println!(
                "{:>6} | {concurrency:>6} | {:>7.0} {:>6.0} {:>7.0} | {cpu:>12.1} | failed {}",
                if policy { "on" } else { "off" },
                run.throughput(),
                micros(run.percentile(0.5)),
                micros(run.percentile(0.99)),
                run.failures,
            );
        }
    }
}

// ===================================================================
// Federation (issue 6): a signed cross-organisation call vs an internal
// one. Two gateways in this process, `a.example` and `b.example`, each with
// its own SQLite peer store (nonces are inserted there, as in production):
// - internal: a client calls B's `/agents/bench` (one gateway hop);
// - cross-org: a client calls A's `/external/b.example/agents/bench`; A
//   signs, B verifies and records the nonce, then forwards (two hops);
// - and the federation work alone, without sockets: A signs a request, B
//   verifies it (signature, window, digest) and remembers its nonce.
// `CONVERGIO_BENCH_ONLY=federation` runs just this part.
// ===================================================================

use convergio_auth::OrgSigningKey;
use convergio_gateway::federation::card_keys::FederationCardKeys;
use convergio_gateway::federation::{Federation, FederationConfig, PeerSpec};

async fn federation_node(domain: &str, dir: &std::path::Path) -> (Arc<Federation>, Value) {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join(format!("{domain}.db")).display()
    );
    // Opening the database applies the migrations (peers, nonces).
    let (db, agents) = convergio_tests::db::agent_store(&url).await;
    let registry = Registry::new(
        agents,
        RegistryConfig::default(),
        Arc::new(convergio_gateway::ssrf::AllowList::loopback()),
    );
    let store = Arc::new(convergio_store::registry::Peers::new(&db));
    let key = Arc::new(OrgSigningKey::generate().expect("key"));
    let jwk = key.public_jwk();
    // Both organisations and the upstream live on loopback, which the SSRF
    // guard refuses unless allow-listed.
    let config = FederationConfig {
        allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..FederationConfig::new(domain)
    };
    let card_keys = Arc::new(FederationCardKeys::new(&key, [domain]));
    let federation = Federation::new(config, key, store, registry, card_keys).expect("federation");
    (Arc::new(federation), jwk)
}

async fn serve_federated(state: A2aState, federation: Arc<Federation>) -> u16 {
    let authenticator = Authenticator::new(AuthenticateConfig::anonymous())
        .await
        .expect("authenticator")
        .with_peers(federation);
    let limits = LimitsConfig {
        max_concurrency: 8192,
        ..LimitsConfig::default()
    };
    let app = with_layers_auth(a2a_router(state), &limits, Arc::new(authenticator));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let _ = serve_with(
            listener,
            app,
            ServerConfig::default(),
            None,
            std::future::pending(),
        )
        .await;
    });
    port
}

async fn federation_cost(client: &HttpClient, upstream_url: &str) {
    let dir = std::env::temp_dir().join(format!("convergio-bench-fed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let (a, a_jwk) = federation_node("a.example", &dir).await;
    let (b, b_jwk) = federation_node("b.example", &dir).await;
    let routes = Arc::new(InMemoryRoutes::new());
    routes.insert(RouteTarget::from_card(
        "bench",
        json!({"name": "bench", "supportedInterfaces": [
            {"url": upstream_url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}),
    ));
    let loopback = || A2aConfig {
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    let b_port = serve_federated(
        A2aState::new(routes, loopback()).with_federation(Some(b.clone())),
        b.clone(),
    )
    .await;
    let a_port = serve_federated(
        A2aState::new(Arc::new(InMemoryRoutes::new()), loopback()).with_federation(Some(a.clone())),
        a.clone(),
    )
    .await;
    let peer = |domain: &str, url: String, jwk: &Value| PeerSpec {
        domain: domain.to_owned(),
        url,
        keys: vec![jwk.clone()],
        jwks_url: None,
        trust: None,
    };
    b.add(
        &peer("a.example", format!("http://127.0.0.1:{a_port}"), &a_jwk),
        false,
    )
    .await
    .expect("b knows a");
    a.add(
        &peer("b.example", format!("http://127.0.0.1:{b_port}"), &b_jwk),
        false,
    )
    .await
    .expect("a knows b");
    let internal = format!("http://127.0.0.1:{b_port}/agents/bench");
    let external = format!("http://127.0.0.1:{a_port}/external/b.example/agents/bench");
    closed_loop(client, &internal, 4, Duration::from_millis(300)).await;
    closed_loop(client, &external, 4, Duration::from_millis(300)).await;

    println!();
    println!("Federation: internal call vs signed cross-organisation call, SendMessage 1 KB, closed loop 2 s");
    println!(
        "{:>6} | {:>24} | {:>24} | {:>16}",
        "conc", "internal req/s p50 p99", "cross-org req/s p50 p99", "added p50 p99 us"
    );
    for concurrency in [1, 32] {
        let inside = closed_loop(client, &internal, concurrency, Duration::from_secs(2)).await;
        let across = closed_loop(client, &external, concurrency, Duration::from_secs(2)).await;
        println!(
            "{concurrency:>6} | {:>8.0} {:>7.0} {:>7.0} | {:>8.0} {:>7.0} {:>7.0} | {:>7.0} {:>7.0} | failed {}/{}",
            inside.throughput(),
            micros(inside.percentile(0.5)),
            micros(inside.percentile(0.99)),
            across.throughput(),
            micros(across.percentile(0.5)),
            micros(across.percentile(0.99)),
            micros(across.percentile(0.5)) - micros(inside.percentile(0.5)),
            micros(across.percentile(0.99)) - micros(inside.percentile(0.99)),
            inside.failures,
            across.failures,
        );
    }

    // The federation work alone: sign (A), verify + nonce insert (B).
    let body = send_body(3);
    let mut latencies = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let request = Request::post("http://b.example/agents/bench")
            .body(Body::from(body.clone()))
            .expect("request");
        let started = Instant::now();
        let signed = a
            .sign_request(request, "b.example", "bench")
            .await
            .expect("signed");
        let token = signed
            .headers()
            .get(convergio_auth::peer_call::SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .expect("signature header")
            .to_owned();
        let bytes = signed.into_body().collect().await.expect("body").to_bytes();
        b.verify_call("POST", "/agents/bench", &token, &bytes)
            .await
            .expect("verified");
        latencies.push(started.elapsed());
    }
    let run = Run::new(
        latencies.into_iter().map(Some).collect(),
        Duration::from_secs(1),
    );
    println!(
        "  sign + verify + replay check (SQLite nonce insert), 1 KB body: p50 {:>6.0} us  p99 {:>6.0} us",
        micros(run.percentile(0.5)),
        micros(run.percentile(0.99))
    );
    println!("  (the cross-org row also pays a second gateway hop: A forwards to B)");
    let _ = std::fs::remove_dir_all(&dir);
}

// ===================================================================
// The yardstick (issue 25): nginx as a plain reverse proxy in front of the
// same upstream, and Convergio's CPU per request as a ratio to it, with
// policy off, anonymous + policy, API key + policy and JWT + policy, each
// proxy pinned to the same core (`taskset`, when installed) and driven by
// 32 keep-alive connections for 2 s. `CONVERGIO_BENCH_ONLY=yardstick` runs
// just this part. nginx comes from Debian's `nginx-light`; without it the
// ratios are skipped and the bench says so.
//
// And the profile (`CONVERGIO_BENCH_ONLY=profile`, run by
// `scripts/profile-gateway.sh`): the API key + policy child (or, with
// `CONVERGIO_BENCH_PROFILE_POLICY=off`, the policy-off one) under
// `valgrind --tool=callgrind`, a fixed number of SendMessage calls, then a
// clean exit so callgrind writes its counts.
// ===================================================================

/// Idle keep-alive connections the bench holds open at once.
const IDLE_CONNECTIONS: usize = 10_000;

/// Opens [`IDLE_CONNECTIONS`] connections to `gateway` (200 at a time),
/// each answered once (`GET /healthz`; the bench's gateway serves only the
/// A2A routes, so a 404 on a kept-alive connection) and then left idle,
/// and samples the gateway's RSS while all are held: how many answered,
/// and the RSS in MB. The connections close when this returns.
async fn idle_connections(gateway: &BenchChild) -> (usize, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = gateway.port;
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut started = 0;
    while started < IDLE_CONNECTIONS {
        let batch = (IDLE_CONNECTIONS - started).min(200);
        started += batch;
        let opened = futures_util::future::join_all((0..batch).map(|_| async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n")
                .await
                .ok()?;
            let mut head = [0u8; 512];
            let read = stream.read(&mut head).await.ok()?;
            head[..read].starts_with(b"HTTP/1.1 ").then_some(stream)
        }))
        .await;
        held.extend(opened.into_iter().flatten());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    (held.len(), gateway.rss_megabytes())
}

/// How many requests the profile sends (`scripts/profile-gateway.sh` runs
/// it twice with different counts and divides the difference).
const PROFILE_REQUESTS_ENV: &str = "CONVERGIO_BENCH_PROFILE_REQUESTS";
/// Where callgrind writes the profile's counts.
const CALLGRIND_OUT_ENV: &str = "CONVERGIO_BENCH_CALLGRIND_OUT";
/// `off`: profile the child with policy off and no authentication (the
/// yardstick's baseline), to compare with the default API key + policy.
const PROFILE_POLICY_ENV: &str = "CONVERGIO_BENCH_PROFILE_POLICY";

/// `taskset -c <last cpu>` when `taskset` exists: the proxies of the
/// yardstick share one core, the load generator and upstream the others.
fn pin_wrapper() -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let has_taskset = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if has_taskset && cpus > 1 {
        vec![
            "taskset".to_owned(),
            "-c".to_owned(),
            (cpus - 1).to_string(),
        ]
    } else {
        Vec::new()
    }
}

/// nginx as a plain reverse proxy (one process: no master, no daemon).
struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

// === impl Nginx ===

impl Nginx {
    /// Starts nginx on a free loopback port in front of `upstream_port`;
    /// `None` when nginx is not installed or does not come up.
    async fn start(upstream_port: u16, wrapper: &[String]) -> Option<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())?;
        let dir =
            std::env::temp_dir().join(format!("convergio-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            probe.local_addr().ok()?.port()
        };
        let dir_text = dir.display();
        let config = format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir_text}/nginx.pid;\n\
             error_log {dir_text}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {dir_text}/body;\n  proxy_temp_path {dir_text}/proxy;\n\
               upstream bench {{ server 127.0.0.1:{upstream_port}; keepalive 64; \
                 keepalive_requests 100000000; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    keepalive_requests 100000000;\n\
                 location = /agents/bench {{\n      proxy_pass http://bench/;\n\
                   proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).ok()?;
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let nginx = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(nginx);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 32 keep-alive connections for 2 s against `port` (after a 300 ms warm
/// up); the run and the CPU seconds `cpu` counted during it.
async fn drive(port: u16, bearer: Option<String>, cpu: impl Fn() -> f64) -> (Run, f64) {
    const CONNECTIONS: usize = 32;
    let warm = Instant::now() + Duration::from_millis(300);
    let _ = connection_loop(port, None, bearer.clone(), warm).await;
    let cpu_before = cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        workers.push(tokio::spawn(connection_loop(
            port,
            None,
            bearer.clone(),
            deadline,
        )));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }
    let run = Run::new(outcomes, started.elapsed());
    let seconds = cpu() - cpu_before;
    (run, seconds)
}

async fn yardstick(upstream_url: &str) {
    let upstream_port: u16 = upstream_url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .expect("upstream port");
    let wrapper = pin_wrapper();
    let (jwks, token) = jwt_material();
    println!();
    println!(
        "Yardstick: CPU per proxied SendMessage (1 KB), 32 keep-alive connections, 2 s each, {}",
        if wrapper.is_empty() {
            "proxies not pinned (no taskset)".to_owned()
        } else {
            format!("proxies pinned to CPU {}", wrapper[2])
        }
    );
    println!(
        "{:>24} | {:>8} {:>7} {:>7} | {:>10} | {:>8}",
        "proxy", "req/s", "p50 us", "p99 us", "CPU us/req", "x nginx"
    );
    let row = |label: &str, run: &Run, cpu: f64, ratio: Option<f64>| {
        println!(
            "{label:>24} | {:>8.0} {:>7.0} {:>7.0} | {cpu:>10.1} | {:>8} | failed {}",
            run.throughput(),
            micros(run.percentile(0.5)),
            micros(run.percentile(0.99)),
            ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.2}")),
            run.failures
        );
    };
    let per_request = |run: &Run, seconds: f64| seconds * 1e6 / run.latencies.len().max(1) as f64;
    let nginx_cpu = match Nginx::start(upstream_port, &wrapper).await {
        Some(nginx) => {
            let pid = nginx.child.id();
            let (run, seconds) =
                drive(nginx.port, None, || convergio_tests::proc::cpu_seconds(pid)).await;
            let cpu = per_request(&run, seconds);
            row("nginx (reverse proxy)", &run, cpu, Some(1.0));
            Some(cpu)
        }
        None => {
            println!("{:>24} | skipped: nginx is not installed (apt-get install nginx-light) or did not start", "nginx");
            None
        }
    };
    let modes = [
        ("policy off", "", "off"),
        ("anonymous + policy", "anonymous", "on"),
        ("api key + policy", "api_key", "on"),
        ("jwt + policy", "jwt", "on"),
    ];
    let mut figures = Vec::new();
    for (label, auth, policy) in modes {
        let gateway = BenchChild::spawn_wrapped(
            "gateway",
            &[
                (UPSTREAM_ENV, upstream_url),
                (AUTH_ENV, auth),
                (POLICY_ENV, policy),
                (JWKS_ENV, &jwks),
            ],
            &wrapper,
        );
        let bearer = match auth {
            "api_key" => gateway.api_key.clone(),
            "jwt" => Some(token.clone()),
            _ => None,
        };
        let (run, seconds) = drive(gateway.port, bearer, || gateway.cpu_seconds()).await;
        let cpu = per_request(&run, seconds);
        let ratio = nginx_cpu.map(|nginx| cpu / nginx.max(1e-9));
        row(&format!("convergio, {label}"), &run, cpu, ratio);
        figures.push((label, cpu, ratio));
    }
    let off = figures.first().map_or(0.0, |(_, cpu, _)| *cpu);
    let api_key = figures
        .iter()
        .find(|(label, ..)| *label == "api key + policy")
        .map_or(0.0, |(_, cpu, _)| *cpu);
    let ratios: Vec<String> = figures
        .iter()
        .map(|(label, cpu, ratio)| match ratio {
            Some(ratio) => format!("{label} {cpu:.1} us = {ratio:.2}x"),
            None => format!("{label} {cpu:.1} us"),
        })
        .collect();
    println!(
        "yardstick summary: nginx {} ; {} (target: api key + policy <= 4x nginx); api key + policy = {:.2}x policy off (target <= 1.25x)",
        nginx_cpu.map_or("skipped".to_owned(), |cpu| format!("{cpu:.1} us")),
        ratios.join(", "),
        api_key / off.max(1e-9)
    );
}

/// The profile's load: the API key + policy child (or the policy-off one,
/// [`PROFILE_POLICY_ENV`]) under callgrind, a fixed number of calls over 8
/// keep-alive connections, then a clean exit.
async fn profile(upstream_url: &str) {
    const CONNECTIONS: usize = 8;
    let requests: usize = std::env::var(PROFILE_REQUESTS_ENV)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1000);
    let out = std::env::var(CALLGRIND_OUT_ENV).unwrap_or_else(|_| {
        std::env::temp_dir()
            .join(format!("callgrind.convergio.{}", std::process::id()))
            .display()
            .to_string()
    });
    let wrapper = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={out}"),
        // Instruction counts per function are all the script reads.
        "--dump-instr=no".to_owned(),
        "--quiet".to_owned(),
    ];
    let (auth, policy) = match std::env::var(PROFILE_POLICY_ENV).as_deref() {
        Ok("off") => ("", "off"),
        _ => ("api_key", "on"),
    };
    let mut gateway = BenchChild::spawn_wrapped(
        "gateway",
        &[
            (UPSTREAM_ENV, upstream_url),
            (AUTH_ENV, auth),
            (POLICY_ENV, policy),
            (EXIT_ON_EOF_ENV, "1"),
        ],
        &wrapper,
    );
    let key = gateway.api_key.clone();
    let mut workers = Vec::new();
    for index in 0..CONNECTIONS {
        // Spread `requests` over the connections exactly.
        let count = requests / CONNECTIONS + usize::from(index < requests % CONNECTIONS);
        workers.push(tokio::spawn(keep_alive_loop(
            gateway.port,
            None,
            key.clone(),
            Stop::After(count),
        )));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }
    let failed = outcomes.iter().filter(|outcome| outcome.is_none()).count();
    // The audit writer commits behind the calls (slowly, under callgrind):
    // give it time to drain before the child exits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exited =
        tokio::task::spawn_blocking(move || gateway.close_and_wait(Duration::from_secs(120)))
            .await
            .unwrap_or(false);
    println!(
        "PROFILE requests {} failed {failed} exited {exited} out {out}",
        outcomes.len() - failed
    );
}
