//! Serving model agents in `convergio serve` (issue 17): the collaborators a
//! model agent's runtime needs, over this deployment's stores, and the
//! fleet that starts, restarts and stops the agents as their declarations
//! change.
//!
//! - [`KeyResolver`]: a key reference (`env:`, `file:`, `secret:`,
//!   `caller`) to the key, read at every call, so a rotated key is used by
//!   the next call without a restart. Failures name the reference, never a
//!   value.
//! - [`DailyBudgets`]: per-organisation daily token and cost budgets over
//!   the usage ledger, checked by the gatekeeper before a message reaches a
//!   model agent (a spent budget is 429 `RATE_LIMITED` with `Retry-After`
//!   until the next UTC day) and again by the agent before it calls its
//!   provider (its `max_tokens` capped at what is left); usage recorded
//!   after each call from the provider's own report, priced by the table.
//! - [`ModelDirectory`]: which model agents this replica serves, their
//!   owning organisation and status (shared by the REST host, the budget
//!   and the fleet).
//! - [`FleetNotifier`]: the REST surface's [`ModelAgentHost`]; it hands each
//!   change to the fleet over a channel and waits for it to be applied.
//! - [`ModelFleet`]: one task that owns the running agents. Each agent runs
//!   on a loopback listener taken from a pool bound at start (the pool's
//!   sockets are on the SSRF allow-list, which is fixed when the gateway is
//!   built), is registered under its organisation (`internal` for the
//!   deployment's, `registered` for another: `Registry::upsert_system`),
//!   and is reconciled with the store every interval, so a declaration written
//!   through another replica is served here too.
//! - [`watch_agents_dir`]: `models.agents_dir`, loaded at start and polled
//!   for changes; an invalid file is logged and skipped.
//!
//! The fleet is built after the gateway's router (its tool calls go through
//! that router), which is why the REST host reaches it through a channel
//! rather than owning it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use convergio_agents::{GateToken, RunningAgent, ServeOptions};
use convergio_auth::{SecretValue, SecretsKey};
use convergio_gateway::a2a::{AgentTimeouts, ModelSlots};
use convergio_gateway::authorize::CallBudget;
use convergio_gateway::model_agents::{AgentStatus, ModelAgentHost, ModelAgents};
use convergio_gateway::model_metrics::ModelUsageMetrics;
use convergio_gateway::secrets::Secrets;
use convergio_registry::model_agents::{ModelAgentRow, ModelAgentStore, UsageStore, UsageTotals};
use convergio_registry::{Actor, Registration, Registry, RegistryError};
use convergio_schemas::{
    AgentId, AgentRole, KeyReference, ModelAgentSpec, Principal, ProviderKind,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::models_config::{DailyBudget, ModelSettings};

/// How long a REST write waits for the fleet to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What `serve` builds for model agents before the gateway exists: the
/// store, secrets, key resolver, budgets, the REST service, and the channel
/// the fleet (built after the gateway) reads its changes from.
pub struct ModelWiring {
    /// The model agents' tables.
    pub store: Arc<convergio_store::models::ModelStore>,
    /// Sealed secrets.
    pub secrets: Arc<Secrets>,
    /// Key references to keys.
    pub keys: KeyResolver,
    /// What this replica serves.
    pub directory: Arc<ModelDirectory>,
    /// Usage counters for `/metrics`.
    pub metrics: Arc<ModelUsageMetrics>,
    /// Daily budgets (also the gatekeeper's call budget).
    pub budgets: Arc<DailyBudgets>,
    /// The REST service (`/v1/model-agents`).
    pub agents: Arc<ModelAgents>,
    /// The validated `models:` settings.
    pub settings: Arc<ModelSettings>,
    /// Where the fleet reads changes made through the REST service.
    pub changes: mpsc::Receiver<FleetChange>,
}

// === impl ModelWiring ===

impl ModelWiring {
    /// Everything but the fleet, over `db`.
    pub fn new(config: &crate::config::Config, db: &convergio_store::Db) -> anyhow::Result<Self> {
        let settings = Arc::new(config.models.clone());
        let store = Arc::new(convergio_store::models::ModelStore::new(db));
        let key = secrets_key(&settings, &config.data_dir)?;
        let secrets = Arc::new(Secrets::new(
            store.clone(),
            Arc::new(key),
            config.org_domain.clone(),
        ));
        let keys = KeyResolver::new(secrets.clone());
        let directory = Arc::new(ModelDirectory::default());
        let metrics = Arc::new(ModelUsageMetrics::default());
        let budgets = Arc::new(DailyBudgets::new(
            store.clone(),
            settings.clone(),
            metrics.clone(),
            directory.clone(),
        ));
        let (sender, changes) = mpsc::channel(64);
        let notifier = Arc::new(FleetNotifier::new(sender, directory.clone(), keys.clone()));
        let agents = Arc::new(ModelAgents::new(
            store.clone(),
            notifier,
            config.org_domain.clone(),
        ));
        Ok(Self {
            store,
            secrets,
            keys,
            directory,
            metrics,
            budgets,
            agents,
            settings,
            changes,
        })
    }
}

// === keys ===

/// Why a key could not be had. Names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The reference resolves to nothing (unset variable, missing file or
    /// secret, or `caller` without a caller organisation).
    #[error("the key {reference} is not available: {why}")]
    Missing {
        /// The reference, e.g. `env:OPENAI_API_KEY`.
        reference: String,
        /// Why, in plain words.
        why: String,
    },
    /// Reading the secret store failed (logged with its cause).
    #[error("the key {reference} could not be read")]
    Unreadable {
        /// The reference.
        reference: String,
    },
}

/// Resolves key references to keys, per call.
#[derive(Debug, Clone)]
pub struct KeyResolver {
    secrets: Arc<Secrets>,
}

// === impl KeyResolver ===

impl KeyResolver {
    /// Resolves `secret:` references through `secrets`.
    pub fn new(secrets: Arc<Secrets>) -> Self {
        Self { secrets }
    }

    /// The key `reference` names for an agent of `owner` (the organisation
    /// that declared it), called by `caller_org` (for `caller` keys).
    pub async fn resolve(
        &self,
        reference: &KeyReference,
        provider: ProviderKind,
        owner: &str,
        caller_org: Option<&str>,
    ) -> Result<SecretValue, KeyError> {
        let missing = |why: String| KeyError::Missing {
            reference: reference.to_string(),
            why,
        };
        let value = match reference {
            KeyReference::Env(name) => std::env::var(name)
                .map_err(|_| missing(format!("the environment variable {name} is not set")))?,
            KeyReference::File(path) => std::fs::read_to_string(path)
                .map_err(|error| missing(format!("reading {path}: {}", error.kind())))?
                .trim()
                .to_owned(),
            KeyReference::Secret(name) => self.secret(reference, owner, name).await?,
            KeyReference::Caller => {
                let org = caller_org
                    .ok_or_else(|| missing("the caller has no organisation".to_owned()))?;
                self.secret(reference, org, provider.as_str()).await?
            }
        };
        if value.is_empty() {
            return Err(missing("it is empty".to_owned()));
        }
        Ok(SecretValue::new(value))
    }

    async fn secret(
        &self,
        reference: &KeyReference,
        org: &str,
        name: &str,
    ) -> Result<String, KeyError> {
        match self.secrets.resolve(org, name).await {
            Ok(Some(value)) => Ok(value.expose().to_owned()),
            Ok(None) => Err(KeyError::Missing {
                reference: reference.to_string(),
                why: format!("{org} has no secret {name} (convergio secrets set {name})"),
            }),
            Err(error) => {
                tracing::error!(%error, reference = %reference, "reading a secret failed");
                Err(KeyError::Unreadable {
                    reference: reference.to_string(),
                })
            }
        }
    }

    /// Whether `spec`'s key can be had now for calls by its own
    /// organisation, and why not.
    pub async fn status(&self, spec: &ModelAgentSpec, owner: &str) -> AgentStatus {
        match &spec.api_key {
            None => AgentStatus::available(),
            // Each caller's organisation brings its own; nothing to check
            // until one calls.
            Some(KeyReference::Caller) => AgentStatus::available(),
            Some(reference) => match self.resolve(reference, spec.provider, owner, None).await {
                Ok(_) => AgentStatus::available(),
                Err(error) => AgentStatus::unavailable(error.to_string()),
            },
        }
    }
}

/// The key that seals secrets at rest: `CONVERGIO_SECRETS_KEY`, else the
/// data dir's `secrets.key`, generated (0600) on first start.
pub fn secrets_key(settings: &ModelSettings, data_dir: &Path) -> anyhow::Result<SecretsKey> {
    if let Some(text) = &settings.secrets_key {
        return SecretsKey::from_base64(text.expose())
            .with_context(|| format!("reading {}", crate::env::SECRETS_KEY));
    }
    let path = data_dir.join(crate::data_dir::SECRETS_KEY_FILE_NAME);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the secrets key {}", path.display()))?;
        return SecretsKey::from_base64(&text)
            .with_context(|| format!("the secrets key {}", path.display()));
    }
    let (key, text) = SecretsKey::generate().context("generating the secrets key")?;
    crate::data_dir::write_private(&path, &text)?;
    Ok(key)
}

// === budgets ===

/// Today, UTC, as the ledger keys days.
pub fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

/// Whole seconds until the next UTC day (at least 1).
pub fn seconds_until_tomorrow() -> u64 {
    let now = Utc::now();
    let tomorrow = now
        .date_naive()
        .succ_opt()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc());
    tomorrow
        .map(|midnight| (midnight - now).num_seconds())
        .and_then(|seconds| u64::try_from(seconds).ok())
        .unwrap_or(1)
        .max(1)
}

/// What a budget leaves for today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// No budget applies.
    Unlimited,
    /// This many tokens are left (0: spent).
    Tokens(u64),
}

/// Daily budgets over the usage ledger.
pub struct DailyBudgets {
    usage: Arc<dyn UsageStore>,
    settings: Arc<ModelSettings>,
    metrics: Arc<ModelUsageMetrics>,
    directory: Arc<ModelDirectory>,
}

impl std::fmt::Debug for DailyBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailyBudgets").finish_non_exhaustive()
    }
}

// === impl DailyBudgets ===

impl DailyBudgets {
    /// Budgets from `settings` over `usage`, counted into `metrics`, for the
    /// agents `directory` lists.
    pub fn new(
        usage: Arc<dyn UsageStore>,
        settings: Arc<ModelSettings>,
        metrics: Arc<ModelUsageMetrics>,
        directory: Arc<ModelDirectory>,
    ) -> Self {
        Self {
            usage,
            settings,
            metrics,
            directory,
        }
    }

    /// What `org`'s budget leaves today.
    pub async fn allowance(&self, org: &str) -> Result<Allowance, RegistryError> {
        let Some(budget) = self.settings.budget_of(org) else {
            return Ok(Allowance::Unlimited);
        };
        let used = self.usage.day(org, &today()).await?;
        Ok(left(budget, used))
    }

    /// Records one call's usage (from the provider's report) for `org`;
    /// returns its cost in millionths.
    pub async fn record(
        &self,
        org: &str,
        provider: ProviderKind,
        model: &str,
        tokens_in: u64,
        tokens_out: u64,
    ) -> Result<u64, RegistryError> {
        let cost_micros = self
            .settings
            .prices
            .cost_micros(provider, model, tokens_in, tokens_out);
        self.usage
            .add(
                org,
                &today(),
                UsageTotals {
                    tokens_in,
                    tokens_out,
                    cost_micros,
                },
            )
            .await?;
        self.metrics.record(org, tokens_in, tokens_out, cost_micros);
        Ok(cost_micros)
    }

    /// Counts a call a budget refused.
    pub fn refused(&self, org: &str) {
        self.metrics.refused(org);
    }
}

/// What `budget` leaves after `used`: the tokens left, or none once the
/// cost is spent.
fn left(budget: DailyBudget, used: UsageTotals) -> Allowance {
    let cost_spent = budget
        .daily_cost
        .is_some_and(|cost| used.cost_micros as f64 >= cost * 1_000_000.0);
    if cost_spent {
        return Allowance::Tokens(0);
    }
    match budget.daily_tokens {
        Some(tokens) => {
            Allowance::Tokens(tokens.saturating_sub(used.tokens_in.saturating_add(used.tokens_out)))
        }
        None => Allowance::Unlimited,
    }
}

#[async_trait]
impl CallBudget for DailyBudgets {
    async fn check(&self, principal: &Principal, agent: &str) -> Result<(), u64> {
        let Some(payer) = self.directory.payer(agent, principal) else {
            return Ok(());
        };
        match self.allowance(&payer).await {
            Ok(Allowance::Tokens(0)) => {
                self.refused(&payer);
                Err(seconds_until_tomorrow())
            }
            Ok(_) => Ok(()),
            Err(error) => {
                // A budget that cannot be read is not a budget left: the
                // stop is hard, so the call waits for the ledger.
                tracing::error!(%error, org = %payer, "reading the usage ledger failed");
                Err(5)
            }
        }
    }
}

// === directory ===

/// One served model agent, as the other parts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    /// The declaring organisation.
    pub org: String,
    /// The declaration's version being served.
    pub version: i64,
    /// Whether callers pay with their own organisation's key and budget.
    pub caller_pays: bool,
    /// Why it cannot answer, if it cannot (no free slot, name taken…).
    pub problem: Option<String>,
}

/// The model agents this replica serves.
#[derive(Debug, Default)]
pub struct ModelDirectory {
    entries: RwLock<HashMap<String, DirectoryEntry>>,
}

// === impl ModelDirectory ===

impl ModelDirectory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, DirectoryEntry>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, DirectoryEntry>> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<DirectoryEntry> {
        self.read().get(name).cloned()
    }

    /// The organisation whose budget a call of `principal` to `agent`
    /// spends; `None` when `agent` is not a model agent.
    pub fn payer(&self, agent: &str, principal: &Principal) -> Option<String> {
        let entries = self.read();
        let entry = entries.get(agent)?;
        if entry.caller_pays {
            principal.org.clone().or_else(|| Some(entry.org.clone()))
        } else {
            Some(entry.org.clone())
        }
    }

    fn set(&self, name: &str, entry: DirectoryEntry) {
        self.write().insert(name.to_owned(), entry);
    }

    fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }
}

// === the REST host ===

/// A change for the fleet, with the channel to say it is done.
#[derive(Debug)]
pub enum FleetChange {
    /// A declaration was created or updated.
    Applied(ModelAgentRow, oneshot::Sender<()>),
    /// A declaration was deleted.
    Removed(String, oneshot::Sender<()>),
}

/// The REST surface's host: hands changes to the fleet and reads status
/// from the directory and the key resolver.
pub struct FleetNotifier {
    changes: mpsc::Sender<FleetChange>,
    directory: Arc<ModelDirectory>,
    keys: KeyResolver,
}

impl std::fmt::Debug for FleetNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetNotifier").finish_non_exhaustive()
    }
}

// === impl FleetNotifier ===

impl FleetNotifier {
    /// A host sending to `changes`.
    pub fn new(
        changes: mpsc::Sender<FleetChange>,
        directory: Arc<ModelDirectory>,
        keys: KeyResolver,
    ) -> Self {
        Self {
            changes,
            directory,
            keys,
        }
    }

    async fn send(&self, change: FleetChange, done: oneshot::Receiver<()>) {
        if self.changes.send(change).await.is_err() {
            tracing::warn!("the model agent fleet has stopped; the change is stored only");
            return;
        }
        if tokio::time::timeout(APPLY_WAIT, done).await.is_err() {
            tracing::warn!("the model agent fleet did not apply a change within 10 s");
        }
    }
}

#[async_trait]
impl ModelAgentHost for FleetNotifier {
    async fn applied(&self, row: &ModelAgentRow, _spec: &ModelAgentSpec) {
        let (done, wait) = oneshot::channel();
        self.send(FleetChange::Applied(row.clone(), done), wait)
            .await;
    }

    async fn removed(&self, _org: &str, name: &str) {
        let (done, wait) = oneshot::channel();
        self.send(FleetChange::Removed(name.to_owned(), done), wait)
            .await;
    }

    async fn status(&self, row: &ModelAgentRow) -> AgentStatus {
        let served = self.directory.get(&row.name);
        match served {
            None => return AgentStatus::unavailable("not started on this replica yet"),
            Some(entry) if entry.version != row.version => {
                return AgentStatus::unavailable("the new version is starting")
            }
            Some(DirectoryEntry {
                problem: Some(problem),
                ..
            }) => return AgentStatus::unavailable(problem),
            Some(_) => {}
        }
        match ModelAgentSpec::from_value(&row.spec) {
            Ok(spec) => self.keys.status(&spec, &row.org).await,
            Err(error) => AgentStatus::unavailable(error.to_string()),
        }
    }
}

// === the fleet ===

/// What a model agent's runtime is built from.
pub struct AgentParts {
    /// The agent's logic.
    pub logic: Arc<dyn convergio_agents::AgentLogic>,
    /// Its card, without `supportedInterfaces`.
    pub card_template: Value,
    /// The longest one of its turns may take (the gateway waits a little
    /// longer, so the agent's own timeout answers first).
    pub timeout: Duration,
}

/// What the gateway adds to a model agent's own timeout before it gives up
/// on the agent.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Builds a model agent's runtime from its declaration (the `models`
/// crate's `ModelLogic` with this deployment's collaborators).
#[async_trait]
pub trait AgentFactory: Send + Sync + 'static {
    /// The runtime of `org`'s agent declared by `spec`.
    async fn build(&self, org: &str, spec: &ModelAgentSpec) -> anyhow::Result<AgentParts>;
}

/// Loopback listeners bound at start, whose sockets the SSRF allow-list
/// admits: one per model agent this replica may serve at once. The agents
/// on them answer only the pool's token, which only the gateway presents
/// ([`ListenerPool::slots`]).
#[derive(Debug)]
pub struct ListenerPool {
    free: Vec<TcpListener>,
    gate: GateToken,
    /// What the gateway reads: the sockets, the token and which agent runs
    /// on which socket (kept current by the fleet).
    slots: ModelSlots,
}

// === impl ListenerPool ===

impl ListenerPool {
    /// Binds `size` loopback listeners.
    pub async fn bind(size: usize) -> anyhow::Result<Self> {
        let mut free = Vec::with_capacity(size);
        for _ in 0..size {
            free.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .context("binding a loopback port for a model agent")?,
            );
        }
        // 244 random bits from the OS (UUID v4s), new at every start.
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let sockets = free
            .iter()
            .map(|listener| listener.local_addr().context("reading a pool socket"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            free,
            slots: ModelSlots::new(SecretValue::new(&token), sockets),
            gate: GateToken::new(token),
        })
    }

    /// What the gateway needs to reach the pool's agents: their sockets,
    /// the token they require and which agent runs where.
    pub fn slots(&self) -> ModelSlots {
        self.slots.clone()
    }

    /// Every socket of the pool (for the allow-list).
    pub fn sockets(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.free
            .iter()
            .map(|listener| listener.local_addr().context("reading a pool socket"))
            .collect()
    }

    /// Moves `count` of the free listeners (fewer if there are not as
    /// many) into a pool of their own that shares this one's token and its
    /// table of who serves where: graph agents (issue 18) run on the same
    /// gated loopback slots as model agents, so the gateway reaches both
    /// the same way.
    pub fn split_off(&mut self, count: usize) -> ListenerPool {
        let at = self.free.len().saturating_sub(count);
        ListenerPool {
            free: self.free.split_off(at),
            gate: self.gate.clone(),
            slots: self.slots.clone(),
        }
    }

    /// The token the pool's agents require.
    pub(crate) fn gate(&self) -> GateToken {
        self.gate.clone()
    }

    /// A free listener, if any.
    pub(crate) fn take(&mut self) -> Option<TcpListener> {
        self.free.pop()
    }

    /// Binds `socket` again after its agent stopped (the allow-list admits
    /// that socket and no other).
    pub(crate) async fn give_back(&mut self, socket: SocketAddr) {
        match TcpListener::bind(socket).await {
            Ok(listener) => self.free.push(listener),
            Err(error) => {
                tracing::warn!(%socket, %error, "a model agent's loopback port could not be bound again; one slot fewer");
            }
        }
    }
}

/// One running model agent.
struct Served {
    version: i64,
    agent: Option<(RunningAgent, SocketAddr)>,
}

/// Owns the running model agents of this replica.
pub struct ModelFleet {
    store: Arc<dyn ModelAgentStore>,
    registry: Registry,
    factory: Arc<dyn AgentFactory>,
    directory: Arc<ModelDirectory>,
    pool: ListenerPool,
    reserved: std::collections::HashSet<String>,
    timeouts: AgentTimeouts,
    served: HashMap<String, Served>,
}

// === impl ModelFleet ===

impl ModelFleet {
    /// A fleet serving the declarations of `store`, registering them in
    /// `registry`, built by `factory`, on `pool`'s listeners; `reserved`
    /// names (this server's example agents) are never taken over; each
    /// agent's timeout is set in the gateway's `timeouts` while it runs.
    pub fn new(
        store: Arc<dyn ModelAgentStore>,
        registry: Registry,
        factory: Arc<dyn AgentFactory>,
        directory: Arc<ModelDirectory>,
        pool: ListenerPool,
        reserved: std::collections::HashSet<String>,
        timeouts: AgentTimeouts,
    ) -> Self {
        Self {
            store,
            registry,
            factory,
            directory,
            pool,
            reserved,
            timeouts,
            served: HashMap::new(),
        }
    }

    /// Serves every stored declaration (before it returns, so a replica
    /// that says it listens serves them), then applies `changes` as they
    /// come and reconciles with the store every `interval` until `changes`
    /// closes. Returns the task.
    pub async fn spawn(
        mut self,
        mut changes: mpsc::Receiver<FleetChange>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.reconcile().await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Some(FleetChange::Applied(row, done)) => {
                            self.apply(row).await;
                            let _ = done.send(());
                        }
                        Some(FleetChange::Removed(name, done)) => {
                            self.remove(&name).await;
                            let _ = done.send(());
                        }
                        None => break,
                    },
                    _ = tick.tick() => self.reconcile().await,
                }
            }
            for name in self.directory.names() {
                self.stop(&name).await;
            }
        })
    }

    /// Brings what runs here in line with the store.
    async fn reconcile(&mut self) {
        let rows = match self.store.list(None).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "listing model agents failed; retrying at the next interval");
                return;
            }
        };
        let stored: BTreeMap<String, ModelAgentRow> = rows
            .into_iter()
            .map(|row| (row.name.clone(), row))
            .collect();
        let gone: Vec<String> = self
            .served
            .keys()
            .filter(|name| !stored.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name).await;
        }
        for (name, row) in stored {
            let current = self.served.get(&name).map(|served| served.version);
            if current != Some(row.version) {
                self.apply(row).await;
            }
        }
    }

    async fn stop(&mut self, name: &str) {
        if let Some(served) = self.served.remove(name) {
            if let Some((agent, socket)) = served.agent {
                self.pool.slots.unserve(name);
                agent.shutdown().await;
                self.pool.give_back(socket).await;
            }
        }
        self.timeouts.remove(name);
        self.directory.remove(name);
    }

    async fn remove(&mut self, name: &str) {
        self.stop(name).await;
        let Ok(id) = AgentId::internal(name) else {
            return;
        };
        match self.registry.deregister(&Actor::system(), &id, None).await {
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => {
                tracing::info!(agent = %name, "model agent stopped");
            }
            Err(error) => {
                tracing::warn!(%error, agent = %name, "deregistering a model agent failed")
            }
        }
    }

    /// (Re)starts `row`'s agent; a failure leaves it listed with the reason.
    async fn apply(&mut self, row: ModelAgentRow) {
        self.stop(&row.name).await;
        let spec = match ModelAgentSpec::from_value(&row.spec) {
            Ok(spec) => spec,
            Err(error) => {
                self.unavailable(&row, false, error.to_string());
                return;
            }
        };
        let caller_pays = spec.api_key == Some(KeyReference::Caller);
        match self.start(&row, &spec).await {
            Ok(started) => {
                self.served.insert(
                    row.name.clone(),
                    Served {
                        version: row.version,
                        agent: Some(started),
                    },
                );
                self.directory.set(
                    &row.name,
                    DirectoryEntry {
                        org: row.org.clone(),
                        version: row.version,
                        caller_pays,
                        problem: None,
                    },
                );
                tracing::info!(agent = %row.name, org = %row.org, version = row.version, "model agent serving");
            }
            Err(problem) => {
                tracing::warn!(agent = %row.name, org = %row.org, %problem, "model agent not served");
                self.unavailable(&row, caller_pays, problem);
            }
        }
    }

    fn unavailable(&mut self, row: &ModelAgentRow, caller_pays: bool, problem: String) {
        self.served.insert(
            row.name.clone(),
            Served {
                version: row.version,
                agent: None,
            },
        );
        self.directory.set(
            &row.name,
            DirectoryEntry {
                org: row.org.clone(),
                version: row.version,
                caller_pays,
                problem: Some(problem),
            },
        );
    }

    async fn start(
        &mut self,
        row: &ModelAgentRow,
        spec: &ModelAgentSpec,
    ) -> Result<(RunningAgent, SocketAddr), String> {
        let id = AgentId::internal(&row.name).map_err(|error| error.to_string())?;
        if self.reserved.contains(&row.name) {
            return Err(format!(
                "{} is one of this server's example agents (serve with --no-examples to replace it)",
                row.name
            ));
        }
        match self.registry.get(&id).await {
            Ok(existing) if existing.deleted_at.is_none() && existing.org != row.org => {
                return Err(format!(
                    "the name {} is registered to {} already",
                    row.name, existing.org
                ));
            }
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => {}
            Err(error) => return Err(format!("reading the registry: {error}")),
        }
        let parts = self
            .factory
            .build(&row.org, spec)
            .await
            .map_err(|error| format!("{error:#}"))?;
        let timeout = parts.timeout;
        let listener = self
            .pool
            .take()
            .ok_or_else(|| "every loopback slot is in use (models.max_agents)".to_owned())?;
        let socket = listener
            .local_addr()
            .map_err(|error| format!("reading a loopback slot: {error}"))?;
        let running = match convergio_agents::spawn_logic(
            parts.logic,
            parts.card_template,
            listener,
            ServeOptions {
                gate: Some(self.pool.gate.clone()),
                ..ServeOptions::default()
            },
        )
        .await
        {
            Ok(running) => running,
            Err(error) => {
                self.pool.give_back(socket).await;
                return Err(format!("starting the agent: {error}"));
            }
        };
        // Set before the route exists, so no call waits the default.
        self.timeouts.set(&row.name, timeout + TIMEOUT_MARGIN);
        let registered = self
            .registry
            .upsert_system(Registration {
                name: Some(row.name.clone()),
                org: Some(row.org.clone()),
                role: Some(AgentRole::Worker),
                card: running.card(),
                upstreams: None,
                trust: None,
            })
            .await;
        if let Err(error) = registered {
            self.timeouts.remove(&row.name);
            running.shutdown().await;
            self.pool.give_back(socket).await;
            return Err(format!("registering the agent: {error}"));
        }
        self.pool.slots.serve(&row.name, socket);
        Ok((running, socket))
    }
}

// === the declarations directory ===

/// What the directory held at the last look: file → (agent name, text).
type Seen = HashMap<PathBuf, (String, String)>;

/// Loads every `*.yaml`/`*.yml` declaration in `dir` into `agents` (as the
/// deployment's organisation `org`) now, then looks again every `interval`:
/// a changed file is applied again, a removed file's agent deleted. An
/// invalid file is logged (with each violation's pointer) and skipped.
pub async fn watch_agents_dir(
    dir: PathBuf,
    interval: Duration,
    agents: Arc<ModelAgents>,
    org: String,
) -> tokio::task::JoinHandle<()> {
    let mut seen = Seen::new();
    scan(&dir, &agents, &org, &mut seen).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            scan(&dir, &agents, &org, &mut seen).await;
        }
    })
}

/// The declaration files of `dir`, by path.
fn declaration_files(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let yaml = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "yaml" | "yml"));
        if yaml && path.is_file() {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    files.insert(path, text);
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "reading a model agent declaration failed")
                }
            }
        }
    }
    Ok(files)
}

async fn scan(dir: &Path, agents: &ModelAgents, org: &str, seen: &mut Seen) {
    let files = match declaration_files(dir) {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "reading the model agents directory failed");
            return;
        }
    };
    let removed: Vec<PathBuf> = seen
        .keys()
        .filter(|path| !files.contains_key(*path))
        .cloned()
        .collect();
    for path in removed {
        if let Some((name, _)) = seen.remove(&path) {
            match agents.delete(org, &name).await {
                Ok(_) => {
                    tracing::info!(file = %path.display(), agent = %name, "declaration file removed; agent deleted")
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "deleting a model agent failed")
                }
            }
        }
    }
    for (path, text) in files {
        if seen.get(&path).is_some_and(|(_, old)| *old == text) {
            continue;
        }
        match load_file(agents, org, &text).await {
            Ok(name) => {
                tracing::info!(file = %path.display(), agent = %name, "model agent declaration loaded");
                seen.insert(path, (name, text));
            }
            Err(problem) => {
                tracing::warn!(file = %path.display(), %problem, "invalid model agent declaration skipped");
                // Remember the text, so an unchanged invalid file is not
                // reported again at every look.
                let name = seen
                    .get(&path)
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default();
                seen.insert(path, (name, text));
            }
        }
    }
}

/// Applies one file's declaration unless the store holds the same; returns
/// the agent's name.
async fn load_file(agents: &ModelAgents, org: &str, text: &str) -> Result<String, String> {
    let document =
        crate::model_agents::declaration_from_text(text).map_err(|error| format!("{error:#}"))?;
    let spec = ModelAgentSpec::from_value(&document).map_err(|error| error.to_string())?;
    let stored = agents
        .get(&spec.name)
        .await
        .map_err(|error| error.to_string())?;
    if stored.is_some_and(|row| row.org == org && row.spec == spec.to_value()) {
        return Ok(spec.name);
    }
    agents
        .put(org, &spec.name, &document)
        .await
        .map_err(|error| error.to_string())?;
    Ok(spec.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_leave_tokens_until_the_cost_is_spent() {
        let used = UsageTotals {
            tokens_in: 60,
            tokens_out: 30,
            cost_micros: 1_000_000,
        };
        let tokens = DailyBudget {
            daily_tokens: Some(100),
            daily_cost: None,
        };
        assert_eq!(left(tokens, used), Allowance::Tokens(10));
        let cost = DailyBudget {
            daily_tokens: Some(100),
            daily_cost: Some(1.0),
        };
        assert_eq!(left(cost, used), Allowance::Tokens(0));
        let none = DailyBudget::default();
        assert_eq!(left(none, used), Allowance::Unlimited);
        let over = UsageTotals {
            tokens_in: 500,
            ..used
        };
        assert_eq!(left(tokens, over), Allowance::Tokens(0));
    }

    #[test]
    fn retry_after_reaches_the_next_utc_day() {
        let seconds = seconds_until_tomorrow();
        assert!((1..=86_400).contains(&seconds), "{seconds}");
        assert_eq!(today().len(), 10);
    }

    #[test]
    fn the_payer_is_the_owner_unless_callers_bring_their_keys() {
        let directory = ModelDirectory::default();
        let entry = |caller_pays| DirectoryEntry {
            org: "acme.example".to_owned(),
            version: 1,
            caller_pays,
            problem: None,
        };
        directory.set("own", entry(false));
        directory.set("byok", entry(true));
        let caller = Principal {
            subject: "bob".to_owned(),
            org: Some("other.example".to_owned()),
            scopes: Vec::new(),
            method: convergio_schemas::AuthMethod::ApiKey,
        };
        assert_eq!(
            directory.payer("own", &caller).as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            directory.payer("byok", &caller).as_deref(),
            Some("other.example")
        );
        assert_eq!(directory.payer("echo", &caller), None);
    }
}
