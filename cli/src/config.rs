//! The one configuration file of `convergio serve`: versioned YAML with
//! `deny_unknown_fields`, documented defaults, and `CONVERGIO_*` overrides.
//!
//! Precedence, highest first: command-line flags, environment, file,
//! defaults. Parsing happens once, at start-up, into validated types; tests
//! pass the environment as a map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use convergio_gateway::ssrf::AllowList;
use serde::{Deserialize, Serialize};

pub use crate::config_error::{parse_env, ConfigError};
use crate::env;
use crate::security_config::{
    self, AuthSection, SecuritySettings, ServerSection, TlsSection, UpstreamCredentialSection,
};

/// The only config version this binary reads.
pub const CONFIG_VERSION: u32 = 1;

/// The config file, as written. Every field has a default, so an empty file
/// (or no file) is a valid config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// Config format version; must be 1.
    pub version: u32,
    /// Where the SQLite file, the admin token and keys live. Default `./.convergio`.
    pub data_dir: PathBuf,
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Database URL. Default: `sqlite://<data_dir>/convergio.db`.
    pub database_url: Option<String>,
    /// Connections in the one database pool of this process. Default 8 for
    /// a SQLite file, 16 for PostgreSQL (size it under the server's
    /// `max_connections` divided by the replicas).
    pub database_pool_size: Option<u32>,
    /// This deployment's organisation (a DNS domain). Default `convergio.local`.
    pub org_domain: String,
    /// Bootstrap administrator token. Default: generated on first start and
    /// stored in `<data_dir>/admin-token`.
    pub admin_token: Option<String>,
    /// Example agents.
    pub examples: ExamplesConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Graphs of agents.
    pub graphs: GraphsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication (see `security_config.rs`).
    pub auth: AuthSection,
    /// TLS listener; plaintext when absent.
    pub tls: Option<TlsSection>,
    /// Connection bounds of the listener.
    pub server: ServerSection,
    /// Credentials the gateway presents to upstream agents, by agent name.
    pub upstream_credentials: std::collections::BTreeMap<String, UpstreamCredentialSection>,
    /// Rate limits and budgets, enforced before an upstream is called.
    /// Default: none.
    pub quotas: convergio_policy::QuotaConfig,
    /// Which non-public addresses upstreams may have (the SSRF guard).
    pub network: NetworkConfig,
    /// Federation: this organisation's signing identity and its peers.
    pub federation: FederationSection,
    /// How long the rows every call adds are kept (task routes, audit
    /// records, finished runs, peer nonces), and how the pruner runs.
    /// Defaults: 7, 90 and 30 days, nonces until their window ends.
    pub retention: convergio_gateway::retention::RetentionConfig,
    /// Model agents (issue 17): declarations directory, prices, daily
    /// budgets, the longest call (see `models_config.rs`).
    pub models: crate::models_config::ModelsSection,
    /// How long upstream calls may take (see `upstream_config.rs`).
    pub upstream: crate::upstream_config::UpstreamSection,
    /// Push notifications relayed by the gateway (see `upstream_config.rs`).
    pub push: crate::upstream_config::PushSection,
    /// Payload guardrails on every A2A call (issue 21): the plugin
    /// sandbox's bounds and the guardrails with where each applies.
    /// Default: none.
    pub guardrails: convergio_plugins::GuardrailsConfig,
    /// Stored plugins (issue 21): the bound on an uploaded module, how
    /// often each replica looks for new versions, whether only signed
    /// plugins are accepted and run, which capabilities (`clock`,
    /// `random`, `env`) versions may be granted, and the values `env`
    /// reads.
    pub plugins: convergio_plugins::PluginsConfig,
    /// OpenTelemetry span export (issue 18, see `telemetry_config.rs`).
    /// Default: off.
    pub telemetry: crate::telemetry_config::TelemetrySection,
    /// Hot reload (issue 22, see `reload.rs`): how often the config file
    /// and the TLS and credential files it names are checked for changes.
    pub reload: ReloadSection,
    /// Memory (issue 20, see `memory_config.rs`): the local embedding
    /// models vector namespaces may name (default: none), and how often
    /// the vector index follows other replicas' writes (default 1000 ms).
    pub memory: crate::memory_config::MemorySection,
}

/// Reload section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    /// Seconds between checks of the config file, the TLS certificate, key
    /// and client CA, and the upstream credentials' files for changes; a
    /// change is applied once the
    /// files read the same twice in a row. 0 turns the check off (SIGHUP
    /// still reloads). Default 1, at most 3600.
    /// `CONVERGIO_RELOAD_WATCH_INTERVAL_SECONDS`.
    pub watch_interval_seconds: u64,
}

impl Default for ReloadSection {
    fn default() -> Self {
        Self {
            watch_interval_seconds: 1,
        }
    }
}

/// Federation section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// Publish the JWKS, accept signed calls from peers and route
    /// `external://` agents. Default true.
    pub enabled: bool,
    /// The organisation domain peers know us by. Default: `org_domain`.
    pub domain: Option<String>,
    /// PEM PKCS#8 Ed25519 key. Default: `<data_dir>/federation-key.pem`,
    /// generated (mode 0600) on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Accepted clock distance of a signed call, either way. Default 60.
    pub clock_skew_seconds: u64,
    /// Deadline of each peer's answer in federated discovery
    /// (`GET /v1/agents?federated=true`), in milliseconds. Default 2000.
    pub discovery_timeout_ms: u64,
    /// Seconds between pulls of every approved peer's catalogue into the
    /// registry as external agents; 0 (the default) turns periodic sync
    /// off (`convergio peers sync` still works).
    pub sync_interval_seconds: u64,
    /// Most organisations a cross-organisation call may pass through,
    /// this one included; a call over it, or returning to an organisation
    /// already on its path, is refused. Default 4, at most 64.
    pub max_hops: usize,
    /// Most pages federated discovery reads from one peer for one query
    /// (it follows each peer's `next_page_token`). Default 10, at most 100.
    pub discovery_max_pages: usize,
    /// Most agents federated discovery takes from one peer for one query.
    /// Default 1000, at most 10000.
    pub discovery_max_agents: usize,
    /// Shortest time in seconds between two fetches of one peer's JWKS
    /// caused by calls signed with a key we do not know. Default 30.
    pub jwks_refetch_interval_seconds: u64,
    /// Approve a key a peer rotated to when that refetch finds it, if an
    /// administrator approved one of the peer's keys before. Default false:
    /// the key is stored pending approval, as any key a peer supplies.
    pub accept_rotated_keys: bool,
    /// Peers stored (replacing any with the same domain) at every start;
    /// keys listed are pinned (approved), keys from a `jwks_url` pending.
    pub peers: Vec<convergio_gateway::federation::PeerSpec>,
}

impl Default for FederationSection {
    fn default() -> Self {
        Self {
            enabled: true,
            domain: None,
            signing_key_file: None,
            clock_skew_seconds: 60,
            discovery_timeout_ms: 2000,
            sync_interval_seconds: 0,
            max_hops: convergio_gateway::federation::hops::DEFAULT_MAX_HOPS,
            discovery_max_pages:
                convergio_gateway::federation::discovery::DEFAULT_DISCOVERY_MAX_PAGES,
            discovery_max_agents:
                convergio_gateway::federation::discovery::DEFAULT_DISCOVERY_MAX_AGENTS,
            jwks_refetch_interval_seconds:
                convergio_gateway::federation::DEFAULT_JWKS_REFETCH_INTERVAL.as_secs(),
            accept_rotated_keys: false,
            peers: Vec::new(),
        }
    }
}

/// Validated federation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationSettings {
    /// Whether federation is on.
    pub enabled: bool,
    /// Our domain.
    pub domain: String,
    /// The key file; `None`: the data dir's, generated when missing.
    pub signing_key_file: Option<PathBuf>,
    /// Clock window in seconds.
    pub clock_skew_seconds: u64,
    /// Federated discovery's per-peer deadline, in milliseconds.
    pub discovery_timeout_ms: u64,
    /// Seconds between peer syncs; 0 is off.
    pub sync_interval_seconds: u64,
    /// Most organisations on a call's path.
    pub max_hops: usize,
    /// Most pages read from one peer in federated discovery.
    pub discovery_max_pages: usize,
    /// Most agents taken from one peer in federated discovery.
    pub discovery_max_agents: usize,
    /// Seconds between JWKS refetches of one peer on unknown keys.
    pub jwks_refetch_interval_seconds: u64,
    /// Whether refetched rotated keys are approved.
    pub accept_rotated_keys: bool,
    /// Configured peers.
    pub peers: Vec<convergio_gateway::federation::PeerSpec>,
}

/// Network section: the SSRF guard's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// CIDRs (`10.0.0.0/8`), addresses or exact `IP:PORT` sockets that
    /// upstream and peer URLs may resolve to although they are loopback,
    /// private, link-local or metadata addresses. Default empty: only
    /// public addresses (plus the exact sockets of the example agents the
    /// server starts itself). `CONVERGIO_NETWORK_ALLOW_CIDRS`, comma-separated.
    pub allow_cidrs: Vec<String>,
}

/// Example agents section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExamplesConfig {
    /// Start the example agents on loopback and register them. Default true.
    pub enabled: bool,
}

/// Limits section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Longest a whole non-streaming request may take. Default 30 s.
    pub request_timeout_seconds: u64,
}

/// Graphs section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GraphsConfig {
    /// Most nodes in one graph document. Default 10,000.
    pub max_nodes: usize,
    /// Most inputs in one batch run. Default 1,000.
    pub max_batch_inputs: usize,
    /// Checkpoint every run, not only graphs that set `checkpoint_enabled`.
    /// Default false.
    pub checkpoint_all: bool,
    /// SQLite only: fsync every committed step (`synchronous=FULL`), so a
    /// step reported done survives a power cut. Default true; false is
    /// `NORMAL` (survives a process crash).
    pub checkpoint_full_sync: bool,
    /// This replica's name in run leases. Default: a random id per process
    /// (set a stable one so a restarted replica may resume its own runs
    /// at once with `:resume`).
    pub replica_id: Option<String>,
    /// How long a run's lease lasts without renewal. Default 30 s.
    pub lease_seconds: u64,
    /// Resume running runs whose lease expired (their replica died).
    /// Default true.
    pub take_over_expired_runs: bool,
    /// Server ceiling on how many times one node runs in one run; a graph's
    /// `config.max_iterations` cannot raise it. Default 10,000.
    pub max_run_iterations: u32,
    /// Server ceiling on a run's time in seconds (0: none); a graph's
    /// timeouts cannot raise it. Default 3,600.
    pub max_run_seconds: u64,
    /// Events kept per run (the final one always). Default 10,000.
    pub max_run_events: usize,
    /// Distinct graph names, and agent names, with `/metrics` series of
    /// their own; later ones share `other`. Default 100.
    pub max_metric_labels: usize,
    /// Loopback slots bound at start for graphs published as agents: the
    /// most this replica serves at once (0: none). Default 16, at most
    /// 1,024.
    pub max_agents: usize,
}

/// Logging section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `EnvFilter` directive. Default `info`.
    pub filter: String,
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration `serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Connections in the database pool (`None`: the backend's default).
    pub database_pool_size: Option<u32>,
    /// Organisation domain.
    pub org_domain: String,
    /// Configured admin token, if any (else generated under `data_dir`).
    pub admin_token: Option<String>,
    /// Whether to start the example agents.
    pub examples: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Request timeout.
    pub request_timeout_seconds: u64,
    /// Graph settings.
    pub graphs: GraphsConfig,
    /// Log filter.
    pub log_filter: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Authentication, TLS and connection bounds.
    pub security: SecuritySettings,
    /// Quotas (`None`: no limit is configured).
    pub quotas: Option<convergio_policy::QuotaConfig>,
    /// Federation.
    pub federation: FederationSettings,
    /// Non-public addresses upstreams may resolve to.
    pub upstream_allow: AllowList,
    /// Retention windows and the pruner's settings (validated).
    pub retention: convergio_gateway::retention::RetentionConfig,
    /// Model agents: declarations, prices, budgets, the secrets key.
    pub models: crate::models_config::ModelSettings,
    /// Upstream call bounds.
    pub upstream: crate::upstream_config::UpstreamSettings,
    /// Push notification relaying (validated).
    pub push: crate::upstream_config::PushSection,
    /// Payload guardrails (names checked unique; built at start-up).
    pub guardrails: convergio_plugins::GuardrailsConfig,
    /// Stored plugins (validated).
    pub plugins: convergio_plugins::PluginsConfig,
    /// Span export (`None`: off).
    pub otlp: Option<crate::telemetry_config::OtlpSettings>,
    /// Seconds between checks of the config and TLS files; 0 is off.
    pub reload_watch_interval_seconds: u64,
    /// Memory: the local embedding models (directories checked).
    pub memory: crate::memory_config::MemorySection,
}

/// Command-line flags that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--no-examples`.
    pub no_examples: bool,
}

// === impl ConfigFile ===

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: PathBuf::from("./.convergio"),
            listen: "127.0.0.1:8080".to_owned(),
            database_url: None,
            database_pool_size: None,
            org_domain: "convergio.local".to_owned(),
            admin_token: None,
            examples: ExamplesConfig::default(),
            limits: LimitsConfig::default(),
            graphs: GraphsConfig::default(),
            log: LogConfig::default(),
            auth: AuthSection::default(),
            tls: None,
            server: ServerSection::default(),
            upstream_credentials: Default::default(),
            quotas: convergio_policy::QuotaConfig::default(),
            federation: FederationSection::default(),
            network: NetworkConfig::default(),
            retention: Default::default(),
            models: Default::default(),
            upstream: Default::default(),
            push: Default::default(),
            guardrails: Default::default(),
            plugins: Default::default(),
            telemetry: Default::default(),
            reload: ReloadSection::default(),
            memory: Default::default(),
        }
    }
}

impl Default for ExamplesConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
        }
    }
}

impl Default for GraphsConfig {
    fn default() -> Self {
        Self {
            max_nodes: 10_000,
            max_batch_inputs: 1_000,
            checkpoint_all: false,
            checkpoint_full_sync: true,
            replica_id: None,
            lease_seconds: 30,
            take_over_expired_runs: true,
            max_run_iterations: 10_000,
            max_run_seconds: 3_600,
            max_run_events: 10_000,
            max_metric_labels: 100,
            max_agents: 16,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// The JSON Schema (draft 2020-12) of the config file, derived from
/// [`ConfigFile`]'s types: field docs become descriptions, defaults come from
/// the `Default` impls, `deny_unknown_fields` closes every object.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(ConfigFile)
}

/// [`json_schema`] as pretty-printed JSON, as checked in at
/// `schemas/json/config.schema.json` (no trailing newline).
pub fn json_schema_text() -> String {
    // A schema is JSON values only: serialising it cannot fail.
    serde_json::to_string_pretty(&json_schema()).unwrap_or_default()
}

impl ConfigFile {
    /// Parses YAML text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // An empty document is `null` to serde_yaml: treat it as all defaults.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

// === impl Config ===

impl Config {
    /// Applies the environment (as a map) and flags to a file, then validates.
    pub fn resolve(
        mut file: ConfigFile,
        environment: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        if file.version != CONFIG_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "this binary reads version {CONFIG_VERSION}, found {}",
                    file.version
                ),
            ));
        }
        let get = |key: &str| environment.get(key).filter(|value| !value.is_empty());
        if let Some(value) = get(env::DATA_DIR) {
            file.data_dir = PathBuf::from(value);
        }
        if let Some(value) = get(env::LISTEN) {
            file.listen = value.clone();
        }
        if let Some(value) = get(env::DATABASE_URL) {
            file.database_url = Some(value.clone());
        }
        if let Some(value) = get(env::DATABASE_POOL_SIZE) {
            file.database_pool_size = Some(parse_env(
                env::DATABASE_POOL_SIZE,
                value,
                "a number of connections",
            )?);
        }
        if let Some(value) = get(env::ORG_DOMAIN) {
            file.org_domain = value.clone();
        }
        if let Some(value) = get(env::ADMIN_TOKEN) {
            file.admin_token = Some(value.clone());
        }
        if let Some(value) = get(env::EXAMPLES) {
            file.examples.enabled = parse_bool(env::EXAMPLES, value)?;
        }
        if let Some(value) = get(env::LOG) {
            file.log.filter = value.clone();
        }
        if let Some(value) = get(env::RELOAD_WATCH_INTERVAL) {
            file.reload.watch_interval_seconds =
                parse_env(env::RELOAD_WATCH_INTERVAL, value, "a number of seconds")?;
        }
        if file.reload.watch_interval_seconds > 3600 {
            return Err(invalid(
                "reload.watch_interval_seconds",
                "must be at most 3600".to_owned(),
            ));
        }
        if let Some(value) = get(env::LOG_FORMAT) {
            file.log.format = match value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        env::LOG_FORMAT,
                        format!("expected text or json, found {other:?}"),
                    ))
                }
            };
        }
        if let Some(value) = get(env::MAX_BODY_BYTES) {
            file.limits.max_body_bytes = parse_env(env::MAX_BODY_BYTES, value, "a byte count")?;
        }
        security_config::apply_environment(
            &mut file.auth,
            &mut file.tls,
            &mut file.server,
            environment,
        )?;
        if let Some(value) = get(env::GRAPH_MAX_NODES) {
            file.graphs.max_nodes = parse_env(env::GRAPH_MAX_NODES, value, "a node count")?;
        }
        if let Some(value) = get(env::REPLICA_ID) {
            file.graphs.replica_id = Some(value.clone());
        }
        if let Some(value) = get(env::RUN_LEASE_SECONDS) {
            file.graphs.lease_seconds = parse_env(env::RUN_LEASE_SECONDS, value, "seconds")?;
        }
        if let Some(value) = get(env::FEDERATION_DOMAIN) {
            file.federation.domain = Some(value.clone());
        }
        if let Some(value) = get(env::SIGNING_KEY_FILE) {
            file.federation.signing_key_file = Some(PathBuf::from(value));
        }
        if let Some(value) = get(env::FEDERATION_CLOCK_SKEW) {
            file.federation.clock_skew_seconds =
                parse_env(env::FEDERATION_CLOCK_SKEW, value, "seconds")?;
        }
        if let Some(value) = get(env::FEDERATION_DISCOVERY_TIMEOUT) {
            file.federation.discovery_timeout_ms =
                parse_env(env::FEDERATION_DISCOVERY_TIMEOUT, value, "milliseconds")?;
        }
        if let Some(value) = get(env::FEDERATION_SYNC_INTERVAL) {
            file.federation.sync_interval_seconds =
                parse_env(env::FEDERATION_SYNC_INTERVAL, value, "seconds")?;
        }
        if let Some(value) = get(env::FEDERATION_MAX_HOPS) {
            file.federation.max_hops =
                parse_env(env::FEDERATION_MAX_HOPS, value, "a number of hops")?;
        }
        if let Some(value) = get(env::NETWORK_ALLOW_CIDRS) {
            file.network.allow_cidrs = value
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_owned)
                .collect();
        }
        apply_retention_environment(&mut file.retention, environment)?;
        crate::models_config::apply_environment(&mut file.models, environment)?;
        crate::upstream_config::apply_environment(&mut file.upstream, environment)?;
        crate::telemetry_config::apply_environment(&mut file.telemetry, environment)?;
        crate::memory_config::apply_environment(&mut file.memory, environment)?;
        if let Some(data_dir) = &overrides.data_dir {
            file.data_dir = data_dir.clone();
        }
        if let Some(listen) = &overrides.listen {
            file.listen = listen.clone();
        }
        if overrides.no_examples {
            file.examples.enabled = false;
        }
        Self::validate(file, environment)
    }

    fn validate(
        file: ConfigFile,
        environment: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let listen: SocketAddr = file.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!(
                    "expected IP:PORT such as 127.0.0.1:8080, found {:?}",
                    file.listen
                ),
            )
        })?;
        let database_url = match file.database_url {
            Some(url) => url,
            None => format!(
                "sqlite://{}?mode=rwc",
                file.data_dir.join("convergio.db").display()
            ),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "expected a sqlite://… or postgres://… URL".to_owned(),
            ));
        }
        if file.database_pool_size == Some(0) {
            return Err(invalid(
                "database_pool_size",
                "expected at least 1 connection".to_owned(),
            ));
        }
        convergio_schemas::ids::check_org(&file.org_domain)
            .map_err(|error| invalid("org_domain", error.to_string()))?;
        if let Some(token) = &file.admin_token {
            if token.len() < 16 {
                return Err(invalid(
                    "admin_token",
                    "must be at least 16 characters".to_owned(),
                ));
            }
        }
        if file.limits.max_body_bytes < 1024 || file.limits.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_body_bytes",
                "must be between 1 KiB and 64 MiB".to_owned(),
            ));
        }
        if file.limits.request_timeout_seconds == 0 || file.limits.request_timeout_seconds > 3600 {
            return Err(invalid(
                "limits.request_timeout_seconds",
                "must be between 1 and 3600".to_owned(),
            ));
        }
        let security = security_config::validate(
            file.auth,
            file.tls,
            file.server,
            &listen,
            file.upstream_credentials,
        )?;
        if file.graphs.max_nodes == 0 || file.graphs.max_batch_inputs == 0 {
            return Err(invalid(
                "graphs",
                "max_nodes and max_batch_inputs must be at least 1".to_owned(),
            ));
        }
        if file.graphs.max_run_iterations == 0 || file.graphs.max_run_events == 0 {
            return Err(invalid(
                "graphs",
                "max_run_iterations and max_run_events must be at least 1".to_owned(),
            ));
        }
        if file.graphs.max_agents > 1024 {
            return Err(invalid(
                "graphs.max_agents",
                "must be at most 1024".to_owned(),
            ));
        }
        if file.graphs.lease_seconds == 0 || file.graphs.lease_seconds > 3600 {
            return Err(invalid(
                "graphs.lease_seconds",
                "must be between 1 and 3600".to_owned(),
            ));
        }
        if file
            .graphs
            .replica_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > 128)
        {
            return Err(invalid(
                "graphs.replica_id",
                "must be 1 to 128 characters".to_owned(),
            ));
        }
        file.retention
            .validate()
            .map_err(|message| invalid("retention", message))?;
        let quotas = check_quotas(file.quotas)?;
        check_guardrails(&file.guardrails)?;
        check_plugins(&file.plugins)?;
        let models = crate::models_config::validate(file.models, environment)?;
        let upstream = crate::upstream_config::validate(file.upstream, models.max_timeout)?;
        crate::upstream_config::validate_push(&file.push)?;
        let federation = check_federation(file.federation, &file.org_domain)?;
        let otlp = crate::telemetry_config::validate(file.telemetry)?;
        let memory = crate::memory_config::validate(file.memory)?;
        let upstream_allow = AllowList::parse(&file.network.allow_cidrs)
            .map_err(|error| invalid("network.allow_cidrs", error.to_string()))?;
        Ok(Self {
            federation,
            upstream_allow,
            security,
            data_dir: file.data_dir,
            listen,
            database_url,
            database_pool_size: file.database_pool_size,
            org_domain: file.org_domain,
            admin_token: file.admin_token,
            examples: file.examples.enabled,
            max_body_bytes: file.limits.max_body_bytes,
            request_timeout_seconds: file.limits.request_timeout_seconds,
            graphs: file.graphs,
            log_filter: file.log.filter,
            log_format: file.log.format,
            quotas,
            retention: file.retention,
            models,
            upstream,
            push: file.push,
            guardrails: file.guardrails,
            plugins: file.plugins,
            otlp,
            reload_watch_interval_seconds: file.reload.watch_interval_seconds,
            memory,
        })
    }
}

/// The `CONVERGIO_RETENTION_*` overrides.
fn apply_retention_environment(
    retention: &mut convergio_gateway::retention::RetentionConfig,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let get = |key: &str| environment.get(key).filter(|value| !value.is_empty());
    let seconds = |key: &str, value: &String| -> Result<u64, ConfigError> {
        value
            .parse()
            .map_err(|_| invalid(key, format!("expected seconds, found {value:?}")))
    };
    if let Some(value) = get(env::RETENTION_ENABLED) {
        retention.enabled = parse_bool(env::RETENTION_ENABLED, value)?;
    }
    if let Some(value) = get(env::RETENTION_INTERVAL) {
        retention.interval_seconds = seconds(env::RETENTION_INTERVAL, value)?;
    }
    if let Some(value) = get(env::RETENTION_TASK_ROUTES_MAX_AGE) {
        retention.task_routes.max_age_seconds =
            Some(seconds(env::RETENTION_TASK_ROUTES_MAX_AGE, value)?);
    }
    if let Some(value) = get(env::RETENTION_AUDIT_MAX_AGE) {
        retention.audit.max_age_seconds = Some(seconds(env::RETENTION_AUDIT_MAX_AGE, value)?);
    }
    if let Some(value) = get(env::RETENTION_RUNS_MAX_AGE) {
        retention.runs.max_age_seconds = Some(seconds(env::RETENTION_RUNS_MAX_AGE, value)?);
    }
    Ok(())
}

/// Validates the federation section.
fn check_federation(
    section: FederationSection,
    org_domain: &str,
) -> Result<FederationSettings, ConfigError> {
    let domain = section
        .domain
        .unwrap_or_else(|| org_domain.to_owned())
        .to_ascii_lowercase();
    convergio_schemas::ids::check_org(&domain)
        .map_err(|error| invalid("federation.domain", error.to_string()))?;
    if section.clock_skew_seconds == 0 || section.clock_skew_seconds > 3600 {
        return Err(invalid(
            "federation.clock_skew_seconds",
            "must be between 1 and 3600".to_owned(),
        ));
    }
    if section.discovery_timeout_ms == 0 || section.discovery_timeout_ms > 60_000 {
        return Err(invalid(
            "federation.discovery_timeout_ms",
            "must be between 1 and 60000".to_owned(),
        ));
    }
    if section.sync_interval_seconds > 7 * 24 * 3600 {
        return Err(invalid(
            "federation.sync_interval_seconds",
            "must be at most 604800 (a week); 0 turns periodic sync off".to_owned(),
        ));
    }
    if section.max_hops == 0 || section.max_hops > 64 {
        return Err(invalid(
            "federation.max_hops",
            "must be between 1 and 64".to_owned(),
        ));
    }
    if section.discovery_max_pages == 0 || section.discovery_max_pages > 100 {
        return Err(invalid(
            "federation.discovery_max_pages",
            "must be between 1 and 100".to_owned(),
        ));
    }
    if section.discovery_max_agents == 0 || section.discovery_max_agents > 10_000 {
        return Err(invalid(
            "federation.discovery_max_agents",
            "must be between 1 and 10000".to_owned(),
        ));
    }
    if section.jwks_refetch_interval_seconds == 0
        || section.jwks_refetch_interval_seconds > 24 * 3600
    {
        return Err(invalid(
            "federation.jwks_refetch_interval_seconds",
            "must be between 1 and 86400".to_owned(),
        ));
    }
    for (index, peer) in section.peers.iter().enumerate() {
        let field = format!("federation.peers[{index}]");
        convergio_schemas::ids::check_org(&peer.domain)
            .map_err(|error| invalid(&field, error.to_string()))?;
        convergio_gateway::federation::check_gateway_url(&peer.url)
            .map_err(|error| invalid(&field, error.to_string()))?;
        if let Some(url) = &peer.jwks_url {
            convergio_gateway::federation::check_peer_url(url)
                .map_err(|error| invalid(&field, error.to_string()))?;
        }
        if peer.keys.is_empty() && peer.jwks_url.is_none() {
            return Err(invalid(
                &field,
                "needs pinned keys or a jwks_url".to_owned(),
            ));
        }
        for jwk in &peer.keys {
            convergio_auth::PeerPublicKey::from_jwk(jwk)
                .map_err(|error| invalid(&field, error.to_string()))?;
        }
    }
    Ok(FederationSettings {
        enabled: section.enabled,
        domain,
        signing_key_file: section.signing_key_file,
        clock_skew_seconds: section.clock_skew_seconds,
        discovery_timeout_ms: section.discovery_timeout_ms,
        sync_interval_seconds: section.sync_interval_seconds,
        max_hops: section.max_hops,
        discovery_max_pages: section.discovery_max_pages,
        discovery_max_agents: section.discovery_max_agents,
        jwks_refetch_interval_seconds: section.jwks_refetch_interval_seconds,
        accept_rotated_keys: section.accept_rotated_keys,
        peers: section.peers,
    })
}

/// A module bound of at least 1 KiB, at most 1024 plugin agents, a
/// watch interval of 1 s to 1 h, and agent calls bounded (at most 1024 per
/// message, a budget of 1 ms to 1 h, sizes of 1 KiB to 64 MiB).
fn check_plugins(plugins: &convergio_plugins::PluginsConfig) -> Result<(), ConfigError> {
    if plugins.max_module_bytes < 1024 {
        return Err(invalid(
            "plugins.max_module_bytes",
            "must be at least 1024".to_owned(),
        ));
    }
    if plugins.max_agents > 1024 {
        return Err(invalid(
            "plugins.max_agents",
            "must be at most 1024".to_owned(),
        ));
    }
    if !(1..=3600).contains(&plugins.watch_interval_seconds) {
        return Err(invalid(
            "plugins.watch_interval_seconds",
            "must be 1 to 3600".to_owned(),
        ));
    }
    let calls = &plugins.agent_calls;
    if calls.max_calls > 1024 {
        return Err(invalid(
            "plugins.agent_calls.max_calls",
            "must be at most 1024".to_owned(),
        ));
    }
    if !(1..=3_600_000).contains(&calls.timeout_ms) {
        return Err(invalid(
            "plugins.agent_calls.timeout_ms",
            "must be 1 to 3600000".to_owned(),
        ));
    }
    for (key, bytes) in [
        (
            "plugins.agent_calls.max_request_bytes",
            calls.max_request_bytes,
        ),
        ("plugins.agent_calls.max_reply_bytes", calls.max_reply_bytes),
    ] {
        if !(1024..=64 * 1024 * 1024).contains(&bytes) {
            return Err(invalid(key, "must be 1024 to 67108864".to_owned()));
        }
    }
    // A name `convergio.env` could never look up is a mistake, not a value.
    let longest = convergio_plugins::grants::ENV_NAME_MAX_BYTES;
    if let Some(name) = plugins
        .env
        .keys()
        .find(|name| name.is_empty() || name.len() > longest)
    {
        return Err(invalid(
            "plugins.env",
            format!("the name {name:?} must be 1 to {longest} bytes"),
        ));
    }
    Ok(())
}

/// Guardrail names are what errors and audit records show: present and unique.
fn check_guardrails(guardrails: &convergio_plugins::GuardrailsConfig) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for rule in &guardrails.rules {
        if rule.name.is_empty() || rule.name.len() > 128 {
            return Err(invalid(
                "guardrails.rules.name",
                "must be 1 to 128 characters".to_owned(),
            ));
        }
        if !seen.insert(rule.name.as_str()) {
            return Err(invalid(
                "guardrails.rules.name",
                format!("{} is used twice", rule.name),
            ));
        }
    }
    Ok(())
}

/// Validates the quotas section; `None` when it sets no limit.
fn check_quotas(
    quotas: convergio_policy::QuotaConfig,
) -> Result<Option<convergio_policy::QuotaConfig>, ConfigError> {
    let rates = [
        ("quotas.per_principal", quotas.per_principal),
        ("quotas.per_org", quotas.per_org),
        ("quotas.per_agent", quotas.per_agent),
    ];
    for (field, rate) in rates {
        if let Some(rate) = rate {
            let valid = rate.per_second.is_finite()
                && rate.per_second > 0.0
                && rate.burst.is_finite()
                && rate.burst >= 1.0;
            if !valid {
                return Err(invalid(
                    field,
                    "per_second must be above 0 and burst at least 1".to_owned(),
                ));
            }
        }
    }
    if let Some(budget) = quotas.budget {
        if budget.window_seconds == 0 {
            return Err(invalid(
                "quotas.budget.window_seconds",
                "must be at least 1".to_owned(),
            ));
        }
    }
    if quotas.replicas == 0 {
        return Err(invalid("quotas.replicas", "must be at least 1".to_owned()));
    }
    let any = quotas.per_principal.is_some()
        || quotas.per_org.is_some()
        || quotas.per_agent.is_some()
        || quotas.budget.is_some();
    Ok(any.then_some(quotas))
}

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message,
    }
}

fn parse_bool(field: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(invalid(
            field,
            format!("expected true or false, found {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str, environment: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = ConfigFile::parse(yaml, Path::new("test.yaml"))?;
        let environment = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Config::resolve(file, &environment, &Overrides::default())
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = resolve("", &[]).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./.convergio"));
        assert_eq!(
            config.database_url,
            "sqlite://./.convergio/convergio.db?mode=rwc"
        );
        assert_eq!(config.org_domain, "convergio.local");
        assert!(config.examples);
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.graphs.max_agents, 16);
        let none = resolve("graphs:\n  max_agents: 0\n", &[]).expect("no graph agents is valid");
        assert_eq!(none.graphs.max_agents, 0);
    }

    #[test]
    fn the_documented_guardrails_and_plugins_sections_parse_and_are_checked() {
        // The README's map form (`check: {redact: …}`), which serde_yaml
        // reads as an enum only through the plugins crate's own reader.
        let config = resolve(
            "guardrails:\n  rules:\n    - name: pii\n      check: { redact: { detect: [email] } }\n    - name: words\n      check: { plugin: { name: words } }\n      agents: [echo]\nplugins:\n  max_module_bytes: 4096\n  require_signed: true\n  allow_grants: [clock, env]\n  env: { REGION: eu-west-1 }\n",
            &[],
        )
        .expect("valid");
        assert_eq!(config.guardrails.rules.len(), 2);
        assert_eq!(
            config.guardrails.rules[1].check,
            convergio_plugins::config::CheckSpec::Plugin {
                name: "words".to_owned()
            }
        );
        assert_eq!(config.plugins.max_module_bytes, 4096);
        assert_eq!(config.plugins.watch_interval_seconds, 1);
        assert!(config.plugins.require_signed);
        assert!(!convergio_plugins::PluginsConfig::default().require_signed);
        assert_eq!(config.plugins.allowed_grants().to_string(), "clock,env");
        assert_eq!(config.plugins.env["REGION"], "eu-west-1");
        assert!(convergio_plugins::PluginsConfig::default()
            .allowed_grants()
            .is_empty());
        for bad in [
            "plugins:\n  max_module_bytes: 10\n",
            "plugins:\n  watch_interval_seconds: 0\n",
            // Files and the network are never grantable.
            "plugins:\n  allow_grants: [network]\n",
            "plugins:\n  env: { '': x }\n",
            "guardrails:\n  rules:\n    - name: x\n      check: { nothing: {} }\n",
        ] {
            assert!(resolve(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_allow_list_comes_from_file_or_environment_and_is_checked() {
        let none = resolve("", &[]).expect("defaults");
        assert!(none.upstream_allow.is_empty(), "no default allow-list");
        let yaml = "network:\n  allow_cidrs: [10.0.0.0/8, '127.0.0.1:9101']\n";
        let from_file = resolve(yaml, &[]).expect("valid");
        assert_eq!(
            from_file.upstream_allow,
            AllowList::parse(["10.0.0.0/8", "127.0.0.1:9101"]).expect("parses")
        );
        let from_env =
            resolve(yaml, &[(env::NETWORK_ALLOW_CIDRS, "127.0.0.0/8, ::1")]).expect("valid");
        assert_eq!(
            from_env.upstream_allow,
            AllowList::parse(["127.0.0.0/8", "::1"]).expect("parses")
        );
        let bad = resolve("network:\n  allow_cidrs: [intranet]\n", &[]);
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref field, .. }) if field == "network.allow_cidrs"),
            "{bad:?}"
        );
    }

    #[test]
    fn retention_has_documented_defaults_and_environment_overrides() {
        let defaults = resolve("", &[]).expect("defaults").retention;
        assert!(defaults.enabled);
        assert_eq!(defaults.interval_seconds, 60);
        assert_eq!(defaults.batch_rows, 1_000);
        assert_eq!(defaults.task_routes.max_age_seconds, Some(7 * 24 * 3600));
        assert_eq!(defaults.audit.max_age_seconds, Some(90 * 24 * 3600));
        assert_eq!(defaults.runs.max_age_seconds, Some(30 * 24 * 3600));
        assert_eq!(defaults.nonces.max_age_seconds, Some(0));
        let yaml = "retention:\n  task_routes: { max_age_seconds: 3600, max_rows: 1000000 }\n";
        let config = resolve(
            yaml,
            &[
                (env::RETENTION_AUDIT_MAX_AGE, "86400"),
                (env::RETENTION_ENABLED, "false"),
            ],
        )
        .expect("valid")
        .retention;
        assert!(!config.enabled);
        assert_eq!(config.task_routes.max_age_seconds, Some(3600));
        assert_eq!(config.task_routes.max_rows, Some(1_000_000));
        assert_eq!(config.audit.max_age_seconds, Some(86_400));
        for (yaml, environment, expected) in [
            (
                "retention:\n  batch_rows: 0\n",
                &[][..],
                "retention.batch_rows",
            ),
            (
                "retention:\n  nonces: { max_rows: 5 }\n",
                &[][..],
                "retention.nonces.max_rows",
            ),
            (
                "retention:\n  task_routes: { days: 5 }\n",
                &[][..],
                "unknown field `days`",
            ),
            (
                "",
                &[(env::RETENTION_INTERVAL, "soon")][..],
                env::RETENTION_INTERVAL,
            ),
        ] {
            let error = resolve(yaml, environment).expect_err(yaml);
            assert!(
                error.to_string().contains(expected),
                "{yaml:?}: {error} should mention {expected}"
            );
        }
    }

    #[test]
    fn shipped_sample_config_is_valid() {
        let text = include_str!("../../deploy/convergio.yaml");
        resolve(text, &[]).expect("deploy/convergio.yaml is valid");
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let yaml = "version: 1\nlisten: 127.0.0.1:9000\norg_domain: acme.example\n";
        let config = resolve(
            yaml,
            &[
                (env::LISTEN, "127.0.0.1:9100"),
                (env::EXAMPLES, "false"),
                (env::SERVE_THREADS, "2"),
            ],
        )
        .expect("valid");
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.org_domain, "acme.example");
        assert!(!config.examples);
        assert_eq!(config.security.server.serve_threads, 2);

        let file = ConfigFile::parse(yaml, Path::new("t")).expect("parses");
        let flags = Overrides {
            listen: Some("127.0.0.1:9200".into()),
            ..Overrides::default()
        };
        let environment = HashMap::from([(env::LISTEN.to_owned(), "127.0.0.1:9100".to_owned())]);
        let config = Config::resolve(file, &environment, &flags).expect("valid");
        assert_eq!(config.listen.port(), 9200);
    }

    #[test]
    fn rejects_bad_configs_with_the_field_named() {
        // (yaml, environment, text the error must contain)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("version: 2\n", &[], "version"),
            ("listen: nowhere\n", &[], "listen"),
            ("colour: blue\n", &[], "unknown field `colour`"),
            (
                "limits:\n  max_body_bytes: 10\n",
                &[],
                "limits.max_body_bytes",
            ),
            ("database_url: mysql://x\n", &[], "database_url"),
            ("database_pool_size: 0\n", &[], "database_pool_size"),
            ("graphs:\n  max_agents: 2000\n", &[], "graphs.max_agents"),
            (
                "",
                &[(env::DATABASE_POOL_SIZE, "many")],
                env::DATABASE_POOL_SIZE,
            ),
            ("org_domain: localhost\n", &[], "org_domain"),
            ("", &[(env::EXAMPLES, "maybe")], env::EXAMPLES),
            ("", &[(env::SERVE_THREADS, "all")], env::SERVE_THREADS),
            ("", &[(env::LOG_FORMAT, "xml")], env::LOG_FORMAT),
            ("listen: [1, 2]\n", &[], "line 1"),
            (
                "quotas:\n  per_principal: { per_second: 0, burst: 5 }\n",
                &[],
                "quotas.per_principal",
            ),
            ("quotas:\n  replicas: 0\n", &[], "quotas.replicas"),
            (
                "federation:\n  clock_skew_seconds: 0\n",
                &[],
                "federation.clock_skew_seconds",
            ),
            (
                "federation:\n  peers:\n    - { domain: b.example, url: \"ftp://b\" }\n",
                &[],
                "federation.peers[0]",
            ),
            (
                "federation:\n  peers:\n    - { domain: b.example, url: \"http://b\" }\n",
                &[],
                "pinned keys or a jwks_url",
            ),
            (
                "",
                &[(env::FEDERATION_DOMAIN, "nodots")],
                "federation.domain",
            ),
        ];
        for (yaml, environment, expected) in cases {
            let error = resolve(yaml, environment).expect_err(yaml);
            assert!(
                error.to_string().contains(expected),
                "{yaml:?}: {error} should mention {expected}"
            );
        }
    }
}
