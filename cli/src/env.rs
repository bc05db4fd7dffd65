//! Every `CONVERGIO_*` environment key, in one place (STYLE.md: "Env keys are
//! constants, all in one module").

/// Path of the YAML config file.
pub const CONFIG: &str = "CONVERGIO_CONFIG";
/// Data directory (SQLite file, admin token, keys).
pub const DATA_DIR: &str = "CONVERGIO_DATA_DIR";
/// Listen address of `convergio serve`.
pub const LISTEN: &str = "CONVERGIO_LISTEN";
/// Database URL (`sqlite://…` or `postgres://…`).
pub const DATABASE_URL: &str = "CONVERGIO_DATABASE_URL";
/// Connections in the process's one database pool.
pub const DATABASE_POOL_SIZE: &str = "CONVERGIO_DATABASE_POOL_SIZE";
/// This deployment's organisation domain.
pub const ORG_DOMAIN: &str = "CONVERGIO_ORG_DOMAIN";
/// Bootstrap administrator token.
pub const ADMIN_TOKEN: &str = "CONVERGIO_ADMIN_TOKEN";
/// `true`/`false`: start and register the example agents.
pub const EXAMPLES: &str = "CONVERGIO_EXAMPLES";
/// Log filter (tracing-subscriber `EnvFilter` syntax).
pub const LOG: &str = "CONVERGIO_LOG";
/// Log format: `text` or `json`.
pub const LOG_FORMAT: &str = "CONVERGIO_LOG_FORMAT";
/// Maximum request body size in bytes.
pub const MAX_BODY_BYTES: &str = "CONVERGIO_MAX_BODY_BYTES";
/// `true`/`false`: serve callers without credentials (default: only on a
/// plaintext loopback listener).
pub const AUTH_ANONYMOUS: &str = "CONVERGIO_AUTH_ANONYMOUS";
/// Required JWT issuer (`iss`).
pub const JWT_ISSUER: &str = "CONVERGIO_JWT_ISSUER";
/// Required JWT audience (`aud`).
pub const JWT_AUDIENCE: &str = "CONVERGIO_JWT_AUDIENCE";
/// JWKS file of the JWT issuer.
pub const JWKS_FILE: &str = "CONVERGIO_JWKS_FILE";
/// JWKS URL of the JWT issuer.
pub const JWKS_URL: &str = "CONVERGIO_JWKS_URL";
/// JWT claim naming the caller (default `sub`).
pub const JWT_SUBJECT_CLAIM: &str = "CONVERGIO_JWT_SUBJECT_CLAIM";
/// PEM certificate chain of the TLS listener.
pub const TLS_CERT_FILE: &str = "CONVERGIO_TLS_CERT_FILE";
/// PEM private key of the TLS listener.
pub const TLS_KEY_FILE: &str = "CONVERGIO_TLS_KEY_FILE";
/// PEM CA bundle for client certificates.
pub const TLS_CLIENT_CA_FILE: &str = "CONVERGIO_TLS_CLIENT_CA_FILE";
/// `none`, `optional` or `required` client certificates.
pub const TLS_CLIENT_AUTH: &str = "CONVERGIO_TLS_CLIENT_AUTH";
/// Concurrent connections the listener serves.
pub const MAX_CONNECTIONS: &str = "CONVERGIO_MAX_CONNECTIONS";
/// Threads serving connections thread-per-core (0: the main runtime).
pub const SERVE_THREADS: &str = "CONVERGIO_SERVE_THREADS";
/// Most nodes in one graph document.
pub const GRAPH_MAX_NODES: &str = "CONVERGIO_GRAPH_MAX_NODES";
/// This replica's name in run leases (durable runs).
pub const REPLICA_ID: &str = "CONVERGIO_REPLICA_ID";
/// How long a run's lease lasts without renewal, in seconds.
pub const RUN_LEASE_SECONDS: &str = "CONVERGIO_RUN_LEASE_SECONDS";
/// This organisation's federation domain (default: the org domain).
pub const FEDERATION_DOMAIN: &str = "CONVERGIO_FEDERATION_DOMAIN";
/// PEM PKCS#8 Ed25519 signing key of the organisation.
pub const SIGNING_KEY_FILE: &str = "CONVERGIO_SIGNING_KEY_FILE";
/// Accepted clock distance of a signed peer call, in seconds.
pub const FEDERATION_CLOCK_SKEW: &str = "CONVERGIO_FEDERATION_CLOCK_SKEW_SECONDS";
/// Deadline of each peer's answer in federated discovery, in milliseconds.
pub const FEDERATION_DISCOVERY_TIMEOUT: &str = "CONVERGIO_FEDERATION_DISCOVERY_TIMEOUT_MS";
/// Seconds between syncs of every peer's catalogue (0: no periodic sync).
pub const FEDERATION_SYNC_INTERVAL: &str = "CONVERGIO_FEDERATION_SYNC_INTERVAL_SECONDS";
/// Most organisations a cross-organisation call may pass through.
pub const FEDERATION_MAX_HOPS: &str = "CONVERGIO_FEDERATION_MAX_HOPS";
/// Comma-separated CIDRs, addresses or `IP:PORT` sockets upstreams may
/// resolve to although not public (the SSRF guard's allow-list).
pub const NETWORK_ALLOW_CIDRS: &str = "CONVERGIO_NETWORK_ALLOW_CIDRS";
/// `true`/`false`: run the retention pruner (issue 15).
pub const RETENTION_ENABLED: &str = "CONVERGIO_RETENTION_ENABLED";
/// Seconds between retention passes.
pub const RETENTION_INTERVAL: &str = "CONVERGIO_RETENTION_INTERVAL_SECONDS";
/// Task routes older than this many seconds (since their last write) are pruned.
pub const RETENTION_TASK_ROUTES_MAX_AGE: &str = "CONVERGIO_RETENTION_TASK_ROUTES_MAX_AGE_SECONDS";
/// Audit records older than this many seconds are pruned (the chain keeps a checkpoint).
pub const RETENTION_AUDIT_MAX_AGE: &str = "CONVERGIO_RETENTION_AUDIT_MAX_AGE_SECONDS";
/// Finished durable runs older than this many seconds are pruned.
pub const RETENTION_RUNS_MAX_AGE: &str = "CONVERGIO_RETENTION_RUNS_MAX_AGE_SECONDS";
/// Seconds the listener keeps accepting after SIGTERM turned `/readyz` to 503.
pub const SHUTDOWN_DELAY: &str = "CONVERGIO_SHUTDOWN_DELAY_SECONDS";
/// Directory of model agent declarations (`*.yaml`) `serve` loads and watches.
pub const MODEL_AGENTS_DIR: &str = "CONVERGIO_MODEL_AGENTS_DIR";
/// The longest any model agent may take, in seconds.
pub const MODEL_MAX_TIMEOUT: &str = "CONVERGIO_MODEL_MAX_TIMEOUT_SECONDS";
/// Base64 of the 32-byte key sealing secrets at rest (default: the data
/// dir's `secrets.key`, created on first start).
pub const SECRETS_KEY: &str = "CONVERGIO_SECRETS_KEY";
/// Seconds an upstream without its own bound may take (default 30).
pub const UPSTREAM_TIMEOUT: &str = "CONVERGIO_UPSTREAM_TIMEOUT_SECONDS";
/// No upstream call's bound exceeds this (default 900).
pub const UPSTREAM_MAX_TIMEOUT: &str = "CONVERGIO_UPSTREAM_MAX_TIMEOUT_SECONDS";
/// The OTLP/HTTP traces URL spans are exported to (default none: off).
pub const OTLP_ENDPOINT: &str = "CONVERGIO_OTLP_ENDPOINT";
/// Headers of every span export, as `name=value,name=value`.
pub const OTLP_HEADERS: &str = "CONVERGIO_OTLP_HEADERS";
/// The exported spans' `service.name` (default `convergio`).
pub const OTLP_SERVICE_NAME: &str = "CONVERGIO_OTLP_SERVICE_NAME";
/// Share of new traces exported, 0 to 1 (default 1).
pub const OTLP_SAMPLE_RATIO: &str = "CONVERGIO_OTLP_SAMPLE_RATIO";
/// Seconds between checks of the config and TLS files for a reload
/// (default 1; 0: SIGHUP only).
pub const RELOAD_WATCH_INTERVAL: &str = "CONVERGIO_RELOAD_WATCH_INTERVAL_SECONDS";
/// Local embedding models as `name=directory,name=directory` (memory).
pub const MEMORY_LOCAL_MODELS: &str = "CONVERGIO_MEMORY_LOCAL_MODELS";
/// Milliseconds between catch-ups of the vector index with other
/// replicas' writes (default 1000; 0: never).
pub const MEMORY_FOLLOW_INTERVAL: &str = "CONVERGIO_MEMORY_FOLLOW_INTERVAL_MS";
/// The server client commands talk to.
pub const SERVER: &str = "CONVERGIO_SERVER";
/// The API key `convergio send` and `convergio tasks` call agents with.
pub const API_KEY: &str = "CONVERGIO_API_KEY";

/// Every key that `Config::load` reads, for `config check` to list.
pub const SERVER_KEYS: [&str; 50] = [
    DATA_DIR,
    LISTEN,
    DATABASE_URL,
    DATABASE_POOL_SIZE,
    ORG_DOMAIN,
    ADMIN_TOKEN,
    EXAMPLES,
    LOG,
    LOG_FORMAT,
    MAX_BODY_BYTES,
    AUTH_ANONYMOUS,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWKS_FILE,
    JWKS_URL,
    JWT_SUBJECT_CLAIM,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    TLS_CLIENT_CA_FILE,
    TLS_CLIENT_AUTH,
    MAX_CONNECTIONS,
    SERVE_THREADS,
    SHUTDOWN_DELAY,
    GRAPH_MAX_NODES,
    REPLICA_ID,
    RUN_LEASE_SECONDS,
    FEDERATION_DOMAIN,
    SIGNING_KEY_FILE,
    FEDERATION_CLOCK_SKEW,
    FEDERATION_DISCOVERY_TIMEOUT,
    FEDERATION_SYNC_INTERVAL,
    FEDERATION_MAX_HOPS,
    NETWORK_ALLOW_CIDRS,
    RETENTION_ENABLED,
    RETENTION_INTERVAL,
    RETENTION_TASK_ROUTES_MAX_AGE,
    RETENTION_AUDIT_MAX_AGE,
    RETENTION_RUNS_MAX_AGE,
    MODEL_AGENTS_DIR,
    MODEL_MAX_TIMEOUT,
    SECRETS_KEY,
    UPSTREAM_TIMEOUT,
    UPSTREAM_MAX_TIMEOUT,
    OTLP_ENDPOINT,
    OTLP_HEADERS,
    OTLP_SERVICE_NAME,
    OTLP_SAMPLE_RATIO,
    RELOAD_WATCH_INTERVAL,
    MEMORY_LOCAL_MODELS,
    MEMORY_FOLLOW_INTERVAL,
];
