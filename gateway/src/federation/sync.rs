//! Periodic sync (issue 6): pulls each approved peer's public catalogue
//! (what the peer lets us `discover`, paged, over signed calls) into the
//! local registry as external agents (`external://<peer>/agents/<name>`).
//!
//! - Every write goes through the [`Registry`] service's normal API
//!   (`register_at_trust`, `update`, `set_trust`, `deregister`), so its rules (card
//!   schema, card-signature verification, audit of every change) apply to
//!   synced agents as to any other. A sync first hands the registry's
//!   card keys the peer's approved keys, so a card the peer organisation
//!   signed verifies and starts `verified`.
//! - Trust is derived: what the peer gives the agent, capped at the trust
//!   this deployment gives the peer, never `internal`. A new agent is
//!   stored at that trust in one transaction (never readable at another
//!   level first). A level the registry
//!   refuses (e.g. `verified` for a card whose signature does not verify)
//!   is reported and the agent stays at `registered`.
//! - An agent of the peer's that is gone from its catalogue is deregistered
//!   here; a catalogue that could not be read completely removes nothing.
//! - A synced agent's upstream is the peer's gateway
//!   (`<peer url>/agents/<name>`); calls still route through the
//!   `external://` routing (signed per attempt), never straight upstream.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use convergio_registry::{
    Actor, AgentRecord, DiscoveryQuery, Registration, Registry, RegistryError, Upstream,
};
use convergio_schemas::{AgentId, TrustLevel};
use serde::Serialize;
use serde_json::Value;

use super::discovery::derived_trust;
use super::{Federation, PeerEntry, PeerError};
use crate::fetch::{error_chain, read_limited};
use crate::GatewayError;

/// Page size of catalogue requests.
const SYNC_PAGE_SIZE: u32 = 100;
/// At most this many catalogue pages are read per peer and sync.
const MAX_SYNC_PAGES: usize = 100;
/// Deadline of one catalogue page.
const SYNC_PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest catalogue page read from a peer.
const MAX_SYNC_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// What one sync of one peer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The peer.
    pub peer: String,
    /// Agents in the peer's catalogue (of the peer's own organisation).
    pub seen: usize,
    /// Registered here for the first time (or again).
    pub added: usize,
    /// Changed card, role or trust.
    pub updated: usize,
    /// Deregistered here: gone from the peer's catalogue.
    pub removed: usize,
    /// Agents whose sync failed (`name: reason`), e.g. a refused trust level.
    pub problems: Vec<String>,
}

// === impl Federation ===

impl Federation {
    /// Syncs one peer now.
    pub async fn sync_peer(&self, domain: &str) -> Result<SyncReport, GatewayError> {
        let domain = domain.to_ascii_lowercase();
        let peer = self
            .approved_peers()
            .await?
            .into_iter()
            .find(|peer| peer.row.domain == domain)
            .ok_or_else(|| GatewayError::InvalidParams {
                detail: format!("{domain} is not a peer with an approved key"),
            })?;
        self.card_keys.set_peer(&peer.row.domain, &peer.approved);
        let catalogue =
            self.catalogue(&peer)
                .await
                .map_err(|error| GatewayError::UpstreamUnreachable {
                    agent: format!("catalogue of {domain}"),
                    detail: error.chain(),
                })?;
        let report = apply(&self.registry, &peer, catalogue).await?;
        tracing::info!(peer = %domain, seen = report.seen, added = report.added,
            updated = report.updated, removed = report.removed, "peer synced");
        Ok(report)
    }

    /// Syncs every approved peer, one after the other; failures are logged.
    pub async fn sync_all(&self) {
        let peers = match self.approved_peers().await {
            Ok(peers) => peers,
            Err(error) => {
                tracing::warn!(%error, "federation sync: listing peers failed");
                return;
            }
        };
        for peer in peers {
            if let Err(error) = self.sync_peer(&peer.row.domain).await {
                tracing::warn!(peer = %peer.row.domain, %error, "federation sync failed");
            }
        }
    }

    /// Syncs every approved peer every `every`, until the runtime stops.
    pub fn spawn_sync(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let federation = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                federation.sync_all().await;
            }
        })
    }

    /// The peer's whole catalogue (its own agents, by name), or why not.
    async fn catalogue(&self, peer: &PeerEntry) -> Result<BTreeMap<String, Value>, PeerError> {
        let mut agents = BTreeMap::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_SYNC_PAGES {
            let path = {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                query.append_pair("page_size", &SYNC_PAGE_SIZE.to_string());
                if let Some(token) = &token {
                    query.append_pair("page_token", token);
                }
                format!("/v1/agents?{}", query.finish())
            };
            let response = self
                .signed_get(peer, &path, None, SYNC_PAGE_TIMEOUT)
                .await?;
            if !response.status().is_success() {
                return Err(PeerError::Status(response.status().as_u16()));
            }
            let body = read_limited(response, MAX_SYNC_PAGE_BYTES).await?;
            let page: Value = serde_json::from_slice(&body).map_err(PeerError::NotJson)?;
            let items = page
                .get("agents")
                .and_then(Value::as_array)
                .ok_or(PeerError::Missing("an agents list"))?;
            for agent in items {
                let own = agent
                    .get("org")
                    .and_then(Value::as_str)
                    .is_some_and(|org| org.eq_ignore_ascii_case(&peer.row.domain));
                if let (true, Some(name)) = (own, agent.get("name").and_then(Value::as_str)) {
                    agents.insert(name.to_owned(), agent.clone());
                }
            }
            token = page
                .get("next_page_token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if token.is_none() {
                return Ok(agents);
            }
        }
        Err(PeerError::TooManyPages(MAX_SYNC_PAGES))
    }
}

fn storage(error: RegistryError) -> GatewayError {
    GatewayError::internal("syncing a peer's catalogue into the registry", error)
}

/// Brings the local external agents of `peer` in line with `catalogue`.
async fn apply(
    registry: &Registry,
    peer: &PeerEntry,
    catalogue: BTreeMap<String, Value>,
) -> Result<SyncReport, GatewayError> {
    let actor = Actor {
        subject: format!("federation-sync:{}", peer.row.domain),
        is_admin: true,
    };
    let mut report = SyncReport {
        peer: peer.row.domain.clone(),
        seen: catalogue.len(),
        ..SyncReport::default()
    };
    let mut kept = HashSet::new();
    for (name, agent) in &catalogue {
        match upsert(registry, &actor, peer, name, agent).await {
            Ok(Some(Change::Added)) => report.added += 1,
            Ok(Some(Change::Updated)) => report.updated += 1,
            Ok(None) => {}
            Err(problem) => report.problems.push(format!("{name}: {}", problem.chain())),
        }
        if let Ok(id) = AgentId::external(&peer.row.domain, name) {
            kept.insert(id);
        }
    }
    for record in local_agents(registry, &peer.row.domain).await? {
        if !kept.contains(&record.id) {
            match registry.deregister(&actor, &record.id, None).await {
                Ok(_) => report.removed += 1,
                Err(error) => {
                    report
                        .problems
                        .push(format!("{}: {}", record.name, error_chain(&error)))
                }
            }
        }
    }
    Ok(report)
}

enum Change {
    Added,
    Updated,
}

/// Registers or updates one synced agent and sets its derived trust.
async fn upsert(
    registry: &Registry,
    actor: &Actor,
    peer: &PeerEntry,
    name: &str,
    agent: &Value,
) -> Result<Option<Change>, PeerError> {
    let card = agent
        .get("card")
        .cloned()
        .ok_or(PeerError::Missing("a card"))?;
    let role = agent
        .get("role")
        .and_then(|role| serde_json::from_value(role.clone()).ok());
    let at_peer: TrustLevel = agent
        .get("trust")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .unwrap_or(TrustLevel::Untrusted);
    let registration = Registration {
        name: Some(name.to_owned()),
        org: Some(peer.row.domain.clone()),
        role,
        card,
        upstreams: Some(vec![Upstream {
            url: format!("{}/agents/{name}", peer.row.base_url.trim_end_matches('/')),
            protocol_binding: "JSONRPC".to_owned(),
            protocol_version: "1.0".to_owned(),
            tenant: None,
        }]),
        trust: None,
    };
    let id = AgentId::external(&peer.row.domain, name).map_err(PeerError::Name)?;
    let existing = match registry.get(&id).await {
        Ok(record) => Some(record),
        Err(RegistryError::AgentNotFound { .. }) => None,
        Err(error) => return Err(PeerError::registry("reading the agent", error)),
    };
    let trust = derived_trust(at_peer, peer.trust);
    let reason = format!(
        "synced from {}: {} there, peer trusted as {}",
        peer.row.domain,
        at_peer.as_str(),
        peer.trust.as_str()
    );
    let (mut record, mut change) = match existing {
        None => {
            let record = match registry
                .register_at_trust(actor, registration.clone(), trust, &reason)
                .await
            {
                // `verified` needs the owner's signature: unsigned, the
                // agent starts lower, at `registered`, and the trust step
                // below reports why.
                Err(RegistryError::Verification { .. }) => {
                    registry.register(actor, registration).await
                }
                other => other,
            }
            .map_err(|error| PeerError::registry("registering", error))?;
            (record, Some(Change::Added))
        }
        Some(record) => {
            let wanted = registry
                .planned_record(registration.clone())
                .map_err(|error| PeerError::registry("checking the card", error))?;
            if record.card != wanted.card
                || record.role != wanted.role
                || record.upstreams != wanted.upstreams
            {
                let updated = registry
                    .update(actor, &id, record.version, registration)
                    .await
                    .map_err(|error| PeerError::registry("updating", error))?;
                (updated, Some(Change::Updated))
            } else {
                (record, None)
            }
        }
    };
    if record.trust != trust {
        record = registry
            .set_trust(actor, &id, trust, &reason, Some(record.version))
            .await
            .map_err(|error| PeerError::registry(format!("trust {}", trust.as_str()), error))?;
        if change.is_none() {
            change = Some(Change::Updated);
        }
    }
    debug_assert_eq!(record.trust, trust);
    Ok(change)
}

/// Every live local agent of `org`.
async fn local_agents(registry: &Registry, org: &str) -> Result<Vec<AgentRecord>, GatewayError> {
    let mut agents = Vec::new();
    let mut query = DiscoveryQuery {
        org: Some(org.to_owned()),
        page_size: Some(SYNC_PAGE_SIZE),
        ..DiscoveryQuery::default()
    };
    loop {
        let page = registry.discover(&query).await.map_err(storage)?;
        agents.extend(page.items);
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => return Ok(agents),
        }
    }
}
