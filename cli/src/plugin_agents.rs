//! Stored plugins of kind `agent` served as A2A agents in `convergio
//! serve` (issue 21).
//!
//! - [`PluginLogic`]: the [`AgentLogic`] of one plugin agent. Each message
//!   runs the module's `handle` export (agent ABI v1, see
//!   `plugins/README.md`) on a fiber that yields at every epoch tick,
//!   bounded by the sandbox (fuel, deadline, memory, stack); the answer's parts become the task's
//!   artifact (one `artifactUpdate` on a stream) and the completed status
//!   message. An error the module reports, or any failure of the module (a
//!   trap, running out of fuel, a bad answer), fails the task with a
//!   message saying which: the caller gets an A2A answer, the gateway and
//!   the other agents go on.
//! - [`PluginFleet`]: one task that owns the plugin agents this replica
//!   serves. Each runs on a loopback slot split off the model agents' pool
//!   (`plugins.max_agents` of them; same token, so only the gateway reaches
//!   it), is registered under its organisation with a card generated from
//!   its declaration ([`Registry::upsert_system`]: `internal` for the
//!   deployment's organisation, `registered` for another, as that
//!   organisation registering it would be), and is reconciled with the
//!   store every `plugins.watch_interval_seconds`: a new version is
//!   compiled and swapped into the running agent (its card re-registered),
//!   a deleted plugin is stopped and deregistered, on every replica. With
//!   `plugins.require_signed`, an unsigned newest version is not served
//!   (stopped and deregistered if it was), logged once; so is a newest
//!   version declaring a capability grant this replica's
//!   `plugins.allow_grants` does not allow. A served version runs with its
//!   declared grants. Calls reach it
//!   through the gateway like any agent's: discovered, decided by policy,
//!   audited, usable as a graph node.
//! - [`PluginAgentCaller`]: what a plugin agent's `call_agent` calls go
//!   through: the gateway's own router ([`crate::gateway_call`]), in
//!   process, as the principal `agent:<plugin>` of the plugin's
//!   organisation, so policy, quotas, the SSRF guard, guardrails and audit
//!   apply to each. Each call is spawned as a task of its own (the plugin's
//!   fiber stack only awaits it) and bounded by what is left of the
//!   message's budget (`plugins.agent_calls`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use convergio_agents::logic::text_part;
use convergio_agents::{AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext};
use convergio_auth::plugin_signature::module_sha256;
use convergio_gateway::a2a::AgentTimeouts;
use convergio_plugins::{
    AgentAnswer, AgentCall, AgentCallError, AgentCallLimits, AgentCaller, AgentCalling, Grants,
    PluginRuntime, WasmAgent,
};
use convergio_registry::plugins::{PluginKind, PluginStore};
use convergio_registry::{Actor, Registration, Registry, RegistryError};
use convergio_schemas::a2a::TaskState;
use convergio_schemas::{AgentId, AgentRole};
use serde_json::{json, Value};

use crate::gateway_call::{GatewayCall, GatewayCallError};
use crate::model_serving::ListenerPool;

/// Extra time the waiting plugin gives a call's own timeout before it gives
/// up on the spawned task (the task's timeout normally answers first).
const CALL_GRACE: Duration = Duration::from_millis(250);

/// [`AgentCaller`] of one plugin agent: calls through the gateway's router
/// as `agent:<plugin>` of its organisation.
pub struct PluginAgentCaller {
    app: Weak<Router>,
    plugin: String,
    org: String,
}

// === impl PluginAgentCaller ===

impl PluginAgentCaller {
    /// Calls of the plugin agent `plugin` of `org` through `app`.
    pub fn new(app: Weak<Router>, plugin: &str, org: &str) -> Self {
        Self {
            app,
            plugin: plugin.to_owned(),
            org: org.to_owned(),
        }
    }
}

#[async_trait]
impl AgentCaller for PluginAgentCaller {
    async fn call_agent(&self, call: AgentCall) -> Result<Value, AgentCallError> {
        let timeout = call.timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = GatewayCall {
            caller: self.plugin.clone(),
            org: self.org.clone(),
            agent: call.agent.clone(),
            rpc_id: format!("{}/{}", call.task_id, call.agent),
            request_id: uuid::Uuid::now_v7().to_string(),
            message: call.message,
            timeout,
            max_reply_bytes: call.max_reply_bytes,
        };
        let app = self.app.clone();
        // A task of its own: the exchange runs on a worker's stack, not on
        // the plugin's fiber.
        let mut task = tokio::spawn(async move { crate::gateway_call::call(&app, request).await });
        let outcome = match tokio::time::timeout(timeout + CALL_GRACE, &mut task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => Err(GatewayCallError::Failed(format!(
                "the call's task ended: {error}"
            ))),
            Err(_) => {
                task.abort();
                Err(GatewayCallError::Timeout)
            }
        };
        let (plugin, agent) = (&self.plugin, &call.agent);
        match outcome {
            Ok(result) => Ok(result),
            Err(GatewayCallError::Refused(reason)) => {
                tracing::info!(%plugin, %agent, %reason, "a plugin agent's call was refused");
                Err(AgentCallError::Refused { reason })
            }
            Err(GatewayCallError::Failed(reason)) => Err(AgentCallError::Failed { reason }),
            Err(GatewayCallError::Timeout) => Err(AgentCallError::Timeout { timeout_ms }),
        }
    }
}

/// The logic of one plugin agent: its newest installed version.
pub struct PluginLogic {
    name: String,
    agent: RwLock<Arc<WasmAgent>>,
}

// === impl PluginLogic ===

impl PluginLogic {
    /// The agent `name` running `agent`.
    pub fn new(name: &str, agent: WasmAgent) -> Self {
        Self {
            name: name.to_owned(),
            agent: RwLock::new(Arc::new(agent)),
        }
    }

    fn current(&self) -> Arc<WasmAgent> {
        self.agent
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `agent` the version later messages run.
    pub fn replace(&self, agent: WasmAgent) {
        *self.agent.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(agent);
    }
}

#[async_trait]
impl AgentLogic for PluginLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        context.working()?;
        let agent = self.current();
        let outcome = agent
            .handle(&message, context.context_id(), context.task_id())
            .await;
        match outcome {
            Ok(AgentAnswer::Parts(parts)) => {
                context.artifact(
                    json!({
                        "artifactId": format!("{}-answer", context.task_id()),
                        "name": self.name,
                        "parts": parts,
                    }),
                    false,
                    true,
                )?;
                let reply = context.agent_message(parts, None);
                context.status(TaskState::Completed, Some(reply))
            }
            Ok(AgentAnswer::Error { code, message }) => {
                let reply = context.agent_message(
                    vec![text_part(format!("{code}: {message}"))],
                    Some(json!({"convergio.plugin_error": code})),
                );
                context.status(TaskState::Failed, Some(reply))
            }
            Err(failure) => {
                tracing::warn!(agent = %self.name, error = %failure, "a plugin agent failed");
                let reply = context.agent_message(
                    vec![text_part(format!(
                        "the plugin agent {} failed ({}): {failure}",
                        self.name,
                        failure.code()
                    ))],
                    Some(json!({"convergio.plugin_error": failure.code()})),
                );
                context.status(TaskState::Failed, Some(reply))
            }
        }
    }
}

/// The card of the plugin agent `name` of `org`, from its declaration
/// (`description`, `skills`; defaults naming the plugin).
pub fn card(name: &str, org: &str, declaration: &Value, version: i64) -> Value {
    let description = declaration
        .get("description")
        .and_then(Value::as_str)
        .map_or_else(
            || format!("The WebAssembly plugin agent {name} of {org}."),
            str::to_owned,
        );
    let skills: Vec<Value> = declaration
        .get("skills")
        .and_then(Value::as_array)
        .map(|skills| {
            skills
                .iter()
                .filter_map(|skill| {
                    let id = skill.get("id").and_then(Value::as_str)?;
                    Some(json!({
                        "id": id,
                        "name": skill.get("name").and_then(Value::as_str).unwrap_or(id),
                        "description": skill.get("description").and_then(Value::as_str).unwrap_or(""),
                        "tags": skill.get("tags").cloned().filter(Value::is_array).unwrap_or_else(|| json!(["plugin"])),
                        "examples": [],
                    }))
                })
                .collect()
        })
        .filter(|skills: &Vec<Value>| !skills.is_empty())
        .unwrap_or_else(|| {
            vec![json!({
                "id": name,
                "name": name,
                "description": description,
                "tags": ["plugin"],
                "examples": [],
            })]
        });
    json!({
        "name": name,
        "description": description,
        "version": format!("1.0.{version}"),
        "provider": {"organization": org, "url": format!("https://{org}")},
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}

/// The newest stored version of one plugin agent.
struct Wanted {
    org: String,
    version: i64,
    sha256: String,
    signed: bool,
    grants: Vec<String>,
    declaration: Value,
}

/// One plugin agent as this replica serves it.
struct Served {
    version: i64,
    sha256: String,
    logic: Arc<PluginLogic>,
    agent: RunningAgent,
    socket: SocketAddr,
}

/// What a plugin fleet is built from.
pub struct PluginFleetParts {
    /// Its loopback slots (`plugins.max_agents`).
    pub pool: ListenerPool,
    /// The stored plugins.
    pub store: Arc<dyn PluginStore>,
    /// The sandbox the agents run in.
    pub runtime: PluginRuntime,
    /// Where the agents are registered.
    pub registry: Registry,
    /// The gateway's per-agent timeouts (each plugin agent's is set).
    pub timeouts: AgentTimeouts,
    /// Names no plugin agent may take (the example agents').
    pub reserved: HashSet<String>,
    /// The gateway's router, which plugin agents' calls go through.
    pub app: Weak<Router>,
    /// Bounds on each message's calls (`plugins.agent_calls`).
    pub agent_calls: AgentCallLimits,
    /// Serve only signed versions (`plugins.require_signed`).
    pub require_signed: bool,
    /// Serve only versions whose every grant is here
    /// (`plugins.allow_grants`).
    pub allow_grants: Grants,
}

/// Owns the plugin agents this replica serves (one task).
pub struct PluginFleet {
    parts: PluginFleetParts,
    served: HashMap<String, Served>,
    /// Versions that could not be served, so each is reported once.
    failed: HashMap<String, (i64, String)>,
}

// === impl PluginFleet ===

impl PluginFleet {
    /// A fleet serving nothing yet.
    pub fn new(parts: PluginFleetParts) -> Self {
        Self {
            parts,
            served: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Serves every stored plugin agent (before it returns), then
    /// reconciles with the store every `interval`, in a task that ends
    /// with the runtime.
    pub async fn spawn(mut self, interval: Duration) {
        self.reconcile().await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                self.reconcile().await;
            }
        });
    }

    /// Brings what runs here in line with the store.
    async fn reconcile(&mut self) {
        let rows = match self.parts.store.list(None).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "listing plugins failed; retrying at the next interval");
                return;
            }
        };
        let wanted: HashMap<String, Wanted> = rows
            .into_iter()
            .filter(|row| row.kind == PluginKind::Agent)
            .filter_map(|row| {
                let latest = row.latest()?.clone();
                Some((
                    row.name.clone(),
                    Wanted {
                        org: row.org,
                        version: latest.version,
                        sha256: latest.sha256,
                        signed: latest.signed_by.is_some(),
                        grants: latest.grants,
                        declaration: latest.declaration.unwrap_or_else(|| json!({})),
                    },
                ))
            })
            .collect();
        let gone: Vec<String> = self
            .served
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name).await;
        }
        self.failed.retain(|name, _| wanted.contains_key(name));
        for (name, wanted) in wanted {
            let Wanted {
                org,
                version,
                sha256,
                signed,
                grants,
                declaration,
            } = wanted;
            let key = (version, sha256.clone());
            if self.parts.require_signed && !signed {
                if self.failed.get(&name) != Some(&key) {
                    tracing::warn!(agent = %name, org = %org, version, "plugin agent version not served: it is unsigned and plugins.require_signed is on");
                    self.failed.insert(name.clone(), key);
                    self.withdraw(&name, &org).await;
                }
                continue;
            }
            let grants = match crate::guardrails::admitted_grants(&grants, self.parts.allow_grants)
            {
                Ok(grants) => grants,
                Err(reason) => {
                    if self.failed.get(&name) != Some(&key) {
                        tracing::warn!(agent = %name, org = %org, version, %reason, "plugin agent version not served: it declares a grant this replica does not allow");
                        self.failed.insert(name.clone(), key);
                        self.withdraw(&name, &org).await;
                    }
                    continue;
                }
            };
            let current = self
                .served
                .get(&name)
                .map(|served| (served.version, served.sha256.clone()));
            if current.as_ref() == Some(&key) || self.failed.get(&name) == Some(&key) {
                continue;
            }
            match self
                .apply(&name, &org, version, &sha256, grants, &declaration)
                .await
            {
                Ok(()) => {
                    self.failed.remove(&name);
                    tracing::info!(agent = %name, org = %org, version, "plugin agent serving");
                }
                Err(problem) => {
                    self.failed.insert(name.clone(), key);
                    tracing::warn!(agent = %name, org = %org, version, %problem, "plugin agent version not served");
                }
            }
        }
    }

    /// Loads `version` of `name` and serves it: swapped into the running
    /// agent, or started on a free slot.
    async fn apply(
        &mut self,
        name: &str,
        org: &str,
        version: i64,
        sha256: &str,
        grants: Grants,
        declaration: &Value,
    ) -> Result<(), String> {
        if self.parts.reserved.contains(name) {
            return Err(format!("{name} is one of this server's example agents"));
        }
        let id = AgentId::internal(name).map_err(|error| error.to_string())?;
        match self.parts.registry.get(&id).await {
            Ok(existing) if existing.deleted_at.is_none() && existing.org != org => {
                return Err(format!(
                    "the name {name} is registered to {} already",
                    existing.org
                ));
            }
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => {}
            Err(error) => return Err(format!("reading the registry: {error}")),
        }
        let module = self
            .parts
            .store
            .module(name, version)
            .await
            .map_err(|error| format!("reading the module: {error}"))?
            .ok_or_else(|| "the version was deleted meanwhile".to_owned())?;
        if module_sha256(&module) != sha256 {
            return Err("the stored module does not match its hash".to_owned());
        }
        let runtime = self.parts.runtime.clone();
        let plugin = name.to_owned();
        let calling = AgentCalling::new(
            Arc::new(PluginAgentCaller::new(self.parts.app.clone(), name, org)),
            self.parts.agent_calls.clone(),
        );
        let agent = tokio::task::spawn_blocking(move || {
            WasmAgent::load_granted(&runtime, &plugin, &module, calling, grants)
        })
        .await
        .map_err(|error| format!("compiling the module: {error}"))?
        .map_err(|error| format!("loading the module: {error}"))?;
        let card_template = card(name, org, declaration, version);
        if let Some(served) = self.served.get_mut(name) {
            served.logic.replace(agent);
            served.version = version;
            served.sha256 = sha256.to_owned();
            let mut card = served.agent.card();
            if let (Value::Object(card), Value::Object(template)) = (&mut card, &card_template) {
                for (key, value) in template {
                    card.insert(key.clone(), value.clone());
                }
            }
            return self.register(name, org, card).await;
        }
        let listener = self.parts.pool.take().ok_or_else(|| {
            "every loopback slot for plugin agents is in use (plugins.max_agents)".to_owned()
        })?;
        let socket = listener
            .local_addr()
            .map_err(|error| format!("reading a loopback slot: {error}"))?;
        let logic = Arc::new(PluginLogic::new(name, agent));
        let running = match convergio_agents::spawn_logic(
            logic.clone(),
            card_template,
            listener,
            ServeOptions {
                gate: Some(self.parts.pool.gate()),
                ..ServeOptions::default()
            },
        )
        .await
        {
            Ok(running) => running,
            Err(error) => {
                self.parts.pool.give_back(socket).await;
                return Err(format!("starting the agent: {error}"));
            }
        };
        // The sandbox's deadline bounds the module's own running time and
        // the calls' budget the time it waits for agents; the gateway's
        // bound only has to outlast both.
        let deadline = Duration::from_millis(self.parts.runtime.limits().deadline_ms)
            + Duration::from_millis(self.parts.agent_calls.timeout_ms);
        self.parts
            .timeouts
            .set(name, deadline + Duration::from_secs(5));
        if let Err(error) = self.register(name, org, running.card()).await {
            self.parts.timeouts.remove(name);
            running.shutdown().await;
            self.parts.pool.give_back(socket).await;
            return Err(error);
        }
        self.parts.pool.slots().serve(name, socket);
        self.served.insert(
            name.to_owned(),
            Served {
                version,
                sha256: sha256.to_owned(),
                logic,
                agent: running,
                socket,
            },
        );
        Ok(())
    }

    async fn register(&self, name: &str, org: &str, card: Value) -> Result<(), String> {
        self.parts
            .registry
            .upsert_system(Registration {
                name: Some(name.to_owned()),
                org: Some(org.to_owned()),
                role: Some(AgentRole::Worker),
                card,
                upstreams: None,
                trust: None,
            })
            .await
            .map(|_| ())
            .map_err(|error| format!("registering the agent: {error}"))
    }

    /// Stops serving `name` of `org` and deregisters it: the one this
    /// replica serves, or a record an earlier run left (registered before a
    /// restart), never another organisation's agent of that name.
    async fn withdraw(&mut self, name: &str, org: &str) {
        if !self.served.contains_key(name) {
            let Ok(id) = AgentId::internal(name) else {
                return;
            };
            match self.parts.registry.get(&id).await {
                Ok(existing) if existing.deleted_at.is_none() && existing.org == org => {}
                Ok(_) | Err(RegistryError::AgentNotFound { .. }) => return,
                Err(error) => {
                    tracing::warn!(%error, agent = %name, "reading the registry failed; the agent stays registered");
                    return;
                }
            }
        }
        self.remove(name).await;
    }

    async fn remove(&mut self, name: &str) {
        if let Some(served) = self.served.remove(name) {
            self.parts.pool.slots().unserve(name);
            served.agent.shutdown().await;
            self.parts.pool.give_back(served.socket).await;
        }
        self.parts.timeouts.remove(name);
        let Ok(id) = AgentId::internal(name) else {
            return;
        };
        match self
            .parts
            .registry
            .deregister(&Actor::system(), &id, None)
            .await
        {
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => {
                tracing::info!(agent = %name, "plugin agent stopped");
            }
            Err(error) => {
                tracing::warn!(%error, agent = %name, "deregistering a plugin agent failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_follows_the_declaration_or_names_the_plugin() {
        let bare = card("shout", "acme.example", &json!({}), 3);
        assert_eq!(bare["version"], "1.0.3");
        assert_eq!(bare["skills"][0]["id"], "shout");
        let declared = card(
            "shout",
            "acme.example",
            &json!({"description": "Shouts.", "skills": [{"id": "upper", "tags": ["text"]}, {"name": "no id"}]}),
            1,
        );
        assert_eq!(declared["description"], "Shouts.");
        assert_eq!(declared["skills"].as_array().map(Vec::len), Some(1));
        assert_eq!(declared["skills"][0]["name"], "upper");
        assert_eq!(declared["skills"][0]["tags"], json!(["text"]));
    }
}
