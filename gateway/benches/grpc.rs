//! gRPC benchmark (issue 24; not a timed test: `cargo bench -p
//! convergio-gateway --bench grpc`). One process, three tokio runtimes whose
//! threads are named, so each one's CPU is read from
//! `/proc/self/task/<tid>/stat` on its own: a minimal gRPC A2A agent
//! (`bench-agent`), the gateway (`bench-gw`, the product's A2A router and
//! accept loop over an in-memory route table) and the load generator
//! (`bench-client`). It prints, in one run:
//! - gRPC unary `SendMessage` direct vs through the gateway at c=32:
//!   throughput, p50/p99, and the gateway's CPU per request beside the
//!   agent's own (a bare tonic server: the yardstick);
//! - gRPC `SendStreamingMessage` (3 events) the same way, per stream;
//! - the bridge cost: a JSON-RPC client reaching the gRPC agent through the
//!   gateway vs a gRPC client doing the same (same agent, same gateway),
//!   CPU per request and p50/p99.
//!
//! Figures move with the machine's load; the ratios within one run are the
//! point. `CONVERGIO_BENCH_SECONDS` sets each run's length (default 3).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use convergio_gateway::a2a::grpc::proto::a2a_service_client::A2aServiceClient;
use convergio_gateway::a2a::grpc::proto::a2a_service_server::{A2aService, A2aServiceServer};
use convergio_gateway::a2a::grpc::proto::{
    self as pb, part, send_message_response, stream_response, Artifact, Message, Part, Role, Task,
    TaskArtifactUpdateEvent, TaskState, TaskStatus, TaskStatusUpdateEvent,
};
use convergio_gateway::a2a::{a2a_router, A2aConfig, A2aState, InMemoryRoutes, RouteTarget};
use convergio_gateway::layers::LimitsConfig;
use convergio_gateway::server::{serve_with, ServerConfig};
use convergio_gateway::with_layers;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, Status>> + Send>>;
type GrpcClient = A2aServiceClient<Client<HttpConnector, tonic::body::Body>>;
type JsonClient = Client<HttpConnector, Full<Bytes>>;

/// Clock ticks per second of `/proc` CPU times (Linux's USER_HZ).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const CONCURRENCY: usize = 32;

fn main() {
    let seconds = std::env::var("CONVERGIO_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3);
    let length = Duration::from_secs(seconds);
    let agent_rt = runtime("bench-agent", 1);
    let gateway_rt = runtime("bench-gw", 1);
    let client_rt = runtime("bench-client", 2);
    let agent_addr = agent_rt.block_on(serve_agent());
    let gateway_addr = gateway_rt.block_on(serve_gateway(&agent_addr));
    // Keep both servers' runtimes alive (their tasks run on them) while the
    // client's drives the load.
    client_rt.block_on(report(&agent_addr, &gateway_addr, length));
    drop(gateway_rt);
    drop(agent_rt);
}

fn runtime(name: &'static str, workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// CPU seconds so far of this process's threads named `name`.
fn cpu_of(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15; the list starts at field 3.
        for index in [14, 15] {
            ticks += fields
                .get(index - 3)
                .and_then(|field| field.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    ticks / CLOCK_TICKS_PER_SECOND
}

// === the agent ===

struct BenchAgent;

fn task(id: &str, context: &str, state: TaskState) -> Task {
    Task {
        id: id.to_owned(),
        context_id: context.to_owned(),
        status: Some(TaskStatus {
            state: state.into(),
            ..TaskStatus::default()
        }),
        ..Task::default()
    }
}

fn text(text: &str) -> Part {
    Part {
        content: Some(part::Content::Text(text.to_owned())),
        ..Part::default()
    }
}

/// A fresh task id and context for `request`'s message, and its text.
fn received(request: &pb::SendMessageRequest) -> (String, String, String) {
    let message = request.message.clone().unwrap_or_default();
    let said = message
        .parts
        .iter()
        .find_map(|part| match &part.content {
            Some(part::Content::Text(text)) => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_default();
    (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        format!("echo: {said}"),
    )
}

#[tonic::async_trait]
impl A2aService for BenchAgent {
    type SendStreamingMessageStream = EventStream;
    type SubscribeToTaskStream = EventStream;

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let (id, context, answer) = received(request.get_ref());
        let mut done = task(&id, &context, TaskState::Completed);
        done.artifacts = vec![Artifact {
            artifact_id: format!("{id}-echo"),
            parts: vec![text(&answer)],
            ..Artifact::default()
        }];
        Ok(Response::new(pb::SendMessageResponse {
            payload: Some(send_message_response::Payload::Task(done)),
        }))
    }

    async fn send_streaming_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let (id, context, answer) = received(request.get_ref());
        let status = |state: TaskState| TaskStatusUpdateEvent {
            task_id: id.clone(),
            context_id: context.clone(),
            status: Some(TaskStatus {
                state: state.into(),
                ..TaskStatus::default()
            }),
            ..TaskStatusUpdateEvent::default()
        };
        let events = vec![
            stream_response::Payload::Task(task(&id, &context, TaskState::Working)),
            stream_response::Payload::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: id.clone(),
                context_id: context.clone(),
                artifact: Some(Artifact {
                    artifact_id: format!("{id}-echo"),
                    parts: vec![text(&answer)],
                    ..Artifact::default()
                }),
                last_chunk: true,
                ..TaskArtifactUpdateEvent::default()
            }),
            stream_response::Payload::StatusUpdate(status(TaskState::Completed)),
        ];
        let items = events.into_iter().map(|payload| {
            Ok(pb::StreamResponse {
                payload: Some(payload),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
    }

    async fn get_task(&self, _: Request<pb::GetTaskRequest>) -> Result<Response<Task>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn list_tasks(
        &self,
        _: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn cancel_task(
        &self,
        _: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<Task>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn subscribe_to_task(
        &self,
        _: Request<pb::SubscribeToTaskRequest>,
    ) -> Result<Response<EventStream>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn create_task_push_notification_config(
        &self,
        _: Request<pb::TaskPushNotificationConfig>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn get_task_push_notification_config(
        &self,
        _: Request<pb::GetTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn list_task_push_notification_configs(
        &self,
        _: Request<pb::ListTaskPushNotificationConfigsRequest>,
    ) -> Result<Response<pb::ListTaskPushNotificationConfigsResponse>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn get_extended_agent_card(
        &self,
        _: Request<pb::GetExtendedAgentCardRequest>,
    ) -> Result<Response<pb::AgentCard>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    async fn delete_task_push_notification_config(
        &self,
        _: Request<pb::DeleteTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        Err(Status::unimplemented("not benched"))
    }
}

/// Serves the agent on the product's accept loop; its `host:port`.
async fn serve_agent() -> String {
    let app = Router::new().route_service(
        "/lf.a2a.v1.A2AService/{method}",
        A2aServiceServer::new(BenchAgent),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(serve_with(
        listener,
        app,
        ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    address
}

/// Serves the gateway with the agent routed as `bench` (gRPC only); its
/// `host:port`.
async fn serve_gateway(agent: &str) -> String {
    let routes = Arc::new(InMemoryRoutes::new());
    routes.insert(RouteTarget::from_card(
        "bench",
        json!({"name": "bench", "description": "gRPC bench agent", "version": "1",
            "supportedInterfaces": [{"url": agent, "protocolBinding": "GRPC", "protocolVersion": "1.0"}],
            "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "echo", "name": "echo", "description": "echoes", "tags": ["bench"]}]}),
    ));
    let config = A2aConfig {
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    let limits = LimitsConfig {
        max_concurrency: 8192,
        ..LimitsConfig::default()
    };
    let app = with_layers(a2a_router(A2aState::new(routes, config)), &limits);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(serve_with(
        listener,
        app,
        ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    address
}

// === the load ===

/// A connector with TCP_NODELAY, as the gateway's own: without it a small
/// HTTP/2 frame waits for the peer's delayed ACK (40 ms on Linux).
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

fn grpc_client(address: &str) -> GrpcClient {
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector());
    let origin = format!("http://{address}").parse().expect("origin");
    A2aServiceClient::with_origin(http, origin)
}

fn send_request() -> Request<pb::SendMessageRequest> {
    let mut request = Request::new(pb::SendMessageRequest {
        tenant: "bench".to_owned(),
        message: Some(Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::User.into(),
            parts: vec![text("hello")],
            ..Message::default()
        }),
        ..pb::SendMessageRequest::default()
    });
    request.metadata_mut().insert(
        "a2a-version",
        tonic::metadata::MetadataValue::from_static("1.0"),
    );
    request
}

/// One call of `kind`; whether it was answered as expected.
async fn call_once(kind: Kind, grpc: &mut GrpcClient, json: &JsonClient, url: &str) -> bool {
    match kind {
        Kind::Unary => matches!(
            grpc.send_message(send_request()).await,
            Ok(response) if response.get_ref().payload.is_some()
        ),
        Kind::Stream => {
            let Ok(response) = grpc.send_streaming_message(send_request()).await else {
                return false;
            };
            let mut stream = response.into_inner();
            let mut events = 0;
            while let Some(event) = stream.next().await {
                if event.is_err() {
                    return false;
                }
                events += 1;
            }
            events == 3
        }
        Kind::JsonRpc => {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
                "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                    "parts": [{"text": "hello"}]}}});
            let request = hyper::Request::post(url)
                .header("content-type", "application/json")
                .header("A2A-Version", "1.0")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request");
            let Ok(response) = json.request(request).await else {
                return false;
            };
            let ok = response.status().is_success();
            let Ok(body) = response.into_body().collect().await else {
                return false;
            };
            ok && body
                .to_bytes()
                .windows(8)
                .any(|window| window == b"\"result\"")
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Unary,
    Stream,
    JsonRpc,
}

struct Run {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
    gateway_cpu: f64,
    agent_cpu: f64,
}

impl Run {
    fn percentile(&self, fraction: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies[index].as_secs_f64() * 1e6
    }

    fn per_request(&self, cpu: f64) -> f64 {
        cpu * 1e6 / self.latencies.len().max(1) as f64
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<34} {:>8.0} {:>9.0} {:>9.0} {:>9.1} {:>9.1} {:>6}",
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.per_request(self.gateway_cpu),
            self.per_request(self.agent_cpu),
            self.failures,
        )
    }
}

/// `CONCURRENCY` workers calling `kind` at `address` back to back for
/// `length`.
async fn closed_loop(kind: Kind, address: &str, length: Duration) -> Run {
    let url = format!("http://{address}/agents/bench");
    let (gateway_before, agent_before) = (cpu_of("bench-gw"), cpu_of("bench-agent"));
    let started = Instant::now();
    let deadline = started + length;
    let mut workers = Vec::new();
    let json: JsonClient = Client::builder(TokioExecutor::new()).build(connector());
    // One HTTP/2 connection per eight workers, as a pooled gRPC client would.
    let channels: Vec<GrpcClient> = (0..CONCURRENCY / 8).map(|_| grpc_client(address)).collect();
    for worker in 0..CONCURRENCY {
        let mut grpc = channels[worker % channels.len()].clone();
        let (json, url) = (json.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let sent = Instant::now();
                if call_once(kind, &mut grpc, &json, &url).await {
                    latencies.push(sent.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let (mut latencies, mut failures) = (Vec::new(), 0);
    for worker in workers {
        let (some, failed) = worker.await.expect("worker");
        latencies.extend(some);
        failures += failed;
    }
    latencies.sort();
    Run {
        latencies,
        failures,
        elapsed: started.elapsed(),
        gateway_cpu: cpu_of("bench-gw") - gateway_before,
        agent_cpu: cpu_of("bench-agent") - agent_before,
    }
}

async fn report(agent: &str, gateway: &str, length: Duration) {
    // Warm both paths (connections, the route's channel, allocator).
    closed_loop(Kind::Unary, gateway, Duration::from_millis(500)).await;
    closed_loop(Kind::JsonRpc, gateway, Duration::from_millis(500)).await;
    println!(
        "gRPC through the gateway, c={CONCURRENCY}, {} s per run (one process; CPU per request \
         of the gateway's and the agent's own threads)",
        length.as_secs()
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "run", "req/s", "p50 us", "p99 us", "gw us", "agent us", "failed"
    );
    let unary_direct = closed_loop(Kind::Unary, agent, length).await;
    println!("{}", unary_direct.line("unary, direct"));
    let unary_gateway = closed_loop(Kind::Unary, gateway, length).await;
    println!("{}", unary_gateway.line("unary, gRPC -> gateway -> gRPC"));
    let stream_direct = closed_loop(Kind::Stream, agent, length).await;
    println!("{}", stream_direct.line("stream (3 events), direct"));
    let stream_gateway = closed_loop(Kind::Stream, gateway, length).await;
    println!("{}", stream_gateway.line("stream, gRPC -> gateway -> gRPC"));
    let bridged = closed_loop(Kind::JsonRpc, gateway, length).await;
    println!("{}", bridged.line("unary, JSON-RPC -> gateway -> gRPC"));
    let ratio = |gateway: &Run, yardstick: &Run| {
        gateway.per_request(gateway.gateway_cpu) / yardstick.per_request(yardstick.agent_cpu)
    };
    println!();
    println!(
        "gateway CPU per request as a multiple of the bare agent's: unary {:.2}x, stream {:.2}x",
        ratio(&unary_gateway, &unary_direct),
        ratio(&stream_gateway, &stream_direct)
    );
    println!(
        "added p50/p99 by the gateway: unary {:.0}/{:.0} us, stream {:.0}/{:.0} us",
        unary_gateway.percentile(0.5) - unary_direct.percentile(0.5),
        unary_gateway.percentile(0.99) - unary_direct.percentile(0.99),
        stream_gateway.percentile(0.5) - stream_direct.percentile(0.5),
        stream_gateway.percentile(0.99) - stream_direct.percentile(0.99),
    );
    println!(
        "bridge cost (JSON-RPC client vs gRPC client, same gRPC agent): gateway CPU {:.1} vs \
         {:.1} us/request ({:.2}x), p50 {:.0} vs {:.0} us, p99 {:.0} vs {:.0} us",
        bridged.per_request(bridged.gateway_cpu),
        unary_gateway.per_request(unary_gateway.gateway_cpu),
        bridged.per_request(bridged.gateway_cpu)
            / unary_gateway.per_request(unary_gateway.gateway_cpu),
        bridged.percentile(0.5),
        unary_gateway.percentile(0.5),
        bridged.percentile(0.99),
        unary_gateway.percentile(0.99),
    );
}
