//! [`RouteTable`] over the registry: agents resolve to their registered
//! upstreams, and task routes are stored in the registry's database, so a
//! restart or another replica on the same PostgreSQL routes follow-ups the
//! same way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convergio_registry::{AgentRecord, DiscoveryQuery, Registry, RegistryError};
use convergio_schemas::AgentId;
use serde_json::{json, Value};

use crate::routes::{AgentFacts, RouteTable, RouteTarget, TaskRoute};
use crate::{GatewayError, Principal};

/// The most agents the gateway's own card lists.
const MAX_LISTED_AGENTS: usize = 1000;

/// How many agents' routes are kept built.
const ROUTE_CACHE_CAPACITY: u64 = 10_000;

/// How many contexts' holders are kept in memory.
const CONTEXT_CACHE_CAPACITY: u64 = 100_000;

/// Routes backed by a [`Registry`].
#[derive(Debug, Clone)]
pub struct RegistryRoutes {
    registry: Registry,
    /// The route built from each agent's record, with that record: an entry
    /// is used only while the registry still hands out the very same record
    /// (`Arc::ptr_eq`), so every write (which replaces the record) rebuilds
    /// it, and a call costs a lookup instead of a copy of the card.
    targets: moka::sync::Cache<String, (Arc<AgentRecord>, Arc<RouteTarget>)>,
    /// The holder of each (agent id, context id) this replica has seen
    /// claimed. A claim never changes once stored (the first principal
    /// keeps it), so a kept holder is the stored one, and a conversation's
    /// later calls need no database read. Nothing deletes claims today: a
    /// retention that did would have to drop them from this cache too (or
    /// keep the old holder here for the cache's idle time).
    context_holders: moka::sync::Cache<(String, String), Arc<str>>,
}

// === impl RegistryRoutes ===

impl RegistryRoutes {
    /// Routes over `registry`.
    pub fn new(registry: Registry) -> Self {
        let targets = moka::sync::Cache::builder()
            .max_capacity(ROUTE_CACHE_CAPACITY)
            .time_to_idle(Duration::from_secs(600))
            .build();
        let context_holders = moka::sync::Cache::builder()
            .max_capacity(CONTEXT_CACHE_CAPACITY)
            .time_to_idle(Duration::from_secs(600))
            .build();
        Self {
            registry,
            targets,
            context_holders,
        }
    }
}

fn internal_error(error: RegistryError) -> GatewayError {
    GatewayError::internal("reading the registry", error)
}

/// The routing view of a record: interfaces come from the registered
/// upstreams (which may differ from the card), the card stays as registered.
fn target(name: &str, record: &convergio_registry::AgentRecord) -> RouteTarget {
    let interfaces: Vec<Value> = record
        .upstreams
        .iter()
        .map(|upstream| {
            let mut interface = json!({
                "url": upstream.url,
                "protocolBinding": upstream.protocol_binding,
                "protocolVersion": upstream.protocol_version,
            });
            if let Some(tenant) = &upstream.tenant {
                interface["tenant"] = Value::String(tenant.clone());
            }
            interface
        })
        .collect();
    let mut target = RouteTarget::from_card(name, json!({ "supportedInterfaces": interfaces }));
    target.card = record.card.clone();
    target.facts = Some(AgentFacts {
        org: record.org.clone(),
        trust: record.trust,
        role: record.role,
    });
    target
}

/// A stored task route as routing sees it (agents by gateway name).
fn routing_view(stored: convergio_registry::TaskRoute) -> TaskRoute {
    TaskRoute {
        agent: stored.agent_id.name().to_owned(),
        task_id: stored.task_id,
        owner: stored.owner,
        context_id: stored.context_id,
    }
}

#[async_trait]
impl RouteTable for RegistryRoutes {
    async fn resolve(&self, name: &str) -> Result<Option<Arc<RouteTarget>>, GatewayError> {
        let Ok(id) = AgentId::internal(name) else {
            return Ok(None);
        };
        let record = match self.registry.get_shared(&id).await {
            Ok(record) if !record.is_deleted() => record,
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => return Ok(None),
            Err(error) => return Err(internal_error(error)),
        };
        if let Some((built_from, target)) = self.targets.get(name) {
            if Arc::ptr_eq(&built_from, &record) {
                return Ok(Some(target));
            }
        }
        let built = Arc::new(target(name, &record));
        self.targets
            .insert(name.to_owned(), (record, Arc::clone(&built)));
        Ok(Some(built))
    }

    async fn visible_agents(
        &self,
        _principal: &Principal,
    ) -> Result<Vec<RouteTarget>, GatewayError> {
        // Only this organisation's agents are routable here; policy-based
        // filtering per principal arrives with the policy issue.
        let mut query = DiscoveryQuery {
            org: Some(self.registry.config().org_domain.clone()),
            page_size: Some(100),
            ..DiscoveryQuery::default()
        };
        let mut targets = Vec::new();
        loop {
            let page = self
                .registry
                .discover(&query)
                .await
                .map_err(internal_error)?;
            for record in &page.items {
                if let AgentId::Internal { name } = &record.id {
                    targets.push(target(name, record));
                }
            }
            match page.next_page_token {
                Some(token) if targets.len() < MAX_LISTED_AGENTS => query.page_token = Some(token),
                _ => break,
            }
        }
        targets.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(targets)
    }

    async fn remember_task(&self, route: TaskRoute) -> Result<(), GatewayError> {
        let Ok(agent_id) = AgentId::internal(&route.agent) else {
            return Ok(());
        };
        let existing = self
            .registry
            .get_task_route(&route.task_id)
            .await
            .map_err(internal_error)?;
        // The first owner wins: another caller can never adopt a task id.
        if let Some(existing) = &existing {
            if existing.owner != route.owner
                || (existing.context_id.is_some() || route.context_id.is_none())
            {
                return Ok(());
            }
        }
        let now = convergio_registry::now();
        let stored = convergio_registry::TaskRoute {
            task_id: route.task_id,
            context_id: route.context_id,
            agent_id,
            owner: route.owner,
            created_at: existing
                .as_ref()
                .map_or(now, |existing| existing.created_at),
            updated_at: now,
        };
        self.registry
            .put_task_route(&stored)
            .await
            .map_err(internal_error)
    }

    async fn task_route(&self, task_id: &str) -> Result<Option<TaskRoute>, GatewayError> {
        let stored = self
            .registry
            .get_task_route(task_id)
            .await
            .map_err(internal_error)?;
        Ok(stored.map(routing_view))
    }

    async fn owned_tasks(
        &self,
        owner: &str,
        agent: &str,
        task_ids: &[String],
    ) -> Result<HashSet<String>, GatewayError> {
        let Ok(agent_id) = AgentId::internal(agent) else {
            return Ok(HashSet::new());
        };
        let owned = self
            .registry
            .owned_task_ids(owner, &agent_id, task_ids)
            .await
            .map_err(internal_error)?;
        Ok(owned.into_iter().collect())
    }

    async fn count_tasks(&self, owner: &str, agent: &str) -> Result<u64, GatewayError> {
        let Ok(agent_id) = AgentId::internal(agent) else {
            return Ok(0);
        };
        self.registry
            .count_task_routes(owner, &agent_id)
            .await
            .map_err(internal_error)
    }

    async fn claim_context(
        &self,
        owner: &str,
        agent: &str,
        context_id: &str,
    ) -> Result<bool, GatewayError> {
        // Contexts at a peer's agents (`external://…`) are owned here too:
        // the peer sees every caller of this organisation as one principal.
        let agent_id = if agent.starts_with("external://") {
            agent.parse::<AgentId>()
        } else {
            AgentId::internal(agent)
        };
        let Ok(agent_id) = agent_id else {
            return Ok(false);
        };
        let key = (agent_id.to_string(), context_id.to_owned());
        if let Some(holder) = self.context_holders.get(&key) {
            return Ok(&*holder == owner);
        }
        let holder = self
            .registry
            .claim_context(&agent_id, context_id, owner)
            .await
            .map_err(internal_error)?;
        let held = holder == owner;
        self.context_holders.insert(key, Arc::from(holder));
        Ok(held)
    }
}
