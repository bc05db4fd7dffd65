//! The `auth:`, `tls:` and `server:` sections of the config file (issue 4),
//! kept apart from `config.rs` so the security settings read as one unit.
//!
//! The anonymous default: unset `auth.anonymous` means anonymous callers are
//! allowed only on a plaintext loopback listener (the README tour), and
//! refused everywhere else — a gateway reachable from other hosts never
//! serves unauthenticated callers unless its config says so in writing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use convergio_gateway::server::ServerConfig;
use convergio_gateway::tls::{ClientAuth, TlsConfig};
use serde::{Deserialize, Serialize};

use anyhow::Context as _;

use crate::config_error::{parse_env, ConfigError};
use crate::env;

/// `auth:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Allow callers without credentials. Unset: only on a plaintext
    /// loopback listener. CONVERGIO_AUTH_ANONYMOUS
    pub anonymous: Option<bool>,
    /// Bearer JWTs; off when unset.
    pub jwt: Option<JwtSection>,
    /// Accept API keys issued with `convergio keys issue`. Default true.
    pub api_keys: bool,
    /// Principals from TLS client certificates (needs `tls.client_ca_file`).
    pub mtls: MtlsSection,
}

/// `auth.jwt:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// Required `iss`. CONVERGIO_JWT_ISSUER
    pub issuer: String,
    /// Required member of `aud`. CONVERGIO_JWT_AUDIENCE
    pub audience: String,
    /// JWKS document on disk (one of `jwks_file`, `jwks_url`). CONVERGIO_JWKS_FILE
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of the issuer. CONVERGIO_JWKS_URL
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Claim naming the caller's organisation. Default `org`.
    #[serde(default = "default_org_claim")]
    pub org_claim: String,
    /// Claim naming the caller; a token without it is refused (401).
    /// Default `sub`; `client_id` suits client-credential tokens.
    /// CONVERGIO_JWT_SUBJECT_CLAIM
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Keys are refetched at the latest after this many seconds. Default 3600.
    #[serde(default = "default_key_ttl")]
    pub key_ttl_seconds: u64,
}

/// `auth.mtls:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsSection {
    /// Turn verified client certificates into principals. Default true.
    pub enabled: bool,
    /// Scopes every certificate principal gets. Default none.
    pub scopes: Vec<String>,
}

/// `tls:` section; plaintext when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain. CONVERGIO_TLS_CERT_FILE
    pub cert_file: PathBuf,
    /// PEM private key. CONVERGIO_TLS_KEY_FILE
    pub key_file: PathBuf,
    /// PEM CAs trusted for client certificates. CONVERGIO_TLS_CLIENT_CA_FILE
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` or `required`. Default none. CONVERGIO_TLS_CLIENT_AUTH
    #[serde(default)]
    pub client_auth: ClientAuthSetting,
}

/// `tls.client_auth` values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSetting {
    /// No client certificates.
    #[default]
    None,
    /// Verified when presented.
    Optional,
    /// The handshake needs one.
    Required,
}

/// One entry of `upstream_credentials:` (keyed by agent name): what the
/// gateway presents to that agent, read at start. Secrets are never written
/// in the config file, only where to read them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentialSection {
    /// File holding a bearer token (trailing whitespace is trimmed).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Forward the caller's own `Authorization` header to this agent when no
    /// bearer token is configured. Default false.
    #[serde(default)]
    pub forward_caller_authorization: bool,
    /// PEM CA bundle the agent's `https://` certificate must chain to
    /// (instead of the public web PKI).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mTLS to the agent.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// `server:` section: connection bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Time for a request head, the first byte or the TLS handshake. Default 10.
    pub header_read_timeout_seconds: u64,
    /// Largest request head in bytes (8 KiB to 1 MiB). Default 65536.
    pub max_header_bytes: usize,
    /// Concurrent connections. Default 10000. CONVERGIO_MAX_CONNECTIONS
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection. Default 128.
    pub h2_max_concurrent_streams: u32,
    /// Seconds shutdown waits for in-flight requests. Default 30.
    pub drain_timeout_seconds: u64,
    /// Seconds the listener keeps accepting after SIGTERM turned `/readyz`
    /// to 503, so load balancers stop sending first. Default 0.
    /// CONVERGIO_SHUTDOWN_DELAY_SECONDS
    pub shutdown_delay_seconds: u64,
    /// Threads that serve connections, each with a single-threaded runtime
    /// (thread-per-core); 0 serves them on the main runtime. Default 0.
    /// CONVERGIO_SERVE_THREADS
    pub serve_threads: usize,
}

fn default_leeway() -> u64 {
    30
}

fn default_org_claim() -> String {
    "org".to_owned()
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_key_ttl() -> u64 {
    3600
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            anonymous: None,
            jwt: None,
            api_keys: true,
            mtls: MtlsSection::default(),
        }
    }
}

impl Default for MtlsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            scopes: Vec::new(),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        let defaults = ServerConfig::default();
        Self {
            header_read_timeout_seconds: defaults.header_read_timeout.as_secs(),
            max_header_bytes: defaults.max_header_bytes,
            max_connections: defaults.max_connections,
            h2_max_concurrent_streams: defaults.h2_max_concurrent_streams,
            drain_timeout_seconds: defaults.drain_timeout.as_secs(),
            shutdown_delay_seconds: defaults.shutdown_delay.as_secs(),
            serve_threads: defaults.serve_threads,
        }
    }
}

/// The validated security settings `serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct SecuritySettings {
    /// Whether callers without credentials are served (resolved default).
    pub anonymous: bool,
    /// JWT settings, when on.
    pub jwt: Option<JwtSection>,
    /// Whether API keys are accepted.
    pub api_keys: bool,
    /// Certificate principals, when on.
    pub mtls: Option<MtlsSection>,
    /// TLS listener, when configured.
    pub tls: Option<TlsConfig>,
    /// Connection bounds.
    pub server: ServerConfig,
    /// Where each agent's upstream credential is read from.
    pub upstream_credentials: std::collections::BTreeMap<String, UpstreamCredentialSection>,
}

/// Applies the `CONVERGIO_*` security overrides to the sections.
pub fn apply_environment(
    auth: &mut AuthSection,
    tls: &mut Option<TlsSection>,
    server: &mut ServerSection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let get = |key: &str| environment.get(key).filter(|value| !value.is_empty());
    if let Some(value) = get(env::AUTH_ANONYMOUS) {
        auth.anonymous = Some(parse_bool(env::AUTH_ANONYMOUS, value)?);
    }
    let jwt_keys = [
        env::JWT_ISSUER,
        env::JWT_AUDIENCE,
        env::JWKS_FILE,
        env::JWKS_URL,
        env::JWT_SUBJECT_CLAIM,
    ];
    if jwt_keys.iter().any(|key| get(key).is_some()) {
        let jwt = auth.jwt.get_or_insert_with(|| JwtSection {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: None,
            jwks_url: None,
            leeway_seconds: default_leeway(),
            org_claim: default_org_claim(),
            subject_claim: default_subject_claim(),
            key_ttl_seconds: default_key_ttl(),
        });
        if let Some(value) = get(env::JWT_ISSUER) {
            jwt.issuer = value.clone();
        }
        if let Some(value) = get(env::JWT_AUDIENCE) {
            jwt.audience = value.clone();
        }
        if let Some(value) = get(env::JWKS_FILE) {
            jwt.jwks_file = Some(PathBuf::from(value));
        }
        if let Some(value) = get(env::JWKS_URL) {
            jwt.jwks_url = Some(value.clone());
        }
        if let Some(value) = get(env::JWT_SUBJECT_CLAIM) {
            jwt.subject_claim = value.clone();
        }
    }
    if let (Some(cert), Some(key)) = (get(env::TLS_CERT_FILE), get(env::TLS_KEY_FILE)) {
        *tls = Some(TlsSection {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            client_ca_file: None,
            client_auth: ClientAuthSetting::None,
        });
    }
    if let Some(section) = tls.as_mut() {
        if let Some(value) = get(env::TLS_CLIENT_CA_FILE) {
            section.client_ca_file = Some(PathBuf::from(value));
        }
        if let Some(value) = get(env::TLS_CLIENT_AUTH) {
            section.client_auth = match value.as_str() {
                "none" => ClientAuthSetting::None,
                "optional" => ClientAuthSetting::Optional,
                "required" => ClientAuthSetting::Required,
                other => {
                    return Err(invalid(
                        env::TLS_CLIENT_AUTH,
                        format!("expected none, optional or required, found {other:?}"),
                    ))
                }
            };
        }
    }
    if let Some(value) = get(env::SHUTDOWN_DELAY) {
        server.shutdown_delay_seconds =
            parse_env(env::SHUTDOWN_DELAY, value, "a number of seconds")?;
    }
    if let Some(value) = get(env::SERVE_THREADS) {
        server.serve_threads = parse_env(env::SERVE_THREADS, value, "a count of threads")?;
    }
    if let Some(value) = get(env::MAX_CONNECTIONS) {
        server.max_connections = parse_env(env::MAX_CONNECTIONS, value, "a count")?;
    }
    Ok(())
}

/// Validates the sections against the listen address.
pub fn validate(
    auth: AuthSection,
    tls: Option<TlsSection>,
    server: ServerSection,
    listen: &SocketAddr,
    upstream_credentials: std::collections::BTreeMap<String, UpstreamCredentialSection>,
) -> Result<SecuritySettings, ConfigError> {
    for (agent, credential) in &upstream_credentials {
        let field = format!("upstream_credentials.{agent}");
        if credential.bearer_token_file.is_some() && credential.bearer_token_env.is_some() {
            return Err(invalid(
                &field,
                "at most one of bearer_token_file and bearer_token_env".to_owned(),
            ));
        }
        if credential.client_cert_file.is_some() != credential.client_key_file.is_some() {
            return Err(invalid(
                &field,
                "client_cert_file and client_key_file go together".to_owned(),
            ));
        }
        if *credential == UpstreamCredentialSection::default() {
            return Err(invalid(
                &field,
                "says nothing: give a bearer token, forward_caller_authorization, \
                 ca_file or a client certificate"
                    .to_owned(),
            ));
        }
    }
    if let Some(jwt) = &auth.jwt {
        if jwt.issuer.is_empty() || jwt.audience.is_empty() {
            return Err(invalid(
                "auth.jwt",
                "issuer and audience are required".to_owned(),
            ));
        }
        if jwt.subject_claim.trim().is_empty() {
            return Err(invalid(
                "auth.jwt.subject_claim",
                "must name the claim that identifies the caller (default sub)".to_owned(),
            ));
        }
        if jwt.jwks_file.is_some() == jwt.jwks_url.is_some() {
            return Err(invalid(
                "auth.jwt",
                "exactly one of jwks_file and jwks_url is required".to_owned(),
            ));
        }
    }
    if let Some(section) = &tls {
        if section.client_auth != ClientAuthSetting::None && section.client_ca_file.is_none() {
            return Err(invalid(
                "tls.client_ca_file",
                "client_auth optional or required needs a client CA bundle".to_owned(),
            ));
        }
    }
    if !(8 * 1024..=1024 * 1024).contains(&server.max_header_bytes) {
        return Err(invalid(
            "server.max_header_bytes",
            "must be between 8 KiB and 1 MiB".to_owned(),
        ));
    }
    if server.max_connections == 0 || server.header_read_timeout_seconds == 0 {
        return Err(invalid(
            "server",
            "max_connections and header_read_timeout_seconds must be positive".to_owned(),
        ));
    }
    let anonymous = auth
        .anonymous
        .unwrap_or(listen.ip().is_loopback() && tls.is_none());
    let mtls = (auth.mtls.enabled
        && tls
            .as_ref()
            .is_some_and(|section| section.client_ca_file.is_some()))
    .then_some(auth.mtls);
    Ok(SecuritySettings {
        anonymous,
        jwt: auth.jwt,
        api_keys: auth.api_keys,
        mtls,
        tls: tls.map(|section| TlsConfig {
            cert_file: section.cert_file,
            key_file: section.key_file,
            client_ca_file: section.client_ca_file,
            client_auth: match section.client_auth {
                ClientAuthSetting::None => ClientAuth::None,
                ClientAuthSetting::Optional => ClientAuth::Optional,
                ClientAuthSetting::Required => ClientAuth::Required,
            },
        }),
        server: ServerConfig {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
            drain_timeout: Duration::from_secs(server.drain_timeout_seconds),
            shutdown_delay: Duration::from_secs(server.shutdown_delay_seconds),
            serve_threads: server.serve_threads,
        },
        upstream_credentials,
    })
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

/// Reads every configured upstream credential (files and environment) and
/// TLS file, at start and at each reload; errors name the agent and the source, never the
/// secret.
pub fn load_upstream_credentials(
    security: &SecuritySettings,
) -> anyhow::Result<HashMap<String, convergio_gateway::a2a::UpstreamCredential>> {
    let mut credentials = HashMap::new();
    for (agent, section) in &security.upstream_credentials {
        let bearer_token = match (&section.bearer_token_file, &section.bearer_token_env) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!(
                            "reading the upstream credential of {agent} from {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(name)) => Some(std::env::var(name).with_context(|| {
                format!("the upstream credential of {agent}: {name} is not set")
            })?),
            (None, None) => None,
        };
        anyhow::ensure!(
            bearer_token.as_ref().is_none_or(|token| !token.is_empty()),
            "the upstream credential of {agent} is empty"
        );
        let files = convergio_gateway::tls::UpstreamTlsFiles {
            ca_file: section.ca_file.clone(),
            client_cert_file: section.client_cert_file.clone(),
            client_key_file: section.client_key_file.clone(),
        };
        let tls = if files == convergio_gateway::tls::UpstreamTlsFiles::default() {
            None
        } else {
            Some(std::sync::Arc::new(
                convergio_gateway::tls::upstream_client_config(&files)
                    .with_context(|| format!("the upstream TLS settings of {agent}"))?,
            ))
        };
        credentials.insert(
            agent.clone(),
            convergio_gateway::a2a::UpstreamCredential {
                bearer_token,
                tls,
                forward_caller_authorization: section.forward_caller_authorization,
            },
        );
    }
    Ok(credentials)
}

/// The files the upstream credentials are read from (watched for reloads).
pub fn upstream_credential_files(security: &SecuritySettings) -> Vec<PathBuf> {
    security
        .upstream_credentials
        .values()
        .flat_map(|section| {
            [
                &section.bearer_token_file,
                &section.ca_file,
                &section.client_cert_file,
                &section.client_key_file,
            ]
        })
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn anonymous_defaults_to_plaintext_loopback_only() {
        let loopback = validate(
            AuthSection::default(),
            None,
            ServerSection::default(),
            &listen("127.0.0.1:8080"),
            Default::default(),
        )
        .expect("valid");
        assert!(loopback.anonymous);
        let public = validate(
            AuthSection::default(),
            None,
            ServerSection::default(),
            &listen("0.0.0.0:8080"),
            Default::default(),
        )
        .expect("valid");
        assert!(!public.anonymous);
        let tls = TlsSection {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
            client_ca_file: None,
            client_auth: ClientAuthSetting::None,
        };
        let loopback_tls = validate(
            AuthSection::default(),
            Some(tls),
            ServerSection::default(),
            &listen("127.0.0.1:8443"),
            Default::default(),
        )
        .expect("valid");
        assert!(!loopback_tls.anonymous);
        let explicit = validate(
            AuthSection {
                anonymous: Some(false),
                ..AuthSection::default()
            },
            None,
            ServerSection::default(),
            &listen("127.0.0.1:8080"),
            Default::default(),
        )
        .expect("valid");
        assert!(!explicit.anonymous);
    }

    // Regression: issue #15, defect 5: the subject claim is configurable
    // (file and environment), `sub` by default, and never empty.
    #[test]
    fn jwt_subject_claim_defaults_to_sub_and_can_be_overridden() {
        let section: JwtSection = serde_yaml::from_str(
            "issuer: https://idp\naudience: convergio\njwks_file: /etc/jwks.json\n",
        )
        .expect("parses");
        assert_eq!(section.subject_claim, "sub");
        let section: JwtSection = serde_yaml::from_str(
            "issuer: https://idp\naudience: convergio\njwks_file: /etc/jwks.json\n\
             subject_claim: client_id\n",
        )
        .expect("parses");
        assert_eq!(section.subject_claim, "client_id");

        let mut auth = AuthSection {
            jwt: Some(section),
            ..AuthSection::default()
        };
        let mut environment = HashMap::new();
        environment.insert(env::JWT_SUBJECT_CLAIM.to_owned(), "azp".to_owned());
        let (mut tls, mut server) = (None, ServerSection::default());
        apply_environment(&mut auth, &mut tls, &mut server, &environment).expect("applies");
        let settings = validate(
            auth.clone(),
            tls.clone(),
            server.clone(),
            &listen("127.0.0.1:1"),
            Default::default(),
        )
        .expect("valid");
        assert_eq!(
            settings.jwt.map(|jwt| jwt.subject_claim).as_deref(),
            Some("azp")
        );

        if let Some(jwt) = auth.jwt.as_mut() {
            jwt.subject_claim = " ".to_owned();
        }
        let error = validate(
            auth,
            tls,
            server,
            &listen("127.0.0.1:1"),
            Default::default(),
        )
        .expect_err("empty claim");
        assert!(error.to_string().contains("subject_claim"), "{error}");
    }

    #[test]
    fn refuses_incomplete_jwt_and_client_auth_without_a_ca() {
        let mut environment = HashMap::new();
        environment.insert(env::JWT_ISSUER.to_owned(), "https://idp".to_owned());
        let mut auth = AuthSection::default();
        let mut tls = None;
        let mut server = ServerSection::default();
        apply_environment(&mut auth, &mut tls, &mut server, &environment).expect("applies");
        let error = validate(
            auth,
            tls,
            server,
            &listen("127.0.0.1:1"),
            Default::default(),
        )
        .expect_err("incomplete");
        assert!(error.to_string().contains("auth.jwt"), "{error}");

        let tls = Some(TlsSection {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
            client_ca_file: None,
            client_auth: ClientAuthSetting::Required,
        });
        let error = validate(
            AuthSection::default(),
            tls,
            ServerSection::default(),
            &listen("127.0.0.1:1"),
            Default::default(),
        )
        .expect_err("no ca");
        assert!(error.to_string().contains("tls.client_ca_file"), "{error}");
    }
}
