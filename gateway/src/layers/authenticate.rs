//! `Authenticate`: turns the request's credentials into a verified
//! [`Principal`] extension, or refuses the request with 401. Runs inside
//! `Limits` (so floods of bad tokens are bounded too) and inside `Rescue`,
//! which renders its [`GatewayError::Unauthenticated`] in the shape the path
//! implies (problem+json, JSON-RPC or A2A HTTP+JSON) with
//! `WWW-Authenticate: Bearer realm="convergio", error="invalid_token"`.
//!
//! Credentials, first match wins:
//! 1. a `Principal` extension already on the request: requests built
//!    in-process (the orchestrator's dispatcher calls the router with tower
//!    `oneshot`) keep the principal they were given — extensions are never
//!    wire data, so no client can forge one;
//! 2. a `Convergio-Signature` header, when federation is on: a signed call
//!    from a peer organisation, verified over the buffered body (see
//!    the [`PeerVerifier`] this layer defines and federation implements);
//!    the principal is the peer's;
//! 3. `Authorization: Bearer <token>`: the bootstrap admin token (constant-time
//!    compare), an API key (`cvg_…`), else a JWT;
//! 4. `X-API-Key: cvg_…`;
//! 5. the TLS client certificate of the connection ([`PeerCertificate`],
//!    put there by the TLS listener), when mTLS principals are enabled;
//! 6. nothing: the anonymous principal where configured, or on the public
//!    paths (health, cards, OpenAPI); 401 everywhere else.
//!
//! A credential that is present but wrong is refused even on public paths:
//! a client with a broken token should learn so at once. No secret ever
//! reaches a log line: refusals log only which check failed.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, Response};
use convergio_auth::peer_call::SIGNATURE_HEADER;
use convergio_auth::{
    constant_time_eq, principal_from_certificate, ApiKeys, AuthError, MtlsConfig,
};
use convergio_schemas::AuthMethod;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::jwks::JwtAuthenticator;
pub use super::jwks::{JwksSource, JwtAuthConfig};
use crate::{GatewayError, Principal};

/// The header carrying an API key when `Authorization` is not used.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The prefix every API key starts with.
const API_KEY_PREFIX: &str = "cvg_";

/// The DER-encoded leaf certificate the client presented on this TLS
/// connection, verified against the configured client CAs during the
/// handshake. The TLS listener inserts it into every request of the
/// connection; plaintext connections never carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// Where API keys are checked: the in-memory [`ApiKeys`] (tests, static
/// configuration) or the registry database through a short-lived cache.
#[async_trait]
pub trait ApiKeyVerifier: Send + Sync {
    /// Verifies a presented `cvg_…` key at `now` (Unix seconds).
    async fn verify_api_key(&self, token: &str, now: u64) -> Result<Principal, AuthError>;
}

#[async_trait]
impl ApiKeyVerifier for ApiKeys {
    async fn verify_api_key(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        self.verify(token, now)
    }
}

/// What `Authenticate` accepts.
#[derive(Clone, Default)]
pub struct AuthenticateConfig {
    /// Requests without credentials get the anonymous principal. Only for
    /// loopback development: `convergio serve` allows it by default only on
    /// a plaintext loopback listener.
    pub anonymous: bool,
    /// The bootstrap administrator token (principal `admin`, scope `admin`).
    pub admin_token: Option<String>,
    /// Bearer JWTs, when configured.
    pub jwt: Option<JwtAuthConfig>,
    /// API keys, when configured.
    pub api_keys: Option<Arc<dyn ApiKeyVerifier>>,
    /// Principals from TLS client certificates, when configured.
    pub mtls: Option<MtlsConfig>,
}

impl std::fmt::Debug for AuthenticateConfig {
    // Hand-written so the admin token can never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateConfig")
            .field("anonymous", &self.anonymous)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt", &self.jwt)
            .field("api_keys", &self.api_keys.is_some())
            .field("mtls", &self.mtls)
            .finish()
    }
}

// === impl AuthenticateConfig ===

impl AuthenticateConfig {
    /// Anonymous access for everyone (tests and loopback development).
    pub fn anonymous() -> Self {
        Self {
            anonymous: true,
            ..Self::default()
        }
    }
}

/// Verifies signed calls from peer organisations for this layer. Defined
/// here, by its consumer, and implemented by federation, so the layer stack
/// never imports federation (which builds on the layers' error types).
#[async_trait]
pub trait PeerVerifier: Send + Sync {
    /// The principal of a request carrying a signed call, or why not.
    async fn verify_peer_call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, AuthError>;
}

/// The credential checks, shared by every request.
pub struct Authenticator {
    off: bool,
    anonymous: bool,
    admin_token: Option<String>,
    jwt: Option<JwtAuthenticator>,
    api_keys: Option<Arc<dyn ApiKeyVerifier>>,
    mtls: Option<MtlsConfig>,
    peers: Option<Arc<dyn PeerVerifier>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("off", &self.off)
            .field("anonymous", &self.anonymous)
            .field("admin_token", &self.admin_token.is_some())
            .field("jwt", &self.jwt.is_some())
            .field("api_keys", &self.api_keys.is_some())
            .field("mtls", &self.mtls.is_some())
            .field("peers", &self.peers.is_some())
            .finish()
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// No checks at all: every request without an in-process principal is
    /// anonymous and credentials are ignored, as before authentication
    /// existed. For tests and benches of other layers only; `convergio serve`
    /// always builds real checks (with `anonymous` where configured).
    pub fn off() -> Self {
        Self {
            off: true,
            anonymous: true,
            admin_token: None,
            jwt: None,
            api_keys: None,
            mtls: None,
            peers: None,
        }
    }

    /// The same checks, also accepting signed calls from federation peers.
    pub fn with_peers(mut self, peers: Arc<dyn PeerVerifier>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Builds the checks, loading the JWKS once so a broken key set fails at
    /// startup rather than on the first request.
    pub async fn new(config: AuthenticateConfig) -> Result<Self, GatewayError> {
        let jwt = match config.jwt {
            Some(jwt) => Some(JwtAuthenticator::new(jwt).await?),
            None => None,
        };
        Ok(Self {
            off: false,
            anonymous: config.anonymous,
            admin_token: config.admin_token.filter(|token| !token.is_empty()),
            jwt,
            api_keys: config.api_keys,
            mtls: config.mtls,
            peers: None,
        })
    }

    /// The principal for a request with these headers on a connection with
    /// this client certificate; `Ok(None)` when no credential was presented.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
    ) -> Result<Option<Principal>, AuthError> {
        if self.off {
            return Ok(None);
        }
        let now = unix_now();
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token =
                value
                    .to_str()
                    .ok()
                    .and_then(bearer_token)
                    .ok_or_else(|| AuthError::Malformed {
                        reason: "authorization is not a bearer token".to_owned(),
                    })?;
            return self.bearer(token, now).await.map(Some);
        }
        if let Some(value) = headers.get(API_KEY_HEADER) {
            let token = value.to_str().map_err(|_| AuthError::InvalidApiKey)?.trim();
            return self.api_key(token, now).await.map(Some);
        }
        if let (Some(peer), Some(mtls)) = (peer, &self.mtls) {
            return principal_from_certificate(&peer.0, mtls).map(Some);
        }
        Ok(None)
    }

    async fn bearer(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        if let Some(admin_token) = &self.admin_token {
            if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
                return Ok(admin_principal());
            }
        }
        if token.starts_with(API_KEY_PREFIX) {
            return self.api_key(token, now).await;
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(token, now).await,
            None => Err(AuthError::Malformed {
                reason: "bearer token is neither the admin token nor an api key, and jwt is off"
                    .to_owned(),
            }),
        }
    }

    async fn api_key(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        match &self.api_keys {
            Some(keys) => keys.verify_api_key(token, now).await,
            None => Err(AuthError::InvalidApiKey),
        }
    }
}

/// The principal the bootstrap admin token stands for.
pub fn admin_principal() -> Principal {
    Principal {
        subject: "admin".to_owned(),
        org: None,
        scopes: vec!["admin".to_owned()],
        method: AuthMethod::AdminToken,
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Paths anyone may read without credentials: liveness and readiness,
/// discovery cards, the API description and the web console's static files
/// (which hold no data: the console calls the API with the user's
/// credentials). Everything else needs a principal.
pub fn is_public_path(path: &str) -> bool {
    if matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/v1/openapi.json"
            | "/.well-known/agent-card.json"
            | "/.well-known/ai-catalog.json"
            | convergio_auth::org_key::JWKS_PATH
    ) {
        return true;
    }
    if path == crate::console::CONSOLE_PATH || path.starts_with("/console/") {
        return true;
    }
    // An agent's push notification: the webhook's own token authenticates
    // it (`a2a/push.rs`).
    if path
        .strip_prefix("/push/")
        .is_some_and(|hook| !hook.is_empty() && !hook.contains('/'))
    {
        return true;
    }
    // An agent's card, and the per-tenant catalogs (discovery documents an
    // anonymous caller gets as far as policy lets it see).
    let one_segment =
        |rest: Option<&str>| rest.is_some_and(|name| !name.is_empty() && !name.contains('/'));
    let agents = path.strip_prefix("/agents/");
    one_segment(agents.and_then(|rest| rest.strip_suffix("/.well-known/agent-card.json")))
        || one_segment(agents.and_then(|rest| rest.strip_suffix("/.well-known/ai-catalog.json")))
        || one_segment(
            path.strip_prefix("/a2a/")
                .and_then(|rest| rest.strip_suffix("/.well-known/ai-catalog.json")),
        )
}

/// Layer producing [`Authenticate`].
#[derive(Clone)]
pub struct AuthenticateLayer {
    authenticator: Arc<Authenticator>,
}

// === impl AuthenticateLayer ===

impl AuthenticateLayer {
    /// A layer over shared checks.
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// Sets the verified [`Principal`] or refuses the request.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

// === impl Authenticate ===

impl<S> Service<Request<Body>> for Authenticate<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<GatewayError>,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            if request.extensions().get::<Principal>().is_none()
                && request.headers().contains_key(SIGNATURE_HEADER)
                && !authenticator.off
            {
                let (principal, rebuilt) = verify_signed(&authenticator, request).await?;
                request = rebuilt;
                request.extensions_mut().insert(principal);
            }
            if request.extensions().get::<Principal>().is_none() {
                let peer = request.extensions().get::<PeerCertificate>();
                let principal = match authenticator.authenticate(request.headers(), peer).await {
                    Ok(Some(principal)) => principal,
                    Ok(None) if authenticator.anonymous || is_public_path(request.uri().path()) => {
                        Principal::anonymous()
                    }
                    Ok(None) => {
                        return Err(GatewayError::Unauthenticated {
                            reason: AuthError::Missing.to_string(),
                        })
                    }
                    Err(error) => {
                        // The reason names the failed check, never the credential.
                        return Err(GatewayError::Unauthenticated {
                            reason: error.to_string(),
                        });
                    }
                };
                request.extensions_mut().insert(principal);
            }
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// Verifies a signed call from a peer: the body is read whole (it is
/// covered by the signature; `Limits` already bounds it) and put back.
async fn verify_signed(
    authenticator: &Authenticator,
    request: Request<Body>,
) -> Result<(Principal, Request<Body>), GatewayError> {
    let Some(peers) = &authenticator.peers else {
        return Err(GatewayError::Unauthenticated {
            reason: "signed call, but federation is off".to_owned(),
        });
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| {
            if super::is_length_limit(&error) {
                GatewayError::PayloadTooLarge {
                    limit: parts
                        .extensions
                        .get::<super::BodyLimit>()
                        .map(|limit| limit.0)
                        .unwrap_or_default(),
                }
            } else {
                GatewayError::InvalidRequest {
                    detail: format!("reading the request body failed: {error}"),
                }
            }
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    let principal = peers
        .verify_peer_call(parts.method.as_str(), path, &parts.headers, &bytes)
        .await
        .map_err(|error| GatewayError::Unauthenticated {
            // The reason names the failed check (logged), never the token.
            reason: format!("signed call refused: {error}"),
        })?;
    Ok((principal, Request::from_parts(parts, Body::from(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_health_cards_openapi_and_the_console_only() {
        for path in [
            "/healthz",
            "/readyz",
            "/v1/openapi.json",
            "/.well-known/agent-card.json",
            "/agents/echo/.well-known/agent-card.json",
            "/.well-known/ai-catalog.json",
            "/agents/echo/.well-known/ai-catalog.json",
            "/a2a/echo/.well-known/ai-catalog.json",
            "/.well-known/jwks.json",
            "/console",
            "/console/",
            "/console/js/app.js",
            "/push/0123abcd",
        ] {
            assert!(is_public_path(path), "{path}");
        }
        for path in [
            "/agents/echo",
            "/agents/echo/tasks/1",
            "/agents/a/b/.well-known/agent-card.json",
            "/agents//.well-known/agent-card.json",
            "/agents/a/b/.well-known/ai-catalog.json",
            "/a2a/.well-known/ai-catalog.json",
            "/v1/agents",
            "/a2a",
            "/consoles",
            "/push/",
            "/push/a/b",
        ] {
            assert!(!is_public_path(path), "{path}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
