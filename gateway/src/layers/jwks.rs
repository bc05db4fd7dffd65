//! Bearer JWT checks for `Authenticate`: the [`JwtVerifier`] of
//! `convergio-auth` (keys in a moka cache with a time-to-live) plus the I/O
//! that crate leaves out — loading the JWKS from a file or URL, and
//! refreshing it.
//!
//! Rotation without a restart: installed keys expire after `key_ttl`, and a
//! token naming a `kid` the cache does not hold (a new key, or every key
//! after the TTL) triggers one refetch. Refetches are rate limited to one per
//! `min_refetch_interval` and serialised behind a lock, so a flood of tokens
//! with made-up `kid`s costs the issuer at most one request per interval.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_auth::{AuthError, JwtConfig, JwtVerifier, KeySet};
use convergio_schemas::problem::ErrorChain;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{GatewayError, Principal};

/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS document on disk (re-read on refresh).
    File(PathBuf),
    /// A JWKS document served by the issuer (`http(s)://…/jwks.json`).
    Url(String),
    /// A fixed set (tests, benches).
    Static(KeySet),
}

/// Bearer JWT settings.
#[derive(Debug, Clone)]
pub struct JwtAuthConfig {
    /// Issuer, audience, leeway, key time-to-live.
    pub jwt: JwtConfig,
    /// Where the keys come from.
    pub source: JwksSource,
    /// Least time between two fetches of the key set.
    pub min_refetch_interval: Duration,
}

// === impl JwtAuthConfig ===

impl JwtAuthConfig {
    /// Settings with the default refetch interval (10 s).
    pub fn new(jwt: JwtConfig, source: JwksSource) -> Self {
        Self {
            jwt,
            source,
            min_refetch_interval: Duration::from_secs(10),
        }
    }
}

/// How long a verified token's principal is remembered (re-checked against
/// `exp`/`nbf` on every use; dropped on every key set change).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// A token already verified: its principal and validity window.
#[derive(Debug)]
struct Verified {
    principal: Principal,
    expires_at: u64,
    not_before: u64,
}

/// A verifier that keeps its key set current.
pub(crate) struct JwtAuthenticator {
    verifier: JwtVerifier,
    /// Verified tokens by SHA-256 of their bytes: a caller reusing its token
    /// (the common case) costs one hash, not a signature check. Sound because
    /// the same bytes always verify the same way; only the clock-dependent
    /// claims are re-checked, and a key set change clears the cache.
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
    leeway: u64,
    source: JwksSource,
    min_refetch_interval: Duration,
    last_fetch: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

// === impl JwtAuthenticator ===

impl JwtAuthenticator {
    /// Loads the key set once; a source that cannot be read or parsed is a
    /// startup error.
    pub(crate) async fn new(config: JwtAuthConfig) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| GatewayError::internal("building the jwks client", error))?;
        let leeway = config.jwt.leeway_seconds;
        let authenticator = Self {
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            leeway,
            verifier: JwtVerifier::new(config.jwt),
            source: config.source,
            min_refetch_interval: config.min_refetch_interval,
            last_fetch: Mutex::new(None),
            http,
        };
        let set = authenticator
            .fetch()
            .await
            .map_err(|error| GatewayError::internal("loading the jwt key set", error))?;
        authenticator.verifier.install(&set);
        *authenticator.last_fetch.lock().await = Some(Instant::now());
        Ok(authenticator)
    }

    /// Verifies `token`, refreshing the key set once if its `kid` is unknown.
    pub(crate) async fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let digest = token_digest(token);
        if let Some(verified) = self.verified.get(&digest) {
            if verified.expires_at.saturating_add(self.leeway) <= now {
                return Err(AuthError::Expired);
            }
            if verified.not_before > now.saturating_add(self.leeway) {
                return Err(AuthError::NotYetValid);
            }
            return Ok(verified.principal.clone());
        }
        let principal = self.verify_signature(token, now).await?;
        if let Some((expires_at, not_before)) = validity_window(token) {
            self.verified.insert(
                digest,
                Arc::new(Verified {
                    principal: principal.clone(),
                    expires_at,
                    not_before,
                }),
            );
        }
        Ok(principal)
    }

    async fn verify_signature(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        match self.verifier.verify(token, now) {
            Err(AuthError::UnknownKey { kid }) => {
                if self.refresh().await {
                    self.verifier.verify(token, now)
                } else {
                    Err(AuthError::UnknownKey { kid })
                }
            }
            other => other,
        }
    }

    /// Refetches the key set unless that happened less than
    /// `min_refetch_interval` ago; returns whether a new set was installed.
    async fn refresh(&self) -> bool {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return false;
        }
        // Count failed attempts too, so an unreachable issuer is not hammered.
        *last_fetch = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                self.verifier.install(&set);
                self.verified.invalidate_all();
                tracing::info!(keys = set.len(), "jwt key set refreshed");
                true
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "jwt key set refresh failed");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, KeySetError> {
        let text = match &self.source {
            JwksSource::Static(set) => return Ok(set.clone()),
            JwksSource::File(path) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| KeySetError::File {
                        path: path.clone(),
                        source,
                    })?
            }
            JwksSource::Url(url) => {
                let bytes = crate::fetch::jwks(&self.http, url.as_str(), MAX_JWKS_BYTES).await?;
                String::from_utf8(bytes).map_err(KeySetError::NotUtf8)?
            }
        };
        KeySet::from_jwks(&text).map_err(KeySetError::Invalid)
    }
}

/// Why the JWT key set could not be loaded (at start, a startup error; on
/// a refresh, a log line and the old set stays).
#[derive(Debug, thiserror::Error)]
enum KeySetError {
    /// The JWKS file could not be read.
    #[error("reading {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS URL could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// The fetched document is not text.
    #[error("the jwks is not utf-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    /// The document is not a usable key set.
    #[error("the jwks is not a usable key set")]
    Invalid(#[source] AuthError),
}

fn token_digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// `exp` and `nbf` (0 when absent) of a token that has just verified.
fn validity_window(token: &str) -> Option<(u64, u64)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let expires_at = claims.get("exp")?.as_u64()?;
    let not_before = claims
        .get("nbf")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Some((expires_at, not_before))
}
