//! Federated discovery (issue 6): `GET /v1/agents?…&federated=true` asks
//! this registry and every approved peer's registry the same question, in
//! parallel, and merges the answers with their provenance.
//!
//! - Each peer gets one signed `GET /v1/agents?<same filters>` (no
//!   `page_token`: its first page is merged), signed as this organisation
//!   (subject [`DISCOVERY_SUBJECT`]), so the peer's own policy decides what
//!   we may `discover` (the shipped `external-opt-in` policy: agents tagged
//!   `external`, at least `verified`).
//! - Each peer has the federation's discovery deadline; one that fails or
//!   misses it is listed in `partial` with the reason, never fatal.
//! - Answers are cached per (peer, query) with the peer's `ETag`; the next
//!   query sends `If-None-Match` and a 304 reuses the cached answer
//!   (`"cache": "revalidated"` in `peers`).
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
use crate::layers::{ErrorShape, Failure};
use crate::{GatewayError, Principal};

/// The subject our signed discovery and sync requests carry: the
/// organisation asks, not one of its users.
pub const DISCOVERY_SUBJECT: &str = "federation";
/// Largest discovery page read from a peer.
const MAX_PEER_LISTING_BYTES: usize = 4 * 1024 * 1024;
/// Largest local page the merge reads back.
const MAX_LOCAL_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// A peer's cached discovery answer.
#[derive(Debug)]
pub(super) struct CachedListing {
    etag: String,
    agents: Vec<Value>,
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

    async fn ask_peer(
        &self,
        peer: &PeerEntry,
        query: &str,
    ) -> Result<(Vec<Value>, bool), PeerError> {
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
                Some(cached) => Ok((rewrite(peer, &cached.agents), true)),
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
        let rewritten = rewrite(peer, &agents);
        match etag {
            Some(etag) => {
                self.listings
                    .insert(key, Arc::new(CachedListing { etag, agents }))
                    .await
            }
            None => self.listings.invalidate(&key).await,
        }
        Ok((rewritten, false))
    }
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

/// The middleware in front of the registry API that answers
/// `GET /v1/agents?…&federated=true`; everything else passes through.
pub async fn federated_discovery(
    State(federation): State<Arc<Federation>>,
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
    match merge(&federation, pairs, request, next).await {
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
    federation: &Federation,
    pairs: Vec<(String, String)>,
    mut request: Request,
    next: Next,
) -> Result<Response, GatewayError> {
    let anonymous = request
        .extensions()
        .get::<Principal>()
        .is_none_or(|principal| principal.method == AuthMethod::Anonymous);
    if anonymous {
        return Err(GatewayError::Unauthenticated {
            reason: "federated discovery needs credentials".to_owned(),
        });
    }
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
}
