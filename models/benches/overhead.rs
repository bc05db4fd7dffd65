//! Model agent overhead against the fake provider called directly
//! (`cargo bench -p convergio-models --bench overhead`): added p50/p99 per
//! blocking call and per streamed chunk, then 1,000 concurrent streaming
//! conversations held open with peak RSS and CPU printed.
//!
//! Everything runs in this one process on loopback: the fake provider, the
//! model agent (`ModelLogic` served by `spawn_logic`) and the clients. The
//! RSS figure therefore covers all three, an upper bound for the agent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convergio_agents::{spawn_logic, RunningAgent, ServeOptions};
use convergio_models::fake::{FakeOpenAi, FakeProvider, FakeReply};
use convergio_models::{
    card, provider, ApiKey, ChatMessage, ChatRequest, ClientSettings, EnvKeys,
    InMemoryConversations, ModelAgentConfig, ModelLogic, NoRecall, NoTools, ProviderKind,
    Unmetered, Usage,
};
use futures_util::StreamExt;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "sk-bench";
const CALLS: usize = 2_000;
const CHUNKS: usize = 100;
const STREAMS: usize = 1_000;

fn usage() -> Usage {
    Usage {
        input_tokens: 10,
        output_tokens: CHUNKS as u64,
    }
}

fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "fake-model".into(),
        system: Some("Be brief.".into()),
        messages: vec![ChatMessage::user("Hello")],
        tools: Vec::new(),
        max_tokens: 1024,
        temperature: None,
        stream: true,
        response_schema: None,
    }
}

async fn serve_agent(fake: &FakeProvider) -> RunningAgent {
    let config = ModelAgentConfig::new(
        "bench",
        "acme",
        ProviderKind::OpenAi,
        "fake-model",
        fake.base_url(),
        "env:BENCH_KEY",
    );
    let provider = provider::client(config.provider, fake.base_url(), ClientSettings::default())
        .expect("client");
    let keys = EnvKeys::from_map([("BENCH_KEY".to_owned(), KEY.to_owned())].into());
    let template = card(&config);
    let logic = ModelLogic::new(
        config,
        provider,
        Arc::new(keys),
        Arc::new(InMemoryConversations::default()),
        Arc::new(NoTools),
        Arc::new(Unmetered),
        Arc::new(NoRecall),
    )
    .expect("logic");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    spawn_logic(Arc::new(logic), template, listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

/// One direct provider call read to its end.
async fn direct_call(client: &Arc<dyn convergio_models::Provider>, key: &ApiKey) -> Duration {
    let started = Instant::now();
    let mut stream = client.chat(request(), key).await.expect("call");
    while let Some(event) = stream.next().await {
        event.expect("event");
    }
    started.elapsed()
}

fn body(method: &str) -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": method,
        "params": {"message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": "Hello"}]}},
    })
    .to_string()
}

/// One blocking `SendMessage` through the agent.
async fn agent_call(http: &reqwest::Client, base_url: &str) -> Duration {
    let started = Instant::now();
    let answer = http
        .post(base_url)
        .header("A2A-Version", "1.0")
        .header("content-type", "application/json")
        .body(body("SendMessage"))
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("answer");
    assert!(
        answer.windows(20).any(|w| w == b"TASK_STATE_COMPLETED"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    started.elapsed()
}

/// One `SendStreamingMessage` through the agent, read to its end.
async fn agent_stream(http: &reqwest::Client, base_url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let response = http
        .post(base_url)
        .header("A2A-Version", "1.0")
        .header("content-type", "application/json")
        .body(body("SendStreamingMessage"))
        .send()
        .await
        .expect("sent");
    let mut bytes = response.bytes_stream();
    let mut events = 0;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.expect("chunk");
        events += chunk.windows(2).filter(|w| w == b"\n\n").count();
    }
    (started.elapsed(), events)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of this process (USER_HZ = 100).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // After the `)` closing the command name, field 3 (the state)
            // comes first, so utime (14) and stime (15) sit at 11 and 12.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn blocking_overhead() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.set_fallback(FakeReply::text(
        "A short answer of a few words.",
        4,
        usage(),
    ));
    let client = provider::client(
        ProviderKind::OpenAi,
        fake.base_url(),
        ClientSettings::default(),
    )
    .expect("client");
    let key = ApiKey::new("env:BENCH_KEY", KEY);
    let agent = serve_agent(&fake).await;
    let http = reqwest::Client::new();
    for _ in 0..200 {
        direct_call(&client, &key).await;
        agent_call(&http, &agent.base_url).await;
    }
    let mut direct = Vec::with_capacity(CALLS);
    let mut through_agent = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        direct.push(direct_call(&client, &key).await);
        through_agent.push(agent_call(&http, &agent.base_url).await);
    }
    let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
    let (a50, a99) = (
        percentile(&mut through_agent, 0.5),
        percentile(&mut through_agent, 0.99),
    );
    println!("blocking call ({CALLS} calls, 4-chunk answer):");
    println!(
        "  fake provider direct  p50 {:8.1} µs  p99 {:8.1} µs",
        micros(d50),
        micros(d99)
    );
    println!(
        "  through model agent   p50 {:8.1} µs  p99 {:8.1} µs",
        micros(a50),
        micros(a99)
    );
    println!(
        "  added                 p50 {:8.1} µs  p99 {:8.1} µs",
        micros(a50.saturating_sub(d50)),
        micros(a99.saturating_sub(d99))
    );
}

async fn chunk_overhead() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let text: String = (0..CHUNKS).map(|i| format!("w{i:03} ")).collect();
    fake.set_fallback(FakeReply::text(&text, CHUNKS, usage()));
    let client = provider::client(
        ProviderKind::OpenAi,
        fake.base_url(),
        ClientSettings::default(),
    )
    .expect("client");
    let key = ApiKey::new("env:BENCH_KEY", KEY);
    let agent = serve_agent(&fake).await;
    let http = reqwest::Client::new();
    let rounds = CALLS / 4;
    for _ in 0..50 {
        direct_call(&client, &key).await;
        agent_stream(&http, &agent.base_url).await;
    }
    let mut direct = Vec::with_capacity(rounds);
    let mut through_agent = Vec::with_capacity(rounds);
    let mut events = 0;
    for _ in 0..rounds {
        direct.push(direct_call(&client, &key).await);
        let (elapsed, seen) = agent_stream(&http, &agent.base_url).await;
        through_agent.push(elapsed);
        events = seen;
    }
    let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
    let (a50, a99) = (
        percentile(&mut through_agent, 0.5),
        percentile(&mut through_agent, 0.99),
    );
    let per_chunk =
        |agent: Duration, direct: Duration| micros(agent.saturating_sub(direct)) / CHUNKS as f64;
    println!("streamed answer ({rounds} streams of {CHUNKS} chunks; {events} SSE events each through the agent):");
    println!(
        "  fake provider direct  p50 {:8.1} µs  p99 {:8.1} µs per stream",
        micros(d50),
        micros(d99)
    );
    println!(
        "  through model agent   p50 {:8.1} µs  p99 {:8.1} µs per stream",
        micros(a50),
        micros(a99)
    );
    println!(
        "  added per chunk       p50 {:8.2} µs  p99 {:8.2} µs",
        per_chunk(a50, d50),
        per_chunk(a99, d99)
    );
}

async fn concurrent_streams() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let text: String = (0..20).map(|i| format!("w{i:02} ")).collect();
    fake.set_fallback(FakeReply::text(&text, 20, usage()));
    // 20 chunks 250 ms apart: each conversation stays open about 5 s, so
    // all of them are open together.
    fake.set_chunk_delay(Duration::from_millis(250));
    let agent = serve_agent(&fake).await;
    let base_url = agent.base_url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(STREAMS)
        .build()
        .expect("client");
    let rss_before = rss_kib();
    let cpu_before = cpu_time();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let http = http.clone();
            let base_url = base_url.clone();
            tokio::spawn(async move { agent_stream(&http, &base_url).await.1 })
        })
        .collect();
    let mut complete = 0;
    for stream in streams {
        if stream.await.unwrap_or(0) >= 20 {
            complete += 1;
        }
    }
    let wall = started.elapsed();
    sampler.abort();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let peak = peak.load(Ordering::Relaxed);
    println!("{STREAMS} concurrent streaming conversations (20 chunks, 250 ms apart):");
    println!(
        "  completed {complete}/{STREAMS} in {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "  RSS before {:.1} MB, peak {:.1} MB (+{:.1} MB; fake provider, agent and clients in one process)",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "  CPU {:.2} s over {:.2} s wall ({:.0}% of one core)",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        blocking_overhead().await;
        chunk_overhead().await;
        concurrent_streams().await;
    });
}
