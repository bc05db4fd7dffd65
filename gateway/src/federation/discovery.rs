//! Federated discovery (issue 6): `GET /v1/agents?…&federated=true` asks
//! this registry and every approved peer's registry the same question, in
//! parallel, and merges the answers with their provenance.
//!
//! - Each peer gets signed `GET /v1/agents?<same filters>` requests, page
//!   after page (following its `next_page_token`, issue 18) up to
//!   `federation.discovery_max_pages` pages and
//!   `federation.discovery_max_agents` agents per peer, signed as this
//!   organisation (subject [`DISCOVERY_SUBJECT`]), so the peer's own policy
//!   decides what we may `discover` (the shipped `external-opt-in` policy:
//!   agents tagged `external`, at least `verified`).
//! - Then the caller's own policy decides what of it the caller sees: each
//!   peer agent is asked `discover` as the caller, as local results are
//!   (its organisation, trust as capped here, role and card tags), and one
//!   it may not discover is left out.
//! - Each peer has the federation's discovery deadline; one that fails or
//!   misses it is listed in `partial` with the reason, never fatal.
//! - Answers are cached per (peer, query, page) with the peer's `ETag`;
//!   the next query sends `If-None-Match` and a 304 reuses the cached page
//!   (`"cache": "revalidated"` in `peers` when every page was).
//! - A peer's agent is shown as `external://<peer>/agents/<name>` (callable
//!   through this gateway), its trust capped at the trust this deployment
//!   gives the peer, its upstreams (the peer's internals) dropped; agents of
//!   any other organisation in a peer's answer are ignored (no relaying).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use convergio_auth::peer_call::{content_digest, CONTENT_DIGEST_HEADER, SIGNATURE_HEADER};
use convergio_auth::{sign_call, PeerCallClaims};
use convergio_schemas::{AgentId, AuthMethod, TrustLevel};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{entry, storage_error, unix_now, Federation, PeerEntry, PeerError};
use crate::authorize::{is_loopback, Gatekeeper};
use crate::layers::{ErrorShape, Failure};
use crate::routes::{AgentFacts, RouteTarget};
use crate::{GatewayError, Principal};

/// The subject our signed discovery and sync requests carry: the
/// organisation asks, not one of its users.
pub const DISCOVERY_SUBJECT: &str = "federation";
/// Largest discovery page read from a peer.
const MAX_PEER_LISTING_BYTES: usize = 4 * 1024 * 1024;
/// Largest local page the merge reads back.
const MAX_LOCAL_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// Default of `federation.discovery_max_pages`: most pages read from one
/// peer for one federated query.
pub const DEFAULT_DISCOVERY_MAX_PAGES: usize = 10;
/// Default of `federation.discovery_max_agents`: most agents taken from
/// one peer for one federated query.
pub const DEFAULT_DISCOVERY_MAX_AGENTS: usize = 1000;

/// A peer's cached discovery page.
#[derive(Debug)]
pub(super) struct CachedListing {
    etag: String,
    agents: Vec<Value>,
    next_page_token: Option<String>,
}

/// One page of a peer's answer, as it sent it.
struct PeerPage {
    agents: Vec<Value>,
    next_page_token: Option<String>,
    revalidated: bool,
}

/// What one peer contributed to a federated answer.
#[derive(Debug)]
pub struct PeerListing {
    /// The peer's domain.
    pub peer: String,
    /// Its agents, already rewritten (ids, trust, provenance), or why not.
    pub agents: Result<Vec<Value>, PeerError>,
    /// Whether the answer was a 304 on our cached copy.
    pub revalidated: bool,
}

// === impl Federation ===

impl Federation {
    /// Every peer with at least one approved key: the peers federated
    /// discovery asks and sync pulls from (a peer whose keys are all
    /// pending is not trusted yet, in either direction).
    pub(super) async fn approved_peers(&self) -> Result<Vec<Arc<PeerEntry>>, GatewayError> {
        let rows = self.store.list().await.map_err(storage_error)?;
        Ok(rows
            .into_iter()
            .map(|row| Arc::new(entry(row)))
            .filter(|peer| !peer.approved.is_empty())
            .collect())
    }

    /// A signed `GET` of `path_and_query` on `peer`'s gateway.
    pub(super) async fn signed_get(
        &self,
        peer: &PeerEntry,
        path_and_query: &str,
        if_none_match: Option<&str>,
        timeout: Duration,
    ) -> Result<reqwest::Response, PeerError> {
        let url = format!(
            "{}{path_and_query}",
            peer.row.base_url.trim_end_matches('/')
        );
        let url = super::check_peer_url(&url).map_err(PeerError::Url)?;
        let claims = PeerCallClaims::new(
            &self.config.domain,
            &peer.row.domain,
            DISCOVERY_SUBJECT,
            "GET",
            path_and_query,
            b"",
            unix_now(),
        );
        let mut request = self
            .http
            .get(url)
            .timeout(timeout)
            .header(CONTENT_DIGEST_HEADER, content_digest(b""))
            .header(SIGNATURE_HEADER, sign_call(&self.key, &claims));
        if let Some(etag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        // The peer's spans join this request's trace (issue 18).
        if let Some(traceparent) = crate::telemetry::traceparent(&tracing::Span::current()) {
            request = request.header(crate::telemetry::TRACEPARENT, traceparent);
        }
        request
            .send()
            .await
            .map_err(|error| PeerError::sending(error, timeout))
    }

    /// Asks every approved peer `query` (URL-encoded discovery filters) in
    /// parallel, each within the discovery deadline.
    pub async fn discover_peers(&self, query: &str) -> Result<Vec<PeerListing>, GatewayError> {
        let peers = self.approved_peers().await?;
        let deadline = self.config.discovery_timeout;
        let asks = peers.iter().map(|peer| async move {
            let asked = tokio::time::timeout(deadline, self.ask_peer(peer, query)).await;
            let (agents, revalidated) = match asked {
                Ok(Ok((agents, revalidated))) => (Ok(agents), revalidated),
                Ok(Err(reason)) => (Err(reason), false),
                Err(_) => (Err(PeerError::Timeout(deadline)), false),
            };
            if let Err(reason) = &agents {
                tracing::info!(peer = %peer.row.domain, reason = %reason.chain(),
                    "federated discovery: peer left out");
            }
            PeerListing {
                peer: peer.row.domain.clone(),
                agents,
                revalidated,
            }
        });
        Ok(join_all(asks).await)
    }

    /// Every page of `peer`'s answer to `query`, within the bounds; the
    /// agents rewritten, and whether every page was a 304.
    async fn ask_peer(
        &self,
        peer: &PeerEntry,
        query: &str,
    ) -> Result<(Vec<Value>, bool), PeerError> {
        let max_agents = self.config.discovery_max_agents;
        let mut agents = Vec::new();
        let mut revalidated = true;
        let mut page_token: Option<String> = None;
        for _ in 0..self.config.discovery_max_pages.max(1) {
            let page_query = match &page_token {
                None => query.to_owned(),
                Some(token) => with_page_token(query, token),
            };
            let page = self.ask_page(peer, &page_query).await?;
            revalidated &= page.revalidated;
            let room = max_agents.saturating_sub(agents.len());
            agents.extend(page.agents.into_iter().take(room));
            page_token = page.next_page_token;
            if page_token.is_none() || agents.len() >= max_agents {
                break;
            }
        }
        Ok((rewrite(peer, &agents), revalidated))
    }

    /// One page of `peer`'s answer (`query` names its page token, if any),
    /// revalidated against the cached copy.
    async fn ask_page(&self, peer: &PeerEntry, query: &str) -> Result<PeerPage, PeerError> {
        let path = if query.is_empty() {
            "/v1/agents".to_owned()
        } else {
            format!("/v1/agents?{query}")
        };
        let key = (peer.row.domain.clone(), query.to_owned());
        let cached = self.listings.get(&key).await;
        let response = self
            .signed_get(
                peer,
                &path,
                cached.as_ref().map(|cached| cached.etag.as_str()),
                self.config.discovery_timeout,
            )
            .await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return match cached {
                Some(cached) => Ok(PeerPage {
                    agents: cached.agents.clone(),
                    next_page_token: cached.next_page_token.clone(),
                    revalidated: true,
                }),
                None => Err(PeerError::UnexpectedNotModified),
            };
        }
        if !status.is_success() {
            return Err(PeerError::Status(status.as_u16()));
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = crate::fetch::read_limited(response, MAX_PEER_LISTING_BYTES).await?;
        let listing: Value = serde_json::from_slice(&body).map_err(PeerError::NotJson)?;
        let agents = listing
            .get("agents")
            .and_then(Value::as_array)
            .cloned()
            .ok_or(PeerError::Missing("an agents list"))?;
        let next_page_token = listing
            .get("next_page_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        match etag {
            Some(etag) => {
                self.listings
                    .insert(
                        key,
                        Arc::new(CachedListing {
                            etag,
                            agents: agents.clone(),
                            next_page_token: next_page_token.clone(),
                        }),
                    )
                    .await
            }
            None => self.listings.invalidate(&key).await,
        }
        Ok(PeerPage {
            agents,
            next_page_token,
            revalidated: false,
        })
    }
}

/// `query` asking for the page `token` names.
fn with_page_token(query: &str, token: &str) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(query.to_owned());
    serializer.append_pair("page_token", token);
    serializer.finish()
}

/// The trust a peer's agent gets here: what the peer gives it, capped at
/// what we give the peer, and never `internal` (not ours).
pub fn derived_trust(at_peer: TrustLevel, peer: TrustLevel) -> TrustLevel {
    at_peer.min(peer).min(TrustLevel::Trusted)
}

/// A peer's agents as we show them (module docs); others' are dropped.
fn rewrite(peer: &PeerEntry, agents: &[Value]) -> Vec<Value> {
    agents
        .iter()
        .filter_map(|agent| {
            let org = agent.get("org").and_then(Value::as_str)?;
            if !org.eq_ignore_ascii_case(&peer.row.domain) {
                return None;
            }
            let name = agent.get("name").and_then(Value::as_str)?;
            let id = AgentId::external(&peer.row.domain, name).ok()?;
            let at_peer: TrustLevel = agent
                .get("trust")
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
                .unwrap_or(TrustLevel::Untrusted);
            let trust = derived_trust(at_peer, peer.trust);
            let mut shown = agent.clone();
            if let Some(object) = shown.as_object_mut() {
                object.remove("upstreams");
                object.insert("id".to_owned(), json!(id.to_string()));
                object.insert("trust".to_owned(), json!(trust.as_str()));
                object.insert(
                    "provenance".to_owned(),
                    json!({"org": peer.row.domain, "source": "peer",
                           "peer_trust": peer.trust.as_str(), "trust_at_peer": at_peer.as_str()}),
                );
            }
            Some(shown)
        })
        .collect()
}

/// What federated discovery needs: the peers, and the caller's own policy
/// to filter their answers with.
#[derive(Clone)]
pub struct DiscoveryState {
    federation: Arc<Federation>,
    gatekeeper: Arc<dyn Gatekeeper>,
}

// === impl DiscoveryState ===

impl DiscoveryState {
    /// Discovery over `federation`'s peers, filtered by `gatekeeper`.
    pub fn new(federation: Arc<Federation>, gatekeeper: Arc<dyn Gatekeeper>) -> Self {
        Self {
            federation,
            gatekeeper,
        }
    }
}

/// The middleware in front of the registry API that answers
/// `GET /v1/agents?…&federated=true`; everything else passes through.
pub async fn federated_discovery(
    State(state): State<DiscoveryState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::GET || request.uri().path() != "/v1/agents" {
        return next.run(request).await;
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let federated = pairs
        .iter()
        .any(|(name, value)| name == "federated" && value == "true");
    if !federated {
        // `federated=false` and bad values are the registry's to answer.
        return next.run(request).await;
    }
    match merge(&state, pairs, request, next).await {
        Ok(response) => response,
        Err(error) => Failure::new(error, ErrorShape::Problem).into_response(),
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn merge(
    state: &DiscoveryState,
    pairs: Vec<(String, String)>,
    mut request: Request,
    next: Next,
) -> Result<Response, GatewayError> {
    let federation = &state.federation;
    let principal = match request.extensions().get::<Principal>() {
        Some(principal) if principal.method != AuthMethod::Anonymous => principal.clone(),
        _ => {
            return Err(GatewayError::Unauthenticated {
                reason: "federated discovery needs credentials".to_owned(),
            })
        }
    };
    let loopback = is_loopback(request.extensions());
    let local: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| name != "federated")
        .collect();
    let remote: Vec<(String, String)> = local
        .iter()
        .filter(|(name, _)| name != "page_token")
        .cloned()
        .collect();
    let local_query = encode(&local);
    let uri = if local_query.is_empty() {
        "/v1/agents".to_owned()
    } else {
        format!("/v1/agents?{local_query}")
    };
    *request.uri_mut() = uri
        .parse::<Uri>()
        .map_err(|_| GatewayError::InvalidParams {
            detail: "the discovery query is not a valid URI".to_owned(),
        })?;
    // The merged answer is new each time: no 304 on the local part alone.
    request.headers_mut().remove(header::IF_NONE_MATCH);
    let remote_query = encode(&remote);
    let (local_response, peers) =
        tokio::join!(next.run(request), federation.discover_peers(&remote_query));
    if local_response.status() != StatusCode::OK {
        return Ok(local_response);
    }
    let peers = peers?;
    let bytes = axum::body::to_bytes(local_response.into_body(), MAX_LOCAL_LISTING_BYTES)
        .await
        .map_err(|error| GatewayError::internal("reading the local discovery page", error))?;
    let mut listing: Value = serde_json::from_slice(&bytes)
        .map_err(|error| GatewayError::internal("decoding the local discovery page", error))?;
    let mut agents = match listing.get_mut("agents").map(Value::take) {
        Some(Value::Array(agents)) => agents,
        _ => Vec::new(),
    };
    for agent in &mut agents {
        let org = agent.get("org").cloned().unwrap_or(Value::Null);
        if let Some(object) = agent.as_object_mut() {
            object.insert(
                "provenance".to_owned(),
                json!({"org": org, "source": "local"}),
            );
        }
    }
    let mut partial = Vec::new();
    let mut answered = Vec::new();
    for listing in peers {
        match listing.agents {
            Ok(found) => {
                // The caller sees what its own policy lets it discover.
                let found: Vec<Value> = found
                    .into_iter()
                    .filter(|agent| {
                        listed_target(agent).is_some_and(|target| {
                            state.gatekeeper.may_discover(&principal, &target, loopback)
                        })
                    })
                    .collect();
                answered.push(json!({
                    "peer": listing.peer,
                    "agents": found.len(),
                    "cache": if listing.revalidated { "revalidated" } else { "fresh" },
                }));
                agents.extend(found);
            }
            // The caller reads the reason without its cause chain (peer
            // addresses and transport detail stay in the log).
            Err(reason) => {
                partial.push(json!({"peer": listing.peer, "reason": reason.to_string()}))
            }
        }
    }
    let body = json!({
        "agents": agents,
        "next_page_token": listing.get("next_page_token").cloned().unwrap_or(Value::Null),
        "partial": partial,
        "peers": answered,
    });
    let mut response = (
        StatusCode::OK,
        Body::from(serde_json::to_vec(&body).unwrap_or_default()),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A rewritten peer agent as policy sees it: its external id, the peer's
/// organisation, the trust capped here, its role and card (tags).
fn listed_target(agent: &Value) -> Option<RouteTarget> {
    let id = agent.get("id").and_then(Value::as_str)?;
    let org = agent.get("org").and_then(Value::as_str)?;
    let trust = agent
        .get("trust")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .unwrap_or(TrustLevel::Untrusted);
    let role = agent
        .get("role")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    Some(RouteTarget {
        name: id.to_owned(),
        facts: Some(AgentFacts {
            org: org.to_owned(),
            trust,
            role,
        }),
        interfaces: Vec::new(),
        card: agent.get("card").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_agent_is_capped_at_the_peer_trust_and_never_internal() {
        use TrustLevel::*;
        assert_eq!(derived_trust(Trusted, Verified), Verified);
        assert_eq!(derived_trust(Registered, Trusted), Registered);
        assert_eq!(derived_trust(Internal, Internal), Trusted);
    }

    #[test]
    fn a_page_token_is_appended_encoded() {
        assert_eq!(with_page_token("", "a b"), "page_token=a+b");
        assert_eq!(with_page_token("tag=x", "t/1"), "tag=x&page_token=t%2F1");
    }
}
