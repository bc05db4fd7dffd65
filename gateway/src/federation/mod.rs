//! Federation (issue 6, calls): this organisation's identity, the peer
//! organisations an administrator configured, and signed calls between
//! them.
//!
//! - Identity: the domain and the Ed25519 [`OrgSigningKey`], published as a
//!   JWKS at `/.well-known/jwks.json` ([`api`]).
//! - Peers: stored in the registry database (`convergio_registry::peers`),
//!   administered through `/v1/peers` ([`api`]), the CLI and the config.
//!   Pinned keys are approved by whoever pinned them (an administrator);
//!   keys fetched from a peer's JWKS URL are pending until an administrator
//!   approves them, so a peer is never trusted from keys it supplies itself.
//!   A failed JWKS fetch is kept in memory (this replica's) with when it
//!   happened and when it is retried (after 30 s, doubling up to an hour,
//!   until it succeeds or the peer is removed); the peer document shows it
//!   as `jwks_fetch_failure`, so `peers add` and `peers show` can say so.
//!   A call signed with a key we do not know fetches the peer's JWKS again
//!   (issue 18), at most once per `jwks_refetch_interval` per peer, so a
//!   flood of unknown `kid`s costs one fetch; new keys are pending, or
//!   approved when `accept_rotated_keys` is on and the peer already had an
//!   approved key (an administrator's choice to follow its rotations).
//! - Outbound: a call routed to `external://<domain>/agents/<name>` becomes
//!   a [`RouteTarget`] on the peer's gateway (`<base>/agents/<name>`), and
//!   `forward` signs each attempt ([`Federation::sign_request`]).
//! - Inbound: `Authenticate` hands a request carrying the
//!   `Convergio-Signature` header to [`Federation::verify_call`]: signature
//!   against the peer's approved keys, audience, clock window, method, path,
//!   body digest, then the nonce (a moka cache in front of an insert-or-fail
//!   row, so a replay is refused on every replica). The caller becomes a
//!   [`Principal`] of [`AuthMethod::Peer`] with the peer's domain as `org`
//!   and no scopes; the normal policies then decide.
//!
//! - Discovery ([`discovery`]): `GET /v1/agents?…&federated=true` also asks
//!   every approved peer, signed, in parallel, within a deadline, and
//!   merges the answers with provenance; failures are `partial`, answers
//!   are cached with the peer's `ETag`.
//! - Graph nodes in other organisations (issue 18): every call to or from
//!   a peer carries its organisation path ([`hops`]: loops and
//!   `max_hops` refused on both sides), and a peer's node call with an
//!   idempotency key is answered once ([`idempotency`]: a repeat gets the
//!   stored outcome).
//! - Sync ([`sync`]): each approved peer's catalogue is pulled into the
//!   local registry as external agents, every `sync_interval` and on
//!   `POST /v1/peers/{domain}:sync`.
//!
//! What a peer may see and call is left to policy (the shipped
//! `external-opt-in` policy: agents tagged `external`, at least `verified`),
//! not to a per-peer list, so there is one place that decides.

pub mod api;
pub mod card_keys;
pub mod discovery;
pub mod hops;
pub mod idempotency;
mod peer_error;
pub mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request};
use convergio_auth::peer_call::{content_digest, CONTENT_DIGEST_HEADER, SIGNATURE_HEADER};
use convergio_auth::{
    sign_call, AuthError, OrgSigningKey, PeerCallClaims, PeerPublicKey, ReceivedCall,
    UnverifiedCall,
};
use convergio_registry::peers::{PeerKeyRow, PeerKeyState, PeerRow, PeerStore};
use convergio_schemas::a2a::ProtocolVersion;
use convergio_schemas::{AgentId, AgentRole, AuthMethod, TrustLevel};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::layers::PeerVerifier;
use crate::routes::{AgentFacts, Binding, RouteTarget, UpstreamInterface};
use crate::{GatewayError, Principal};
pub use peer_error::PeerError;

/// How long a cached peer row is trusted: the cross-replica bound on a key
/// approval or a peer removal taking effect.
const PEER_CACHE_TTL: Duration = Duration::from_secs(1);
/// Largest JWKS document fetched from a peer.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Expired nonce rows are deleted every this many accepted calls.
const PURGE_EVERY: u64 = 1024;
/// How long a peer's discovery answer is kept for revalidation.
const LISTING_CACHE_TTL: Duration = Duration::from_secs(600);
/// Longest calling subject a peer may assert.
const MAX_SUBJECT_BYTES: usize = 256;
/// First wait before a failed JWKS fetch is retried; each failure doubles
/// it, up to [`JWKS_RETRY_MAX`].
const JWKS_RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest wait between two JWKS fetch attempts.
const JWKS_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Default shortest time between two fetches of one peer's JWKS caused by
/// calls signed with a key we do not know (issue 18): a flood of unknown
/// `kid`s costs the peer one fetch per window, not one per call.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of federation.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// This organisation's domain: the `iss` of our calls, the `aud` of theirs.
    pub domain: String,
    /// Accepted distance between a signed call's `iat` and now, either way
    /// (default 60 s); nonces are remembered for twice as long.
    pub clock_window: Duration,
    /// Deadline of each peer's answer in federated discovery (default 2 s).
    pub discovery_timeout: Duration,
    /// Non-public addresses peer URLs may have (the SSRF guard's allow-list;
    /// default none: peers must be on public addresses).
    pub allow: crate::ssrf::AllowList,
    /// Most organisations a call may pass through, this one included
    /// (`federation.max_hops`, default [`hops::DEFAULT_MAX_HOPS`]).
    pub max_hops: usize,
    /// Most pages read from one peer in one federated discovery (default
    /// [`discovery::DEFAULT_DISCOVERY_MAX_PAGES`]).
    pub discovery_max_pages: usize,
    /// Most agents taken from one peer in one federated discovery
    /// (default [`discovery::DEFAULT_DISCOVERY_MAX_AGENTS`]).
    pub discovery_max_agents: usize,
    /// Shortest time between two JWKS refetches of one peer on an unknown
    /// `kid` (default [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub jwks_refetch_interval: Duration,
    /// Whether a key a peer rotated to is approved when a refetch of its
    /// JWKS (on a call signed with it) finds it, provided an administrator
    /// approved one of the peer's keys before (`federation.
    /// accept_rotated_keys`, default false: it waits for approval).
    pub accept_rotated_keys: bool,
}

impl FederationConfig {
    /// Settings for `domain` with the default window.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            clock_window: Duration::from_secs(60),
            discovery_timeout: Duration::from_secs(2),
            allow: crate::ssrf::AllowList::none(),
            max_hops: hops::DEFAULT_MAX_HOPS,
            discovery_max_pages: discovery::DEFAULT_DISCOVERY_MAX_PAGES,
            discovery_max_agents: discovery::DEFAULT_DISCOVERY_MAX_AGENTS,
            jwks_refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            accept_rotated_keys: false,
        }
    }
}

/// A peer as an administrator describes it (API body and config entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// The peer's organisation domain.
    pub domain: String,
    /// Base URL of the peer's gateway (`http://host:port`).
    pub url: String,
    /// Public JWKs pinned for the peer: approved at once.
    #[serde(default)]
    pub keys: Vec<Value>,
    /// Where the peer publishes its JWKS: keys fetched from it are pending.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Trust level this deployment gives the peer's agents (default `verified`).
    #[serde(default)]
    pub trust: Option<TrustLevel>,
}

/// A peer as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Domain.
    pub domain: String,
    /// Gateway base URL.
    pub url: String,
    /// JWKS URL, if keys are fetched.
    pub jwks_url: Option<String>,
    /// Keys with their state.
    pub keys: Vec<PeerKeyRow>,
    /// Trust level of its agents here.
    pub trust: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// The last JWKS fetch failed (and has not succeeded since): why, when,
    /// and when it is retried. Absent when the last fetch worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_fetch_failure: Option<JwksFetchFailure>,
}

/// A failed fetch of a peer's JWKS, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksFetchFailure {
    /// What went wrong (the URL's host and the transport or parse error).
    pub error: String,
    /// When the last attempt failed, Unix seconds.
    pub failed_at: i64,
    /// When the next attempt is due, Unix seconds.
    pub next_retry_at: i64,
    /// Attempts that failed in a row.
    pub attempts: u32,
}

/// A peer ready for use: its row, approved keys and parsed trust.
#[derive(Debug)]
struct PeerEntry {
    row: PeerRow,
    approved: Vec<PeerPublicKey>,
    trust: TrustLevel,
}

/// Federation state shared by the gateway's surfaces.
pub struct Federation {
    config: FederationConfig,
    key: Arc<OrgSigningKey>,
    store: Arc<dyn PeerStore>,
    peers: moka::future::Cache<String, Option<Arc<PeerEntry>>>,
    nonces: moka::sync::Cache<String, ()>,
    accepted: AtomicU64,
    http: reqwest::Client,
    listings: moka::future::Cache<(String, String), Arc<discovery::CachedListing>>,
    /// The registry sync writes peers' agents to.
    registry: convergio_registry::Registry,
    /// The registry's card keys: a sync hands them the peer's approved
    /// keys first, so the peer's signed cards verify.
    card_keys: Arc<card_keys::FederationCardKeys>,
    /// Peers whose last JWKS fetch failed, by domain (this replica's view).
    jwks_failures: Mutex<HashMap<String, JwksFetchFailure>>,
    /// The first wait before a retry ([`JWKS_RETRY_FIRST`] unless a test
    /// shortens it).
    jwks_retry_first: Duration,
    /// Where idempotent peer calls' outcomes are kept ([`idempotency`]);
    /// `None`: every call runs.
    call_outcomes: Option<Arc<dyn convergio_registry::peer_calls::PeerCallStore>>,
    /// When each peer's JWKS was last refetched on an unknown `kid`.
    jwks_refetched: Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("domain", &self.config.domain)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

// === impl Federation ===

impl Federation {
    /// Federation for `config`, signing with `key`, peers in `store`,
    /// syncing peers' catalogues into `registry`, whose organisation keys
    /// are `card_keys` (the registry was built with them, so peers' signed
    /// cards verify once a sync hands them the peer's keys).
    pub fn new(
        config: FederationConfig,
        key: Arc<OrgSigningKey>,
        store: Arc<dyn PeerStore>,
        registry: convergio_registry::Registry,
        card_keys: Arc<card_keys::FederationCardKeys>,
    ) -> Result<Self, GatewayError> {
        let window = config.clock_window.max(Duration::from_secs(1));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            // Never follow a redirect: a JWKS is fetched from exactly the
            // URL an administrator configured.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(crate::ssrf::GuardedResolver(config.allow.clone())))
            .build()
            .map_err(|error| GatewayError::internal("building the jwks client", error))?;
        Ok(Self {
            peers: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PEER_CACHE_TTL)
                .build(),
            nonces: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(window * 2 + Duration::from_secs(1))
                .build(),
            accepted: AtomicU64::new(0),
            listings: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LISTING_CACHE_TTL)
                .build(),
            registry,
            card_keys,
            jwks_failures: Mutex::new(HashMap::new()),
            jwks_retry_first: JWKS_RETRY_FIRST,
            call_outcomes: None,
            jwks_refetched: Mutex::new(HashMap::new()),
            config,
            key,
            store,
            http,
        })
    }

    /// The same federation retrying failed JWKS fetches first after
    /// `first` (default 30 s; each failure doubles it, up to an hour).
    pub fn with_jwks_retry(mut self, first: Duration) -> Self {
        self.jwks_retry_first = first.max(Duration::from_millis(10));
        self
    }

    /// This organisation's domain.
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// Whether [`Federation::stamp_hops`] has anything to do for a call by
    /// `principal` to `target_name`: a peer's call, or one to a peer's
    /// agent. Other calls keep their params as the client sent them.
    pub fn keeps_hops(&self, principal: &Principal, target_name: &str) -> bool {
        (principal.method == AuthMethod::Peer && principal.org.is_some())
            || peer_of(target_name).is_some()
    }

    /// Checks and stamps the organisation path of a call (see [`hops`]):
    /// a verified peer's call is checked as received from it; a call to a
    /// peer's agent gets this organisation appended; other calls are left
    /// alone.
    pub fn stamp_hops(
        &self,
        principal: &Principal,
        target_name: &str,
        method: convergio_schemas::a2a::Method,
        params: &mut Value,
    ) -> Result<(), GatewayError> {
        let max = self.config.max_hops;
        if principal.method == AuthMethod::Peer {
            if let Some(peer) = &principal.org {
                return hops::check_inbound(method, params, &self.config.domain, peer, max);
            }
        }
        match peer_of(target_name) {
            Some(to) => hops::stamp_outbound(method, params, &self.config.domain, &to, max),
            None => Ok(()),
        }
    }

    /// The signing key.
    pub fn key(&self) -> &Arc<OrgSigningKey> {
        &self.key
    }

    async fn peer(&self, domain: &str) -> Result<Option<Arc<PeerEntry>>, GatewayError> {
        let store = self.store.clone();
        let key = domain.to_ascii_lowercase();
        let lookup = key.clone();
        self.peers
            .try_get_with(key, async move {
                let row = store.get(&lookup).await?;
                Ok::<_, convergio_registry::RegistryError>(row.map(|row| Arc::new(entry(row))))
            })
            .await
            .map_err(|error| GatewayError::internal("looking a peer up", error))
    }

    /// The route to `name` on the peer `org`'s gateway; an unknown peer is
    /// the unknown-agent answer.
    pub async fn peer_target(&self, org: &str, name: &str) -> Result<RouteTarget, GatewayError> {
        let id = AgentId::external(org, name).map_err(|error| GatewayError::InvalidParams {
            detail: error.to_string(),
        })?;
        let id_text = id.to_string();
        let peer = self
            .peer(org)
            .await?
            .ok_or_else(|| GatewayError::AgentNotFound {
                agent: id_text.clone(),
            })?;
        let url = format!(
            "{}/agents/{}",
            peer.row.base_url.trim_end_matches('/'),
            id.name()
        );
        let interfaces = [Binding::JsonRpc, Binding::HttpJson]
            .into_iter()
            .map(|binding| UpstreamInterface {
                url: url.clone(),
                binding,
                version: ProtocolVersion::V1_0,
                tenant: None,
            })
            .collect();
        Ok(RouteTarget {
            name: id_text,
            facts: Some(AgentFacts {
                org: peer.row.domain.clone(),
                trust: peer.trust,
                role: AgentRole::Worker,
            }),
            interfaces,
            // The peer's agents are published to us by the peer: they count
            // as opted in here; the peer's own policy decides for real.
            card: json!({"name": id.name(), "skills": [{"id": "peer", "tags": ["external"]}]}),
        })
    }

    /// Signs one outbound request to the peer `audience` on behalf of
    /// `subject`: adds `Content-Digest` and `Convergio-Signature`.
    pub async fn sign_request(
        &self,
        request: Request<Body>,
        audience: &str,
        subject: &str,
    ) -> Result<Request<Body>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|error| GatewayError::internal("reading the body to sign", error))?;
        let path = parts
            .uri
            .path_and_query()
            .map(|path| path.as_str())
            .unwrap_or("/");
        let claims = PeerCallClaims::new(
            &self.config.domain,
            audience,
            subject,
            parts.method.as_str(),
            path,
            &bytes,
            unix_now(),
        );
        let token = sign_call(&self.key, &claims);
        let header = |text: String| {
            HeaderValue::try_from(text)
                .map_err(|error| GatewayError::internal("putting a signed call in a header", error))
        };
        parts
            .headers
            .insert(CONTENT_DIGEST_HEADER, header(claims.cd.clone())?);
        parts.headers.insert(SIGNATURE_HEADER, header(token)?);
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    /// Verifies a received signed call (see the module docs for the order).
    pub async fn verify_call(
        &self,
        method: &str,
        path_and_query: &str,
        token: &str,
        body: &[u8],
    ) -> Result<Principal, AuthError> {
        let call = UnverifiedCall::parse(token)?;
        let peer = self
            .peer(call.issuer())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "peer lookup failed");
                AuthError::UnknownPeer
            })?
            .ok_or(AuthError::UnknownPeer)?;
        let now = unix_now();
        let window = self.config.clock_window.as_secs().max(1);
        let received = ReceivedCall {
            method,
            path_and_query,
            body,
            audience: &self.config.domain,
            now,
            window_seconds: window,
        };
        // A key we do not know: the peer may have rotated it, so its JWKS
        // is fetched again (rate-limited) before the call is verified.
        let known = peer.approved.iter().any(|key| key.kid == call.kid());
        let peer = match known {
            true => peer,
            false => self.refetch_keys(&peer, call.kid()).await.unwrap_or(peer),
        };
        let claims = call.verify(&peer.approved, &received)?;
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUBJECT_BYTES {
            return Err(AuthError::malformed_claim("sub"));
        }
        self.remember_nonce(&peer.row.domain, &claims.nonce, claims.iat + window)
            .await?;
        Ok(Principal {
            subject: claims.sub,
            org: Some(peer.row.domain.clone()),
            scopes: Vec::new(),
            method: AuthMethod::Peer,
        })
    }

    /// On a call signed with `kid`, unknown among `peer`'s approved keys:
    /// fetches the peer's JWKS again, unless it was fetched for this reason
    /// within `jwks_refetch_interval` or the peer has no JWKS URL. New keys
    /// are stored pending, or approved when `accept_rotated_keys` is on and
    /// the peer had an approved key (module docs: a peer is otherwise never
    /// trusted from keys it supplies itself). The refreshed peer, when
    /// `kid` is now approved.
    async fn refetch_keys(&self, peer: &PeerEntry, kid: &str) -> Option<Arc<PeerEntry>> {
        let url = peer.row.jwks_url.clone()?;
        let domain = peer.row.domain.clone();
        {
            let mut refetched = self
                .jwks_refetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = std::time::Instant::now();
            let recent = refetched
                .get(&domain)
                .is_some_and(|at| now.duration_since(*at) < self.config.jwks_refetch_interval);
            if recent {
                return None;
            }
            refetched.insert(domain.clone(), now);
        }
        let fetched = match self.fetch_jwks(&url).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(peer = %domain, error = %error.chain(), "jwks refetch on an unknown kid failed");
                return None;
            }
        };
        let mut row = self.store.get(&domain).await.ok()??;
        let had_approved = row
            .keys
            .iter()
            .any(|key| key.state == PeerKeyState::Approved);
        let state = if self.config.accept_rotated_keys && had_approved {
            PeerKeyState::Approved
        } else {
            PeerKeyState::Pending
        };
        let before = row.keys.len();
        for key in &fetched {
            // Keys already known keep their state (an administrator's
            // decision); only new ones are added.
            if !row.keys.iter().any(|known| known.kid == key.kid) {
                push_key(&mut row.keys, key, state);
            }
        }
        let added = row.keys.len() - before;
        tracing::info!(peer = %domain, %kid, added, state = ?state, "jwks refetched on an unknown kid");
        if added > 0 {
            if let Err(error) = self.save(row).await {
                tracing::warn!(peer = %domain, %error, "storing refetched keys failed");
                return None;
            }
        }
        let refreshed = self.peer(&domain).await.ok()??;
        refreshed
            .approved
            .iter()
            .any(|key| key.kid == kid)
            .then_some(refreshed)
    }

    async fn remember_nonce(&self, peer: &str, nonce: &str, until: u64) -> Result<(), AuthError> {
        let key = format!("{peer} {nonce}");
        if self.nonces.contains_key(&key) {
            return Err(AuthError::Replayed);
        }
        let until = i64::try_from(until).unwrap_or(i64::MAX);
        let fresh = self
            .store
            .remember_nonce(peer, nonce, until)
            .await
            .map_err(|error| {
                // Without the shared record a replay could not be ruled out.
                tracing::warn!(%error, "nonce store failed");
                AuthError::Replayed
            })?;
        self.nonces.insert(key, ());
        if !fresh {
            return Err(AuthError::Replayed);
        }
        if self.accepted.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            let store = self.store.clone();
            tokio::spawn(async move {
                let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
                if let Err(error) = store.purge_nonces(now).await {
                    tracing::warn!(%error, "purging expired nonces failed");
                }
            });
        }
        Ok(())
    }

    // --- administration ---

    /// Every peer.
    pub async fn list(&self) -> Result<Vec<PeerView>, GatewayError> {
        let rows = self.store.list().await.map_err(storage_error)?;
        Ok(rows.into_iter().map(|row| self.view(row)).collect())
    }

    /// One peer.
    pub async fn get(&self, domain: &str) -> Result<PeerView, GatewayError> {
        self.store
            .get(&domain.to_ascii_lowercase())
            .await
            .map_err(storage_error)?
            .map(|row| self.view(row))
            .ok_or_else(|| peer_not_found(domain))
    }

    /// The admin view of `row`, with its last JWKS fetch failure if any.
    fn view(&self, row: PeerRow) -> PeerView {
        let failure = self.jwks_failures().get(&row.domain).cloned();
        let mut view = view(row);
        view.jwks_fetch_failure = failure;
        view
    }

    fn jwks_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, JwksFetchFailure>> {
        // The map holds plain values; a panic elsewhere cannot leave it torn.
        self.jwks_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failed JWKS fetch of `domain` and schedules the next
    /// attempt; returns whether no failure was recorded before (the caller
    /// then starts the retry task).
    fn jwks_failed(&self, domain: &str, error: &PeerError) -> bool {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let mut failures = self.jwks_failures();
        let attempts = failures
            .get(domain)
            .map_or(1, |failure| failure.attempts.saturating_add(1));
        let wait = self.jwks_retry_wait(attempts);
        let first = !failures.contains_key(domain);
        failures.insert(
            domain.to_owned(),
            JwksFetchFailure {
                error: error.chain(),
                failed_at: now,
                next_retry_at: now.saturating_add(
                    i64::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(i64::MAX),
                ),
                attempts,
            },
        );
        first
    }

    /// The wait after `attempts` failures in a row.
    fn jwks_retry_wait(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(16);
        self.jwks_retry_first
            .saturating_mul(1 << doublings)
            .min(JWKS_RETRY_MAX)
    }

    /// Retries the JWKS fetch of `domain` until it succeeds, the peer is
    /// removed or its JWKS URL changes, waiting longer after each failure.
    /// Holds the federation weakly, so it ends with it.
    fn spawn_jwks_retry(self: &Arc<Self>, domain: String, url: String) {
        let federation: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(federation) = federation.upgrade() else {
                        return;
                    };
                    let Some(failure) = federation.jwks_failures().get(&domain).cloned() else {
                        return;
                    };
                    federation.jwks_retry_wait(failure.attempts)
                };
                tokio::time::sleep(wait).await;
                let Some(federation) = federation.upgrade() else {
                    return;
                };
                match federation.row(&domain).await {
                    Ok(row) if row.jwks_url.as_deref() == Some(url.as_str()) => {}
                    // Removed, or re-added with another URL (whose own add
                    // fetched it): this retry has nothing left to do.
                    _ => {
                        federation.jwks_failures().remove(&domain);
                        return;
                    }
                }
                if !federation.jwks_failures().contains_key(&domain) {
                    // A refresh succeeded meanwhile.
                    return;
                }
                match federation.refresh(&domain).await {
                    Ok(_) => {
                        tracing::info!(peer = %domain, "jwks fetched on retry");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(peer = %domain, %error, "jwks fetch retry failed");
                    }
                }
            }
        });
    }

    /// Adds a peer; `replace` overwrites an existing one (configuration),
    /// else an existing domain is a conflict. Keys fetched from the JWKS
    /// URL are pending; keys approved before stay approved on replace.
    pub async fn add(
        self: &Arc<Self>,
        spec: &PeerSpec,
        replace: bool,
    ) -> Result<PeerView, GatewayError> {
        let domain = spec.domain.to_ascii_lowercase();
        convergio_schemas::ids::check_org(&domain).map_err(|error| {
            GatewayError::InvalidParams {
                detail: error.to_string(),
            }
        })?;
        if domain == self.config.domain {
            return Err(GatewayError::InvalidParams {
                detail: "a peer cannot be this organisation".to_owned(),
            });
        }
        let base = check_gateway_url(&spec.url)?;
        let jwks_url = spec.jwks_url.as_deref().map(check_peer_url).transpose()?;
        for url in std::iter::once(&base).chain(jwks_url.as_ref()) {
            crate::ssrf::check_url(url, &self.config.allow).map_err(|error| {
                GatewayError::InvalidParams {
                    detail: format!("peer url {url}: {error}"),
                }
            })?;
        }
        let jwks_url = jwks_url.map(|url| url.to_string());
        if spec.keys.is_empty() && jwks_url.is_none() {
            return Err(GatewayError::InvalidParams {
                detail: "a peer needs pinned keys or a jwks_url".to_owned(),
            });
        }
        let mut keys = Vec::new();
        for jwk in &spec.keys {
            let key =
                PeerPublicKey::from_jwk(jwk).map_err(|error| GatewayError::InvalidParams {
                    detail: format!("pinned key: {error}"),
                })?;
            push_key(&mut keys, &key, PeerKeyState::Approved);
        }
        let existing = self.store.get(&domain).await.map_err(storage_error)?;
        if let (Some(existing), true) = (&existing, replace) {
            for old in &existing.keys {
                if old.state == PeerKeyState::Approved {
                    if let Ok(key) = PeerPublicKey::from_jwk(&old.jwk) {
                        push_key(&mut keys, &key, PeerKeyState::Approved);
                    }
                }
            }
        }
        let mut fetch_error = None;
        if let Some(url) = &jwks_url {
            match self.fetch_jwks(url).await {
                Ok(fetched) => {
                    for key in fetched {
                        push_key(&mut keys, &key, PeerKeyState::Pending);
                    }
                }
                // The peer is still recorded, the failure shown with it and
                // the fetch retried (or retried at once by `refresh`).
                Err(error) => {
                    tracing::warn!(peer = %domain, error = %error.chain(), "jwks fetch failed");
                    fetch_error = Some(error);
                }
            }
        }
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let row = PeerRow {
            domain: domain.clone(),
            base_url: base.as_str().trim_end_matches('/').to_owned(),
            jwks_url,
            keys,
            trust: spec
                .trust
                .unwrap_or(TrustLevel::Verified)
                .as_str()
                .to_owned(),
            created_at: existing.as_ref().map_or(now, |row| row.created_at),
            updated_at: now,
        };
        if replace {
            self.store.put(&row).await.map_err(storage_error)?;
        } else if !self.store.insert(&row).await.map_err(storage_error)? {
            return Err(GatewayError::PeerExists { domain });
        }
        self.peers.invalidate(&domain).await;
        tracing::info!(peer = %domain, "peer stored");
        match (fetch_error, &row.jwks_url) {
            (Some(error), Some(url)) => {
                if self.jwks_failed(&domain, &error) {
                    self.spawn_jwks_retry(domain.clone(), url.clone());
                }
            }
            _ => {
                self.jwks_failures().remove(&domain);
            }
        }
        Ok(self.view(row))
    }

    /// Fetches the peer's JWKS again; new keys are pending.
    pub async fn refresh(self: &Arc<Self>, domain: &str) -> Result<PeerView, GatewayError> {
        let mut row = self.row(domain).await?;
        let url = row
            .jwks_url
            .clone()
            .ok_or_else(|| GatewayError::InvalidParams {
                detail: "the peer has no jwks_url".to_owned(),
            })?;
        let fetched = match self.fetch_jwks(&url).await {
            Ok(fetched) => fetched,
            Err(error) => {
                // A retry task runs whenever a failure is recorded; a
                // first failure starts one.
                if self.jwks_failed(&row.domain, &error) {
                    self.spawn_jwks_retry(row.domain.clone(), url.clone());
                }
                return Err(GatewayError::UpstreamUnreachable {
                    agent: format!("jwks of {domain}"),
                    detail: error.chain(),
                });
            }
        };
        for key in fetched {
            push_key(&mut row.keys, &key, PeerKeyState::Pending);
        }
        // The keys are stored before the failure is forgotten, so a reader
        // never sees neither (a CI flake of `peer_jwks` showed that window).
        self.store_row(&mut row).await?;
        self.jwks_failures().remove(&row.domain);
        Ok(self.view(row))
    }

    /// Approves pending keys (those named, or all of them).
    pub async fn approve(
        &self,
        domain: &str,
        kids: Option<&[String]>,
    ) -> Result<PeerView, GatewayError> {
        let mut row = self.row(domain).await?;
        let mut approved = 0;
        for key in &mut row.keys {
            let named = kids.is_none_or(|kids| kids.contains(&key.kid));
            if named && key.state == PeerKeyState::Pending {
                key.state = PeerKeyState::Approved;
                approved += 1;
            }
        }
        if approved == 0 {
            return Err(GatewayError::InvalidParams {
                detail: "no pending key matches".to_owned(),
            });
        }
        tracing::info!(peer = %row.domain, approved, "peer keys approved");
        self.save(row).await
    }

    /// Removes a peer.
    pub async fn remove(&self, domain: &str) -> Result<(), GatewayError> {
        let domain = domain.to_ascii_lowercase();
        let removed = self.store.delete(&domain).await.map_err(storage_error)?;
        self.peers.invalidate(&domain).await;
        self.jwks_failures().remove(&domain);
        if removed {
            tracing::info!(peer = %domain, "peer removed");
            Ok(())
        } else {
            Err(peer_not_found(&domain))
        }
    }

    async fn row(&self, domain: &str) -> Result<PeerRow, GatewayError> {
        self.store
            .get(&domain.to_ascii_lowercase())
            .await
            .map_err(storage_error)?
            .ok_or_else(|| peer_not_found(domain))
    }

    async fn save(&self, mut row: PeerRow) -> Result<PeerView, GatewayError> {
        self.store_row(&mut row).await?;
        Ok(self.view(row))
    }

    /// Stores `row` as updated now, and drops its cached copy.
    async fn store_row(&self, row: &mut PeerRow) -> Result<(), GatewayError> {
        row.updated_at = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        self.store.put(row).await.map_err(storage_error)?;
        self.peers.invalidate(&row.domain).await;
        Ok(())
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Vec<PeerPublicKey>, PeerError> {
        let url = check_peer_url(url).map_err(PeerError::Url)?;
        let bytes = crate::fetch::jwks(&self.http, url, MAX_JWKS_BYTES).await?;
        let jwks: Value = serde_json::from_slice(&bytes).map_err(PeerError::NotJson)?;
        PeerPublicKey::from_jwks(&jwks).map_err(PeerError::Keys)
    }
}

#[async_trait]
impl PeerVerifier for Federation {
    async fn verify_peer_call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, AuthError> {
        let token = headers
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| AuthError::malformed_claim("signature header"))?;
        if let Some(declared) = headers.get(CONTENT_DIGEST_HEADER) {
            // Informative, but a mismatch means the body was changed.
            if declared.as_bytes() != content_digest(body).as_bytes() {
                return Err(AuthError::CallMismatch {
                    what: "content-digest",
                });
            }
        }
        self.verify_call(method, path_and_query, token, body).await
    }
}

/// The peer organisation an `external://` route target belongs to.
pub fn peer_of(target_name: &str) -> Option<String> {
    match target_name.parse::<AgentId>() {
        Ok(AgentId::External { org, .. }) if target_name.starts_with("external://") => Some(org),
        _ => None,
    }
}

/// Validates a URL this gateway will fetch from or call on a peer's
/// behalf: http or https, a host, no credentials, no fragment. The SSRF
/// guard (private and metadata addresses unless allow-listed) plugs in
/// here.
pub fn check_peer_url(url: &str) -> Result<url::Url, GatewayError> {
    let invalid = |detail: &str| GatewayError::InvalidParams {
        detail: format!("peer url {url:?}: {detail}"),
    };
    let parsed = url::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("must not have a fragment"));
    }
    Ok(parsed)
}

/// A peer gateway's base URL: a [`check_peer_url`] URL (http or https; the
/// forwarding client speaks both) with no query.
pub fn check_gateway_url(url: &str) -> Result<url::Url, GatewayError> {
    let parsed = check_peer_url(url)?;
    if parsed.query().is_some() {
        return Err(GatewayError::InvalidParams {
            detail: format!("peer url {url:?}: must not have a query"),
        });
    }
    Ok(parsed)
}

fn push_key(keys: &mut Vec<PeerKeyRow>, key: &PeerPublicKey, state: PeerKeyState) {
    match keys.iter_mut().find(|row| row.kid == key.kid) {
        Some(row) => {
            if state == PeerKeyState::Approved {
                row.state = PeerKeyState::Approved;
            }
        }
        None => keys.push(PeerKeyRow {
            kid: key.kid.clone(),
            jwk: key.to_jwk(),
            state,
        }),
    }
}

fn entry(row: PeerRow) -> PeerEntry {
    let approved = row
        .keys
        .iter()
        .filter(|key| key.state == PeerKeyState::Approved)
        .filter_map(|key| PeerPublicKey::from_jwk(&key.jwk).ok())
        .collect();
    let trust = row.trust.parse().unwrap_or(TrustLevel::Registered);
    PeerEntry {
        row,
        approved,
        trust,
    }
}

fn view(row: PeerRow) -> PeerView {
    PeerView {
        domain: row.domain,
        url: row.base_url,
        jwks_url: row.jwks_url,
        keys: row.keys,
        trust: row.trust,
        created_at: row.created_at,
        updated_at: row.updated_at,
        jwks_fetch_failure: None,
    }
}

fn peer_not_found(domain: &str) -> GatewayError {
    GatewayError::RouteNotFound {
        path: format!("/v1/peers/{domain}"),
    }
}

fn storage_error(error: convergio_registry::RegistryError) -> GatewayError {
    GatewayError::internal("reading or writing the peer store", error)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_http_with_a_host_and_no_credentials() {
        assert!(check_peer_url("http://127.0.0.1:8080").is_ok());
        assert!(check_peer_url("https://b.example/.well-known/jwks.json").is_ok());
        for bad in [
            "ftp://b.example",
            "http://u:p@b.example",
            "not a url",
            "http://b.example/#x",
        ] {
            assert!(check_peer_url(bad).is_err(), "{bad}");
        }
        assert!(check_gateway_url("https://b.example").is_ok());
        assert!(check_gateway_url("http://b.example?x=1").is_err());
    }

    #[test]
    fn only_external_targets_belong_to_a_peer() {
        assert_eq!(
            peer_of("external://b.example/agents/db").as_deref(),
            Some("b.example")
        );
        assert_eq!(peer_of("echo"), None);
    }
}
