//! AI Catalog discovery (issue 24): `/.well-known/ai-catalog.json` lists
//! the agents the caller may discover, each as an
//! `application/a2a-agent-card+json` entry whose `url` is the agent's card
//! on this gateway. A2A is moving discovery to the AI Catalog because
//! `/.well-known/agent-card.json` can only name one agent per host, while
//! a gateway serves many (and per caller): its direction is one catalog at
//! the host's well-known URI plus catalogs at other URLs per tenant. Here:
//!
//! - `/.well-known/ai-catalog.json` every agent the caller may discover,
//!   `?org=<domain>` only those of one organisation (as `GET /v1/agents`);
//! - `/agents/{name}/.well-known/ai-catalog.json` and
//!   `/a2a/{name}/.well-known/ai-catalog.json` the per-tenant catalogs: the
//!   well-known URI under the agent's own base URL (A2A's sub-path
//!   tenancy) and under the gateway's interface with the agent as tenant,
//!   listing that one agent, or the unknown-agent 404 when the caller may
//!   not discover it.
//!
//! Visibility is the discovery filter `GET /v1/agents` and the gateway's
//! own card use: policy's `discover` action per agent. The listing is
//! audited like theirs, and the document depends on the caller, so shared
//! caches must not keep it.

use axum::body::Body;
use axum::http::Response;
use serde_json::{json, Map, Value};

use super::{card, inbound, A2aState, Incoming};
use crate::routes::RouteTarget;
use crate::GatewayError;

/// The catalog's media type.
pub const MEDIA_AI_CATALOG: &str = "application/ai-catalog+json";

/// The AI Catalog specification version written.
const SPEC_VERSION: &str = "1.0";

/// The entry type of an A2A agent card.
const A2A_CARD_TYPE: &str = "application/a2a-agent-card+json";

/// The host's catalog.
pub const WELL_KNOWN_PATH: &str = "/.well-known/ai-catalog.json";

/// The last path segments of every catalog.
pub const WELL_KNOWN_SUFFIX: [&str; 2] = [".well-known", "ai-catalog.json"];

/// `GET /.well-known/ai-catalog.json`: the agents `request`'s caller may
/// discover, of the organisation in `?org=` when given.
pub(super) async fn host_catalog(
    state: &A2aState,
    request: &Incoming,
) -> Result<Response<Body>, GatewayError> {
    let org = org_filter(request.query.as_deref())?;
    let agents = super::discoverable(state, request).await?;
    let agents: Vec<&RouteTarget> = agents
        .iter()
        .filter(|target| match &org {
            Some(org) => org_of(target).is_some_and(|own| own.eq_ignore_ascii_case(org)),
            None => true,
        })
        .collect();
    Ok(respond(state, request, &agents))
}

/// The per-tenant catalog of `target`: that agent alone, when the caller
/// may discover it; otherwise the same answer as an unknown agent.
pub(super) async fn tenant_catalog(
    state: &A2aState,
    target: &RouteTarget,
    request: &Incoming,
) -> Result<Response<Body>, GatewayError> {
    let visible = state
        .gatekeeper
        .may_discover(&request.principal, target, request.loopback);
    state
        .gatekeeper
        .record_listing(
            &request.principal,
            request.request_id.as_ref(),
            usize::from(visible),
            usize::from(!visible),
        )
        .await;
    if !visible {
        return Err(GatewayError::AgentNotFound {
            agent: target.name.clone(),
        });
    }
    Ok(respond(state, request, &[target]))
}

/// Whether `segments` (after an agent or tenant name) name its catalog.
pub(super) fn is_catalog_path(segments: &[String]) -> bool {
    segments.len() == 2
        && segments[0] == WELL_KNOWN_SUFFIX[0]
        && segments[1] == WELL_KNOWN_SUFFIX[1]
}

fn respond(state: &A2aState, request: &Incoming, agents: &[&RouteTarget]) -> Response<Body> {
    let base = card::gateway_base(&request.headers, &state.config);
    let document = catalog(&base, &state.config.gateway_name, agents);
    let cache = format!(
        "private, max-age={}",
        state.config.card_max_age.as_secs().min(60)
    );
    card::json_response(&document, &request.headers, &cache, MEDIA_AI_CATALOG)
}

/// The `?org=` of a host catalog request, if any.
fn org_filter(query: Option<&str>) -> Result<Option<String>, GatewayError> {
    let pairs = query.map(inbound::query_pairs).transpose()?;
    Ok(pairs
        .into_iter()
        .flatten()
        .find(|(key, _)| key == "org")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty()))
}

fn org_of(target: &RouteTarget) -> Option<&str> {
    target.facts.as_ref().map(|facts| facts.org.as_str())
}

/// The catalog document listing `agents` as served at `base`.
pub fn catalog(base: &str, host_name: &str, agents: &[&RouteTarget]) -> Value {
    let domain = domain_of(base);
    let entries: Vec<Value> = agents
        .iter()
        .map(|target| entry(base, domain, target))
        .collect();
    json!({
        "specVersion": SPEC_VERSION,
        "host": {"displayName": host_name, "identifier": domain},
        "entries": entries,
    })
}

/// One agent's entry: its card on the gateway, and what a client filters
/// on without fetching it.
fn entry(base: &str, domain: &str, target: &RouteTarget) -> Value {
    let mut entry = Map::new();
    entry.insert(
        "identifier".into(),
        Value::from(format!("urn:air:{domain}:a2a:{}", target.name)),
    );
    entry.insert("type".into(), Value::from(A2A_CARD_TYPE));
    entry.insert(
        "url".into(),
        Value::from(format!(
            "{base}/agents/{}/.well-known/agent-card.json",
            target.name
        )),
    );
    for key in ["description", "version"] {
        if let Some(text) = target.card.get(key).and_then(Value::as_str) {
            entry.insert(key.into(), Value::from(text));
        }
    }
    let mut tags: Vec<&str> = Vec::new();
    let skills = target.card.get("skills").and_then(Value::as_array);
    for skill in skills.into_iter().flatten() {
        let skill_tags = skill.get("tags").and_then(Value::as_array);
        for tag in skill_tags.into_iter().flatten().filter_map(Value::as_str) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    if !tags.is_empty() {
        entry.insert("tags".into(), json!(tags));
    }
    if let Some(org) = org_of(target) {
        let display = target
            .card
            .pointer("/provider/organization")
            .and_then(Value::as_str)
            .unwrap_or(org);
        entry.insert(
            "publisher".into(),
            json!({"identifier": org, "displayName": display, "identityType": "dns"}),
        );
    }
    Value::Object(entry)
}

/// The host of a base URL (`http://gw.example:8080/prefix` → `gw.example`).
fn domain_of(base: &str) -> &str {
    let authority = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    match authority.rsplit_once(':') {
        // An IPv6 literal keeps its brackets; a port goes.
        Some((host, port)) if !port.contains(']') => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use convergio_schemas::{AgentRole, TrustLevel};

    use super::*;
    use crate::routes::AgentFacts;

    #[test]
    fn entries_point_at_the_cards_on_the_gateway() {
        let mut target = RouteTarget::from_card(
            "echo",
            json!({"name": "Echo", "description": "echoes", "version": "2",
                "provider": {"organization": "Acme", "url": "https://acme.example"},
                "skills": [{"id": "a", "tags": ["echo", "demo"]}, {"id": "b", "tags": ["demo"]}]}),
        );
        target.facts = Some(AgentFacts {
            org: "acme.example".into(),
            trust: TrustLevel::Internal,
            role: AgentRole::Worker,
        });
        let document = catalog("https://gw.example:8443/base", "Convergio", &[&target]);
        assert_eq!(
            document,
            json!({
                "specVersion": "1.0",
                "host": {"displayName": "Convergio", "identifier": "gw.example"},
                "entries": [{
                    "identifier": "urn:air:gw.example:a2a:echo",
                    "type": "application/a2a-agent-card+json",
                    "url": "https://gw.example:8443/base/agents/echo/.well-known/agent-card.json",
                    "description": "echoes",
                    "version": "2",
                    "tags": ["echo", "demo"],
                    "publisher": {"identifier": "acme.example", "displayName": "Acme", "identityType": "dns"}
                }]
            })
        );
    }

    #[test]
    fn domains_drop_ports_and_keep_ipv6_brackets() {
        assert_eq!(domain_of("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(domain_of("https://gw.example/prefix"), "gw.example");
        assert_eq!(domain_of("http://[::1]:8080"), "[::1]");
        assert_eq!(domain_of("http://[::1]"), "[::1]");
    }
}
