//! Discovery benchmark (a bench binary, not a timed test): generates varied,
//! realistic agent cards, bulk-registers them through `Registry`, and prints
//! for SQLite and PostgreSQL the registration rate, p50/p99 latency and
//! queries per second of five discovery shapes (page_size 20), and the p99 of
//! a cached `Registry::get`.
//!
//! `BENCH_CARDS` sets the card count (default 100 000); `BENCH_BACKENDS`
//! picks backends (`sqlite,postgres` by default); PostgreSQL comes from
//! `CONVERGIO_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and gets a fresh database that is dropped at the end; `BENCH_SQLITE_FILE`
//! keeps the SQLite database at that (new) path instead of a temporary one.
//!
//! Targets on the 2-core reference machine: registration ≥ 5 000 cards/s,
//! discovery p99 ≤ 5 ms at 100 000 cards on SQLite, cached get p99 ≤ 200 µs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use convergio_registry::model::{Actor, Registration};
use convergio_registry::{AnyUpstream, DiscoveryQuery, Registry, RegistryConfig, Store};
use convergio_schemas::{AgentId, AgentRole, TrustLevel};
use convergio_store::registry::AgentStore;
use convergio_store::{Db, DbConfig};
use convergio_tests::postgres::TestDatabase;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

// The `convergio` binary's allocator, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAINS: &[&str] = &[
    "weather",
    "translation",
    "invoice",
    "payments",
    "shipping",
    "inventory",
    "recruiting",
    "calendar",
    "email",
    "search",
    "legal",
    "contracts",
    "medical",
    "radiology",
    "billing",
    "tax",
    "accounting",
    "marketing",
    "seo",
    "advertising",
    "sales",
    "crm",
    "support",
    "ticketing",
    "security",
    "compliance",
    "audit",
    "logistics",
    "travel",
    "hotel",
    "flights",
    "maps",
    "geocoding",
    "news",
    "finance",
    "stocks",
    "crypto",
    "insurance",
    "claims",
    "energy",
    "manufacturing",
    "quality",
    "robotics",
    "code",
    "testing",
    "deployment",
    "monitoring",
    "database",
    "analytics",
    "reporting",
    "education",
    "tutoring",
    "music",
    "video",
    "images",
    "speech",
    "transcription",
    "summaries",
    "research",
    "patents",
];
const VERBS: &[&str] = &[
    "extract",
    "classify",
    "summarize",
    "translate",
    "forecast",
    "validate",
    "search",
    "recommend",
    "schedule",
    "route",
    "detect",
    "generate",
    "review",
    "plan",
    "monitor",
    "reconcile",
    "transcribe",
    "score",
    "match",
    "notify",
    "convert",
    "explain",
    "audit",
    "optimize",
    "draft",
];
const OBJECTS: &[&str] = &[
    "documents",
    "records",
    "orders",
    "tickets",
    "messages",
    "reports",
    "images",
    "invoices",
    "contracts",
    "events",
    "metrics",
    "queries",
    "claims",
    "shipments",
    "profiles",
    "leads",
    "transactions",
    "alerts",
    "articles",
    "recordings",
];
const TAGS: &[&str] = &[
    "nlp",
    "vision",
    "ocr",
    "pdf",
    "finance",
    "health",
    "legal",
    "realtime",
    "batch",
    "eu",
    "us",
    "gdpr",
    "hipaa",
    "internal",
    "public",
    "beta",
    "stable",
    "multilingual",
    "english",
    "italian",
    "german",
    "spanish",
    "french",
    "japanese",
    "analytics",
    "etl",
    "sql",
    "graph",
    "timeseries",
    "geo",
    "audio",
    "video",
    "chat",
    "email",
    "voice",
    "mobile",
    "web",
    "iot",
    "security",
    "privacy",
    "cost",
    "latency",
    "accuracy",
    "summaries",
    "search",
    "ranking",
    "forecasting",
    "anomaly",
    "fraud",
    "risk",
    "pricing",
    "logistics",
    "retail",
    "banking",
    "insurance",
    "energy",
    "education",
    "media",
    "gaming",
    "travel",
];
const MODES: &[&str] = &[
    "text/plain",
    "application/json",
    "text/markdown",
    "text/csv",
    "application/pdf",
    "image/png",
    "image/jpeg",
    "audio/wav",
    "audio/mpeg",
    "video/mp4",
    "text/html",
    "application/xml",
];
const ADJECTIVES: &[&str] = &[
    "Swift", "Precise", "Smart", "Lean", "Atlas", "Nova", "Polar", "Quantum", "Bright", "Clear",
    "Vector", "Orbit", "Prime", "Rapid", "Solid", "Terra",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or("x")
}

fn org_for(rng: &mut StdRng) -> Option<String> {
    // About a third of the agents are ours; the rest spread over 60 orgs.
    if rng.gen_bool(0.35) {
        None
    } else {
        Some(format!("org{}.example", rng.gen_range(0..60)))
    }
}

fn generate(index: usize, rng: &mut StdRng) -> Registration {
    let domain = pick(rng, DOMAINS);
    let name = format!("{} {domain} agent {index}", pick(rng, ADJECTIVES));
    let skill_count = rng.gen_range(1..=4);
    let mut skills = Vec::new();
    for s in 0..skill_count {
        let verb = pick(rng, VERBS);
        let object = pick(rng, OBJECTS);
        let tag_count = rng.gen_range(2..=4);
        let mut tags: Vec<&str> = (0..tag_count).map(|_| pick(rng, TAGS)).collect();
        tags.sort_unstable();
        tags.dedup();
        let mut skill = json!({
            "id": format!("{verb}-{object}"),
            "name": format!("{} {object}", capitalise(verb)),
            "description": format!("{} {domain} {object} and return structured results ({s})", capitalise(verb)),
            "tags": tags,
            "examples": [format!("{verb} these {object}")],
        });
        if rng.gen_bool(0.3) {
            skill["inputModes"] = json!([pick(rng, MODES)]);
        }
        skills.push(skill);
    }
    let input = pick(rng, MODES);
    let output = pick(rng, MODES);
    let port = 10_000 + index % 50_000;
    let card = json!({
        "name": name,
        "description": format!(
            "{} service for {domain}: {} {} and {} {} for teams in {}.",
            capitalise(domain), pick(rng, VERBS), pick(rng, OBJECTS), pick(rng, VERBS),
            pick(rng, OBJECTS), pick(rng, TAGS)
        ),
        "supportedInterfaces": [
            {"url": format!("http://10.0.{}.{}:{port}/a2a", index / 250 % 250, index % 250), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "provider": {"url": "https://example.org", "organization": "Bench"},
        "version": "1.0.0",
        "capabilities": {"streaming": rng.gen_bool(0.5)},
        "defaultInputModes": [input, "text/plain"],
        "defaultOutputModes": [output],
        "skills": skills,
    });
    let roles = AgentRole::ALL;
    Registration {
        name: Some(format!("agent-{index:06}")),
        org: org_for(rng),
        role: Some(roles[rng.gen_range(0..roles.len())]),
        card,
        upstreams: None,
        trust: None,
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// Makes one discovery query of a shape, with random parameters.
type QueryShape = Box<dyn Fn(&mut StdRng) -> DiscoveryQuery>;

struct Stats {
    p50: Duration,
    p99: Duration,
    qps: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        qps: samples.len() as f64 / total.as_secs_f64().max(1e-9),
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

async fn run(backend: &str, url: &str, cards: usize) {
    println!("\n== {backend}: {cards} cards ==");
    let store: Arc<dyn Store> = match open(url).await {
        Ok(store) => Arc::new(store),
        Err(error) => {
            println!("cannot open {backend}: {error}");
            return;
        }
    };
    let registry = Registry::new(
        store.clone(),
        RegistryConfig::default(),
        Arc::new(AnyUpstream),
    );
    let mut rng = StdRng::seed_from_u64(42);
    let registrations: Vec<Registration> = (0..cards).map(|i| generate(i, &mut rng)).collect();
    let admin = Actor::admin();
    let started = Instant::now();
    let mut loaded = 0u64;
    // Two registration clients at once: one batch is validated while the
    // other is written (the store serialises the writes themselves).
    let mut in_flight: tokio::task::JoinSet<convergio_registry::Result<u64>> =
        tokio::task::JoinSet::new();
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    for registration in registrations {
        batch.push(registration);
        if batch.len() == 2_000 {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    for batch in batches {
        if in_flight.len() >= 2 {
            if let Some(done) = in_flight.join_next().await {
                loaded += done.expect("task").expect("bulk register");
            }
        }
        let registry = registry.clone();
        let admin = admin.clone();
        in_flight.spawn(async move { registry.bulk_register(&admin, batch).await });
    }
    while let Some(done) = in_flight.join_next().await {
        loaded += done.expect("task").expect("bulk register");
    }
    let elapsed = started.elapsed();
    println!(
        "registration: {loaded} cards in {:.2} s = {:.0} cards/s (validated, indexed; batches of 2000, two clients)",
        elapsed.as_secs_f64(),
        loaded as f64 / elapsed.as_secs_f64()
    );

    // Vary trust after the timed load (registrations all start at
    // `registered`): a hundred of our agents become trusted or untrusted.
    let page = registry
        .discover(&DiscoveryQuery {
            org: Some("convergio.local".into()),
            page_size: Some(100),
            ..Default::default()
        })
        .await
        .expect("list");
    let mut changed = 0;
    for (i, record) in page.items.iter().enumerate() {
        let level = if i % 2 == 0 {
            TrustLevel::Trusted
        } else {
            TrustLevel::Untrusted
        };
        registry
            .set_trust(&admin, &record.id, level, "bench variety", None)
            .await
            .expect("trust");
        changed += 1;
    }
    store.analyze().await.expect("analyze");
    println!("trust changes: {changed} agents; planner statistics refreshed");

    let iterations = 400;
    let shapes: Vec<(&str, QueryShape)> = vec![
        (
            "by skill",
            Box::new(|rng: &mut StdRng| DiscoveryQuery {
                skill: Some(format!("{}-{}", pick(rng, VERBS), pick(rng, OBJECTS))),
                ..Default::default()
            }),
        ),
        (
            "by tag + min_trust",
            Box::new(|rng: &mut StdRng| DiscoveryQuery {
                tag: Some(pick(rng, TAGS).to_owned()),
                min_trust: Some(TrustLevel::Registered),
                ..Default::default()
            }),
        ),
        (
            "by org",
            Box::new(|rng: &mut StdRng| DiscoveryQuery {
                org: Some(format!("org{}.example", rng.gen_range(0..60))),
                ..Default::default()
            }),
        ),
        (
            "free text",
            Box::new(|rng: &mut StdRng| DiscoveryQuery {
                q: Some(format!("{} {}", pick(rng, DOMAINS), pick(rng, OBJECTS))),
                ..Default::default()
            }),
        ),
        (
            "free text + filters",
            Box::new(|rng: &mut StdRng| DiscoveryQuery {
                q: Some(pick(rng, DOMAINS).to_owned()),
                role: Some(AgentRole::ALL[rng.gen_range(0..5)]),
                input_mode: Some("text/plain".to_owned()),
                ..Default::default()
            }),
        ),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for (label, shape) in &shapes {
        let mut samples = Vec::with_capacity(iterations);
        let mut hits = 0usize;
        // The slowest query of the shape, to tell a pathological one apart.
        let mut slowest: Option<(Duration, DiscoveryQuery)> = None;
        for _ in 0..iterations {
            let mut query = shape(&mut rng);
            query.page_size = Some(20);
            let started = Instant::now();
            let page = registry.discover(&query).await.expect("discover");
            let elapsed = started.elapsed();
            samples.push(elapsed);
            hits += page.items.len();
            if slowest.as_ref().is_none_or(|(worst, _)| elapsed > *worst) {
                slowest = Some((elapsed, query));
            }
        }
        let stats = stats(samples);
        println!(
            "discovery {label:<20} p50 {:>8}  p99 {:>8}  {:>7.0} q/s  (avg {:.1} results/page)",
            micros(stats.p50),
            micros(stats.p99),
            stats.qps,
            hits as f64 / iterations as f64
        );
        if let Some((worst, query)) = slowest {
            println!(
                "          slowest: {} for q={:?} skill={:?} tag={:?} org={:?} role={:?}",
                micros(worst),
                query.q.unwrap_or_default(),
                query.skill.unwrap_or_default(),
                query.tag.unwrap_or_default(),
                query.org.unwrap_or_default(),
                query.role.map(|role| role.as_str()).unwrap_or_default(),
            );
        }
    }

    let ids: Vec<AgentId> = (0..1_000)
        .map(|i| {
            let index = (i * 97) % cards.max(1);
            format!("agent-{index:06}")
        })
        // Only the agents of our own org have internal ids; others are skipped.
        .filter_map(|name| AgentId::internal(&name).ok())
        .collect();
    let mut live = Vec::new();
    for id in ids {
        if registry.get(&id).await.is_ok() {
            live.push(id);
        }
    }
    let mut samples = Vec::new();
    for round in 0..20 {
        for id in &live {
            let started = Instant::now();
            let _ = registry.get(id).await.expect("cached get");
            if round > 0 {
                samples.push(started.elapsed());
            }
        }
    }
    let stats = stats(samples);
    println!(
        "cached Registry::get     p50 {:>8}  p99 {:>8}  {:>7.0} q/s  ({} hot ids)",
        micros(stats.p50),
        micros(stats.p99),
        stats.qps,
        live.len()
    );

    // One card per call and per transaction, as `POST /v1/agents` does, on
    // top of the loaded registry (after the discovery figures, which stay at
    // exactly `cards` agents).
    let single = 2_000;
    let mut rng = StdRng::seed_from_u64(43);
    let extra: Vec<Registration> = (cards..cards + single)
        .map(|i| generate(i, &mut rng))
        .collect();
    let started = Instant::now();
    for registration in extra {
        registry
            .register(&admin, registration)
            .await
            .expect("register one card");
    }
    let elapsed = started.elapsed();
    println!(
        "single registration: {single} cards in {:.2} s = {:.0} cards/s (one card per call and transaction, one client)",
        elapsed.as_secs_f64(),
        single as f64 / elapsed.as_secs_f64()
    );

    if backend == "sqlite" {
        // Opening builds SQLite's in-memory text index from every row: what
        // a restart costs, and what the second copy adds to this process.
        let rss_before = rss_megabytes();
        let started = Instant::now();
        let reopened = open(url).await.expect("reopen");
        let elapsed = started.elapsed();
        println!(
            "reopen: {:.0} ms to open the database and build the text index of {} agents; \
             index {:.1} MB (RSS +{:.1} MB, which counts the database pages the load mapped)",
            elapsed.as_secs_f64() * 1e3,
            cards + single,
            reopened.text_index_bytes() as f64 / (1 << 20) as f64,
            rss_megabytes() - rss_before
        );
        drop(reopened);
    }
}

/// Opens the database at `url` (a pool of its own) and its agent store.
async fn open(url: &str) -> Result<AgentStore, Box<dyn std::error::Error>> {
    let db = Db::open(url, &DbConfig::default()).await?;
    Ok(AgentStore::open(&db).await?)
}

/// This process's resident memory.
fn rss_megabytes() -> f64 {
    convergio_tests::proc::rss_megabytes(std::process::id())
}

fn main() {
    let cards: usize = std::env::var("BENCH_CARDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if backends.contains("sqlite") {
            // `BENCH_SQLITE_FILE` keeps the loaded database for inspection
            // (it must not exist yet); by default it lives in a temporary
            // directory removed at the end.
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = std::env::var("BENCH_SQLITE_FILE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| dir.path().join("bench.db"));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            run("sqlite", &url, cards).await;
        }
        if backends.contains("postgres") {
            let admin_url = convergio_tests::postgres::admin_url();
            match convergio_store::admin::database_exists(&admin_url, "postgres").await {
                Ok(_) => {
                    // Dropped when the bench ends, or unwinds from a panic.
                    let database = TestDatabase::create("convergio_bench").await;
                    run("postgres", database.url(), cards).await;
                }
                Err(error) => println!("\n== postgres: not reachable at {admin_url}: {error} =="),
            }
        }
    });
}
