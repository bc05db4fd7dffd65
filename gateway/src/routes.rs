//! What routing needs from the registry: the [`RouteTable`] trait (the lead
//! implements it over `convergio-registry`), the types it returns, and
//! [`InMemoryRoutes`], an implementation for tests and examples.
//!
//! A leaf module: it depends on nothing in the crate but the error, so the
//! A2A routes, authorisation and federation all use its [`RouteTarget`]
//! (the request extension routing leaves for the layers after it) without
//! importing one another.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use convergio_schemas::a2a::ProtocolVersion;
use convergio_schemas::{AgentRole, TrustLevel};
use serde_json::Value;

use crate::{GatewayError, Principal};

/// A protocol binding the gateway can forward over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    /// JSON-RPC 2.0 over HTTP.
    JsonRpc,
    /// HTTP+JSON (REST).
    HttpJson,
    /// gRPC (`lf.a2a.v1.A2AService`); upstream URLs are `http(s)://` or a
    /// card's bare `host:port` (read as `http://host:port`).
    Grpc,
}

// === impl Binding ===

impl Binding {
    /// Parses `AgentInterface.protocolBinding` (custom URIs are not
    /// forwarded by the gateway, so they map to `None`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "JSONRPC" => Some(Self::JsonRpc),
            "HTTP+JSON" => Some(Self::HttpJson),
            "GRPC" => Some(Self::Grpc),
            _ => None,
        }
    }

    /// The card spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonRpc => "JSONRPC",
            Self::HttpJson => "HTTP+JSON",
            Self::Grpc => "GRPC",
        }
    }
}

/// One upstream endpoint of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamInterface {
    /// Absolute `http://` URL of the endpoint.
    pub url: String,
    /// How to talk to it.
    pub binding: Binding,
    /// Which dialect it speaks.
    pub version: ProtocolVersion,
    /// The tenant the upstream expects in requests, if any.
    pub tenant: Option<String>,
}

/// What the registry knows about an agent beyond its card: what policy
/// decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// The owning organisation.
    pub org: String,
    /// Its trust level.
    pub trust: TrustLevel,
    /// Its role.
    pub role: AgentRole,
}

/// A registered agent as routing sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTarget {
    /// The gateway name (`/agents/{name}`).
    pub name: String,
    /// Registry facts (`None` for routes that come from a card alone; policy
    /// then sees an agent of no organisation at `registered` trust).
    pub facts: Option<AgentFacts>,
    /// The forwardable upstream interfaces, in the card's preference order.
    pub interfaces: Vec<UpstreamInterface>,
    /// The card as registered (1.0 JSON, unknown fields kept).
    pub card: Value,
}

// === impl RouteTarget ===

impl RouteTarget {
    /// Builds a target from a registered card, reading `supportedInterfaces`
    /// (1.0) or `url`/`preferredTransport`/`additionalInterfaces` (0.3).
    /// Interfaces the gateway cannot forward to (0.3 gRPC and HTTP+JSON,
    /// non-HTTP(S) URLs other than a gRPC `host:port`) are skipped.
    pub fn from_card(name: impl Into<String>, card: Value) -> Self {
        let mut interfaces = Vec::new();
        if let Some(list) = card.get("supportedInterfaces").and_then(Value::as_array) {
            for entry in list {
                let binding = entry.get("protocolBinding").and_then(Value::as_str);
                let version = entry
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("1.0");
                push_interface(
                    &mut interfaces,
                    entry.get("url").and_then(Value::as_str),
                    binding,
                    version,
                    entry.get("tenant").and_then(Value::as_str),
                );
            }
        } else if let Some(url) = card.get("url").and_then(Value::as_str) {
            let version = card
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("0.3");
            let version = if version.starts_with("0.") {
                "0.3"
            } else {
                version
            };
            let preferred = card
                .get("preferredTransport")
                .and_then(Value::as_str)
                .unwrap_or("JSONRPC");
            push_interface(&mut interfaces, Some(url), Some(preferred), version, None);
            for entry in card
                .get("additionalInterfaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push_interface(
                    &mut interfaces,
                    entry.get("url").and_then(Value::as_str),
                    entry.get("transport").and_then(Value::as_str),
                    version,
                    None,
                );
            }
        }
        Self {
            name: name.into(),
            facts: None,
            interfaces,
            card,
        }
    }

    /// The interface to forward a call over: the client's binding when the
    /// upstream offers it in 1.0 (so a call is translated only when the two
    /// differ), else JSON-RPC 1.0, else HTTP+JSON 1.0, else JSON-RPC 0.3,
    /// else gRPC 1.0.
    pub fn choose_interface(&self, client_binding: Binding) -> Option<&UpstreamInterface> {
        let order = [
            (client_binding, ProtocolVersion::V1_0),
            (Binding::JsonRpc, ProtocolVersion::V1_0),
            (Binding::HttpJson, ProtocolVersion::V1_0),
            (Binding::JsonRpc, ProtocolVersion::V0_3),
            (Binding::Grpc, ProtocolVersion::V1_0),
        ];
        order.iter().find_map(|(binding, version)| {
            self.interfaces
                .iter()
                .find(|interface| interface.binding == *binding && interface.version == *version)
        })
    }

    /// The card's `description`, for the gateway's own card.
    pub fn description(&self) -> &str {
        self.card
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

fn push_interface(
    interfaces: &mut Vec<UpstreamInterface>,
    url: Option<&str>,
    binding: Option<&str>,
    version: &str,
    tenant: Option<&str>,
) {
    let (Some(url), Some(binding)) = (url, binding.and_then(Binding::parse)) else {
        return;
    };
    // The HTTP+JSON 0.3 dialect (`/v1/...` paths) and 0.3 gRPC (package
    // `a2a.v1`) are not forwarded.
    let version = match version {
        "1.0" => ProtocolVersion::V1_0,
        "0.3" if binding == Binding::JsonRpc => ProtocolVersion::V0_3,
        _ => return,
    };
    let url = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else if binding == Binding::Grpc && !url.contains("://") && !url.contains('/') {
        // A gRPC card names `host:port`: cleartext HTTP/2 (a TLS endpoint
        // is written `https://host:port`).
        format!("http://{url}")
    } else {
        return;
    };
    interfaces.push(UpstreamInterface {
        url,
        binding,
        version,
        tenant: tenant
            .filter(|tenant| !tenant.is_empty())
            .map(str::to_owned),
    });
}

/// Which agent and which caller own a task (task affinity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRoute {
    /// The upstream task id.
    pub task_id: String,
    /// The gateway name of the agent that runs it.
    pub agent: String,
    /// The subject of the principal that created it.
    pub owner: String,
    /// The task's context id, when seen.
    pub context_id: Option<String>,
}

/// What routing needs from the registry.
#[async_trait]
pub trait RouteTable: Send + Sync {
    /// Agent by gateway name (`/agents/{name}`), with its upstream interfaces and its card as registered.
    /// Shared: it is read on every call, so implementations hand out one
    /// copy instead of building one per call.
    async fn resolve(&self, name: &str) -> Result<Option<Arc<RouteTarget>>, GatewayError>;
    /// Agents visible to a caller (for the gateway's own card).
    async fn visible_agents(&self, principal: &Principal)
        -> Result<Vec<RouteTarget>, GatewayError>;
    /// Remembers task id → agent, owner, context. The first owner wins: a
    /// later call with another owner for the same task id changes nothing.
    async fn remember_task(&self, route: TaskRoute) -> Result<(), GatewayError>;
    /// The remembered route of a task.
    async fn task_route(&self, task_id: &str) -> Result<Option<TaskRoute>, GatewayError>;
    /// Which of `task_ids` (one upstream `ListTasks` page) are tasks of
    /// `owner` on `agent`. Reads only those ids, however many tasks the
    /// caller has (issue #15, defect 2).
    async fn owned_tasks(
        &self,
        owner: &str,
        agent: &str,
        task_ids: &[String],
    ) -> Result<HashSet<String>, GatewayError>;
    /// How many remembered tasks `owner` has on `agent`.
    async fn count_tasks(&self, owner: &str, agent: &str) -> Result<u64, GatewayError>;
    /// Whether `owner` may use `context_id` at `agent`: true when it holds
    /// the context, or held nobody's and now does (the first principal to
    /// use a context id at an agent owns it there).
    async fn claim_context(
        &self,
        owner: &str,
        agent: &str,
        context_id: &str,
    ) -> Result<bool, GatewayError>;
}

/// A [`RouteTable`] held in memory (tests, examples; not shared by replicas).
#[derive(Debug, Default)]
pub struct InMemoryRoutes {
    agents: RwLock<HashMap<String, Arc<RouteTarget>>>,
    tasks: RwLock<HashMap<String, TaskRoute>>,
    /// (agent, context id) → owner.
    contexts: RwLock<HashMap<(String, String), String>>,
}

// === impl InMemoryRoutes ===

impl InMemoryRoutes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) an agent.
    pub fn insert(&self, target: RouteTarget) {
        let mut agents = self
            .agents
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        agents.insert(target.name.clone(), Arc::new(target));
    }

    /// Removes an agent.
    pub fn remove(&self, name: &str) {
        let mut agents = self
            .agents
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        agents.remove(name);
    }
}

#[async_trait]
impl RouteTable for InMemoryRoutes {
    async fn resolve(&self, name: &str) -> Result<Option<Arc<RouteTarget>>, GatewayError> {
        let agents = self
            .agents
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(agents.get(name).cloned())
    }

    async fn visible_agents(
        &self,
        _principal: &Principal,
    ) -> Result<Vec<RouteTarget>, GatewayError> {
        let agents = self
            .agents
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut list: Vec<RouteTarget> = agents.values().map(|target| (**target).clone()).collect();
        list.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(list)
    }

    async fn remember_task(&self, route: TaskRoute) -> Result<(), GatewayError> {
        let mut tasks = self
            .tasks
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let entry = tasks
            .entry(route.task_id.clone())
            .or_insert_with(|| route.clone());
        if entry.owner == route.owner && entry.context_id.is_none() {
            entry.context_id = route.context_id;
        }
        Ok(())
    }

    async fn task_route(&self, task_id: &str) -> Result<Option<TaskRoute>, GatewayError> {
        let tasks = self
            .tasks
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(tasks.get(task_id).cloned())
    }

    async fn owned_tasks(
        &self,
        owner: &str,
        agent: &str,
        task_ids: &[String],
    ) -> Result<HashSet<String>, GatewayError> {
        let tasks = self
            .tasks
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(task_ids
            .iter()
            .filter(|task_id| {
                tasks
                    .get(task_id.as_str())
                    .is_some_and(|route| route.owner == owner && route.agent == agent)
            })
            .cloned()
            .collect())
    }

    async fn count_tasks(&self, owner: &str, agent: &str) -> Result<u64, GatewayError> {
        let tasks = self
            .tasks
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = tasks
            .values()
            .filter(|route| route.owner == owner && route.agent == agent)
            .count();
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    async fn claim_context(
        &self,
        owner: &str,
        agent: &str,
        context_id: &str,
    ) -> Result<bool, GatewayError> {
        let mut contexts = self
            .contexts
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let holder = contexts
            .entry((agent.to_owned(), context_id.to_owned()))
            .or_insert_with(|| owner.to_owned());
        Ok(holder == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_interfaces_from_1_0_and_0_3_cards() {
        let v1 = RouteTarget::from_card(
            "a",
            json!({"supportedInterfaces": [
                {"url": "http://127.0.0.1:1/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
                {"url": "http://127.0.0.1:1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0", "tenant": "t"},
                {"url": "127.0.0.1:2", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
            ]}),
        );
        assert_eq!(v1.interfaces.len(), 3);
        assert_eq!(
            v1.choose_interface(Binding::HttpJson).map(|i| i.binding),
            Some(Binding::HttpJson)
        );
        // A gRPC client reaches the gRPC endpoint, read as h2c.
        let grpc = v1.choose_interface(Binding::Grpc).expect("grpc");
        assert_eq!(grpc.url, "http://127.0.0.1:2");
        let grpc_only = RouteTarget::from_card(
            "g",
            json!({"supportedInterfaces": [
                {"url": "127.0.0.1:2", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "127.0.0.1:2/x", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "127.0.0.1:2", "protocolBinding": "GRPC", "protocolVersion": "0.3"}
            ]}),
        );
        assert_eq!(grpc_only.interfaces.len(), 1);
        assert_eq!(
            grpc_only
                .choose_interface(Binding::JsonRpc)
                .map(|i| i.binding),
            Some(Binding::Grpc)
        );
        assert_eq!(
            v1.choose_interface(Binding::JsonRpc)
                .and_then(|i| i.tenant.clone()),
            Some("t".into())
        );

        let v03 = RouteTarget::from_card(
            "b",
            json!({"url": "http://127.0.0.1:3/", "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC"}),
        );
        let chosen = v03
            .choose_interface(Binding::HttpJson)
            .expect("0.3 jsonrpc interface");
        assert_eq!(chosen.version, ProtocolVersion::V0_3);
    }

    #[tokio::test]
    async fn first_owner_of_a_task_wins() {
        let routes = InMemoryRoutes::new();
        let route = |owner: &str| TaskRoute {
            task_id: "t1".into(),
            agent: "a".into(),
            owner: owner.into(),
            context_id: None,
        };
        routes
            .remember_task(route("alice"))
            .await
            .expect("remember");
        routes
            .remember_task(route("mallory"))
            .await
            .expect("remember");
        let stored = routes
            .task_route("t1")
            .await
            .expect("lookup")
            .expect("present");
        assert_eq!(stored.owner, "alice");
        let asked = ["t1".to_owned(), "t2".to_owned()];
        assert_eq!(
            routes
                .owned_tasks("alice", "a", &asked)
                .await
                .expect("owned"),
            HashSet::from(["t1".to_owned()])
        );
        assert!(routes
            .owned_tasks("mallory", "a", &asked)
            .await
            .expect("owned")
            .is_empty());
        assert_eq!(routes.count_tasks("alice", "a").await.expect("count"), 1);
        assert_eq!(routes.count_tasks("mallory", "a").await.expect("count"), 0);
    }

    // Regression: issue #15, defect 4.
    #[tokio::test]
    async fn first_principal_to_use_a_context_at_an_agent_owns_it() {
        let routes = InMemoryRoutes::new();
        let claim = |owner: &'static str, agent: &'static str| {
            let routes = &routes;
            async move {
                routes
                    .claim_context(owner, agent, "c1")
                    .await
                    .expect("claim")
            }
        };
        assert!(claim("alice", "a").await);
        assert!(claim("alice", "a").await);
        assert!(!claim("mallory", "a").await);
        assert!(claim("mallory", "b").await, "another agent's context");
    }
}
