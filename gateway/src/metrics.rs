//! The gateway's metric families and the one `/metrics` exposition
//! (issue #22), on `prometheus-client`: an explicit registry value, no
//! process-global recorder (tests run many servers in one process), text
//! format 0.0.4 as before.
//!
//! Recorded where they happen:
//! - requests by route class, method, agent and status, and their latency
//!   (the `Observe` layer, right inside `Trace`); a gRPC call's outcome is
//!   its `grpc-status` (in the head of a trailers-only answer, else in the
//!   trailers), counted under the HTTP status it corresponds to
//!   ([`http_status_of_grpc`]) and by its code name in
//!   `convergio_grpc_requests_total`;
//! - upstream transport failures by agent and kind (`Rescue` marks the
//!   response, `Observe` counts it);
//! - policy decisions by action and outcome, quota refusals by agent (the
//!   `PolicyGate`);
//! - SSE streams open (`Observe`, for every `text/event-stream` answer).
//!
//! Read at each scrape ([`Scraped`]): circuit state per upstream, the audit
//! queue depth, the database pool's connections in use and idle, process
//! CPU seconds and resident memory (Linux `/proc/self`).
//!
//! Agent names are chosen by registrants and callers, so the `agent` label
//! goes through the orchestrator's [`LabelFold`]: the first
//! `max_agent_labels` names get series of their own, later ones `other`.

use std::sync::Arc;
use std::time::Duration;

use convergio_orchestrator::metrics::{LabelFold, OTHER};
use convergio_policy::AuditSink;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model_metrics::ModelUsageMetrics;
use crate::retention::RetentionMetrics;

/// Latency buckets of gateway requests, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Where the pool gauges read the database's connections from (the store
/// implements it in `convergio serve`; the gateway does not speak SQL).
pub trait PoolUsage: Send + Sync + 'static {
    /// Connections lent out, and connections idle in the pool.
    fn connections(&self) -> (u32, u32);
}

/// Where the circuit gauge reads each upstream's breaker (the A2A client
/// implements it; a trait, so this module does not import the client).
pub trait CircuitStates: Send + Sync + std::fmt::Debug + 'static {
    /// Every upstream called so far, and whether its circuit is open or
    /// half-open (`true`) or closed.
    fn circuit_states(&self) -> Vec<(String, bool)>;
}

/// What the scrape-time gauges read.
#[derive(Clone, Default)]
pub struct MetricSources {
    /// The database pool; no pool gauges without it.
    pub pool: Option<Arc<dyn PoolUsage>>,
    /// The audit queue; no depth gauge without it.
    pub audit: Option<AuditSink>,
}

impl std::fmt::Debug for MetricSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricSources")
            .field("pool", &self.pool.is_some())
            .field("audit", &self.audit.is_some())
            .finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    agent: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    agent: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The gateway's families. Cheap to share (`Arc`); every recording is a
/// lock-free increment after the label set is found.
#[derive(Debug)]
pub struct GatewayMetrics {
    agents: LabelFold,
    requests: Family<RequestLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    quota_refusals: Family<AgentLabel, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    sse_streams_open: Gauge,
    sources: MetricSources,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new(
            convergio_orchestrator::metrics::DEFAULT_MAX_LABELS,
            MetricSources::default(),
        )
    }
}

// === impl GatewayMetrics ===

impl GatewayMetrics {
    /// Families whose `agent` label admits `max_agent_labels` names, with
    /// the scrape-time `sources`.
    pub fn new(max_agent_labels: usize, sources: MetricSources) -> Self {
        Self {
            agents: LabelFold::new(max_agent_labels),
            requests: Family::default(),
            grpc_requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
            decisions: Family::default(),
            quota_refusals: Family::default(),
            config_reloads: Family::default(),
            sse_streams_open: Gauge::default(),
            sources,
        }
    }

    /// The `agent` label value for `name` (folded beyond the cap).
    fn agent_label(&self, name: &str) -> String {
        self.agents.label(name)
    }

    /// Counts one answered request and its latency. `agent` is the agent
    /// the path names, if any; a 404 never admits a new agent name (callers
    /// could otherwise fill the label set with names that do not exist).
    pub fn record_request(
        &self,
        route: &'static str,
        method: &axum::http::Method,
        agent: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let agent = match agent {
            None => String::new(),
            Some(_) if status == 404 => OTHER.to_owned(),
            Some(name) => self.agent_label(name),
        };
        let method = method_label(method);
        self.latency
            .get_or_create(&RouteLabels { route, method })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                agent,
                status,
            })
            .inc();
    }

    /// Counts one answered gRPC call by its `grpc-status` code (the
    /// request itself is counted by [`GatewayMetrics::record_request`]
    /// under [`http_status_of_grpc`] of the same code).
    pub fn record_grpc_status(&self, code: i32) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                code: grpc_code_name(code),
            })
            .inc();
    }

    /// The gateway's own families in the text format (without the other
    /// sources [`Exposition`] adds): for tests and tools that hold only
    /// these metrics.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    /// Counts an upstream transport failure of `kind` calling `agent`.
    pub fn record_upstream_error(&self, agent: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                agent: self.agent_label(agent),
                kind,
            })
            .inc();
    }

    /// Counts one policy decision on `action`.
    pub fn record_decision(&self, action: &'static str, allowed: bool) {
        let decision = if allowed { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels { action, decision })
            .inc();
    }

    /// Counts a call refused by a spent quota.
    pub fn record_quota_refusal(&self, agent: &str) {
        self.quota_refusals
            .get_or_create(&AgentLabel {
                agent: self.agent_label(agent),
            })
            .inc();
    }

    /// Counts one configuration reload: applied whole (`ok`) or refused
    /// whole (`refused`, the old configuration stays).
    pub fn record_config_reload(&self, applied: bool) {
        let result = if applied { "ok" } else { "refused" };
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Counts an SSE stream open until the guard is dropped.
    pub fn sse_stream(&self) -> SseStreamGuard {
        self.sse_streams_open.inc();
        SseStreamGuard(self.sse_streams_open.clone())
    }

    /// Adds the recorded families to `registry` (handles, not copies).
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "convergio_http_requests",
            "Requests answered, by route class, method, agent and status",
            self.requests.clone(),
        );
        registry.register(
            "convergio_grpc_requests",
            "gRPC calls answered, by grpc-status code (also counted in convergio_http_requests_total under the matching HTTP status)",
            self.grpc_requests.clone(),
        );
        registry.register(
            "convergio_http_request_duration_seconds",
            "Time to the response head, by route class and method",
            self.latency.clone(),
        );
        registry.register(
            "convergio_upstream_errors",
            "Upstream transport failures (unreachable, timeout, invalid answer, refused by its guard), by agent",
            self.upstream_errors.clone(),
        );
        registry.register(
            "convergio_policy_decisions",
            "Policy decisions by action and outcome",
            self.decisions.clone(),
        );
        registry.register(
            "convergio_quota_refusals",
            "Calls refused by a spent quota, by agent",
            self.quota_refusals.clone(),
        );
        registry.register(
            "convergio_config_reloads",
            "Configuration reloads (SIGHUP or a changed file), applied (ok) or refused whole",
            self.config_reloads.clone(),
        );
        registry.register(
            "convergio_sse_streams_open",
            "Server-sent event streams being answered",
            self.sse_streams_open.clone(),
        );
    }
}

/// Decrements the open-streams gauge when the stream's body is dropped.
#[derive(Debug)]
pub struct SseStreamGuard(Gauge);

impl Drop for SseStreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The whole `/metrics` document: the orchestrator's, the gateway's and
/// retention's families and the scrape-time gauges, in one registry built
/// once with the application.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

// === impl Exposition ===

impl Exposition {
    /// One registry over every source.
    pub(crate) fn new(
        gateway: Arc<GatewayMetrics>,
        executor: &convergio_orchestrator::Metrics,
        upstreams: Box<dyn CircuitStates>,
        retention: Option<Arc<RetentionMetrics>>,
        models: Option<Arc<ModelUsageMetrics>>,
    ) -> Self {
        let mut registry = Registry::default();
        executor.register(&mut registry);
        gateway.register(&mut registry);
        if let Some(retention) = retention {
            registry.register_collector(Box::new(retention));
        }
        if let Some(models) = models {
            registry.register_collector(Box::new(models));
        }
        registry.register_collector(Box::new(Scraped { gateway, upstreams }));
        Self { registry }
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// The values read at each scrape.
#[derive(Debug)]
struct Scraped {
    gateway: Arc<GatewayMetrics>,
    upstreams: Box<dyn CircuitStates>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Circuit state per upstream: 1 open (or probing), 0 closed; folded
        // agents add up under `other`.
        let mut circuits: std::collections::BTreeMap<String, i64> = Default::default();
        for (agent, open) in self.upstreams.circuit_states() {
            *circuits
                .entry(self.gateway.agent_label(&agent))
                .or_insert(0) += i64::from(open);
        }
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "convergio_upstream_circuit_open",
            "Upstreams whose circuit breaker is open or half-open (1), by agent.",
            None,
            gauge.metric_type(),
        )?;
        for (agent, open) in &circuits {
            let labels = [("agent", agent.as_str())];
            ConstGauge::new(*open).encode(family.encode_family(&labels)?)?;
        }
        if let Some(audit) = &self.gateway.sources.audit {
            let depth = ConstGauge::new(audit.queued() as i64);
            depth.encode(encoder.encode_descriptor(
                "convergio_audit_queue_depth",
                "Audit records queued and not yet written.",
                None,
                depth.metric_type(),
            )?)?;
        }
        if let Some(pool) = &self.gateway.sources.pool {
            let (in_use, idle) = pool.connections();
            let mut family = encoder.encode_descriptor(
                "convergio_db_pool_connections",
                "Database pool connections, in use or idle.",
                None,
                gauge.metric_type(),
            )?;
            for (state, count) in [("in_use", in_use), ("idle", idle)] {
                let labels = [("state", state)];
                ConstGauge::new(i64::from(count)).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(process) = ProcessStats::read() {
            let cpu = ConstCounter::new(process.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of this process, in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new(process.resident_bytes as i64);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of this process, in bytes.",
                None,
                rss.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// CPU time and resident memory of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
}

impl ProcessStats {
    /// Read from `/proc/self` (Linux); `None` elsewhere or when unreadable.
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&stat, &status)
    }

    /// `stat`'s utime and stime (fields 14 and 15, in clock ticks of
    /// `USER_HZ`, which Linux fixes at 100 for user space) and `status`'s
    /// `VmRSS` (kB).
    fn parse(stat: &str, status: &str) -> Option<Self> {
        // The command name (field 2) may hold spaces: count after its ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `after_name` starts at field 3 (state), so field N is index N - 3.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / 100.0,
            resident_bytes: rss_kib * 1024,
        })
    }
}

/// The route class of a request path: a small fixed set, so the label
/// stays bounded whatever callers send.
pub fn route_class(path: &str) -> &'static str {
    match path {
        "/healthz" | "/readyz" => return "health",
        "/metrics" => return "metrics",
        "/a2a" | "/v1/envelope" => return "a2a",
        _ => {}
    }
    let prefixes: [(&str, &'static str); 13] = [
        ("/agents/", "a2a"),
        (crate::grpc_status::SERVICE_PATH, "a2a"),
        ("/a2a/", "a2a"),
        ("/external/", "a2a"),
        ("/.well-known/", "discovery"),
        ("/v1/agents", "registry"),
        ("/v1/graphs", "graphs"),
        ("/v1/runs", "runs"),
        ("/v1/policies", "policy"),
        ("/v1/policy", "policy"),
        ("/v1/audit", "audit"),
        ("/v1/peers", "federation"),
        ("/v1/api-keys", "keys"),
    ];
    prefixes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or("other", |(_, class)| *class)
}

/// The HTTP status a `grpc-status` code corresponds to (the mapping of
/// `google/rpc/code.proto`; 499 for a cancelled call, as there). A code
/// outside the table is an unknown error: 500.
pub fn http_status_of_grpc(code: i32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The name of a `grpc-status` code; a code outside the table is `UNKNOWN`.
fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|index| NAMES.get(index))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// The method label: the standard methods by name, anything else `other`
/// (a client may send any token as a method).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", |known| known.as_str())
}

/// The agent an A2A path names (`/agents/{name}/…`), if any.
pub fn agent_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/agents/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn route_classes_are_a_fixed_set() {
        for (path, class) in [
            ("/healthz", "health"),
            ("/readyz", "health"),
            ("/metrics", "metrics"),
            ("/agents/echo", "a2a"),
            ("/agents/echo/.well-known/agent-card.json", "a2a"),
            ("/lf.a2a.v1.A2AService/GetTask", "a2a"),
            ("/v1/agents/echo/versions", "registry"),
            ("/v1/runs/1/events", "runs"),
            ("/v1/audit:verify", "audit"),
            ("/anything/else", "other"),
        ] {
            assert_eq!(route_class(path), class, "{path}");
        }
        assert_eq!(agent_of("/agents/echo/tasks/1"), Some("echo"));
        assert_eq!(agent_of("/agents/"), None);
        assert_eq!(agent_of("/v1/agents/echo"), None);
    }

    #[test]
    fn agent_labels_beyond_the_cap_fold_into_other() {
        let metrics = GatewayMetrics::new(2, MetricSources::default());
        for index in 0..10 {
            let agent = format!("agent-{index}");
            metrics.record_request("a2a", &Method::POST, Some(&agent), 200, Duration::ZERO);
        }
        // Unknown agents (404) never take a place.
        metrics.record_request("a2a", &Method::POST, Some("nobody"), 404, Duration::ZERO);
        let custom = Method::from_bytes(b"BREW").expect("a method token");
        metrics.record_request("other", &custom, None, 405, Duration::ZERO);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("convergio_http_requests_total{"))
            .collect();
        assert_eq!(series.len(), 5, "{series:?}");
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(!text.contains("BREW"), "{text}");
        assert!(
            text.contains(
                "convergio_http_requests_total{route=\"a2a\",method=\"POST\",agent=\"other\",status=\"200\"} 8"
            ),
            "{text}"
        );
        assert!(text.contains("agent=\"agent-1\""), "{text}");
        assert!(!text.contains("nobody"), "{text}");
    }

    #[test]
    fn grpc_codes_map_to_their_http_statuses_and_names() {
        for (code, status, name) in [
            (0, 200, "OK"),
            (1, 499, "CANCELLED"),
            (3, 400, "INVALID_ARGUMENT"),
            (5, 404, "NOT_FOUND"),
            (9, 400, "FAILED_PRECONDITION"),
            (13, 500, "INTERNAL"),
            (14, 503, "UNAVAILABLE"),
            (16, 401, "UNAUTHENTICATED"),
            (99, 500, "UNKNOWN"),
            (-1, 500, "UNKNOWN"),
        ] {
            assert_eq!(http_status_of_grpc(code), status, "{code}");
            assert_eq!(grpc_code_name(code), name, "{code}");
        }
    }

    #[test]
    fn process_stats_parse_proc_files() {
        let stat = "4242 (convergio serve) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        let status = "Name:\tconvergio\nVmRSS:\t   20480 kB\nThreads:\t8\n";
        assert_eq!(
            ProcessStats::parse(stat, status),
            Some(ProcessStats {
                cpu_seconds: 3.0,
                resident_bytes: 20480 * 1024,
            })
        );
        assert_eq!(ProcessStats::parse("garbage", status), None);
    }
}
