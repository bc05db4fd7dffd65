//! Security test support: an Ed25519 JWT issuer with its JWKS, the gateway
//! behind real authentication (JWT, in-memory API keys, the admin token and
//! mTLS principals) on the production accept loop, and a `/whoami` route
//! that echoes the principal `Authenticate` set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_auth::{ApiKeys, JwtConfig, KeySet, MtlsConfig};
use convergio_gateway::a2a::{a2a_router, A2aConfig, A2aState, InMemoryRoutes};
use convergio_gateway::layers::{
    with_layers_auth, AuthenticateConfig, Authenticator, JwksSource, JwtAuthConfig, LimitsConfig,
};
use convergio_gateway::server::{serve_with, ServerConfig};
use convergio_gateway::tls::TlsAcceptor;
use convergio_gateway::Principal;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::Gateway;

pub const ISSUER: &str = "https://idp.acme.example";
pub const AUDIENCE: &str = "convergio";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An Ed25519 token issuer.
pub struct Issuer {
    pub key: Ed25519KeyPair,
    pub kid: String,
}

impl Issuer {
    pub fn new(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed25519 key");
        Self {
            key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 key"),
            kid: kid.to_owned(),
        }
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(&self.public_key())})
    }

    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk()]}).to_string()
    }

    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks(&self.jwks()).expect("jwks")
    }

    /// Signs `claims` with the header `{"alg":"EdDSA","kid":…}`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", b64(signature.as_ref()))
    }

    /// A valid token for `subject` of `org`.
    pub fn token(&self, subject: &str, org: &str) -> String {
        self.sign(&claims(subject, org))
    }
}

/// Claims the test gateway accepts.
pub fn claims(subject: &str, org: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "org": org,
        "scope": "agents:call", "exp": now() + 300, "nbf": now() - 5,
    })
}

/// A test certificate or key (the test kit's fixtures).
pub fn fixture(name: &str) -> PathBuf {
    convergio_tests::tls::fixture(name)
}

/// How the secured test gateway is built.
pub struct SecureOptions {
    pub jwks: JwksSource,
    pub anonymous: bool,
    pub tls: Option<convergio_gateway::tls::TlsConfig>,
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub a2a: A2aConfig,
    pub min_refetch_interval: Duration,
    /// The JWT claim naming the caller.
    pub subject_claim: String,
}

impl SecureOptions {
    pub fn new(issuer: &Issuer) -> Self {
        Self {
            jwks: JwksSource::Static(issuer.key_set()),
            anonymous: false,
            tls: None,
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            a2a: A2aConfig {
                upstream_timeout: Duration::from_secs(5),
                upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
                ..A2aConfig::default()
            },
            min_refetch_interval: Duration::from_secs(10),
            subject_claim: "sub".to_owned(),
        }
    }
}

/// The gateway with authentication on, and what the tests need to drive it.
pub struct SecureGateway {
    pub gateway: Gateway,
    pub api_keys: Arc<ApiKeys>,
    pub address: SocketAddr,
}

pub async fn whoami(Extension(principal): Extension<Principal>) -> Json<Principal> {
    Json(principal)
}

/// Starts the gateway with JWT, API key, admin-token and mTLS checks.
pub async fn spawn_secure_gateway(options: SecureOptions) -> SecureGateway {
    let api_keys = Arc::new(ApiKeys::new());
    let jwt = JwtAuthConfig {
        jwt: JwtConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            subject_claim: options.subject_claim.clone(),
            ..JwtConfig::default()
        },
        source: options.jwks,
        min_refetch_interval: options.min_refetch_interval,
    };
    let authenticator = Authenticator::new(AuthenticateConfig {
        anonymous: options.anonymous,
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        jwt: Some(jwt),
        api_keys: Some(api_keys.clone()),
        mtls: Some(MtlsConfig::default()),
    })
    .await
    .expect("authenticator");
    let routes = Arc::new(InMemoryRoutes::new());
    let state = A2aState::new(routes.clone(), options.a2a);
    let router = a2a_router(state)
        .route("/healthz", get(|| async { "ok" }))
        .route("/whoami", get(whoami));
    let app = with_layers_auth(router, &options.limits, Arc::new(authenticator));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let address = listener.local_addr().expect("address");
    let tls = options
        .tls
        .as_ref()
        .map(|config| TlsAcceptor::from_config(config).expect("tls config"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(serve_with(
        listener,
        app,
        options.server,
        tls,
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    SecureGateway {
        gateway: Gateway {
            base_url: format!("{scheme}://{address}"),
            routes,
            http,
        },
        api_keys,
        address,
    }
}

/// The message of a JSON-RPC error body or an A2A/problem body with every
/// occurrence of `id` replaced, for byte comparisons modulo ids.
pub fn normalise(body: &str, ids: &[&str]) -> String {
    let mut text = body.to_owned();
    for id in ids {
        text = text.replace(id, "<ID>");
    }
    // Request ids differ per request by design.
    let mut value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    strip_request_ids(&mut value);
    value.to_string()
}

fn strip_request_ids(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("requestId");
            map.remove("request_id");
            for child in map.values_mut() {
                strip_request_ids(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_request_ids),
        _ => {}
    }
}
