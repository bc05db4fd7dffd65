//! The registry service: the rules around the store. It validates cards,
//! builds records from registrations, enforces the trust ladder, and keeps a
//! moka cache of hot `get` lookups that every write invalidates.
//!
//! Trust ladder rules (ARCHITECTURE.md, "Trust ladder"):
//! - a new registration starts at `registered`; only the system actor (the
//!   server registering its own agents) may start at `internal`;
//! - only administrators change trust, always with a reason (1 to 1000
//!   characters), and every change is recorded with who, when and why;
//! - `verified` means the card carries a valid signature by a key of its
//!   owning organisation ([`OrgKeys`]): a registration whose card verifies
//!   starts at `verified` by itself; an update of a `registered` agent whose
//!   new card verifies is raised to `verified` (recorded as a trust change);
//!   a `verified` agent's card must keep verifying (an unsigned update is
//!   refused: lower its trust first); an administrator may set `verified`
//!   only on a card that verifies;
//! - a card with a signature that fails with a key of its organisation
//!   (tampered or forged) is refused on every write, at every trust level;
//!   a signature by a key we do not hold (unknown, expired, revoked) is
//!   neither: the card is stored, unverified;
//! - `internal` is only for agents of this registry's own organisation; an
//!   agent the server hosts for another organisation (a model, graph or
//!   plugin agent of it) starts where that organisation's own registration
//!   would, and is named `convergio://agents/{name}` like every agent served
//!   at `/agents/{name}` ([`Registry::upsert_system`]);
//! - until gateway security lands, every write needs an administrator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use convergio_auth::card_signature::{verify_card, CardCheck, CardKey};
use convergio_schemas::ids::AgentIdError;
use convergio_schemas::{validate, AgentId, AgentRole, SchemaId, TrustLevel, Violation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    self, default_name, Actor, AgentRecord, Registration, TaskRoute, TrustChange, Upstream,
};
use crate::store::{DiscoveryQuery, Page, Store};
use crate::{RegistryError, Result};

/// The longest accepted trust-change reason, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// The registry's settings; part of the server's YAML config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// This deployment's organisation domain: its agents get
    /// `convergio://agents/<name>` ids. Default `convergio.local`.
    pub org_domain: String,
    /// How many records the lookup cache holds. Default 10 000.
    pub cache_capacity: u64,
    /// How long a cached record may live, in seconds. Default 300.
    pub cache_ttl_seconds: u64,
    /// The largest accepted agent card, in bytes of JSON. Default 256 KiB.
    pub max_card_bytes: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            org_domain: "convergio.local".to_owned(),
            cache_capacity: 10_000,
            cache_ttl_seconds: 300,
            max_card_bytes: 256 * 1024,
        }
    }
}

/// The public keys each organisation signs its agent cards with. The local
/// organisation's own key and the pinned keys of peers plug in here; the
/// registry asks on every write, so a rotated or revoked key takes effect
/// on the next write.
pub trait OrgKeys: Send + Sync {
    /// The card-signing keys of `org` (lowercase domain); empty when none
    /// are known. Expired and revoked keys may be included: they are marked
    /// and never used.
    fn keys_for(&self, org: &str) -> Vec<CardKey>;
}

/// Knows no keys: no card is ever `verified` (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOrgKeys;

impl OrgKeys for NoOrgKeys {
    fn keys_for(&self, _org: &str) -> Vec<CardKey> {
        Vec::new()
    }
}

/// A fixed map from organisation to keys (configured keys and tests).
#[derive(Debug, Clone, Default)]
pub struct StaticOrgKeys {
    keys: std::collections::HashMap<String, Vec<CardKey>>,
}

// === impl StaticOrgKeys ===

impl StaticOrgKeys {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` to `org`'s keys.
    pub fn with_key(mut self, org: &str, key: CardKey) -> Self {
        self.keys
            .entry(org.trim().to_ascii_lowercase())
            .or_default()
            .push(key);
        self
    }
}

impl OrgKeys for StaticOrgKeys {
    fn keys_for(&self, org: &str) -> Vec<CardKey> {
        self.keys.get(org).cloned().unwrap_or_default()
    }
}

/// Decides whether the gateway may connect to an upstream URL (the SSRF
/// guard, implemented by the gateway). Asked for every upstream of every
/// registration and update, except the server's own agents.
///
/// A required constructor argument of [`Registry`]: a registry cannot be
/// built without deciding which upstreams it accepts (issue #16: the check
/// used to be attached after construction, and a registry nobody attached
/// one to accepted every address).
#[async_trait::async_trait]
pub trait UpstreamCheck: Send + Sync {
    /// `Ok` when `url` may be an upstream; otherwise why not (its message
    /// is shown to the caller at the URL's pointer).
    async fn check(&self, url: &str) -> std::result::Result<(), crate::error::UpstreamRefusal>;
}

/// Accepts every upstream URL. For tools and tests that register only
/// agents they trust, chosen explicitly; a server passes the gateway's SSRF
/// guard instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyUpstream;

#[async_trait::async_trait]
impl UpstreamCheck for AnyUpstream {
    async fn check(&self, _url: &str) -> std::result::Result<(), crate::error::UpstreamRefusal> {
        Ok(())
    }
}

/// What the signatures of a card to be stored say about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signed {
    /// Verified with this key of the owning organisation.
    ByOwner { kid: String },
    /// Unsigned, or signed by keys we cannot use.
    NotVerified { why: String },
}

/// One change the registry made, reported to the [`ChangeHook`] after the
/// change committed (the audit log records it).
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// An agent was registered (or registered again after deregistration).
    Registered {
        /// Who registered it.
        actor: Actor,
        /// The new record's id, trust and version.
        record: Box<AgentRecord>,
    },
    /// An agent's card, role or upstreams were replaced.
    Updated {
        /// Who updated it.
        actor: Actor,
        /// The new record.
        record: Box<AgentRecord>,
    },
    /// One of the server's own agents moved to a new address (its loopback
    /// port at this start); card and upstreams changed in place, the
    /// version did not.
    UpstreamsRefreshed {
        /// Who refreshed it (the server).
        actor: Actor,
        /// The refreshed record.
        record: Box<AgentRecord>,
    },
    /// An agent was deregistered.
    Deregistered {
        /// Who deregistered it.
        actor: Actor,
        /// The deregistered record.
        record: Box<AgentRecord>,
    },
    /// An agent's trust level changed.
    TrustChanged {
        /// The change, with who, from, to and why.
        change: TrustChange,
        /// The record's version after the change.
        version: i64,
    },
}

/// Told about every committed registry change. The gateway plugs the audit
/// log in here; the registry itself only depends on this trait.
pub trait ChangeHook: Send + Sync {
    /// Called once per committed change, after the write returned.
    fn changed(&self, change: RegistryChange);
}

/// The registry: cheap to clone, shared by the API and the gateway.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: RegistryConfig,
    org_keys: Arc<dyn OrgKeys>,
    cache: moka::sync::Cache<AgentId, Arc<AgentRecord>>,
    /// Bumped by every write; a lookup caches its result only if no write
    /// happened while it read the store (see [`Registry::get`]).
    epoch: AtomicU64,
    /// Orders cache fills against invalidations.
    fill_lock: Mutex<()>,
    /// Where committed changes are reported, if anywhere.
    change_hook: Option<Arc<dyn ChangeHook>>,
    /// Which upstream URLs are acceptable.
    upstream_check: Arc<dyn UpstreamCheck>,
}

/// Builds a [`Registry`]: the store, the settings and the upstream check
/// are required ([`Registry::builder`]); organisation keys and a change
/// hook are optional. Every collaborator is fixed before the registry
/// exists, so none can be missing, or replaced, while it serves.
pub struct RegistryBuilder {
    store: Arc<dyn Store>,
    config: RegistryConfig,
    upstream_check: Arc<dyn UpstreamCheck>,
    org_keys: Arc<dyn OrgKeys>,
    change_hook: Option<Arc<dyn ChangeHook>>,
}

// === impl RegistryBuilder ===

impl RegistryBuilder {
    /// Checks card signatures against the owning organisation's keys from
    /// `org_keys` (default: none known, so no card is ever `verified`).
    pub fn org_keys(mut self, org_keys: Arc<dyn OrgKeys>) -> Self {
        self.org_keys = org_keys;
        self
    }

    /// Reports every committed change to `hook` (default: nowhere).
    pub fn change_hook(mut self, hook: Arc<dyn ChangeHook>) -> Self {
        self.change_hook = Some(hook);
        self
    }

    /// The registry.
    pub fn build(self) -> Registry {
        let config = self.config;
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(Duration::from_secs(config.cache_ttl_seconds.max(1)))
            .build();
        Registry {
            inner: Arc::new(Inner {
                store: self.store,
                config,
                org_keys: self.org_keys,
                cache,
                epoch: AtomicU64::new(0),
                fill_lock: Mutex::new(()),
                change_hook: self.change_hook,
                upstream_check: self.upstream_check,
            }),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("backend", &self.inner.store.backend())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

// === impl Registry ===

impl Registry {
    /// A registry over `store` that refuses the upstreams `upstream_check`
    /// refuses, knows no organisation keys (no card is ever `verified`) and
    /// reports its changes nowhere; see [`Registry::builder`] for those.
    pub fn new(
        store: Arc<dyn Store>,
        config: RegistryConfig,
        upstream_check: Arc<dyn UpstreamCheck>,
    ) -> Registry {
        Self::builder(store, config, upstream_check).build()
    }

    /// A builder of a registry over `store` that refuses the upstreams
    /// `upstream_check` refuses.
    pub fn builder(
        store: Arc<dyn Store>,
        config: RegistryConfig,
        upstream_check: Arc<dyn UpstreamCheck>,
    ) -> RegistryBuilder {
        RegistryBuilder {
            store,
            config,
            upstream_check,
            org_keys: Arc::new(NoOrgKeys),
            change_hook: None,
        }
    }

    /// Refuses `record` if an upstream URL fails the [`UpstreamCheck`]. The
    /// server's own agents are exempt: it started them itself, and the
    /// gateway's connector allows exactly their sockets.
    async fn check_upstream_urls(&self, actor: &Actor, record: &AgentRecord) -> Result<()> {
        let check = &self.inner.upstream_check;
        if actor.is_system() {
            return Ok(());
        }
        for (index, upstream) in record.upstreams.iter().enumerate() {
            // An upstream that is kept but never connected to (0.3 gRPC)
            // is nobody's risk, and refusing it would refuse an agent that
            // is reachable over its other interfaces.
            let Some(url) = connect_url(
                &upstream.protocol_binding,
                &upstream.protocol_version,
                &upstream.url,
            ) else {
                continue;
            };
            check
                .check(&url)
                .await
                .map_err(|source| RegistryError::UpstreamRefused { index, source })?;
        }
        Ok(())
    }

    fn report(&self, change: impl FnOnce() -> RegistryChange) {
        if let Some(hook) = &self.inner.change_hook {
            hook.changed(change());
        }
    }

    /// The record a registration would create (trust `registered`), without
    /// storing it: what authorisation decides on before a registration.
    pub fn planned_record(&self, registration: Registration) -> Result<AgentRecord> {
        self.build_record(registration, TrustLevel::Registered)
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Registers a new agent (admins only). Its trust starts at `registered`.
    pub async fn register(&self, actor: &Actor, registration: Registration) -> Result<AgentRecord> {
        require_admin(actor, "registering an agent")?;
        let record = self.new_record(actor, registration)?;
        self.insert_new(actor, record, None).await
    }

    /// Registers a new agent straight at `level` (admins only; federation
    /// sync gives a peer's agent its derived trust this way): the trust
    /// change from `registered` is checked like [`Registry::set_trust`] and
    /// stored with the record in one transaction, so no reader ever sees the
    /// agent at `registered` first.
    pub async fn register_at_trust(
        &self,
        actor: &Actor,
        registration: Registration,
        level: TrustLevel,
        reason: &str,
    ) -> Result<AgentRecord> {
        require_admin(actor, "registering an agent")?;
        let mut record = self.new_record(actor, registration)?;
        let change = if record.trust == level {
            None
        } else {
            let change = self.trust_change(actor, &record, level, reason)?;
            record.trust = level;
            Some(change)
        };
        self.insert_new(actor, record, change).await
    }

    /// The version-1 record `registration` describes, at the trust a new
    /// registration starts at (raised to `verified` by its owner's signature).
    fn new_record(&self, actor: &Actor, registration: Registration) -> Result<AgentRecord> {
        let trust = self.initial_trust(actor, &registration)?;
        self.with_signed_trust(self.build_record(registration, trust)?)
    }

    /// Stores a new `record` (with `change`, its trust against where it
    /// started, in the same transaction) and reports both.
    async fn insert_new(
        &self,
        actor: &Actor,
        record: AgentRecord,
        change: Option<TrustChange>,
    ) -> Result<AgentRecord> {
        self.check_upstream_urls(actor, &record).await?;
        let result = self
            .inner
            .store
            .insert_with_trust_change(&record, change.as_ref())
            .await;
        self.invalidate(&record.id);
        if let Ok(stored) = &result {
            self.report(|| RegistryChange::Registered {
                actor: actor.clone(),
                record: Box::new(stored.clone()),
            });
            if let Some(change) = change {
                self.report(|| RegistryChange::TrustChanged {
                    change,
                    version: stored.version,
                });
            }
        }
        result
    }

    /// Registers many agents in one transaction (seeding and benches); the
    /// same rules as [`Registry::register`] apply to each.
    pub async fn bulk_register(
        &self,
        actor: &Actor,
        registrations: Vec<Registration>,
    ) -> Result<u64> {
        require_admin(actor, "registering agents")?;
        let mut records = Vec::with_capacity(registrations.len());
        for registration in registrations {
            let record = self.new_record(actor, registration)?;
            self.check_upstream_urls(actor, &record).await?;
            records.push(record);
        }
        let result = self.inner.store.bulk_insert(&records).await;
        for record in &records {
            self.invalidate(&record.id);
        }
        if result.is_ok() {
            for record in records {
                self.report(|| RegistryChange::Registered {
                    actor: actor.clone(),
                    record: Box::new(record),
                });
            }
        }
        result
    }

    /// Registers or refreshes an agent this server hosts (an example,
    /// model, graph or plugin agent): on every start, its card, role and
    /// upstreams are brought up to date. A new version only if something
    /// but the address changed: the server assigns its agents a loopback
    /// port at each start, and a new port is not a new agent, so a card
    /// that differs only in interface URLs is refreshed in place (one
    /// identity across restarts, issue #14).
    ///
    /// The agent is served by this gateway at `/agents/{name}` whatever
    /// organisation owns it, so its id is always `convergio://agents/{name}`
    /// (one namespace of names per deployment), with the owner in `org`.
    ///
    /// Its trust is derived here from the owning organisation rather than
    /// passed in by each fleet, because the trust ladder is this registry's
    /// to enforce and the three fleets would otherwise each repeat (or
    /// forget) the same rule:
    /// - an agent of this deployment's organisation is `internal`, and is
    ///   put back to `internal` at each start;
    /// - an agent hosted for another organisation gets exactly what that
    ///   organisation registering it itself would: `registered`, or
    ///   `verified` when its card carries a valid signature of one of that
    ///   organisation's keys, never `internal` (which only this deployment's
    ///   own agents may be). A refresh keeps the trust it has, so what an
    ///   administrator set (`trusted`, `untrusted`) survives a restart.
    pub async fn upsert_system(&self, registration: Registration) -> Result<AgentRecord> {
        let actor = Actor::system();
        let mut registration = registration;
        let own = registration.org.as_deref().is_none_or(|org| {
            org.trim()
                .eq_ignore_ascii_case(&self.inner.config.org_domain)
        });
        let starting = if own {
            TrustLevel::Internal
        } else {
            TrustLevel::Registered
        };
        registration.trust = None;
        let wanted = self.with_signed_trust(self.build_record_reached(
            registration.clone(),
            starting,
            Reached::Here,
        )?)?;
        let existing = match self.inner.store.get(&wanted.id, None).await {
            Ok(existing) if !existing.is_deleted() => Some(existing),
            Ok(_) | Err(RegistryError::AgentNotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        let Some(mut record) = existing else {
            return self.insert_new(&actor, wanted, None).await;
        };
        if record.org != wanted.org {
            // One name per deployment: another organisation's live agent
            // keeps it.
            return Err(RegistryError::AgentExists {
                agent_id: record.id.to_string(),
            });
        }
        let changed = record.card != wanted.card
            || record.role != wanted.role
            || record.upstreams != wanted.upstreams;
        let moved_only = record.role == wanted.role
            && without_addresses(&record.card) == without_addresses(&wanted.card)
            && upstreams_without_addresses(&record.upstreams)
                == upstreams_without_addresses(&wanted.upstreams);
        if changed && moved_only {
            let id = record.id.clone();
            let result = self
                .inner
                .store
                .refresh_upstreams(&id, record.version, &wanted)
                .await;
            self.invalidate(&id);
            record = result?;
            self.report(|| RegistryChange::UpstreamsRefreshed {
                actor: actor.clone(),
                record: Box::new(record.clone()),
            });
        } else if changed {
            record = self
                .update(&actor, &record.id.clone(), record.version, registration)
                .await?;
        }
        if own && record.trust != TrustLevel::Internal {
            record = self
                .set_trust(
                    &actor,
                    &record.id.clone(),
                    TrustLevel::Internal,
                    "the server's own agent, refreshed at start",
                    Some(record.version),
                )
                .await?;
        }
        Ok(record)
    }

    /// The live agent with `id`, from the cache when possible.
    ///
    /// A read after a completed write never sees the old record: writers bump
    /// the epoch and invalidate under `fill_lock`, and a lookup caches what it
    /// read only if the epoch did not move while it read.
    pub async fn get(&self, id: &AgentId) -> Result<AgentRecord> {
        self.get_shared(id).await.map(Arc::unwrap_or_clone)
    }

    /// Like [`Registry::get`], without copying the record: hot readers (the
    /// gateway routes every call through this) share the cached one. A write
    /// replaces the cached record, never changes it, so a caller may key
    /// what it derives from a record on the record's identity
    /// (`Arc::ptr_eq`).
    pub async fn get_shared(&self, id: &AgentId) -> Result<Arc<AgentRecord>> {
        if let Some(record) = self.inner.cache.get(id) {
            return Ok(record);
        }
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        let record = Arc::new(self.inner.store.get(id, None).await?);
        if record.is_deleted() {
            return Err(RegistryError::not_found(id));
        }
        let _guard = self
            .inner
            .fill_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.epoch.load(Ordering::SeqCst) == epoch {
            self.inner.cache.insert(id.clone(), record.clone());
        }
        Ok(record)
    }

    /// An agent at `version` from history (deregistered ones included), or
    /// the live agent when `version` is `None`.
    pub async fn get_version(&self, id: &AgentId, version: Option<i64>) -> Result<AgentRecord> {
        match version {
            None => self.get(id).await,
            Some(version) => self.inner.store.get(id, Some(version)).await,
        }
    }

    /// Replaces a live agent's card, role and upstreams (admins only) if it
    /// is still at `expected_version`. Trust is kept; the old version goes to
    /// history.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &AgentId,
        expected_version: i64,
        registration: Registration,
    ) -> Result<AgentRecord> {
        require_admin(actor, "updating an agent")?;
        let current = self.inner.store.get(id, None).await?;
        if current.is_deleted() {
            return Err(RegistryError::not_found(id));
        }
        if registration
            .trust
            .is_some_and(|trust| trust != current.trust)
        {
            return Err(RegistryError::invalid(
                "an update keeps the trust level; change it with PUT /v1/agents/{id}/trust",
            ));
        }
        let mut registration = registration;
        if let Some(name) = &registration.name {
            if name != id.name() {
                return Err(RegistryError::invalid(format!(
                    "name {:?} does not match the agent id {id}",
                    convergio_schemas::echo(name)
                )));
            }
        }
        registration.name = Some(current.name.clone());
        if let Some(org) = &registration.org {
            if !org.eq_ignore_ascii_case(&current.org) {
                return Err(RegistryError::invalid(format!(
                    "org {org:?} does not match the agent id {id}"
                )));
            }
        }
        registration.org = Some(current.org.clone());
        // An agent hosted here for another organisation keeps its
        // `convergio://` id (see `upsert_system`).
        let reached = match current.id {
            AgentId::Internal { .. } => Reached::Here,
            AgentId::External { .. } => Reached::ByOrg,
        };
        let mut record = self.build_record_reached(registration, current.trust, reached)?;
        record.created_at = current.created_at;
        record.version = expected_version + 1;
        let signed = self.signed_by_owner(&record.org, &record.card)?;
        if let (TrustLevel::Verified, Signed::NotVerified { why }) = (current.trust, &signed) {
            return Err(RegistryError::Verification {
                message: format!(
                    "{id} is verified, so its card must carry a valid signature of {}: {why}; \
                     lower its trust first",
                    record.org
                ),
            });
        }
        self.check_upstream_urls(actor, &record).await?;
        let result = self.inner.store.update(id, expected_version, &record).await;
        self.invalidate(id);
        let stored = result?;
        self.report(|| RegistryChange::Updated {
            actor: actor.clone(),
            record: Box::new(stored.clone()),
        });
        match signed {
            // The new card is signed by its owner: that is what `verified`
            // means, so the agent is raised, recorded like any trust change.
            // Two transactions: a crash between them leaves the agent at
            // `registered`, the safe side.
            Signed::ByOwner { kid } if stored.trust == TrustLevel::Registered => {
                self.set_trust(
                    actor,
                    id,
                    TrustLevel::Verified,
                    &format!(
                        "the card's signature verifies with key {kid:?} of {}",
                        stored.org
                    ),
                    Some(stored.version),
                )
                .await
            }
            _ => Ok(stored),
        }
    }

    /// Deregisters (soft-deletes) a live agent (admins only).
    pub async fn deregister(
        &self,
        actor: &Actor,
        id: &AgentId,
        expected_version: Option<i64>,
    ) -> Result<AgentRecord> {
        require_admin(actor, "deregistering an agent")?;
        let result = self
            .inner
            .store
            .delete(id, expected_version, model::now())
            .await;
        self.invalidate(id);
        if let Ok(stored) = &result {
            self.report(|| RegistryChange::Deregistered {
                actor: actor.clone(),
                record: Box::new(stored.clone()),
            });
        }
        result
    }

    /// Every version of an agent, oldest first.
    pub async fn versions(&self, id: &AgentId) -> Result<Vec<AgentRecord>> {
        self.inner.store.list_versions(id).await
    }

    /// Changes an agent's trust level under the ladder rules (module docs).
    pub async fn set_trust(
        &self,
        actor: &Actor,
        id: &AgentId,
        level: TrustLevel,
        reason: &str,
        expected_version: Option<i64>,
    ) -> Result<AgentRecord> {
        require_admin(actor, "changing trust")?;
        let current = self.inner.store.get(id, None).await?;
        if current.is_deleted() {
            return Err(RegistryError::not_found(id));
        }
        let change = self.trust_change(actor, &current, level, reason)?;
        let result = self
            .inner
            .store
            .set_trust(id, expected_version, &change)
            .await;
        self.invalidate(id);
        if let Ok(stored) = &result {
            self.report(|| RegistryChange::TrustChanged {
                change,
                version: stored.version,
            });
        }
        result
    }

    /// Every trust change of an agent, oldest first.
    pub async fn trust_history(&self, id: &AgentId) -> Result<Vec<TrustChange>> {
        self.inner.store.trust_history(id).await
    }

    /// Finds agents; see [`DiscoveryQuery`].
    pub async fn discover(&self, query: &DiscoveryQuery) -> Result<Page<AgentRecord>> {
        if let Some(org) = &query.org {
            if org.len() > 253 {
                return Err(RegistryError::invalid("org is longer than 253 characters"));
            }
        }
        self.inner.store.discover(query).await
    }

    /// Stores the agent that serves a task (for follow-ups on any replica).
    pub async fn put_task_route(&self, route: &TaskRoute) -> Result<()> {
        self.inner.store.put_task_route(route).await
    }

    /// The agent that serves a task, if known.
    pub async fn get_task_route(&self, task_id: &str) -> Result<Option<TaskRoute>> {
        self.inner.store.get_task_route(task_id).await
    }

    /// The task routes of `owner`, optionally for one agent, by task id.
    pub async fn list_task_routes(
        &self,
        owner: &str,
        agent: Option<&AgentId>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<TaskRoute>> {
        self.inner
            .store
            .list_task_routes(owner, agent, page_size, page_token)
            .await
    }

    /// Which of `task_ids` are `owner`'s tasks on `agent`; reads only those rows.
    pub async fn owned_task_ids(
        &self,
        owner: &str,
        agent: &AgentId,
        task_ids: &[String],
    ) -> Result<Vec<String>> {
        self.inner
            .store
            .owned_task_ids(owner, agent, task_ids)
            .await
    }

    /// How many tasks `owner` has on `agent`.
    pub async fn count_task_routes(&self, owner: &str, agent: &AgentId) -> Result<u64> {
        self.inner.store.count_task_routes(owner, agent).await
    }

    /// The owner of `context_id` at `agent`, which is `owner` if nobody
    /// held it before (see [`Store::claim_context`]).
    pub async fn claim_context(
        &self,
        agent: &AgentId,
        context_id: &str,
        owner: &str,
    ) -> Result<String> {
        self.inner
            .store
            .claim_context(agent, context_id, owner, model::now())
            .await
    }

    /// Turns an agent id as written in a URL into an id: a bare name means an
    /// agent of this organisation.
    pub fn parse_id(&self, text: &str) -> Result<AgentId> {
        let parsed = if text.contains("://") {
            text.parse()
        } else {
            AgentId::internal(text)
        };
        parsed.map_err(|error| RegistryError::invalid(error.to_string()))
    }

    fn invalidate(&self, id: &AgentId) {
        let _guard = self
            .inner
            .fill_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.cache.invalidate(id);
    }

    /// Checks `card`'s signatures against `org`'s keys: a failing one is an
    /// error, whatever else the card carries.
    fn signed_by_owner(&self, org: &str, card: &Value) -> Result<Signed> {
        let keys = self.inner.org_keys.keys_for(org);
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
        match verify_card(card, &keys, now) {
            CardCheck::Verified { kid, .. } => Ok(Signed::ByOwner { kid }),
            CardCheck::Unsigned => Ok(Signed::NotVerified {
                why: "the card is not signed".to_owned(),
            }),
            CardCheck::Unverifiable { reason } => Ok(Signed::NotVerified {
                why: format!("no usable key of {org} verifies it ({reason})"),
            }),
            CardCheck::Invalid { reason } => Err(RegistryError::SignatureInvalid {
                reason: reason.to_string(),
            }),
        }
    }

    /// `record` with its starting trust settled by its card's signatures: a
    /// `registered` (or requested `verified`) start becomes `verified` when
    /// the owner signed the card; a requested `verified` start without that
    /// is refused; a tampered card is refused.
    fn with_signed_trust(&self, mut record: AgentRecord) -> Result<AgentRecord> {
        let signed = self.signed_by_owner(&record.org, &record.card)?;
        match (record.trust, signed) {
            (TrustLevel::Registered | TrustLevel::Verified, Signed::ByOwner { .. }) => {
                record.trust = TrustLevel::Verified;
            }
            (TrustLevel::Verified, Signed::NotVerified { why }) => {
                return Err(RegistryError::Verification {
                    message: format!("{} cannot start verified: {why}", record.id),
                });
            }
            _ => {}
        }
        Ok(record)
    }

    /// Checks moving `current` to `level` under the ladder rules (module
    /// docs) and describes the change.
    fn trust_change(
        &self,
        actor: &Actor,
        current: &AgentRecord,
        level: TrustLevel,
        reason: &str,
    ) -> Result<TrustChange> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RegistryError::invalid("a trust change needs a reason"));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(RegistryError::invalid(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        if level == TrustLevel::Internal && current.org != self.inner.config.org_domain {
            return Err(RegistryError::forbidden(format!(
                "internal trust is only for agents of {}, not {}",
                self.inner.config.org_domain, current.org
            )));
        }
        if level == TrustLevel::Verified {
            if let Signed::NotVerified { why } =
                self.signed_by_owner(&current.org, &current.card)?
            {
                return Err(RegistryError::Verification {
                    message: format!("{} cannot be verified: {why}", current.id),
                });
            }
        }
        Ok(TrustChange {
            agent_id: current.id.clone(),
            from: current.trust,
            to: level,
            actor: actor.clone(),
            reason: reason.to_owned(),
            at: model::now(),
        })
    }

    fn initial_trust(&self, actor: &Actor, registration: &Registration) -> Result<TrustLevel> {
        match registration.trust {
            None | Some(TrustLevel::Registered) => Ok(TrustLevel::Registered),
            // Granted only if the owner's signature verifies (`with_signed_trust`).
            Some(TrustLevel::Verified) => Ok(TrustLevel::Verified),
            Some(TrustLevel::Internal) if actor.is_system() => Ok(TrustLevel::Internal),
            Some(level) => Err(RegistryError::forbidden(format!(
                "a new registration starts at registered, not {level}; \
                 an administrator raises it with PUT /v1/agents/{{id}}/trust"
            ))),
        }
    }

    /// Validates a registration and builds the record it describes
    /// (version 1), reached as its organisation says ([`Reached::ByOrg`]).
    fn build_record(&self, registration: Registration, trust: TrustLevel) -> Result<AgentRecord> {
        self.build_record_reached(registration, trust, Reached::ByOrg)
    }

    /// [`Registry::build_record`] with the form of the id `reached` decides.
    fn build_record_reached(
        &self,
        registration: Registration,
        trust: TrustLevel,
        reached: Reached,
    ) -> Result<AgentRecord> {
        let card_bytes = serde_json::to_vec(&registration.card)
            .map(|bytes| bytes.len())
            .unwrap_or(usize::MAX);
        if card_bytes > self.inner.config.max_card_bytes {
            return Err(RegistryError::InvalidCard {
                violations: vec![Violation {
                    pointer: "/card".to_owned(),
                    message: format!(
                        "the card is {card_bytes} bytes; the limit is {}",
                        self.inner.config.max_card_bytes
                    ),
                }],
            });
        }
        validate(SchemaId::AgentCard, &registration.card).map_err(|violations| {
            RegistryError::InvalidCard {
                violations: violations
                    .into_iter()
                    .map(|violation| Violation {
                        pointer: format!("/card{}", violation.pointer),
                        message: violation.message,
                    })
                    .collect(),
            }
        })?;
        let card_name = registration
            .card
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A refused name or org is a 400 naming the field it came from: the
        // registration's `name`, or the card's `name` it defaults from.
        let name_pointer = if registration.name.is_some() {
            "/name"
        } else {
            "/card/name"
        };
        let name = registration.name.unwrap_or_else(|| default_name(card_name));
        let org = registration
            .org
            .map(|org| org.trim().to_ascii_lowercase())
            .unwrap_or_else(|| self.inner.config.org_domain.clone());
        let id = if org == self.inner.config.org_domain || reached == Reached::Here {
            convergio_schemas::ids::check_org(&org).and_then(|()| AgentId::internal(&name))
        } else {
            AgentId::external(&org, &name)
        }
        .map_err(|error| {
            let pointer = match error {
                AgentIdError::BadName { .. } => name_pointer,
                AgentIdError::BadOrg { .. } | AgentIdError::BadScheme { .. } => "/org",
            };
            RegistryError::InvalidCard {
                violations: vec![Violation {
                    pointer: pointer.to_owned(),
                    message: error.to_string(),
                }],
            }
        })?;
        if trust == TrustLevel::Internal && org != self.inner.config.org_domain {
            return Err(RegistryError::forbidden(format!(
                "internal trust is only for agents of {}",
                self.inner.config.org_domain
            )));
        }
        let explicit = registration.upstreams.is_some();
        let upstreams = match registration.upstreams {
            Some(upstreams) => upstreams,
            None => Upstream::from_card(&registration.card),
        };
        check_upstreams(&upstreams)?;
        check_bindings(&registration.card, &upstreams, explicit)?;
        let now = model::now();
        Ok(AgentRecord {
            id,
            name,
            org,
            role: registration.role.unwrap_or(AgentRole::Worker),
            card: registration.card,
            upstreams,
            trust,
            version: 1,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        })
    }
}

/// How an agent is reached, which decides the form of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// As its organisation says: this deployment's own agents at
    /// `convergio://agents/{name}`, another organisation's through that
    /// organisation's gateway at `external://{org}/agents/{name}`.
    ByOrg,
    /// Served by this gateway at `/agents/{name}` whatever its organisation
    /// (an agent the server hosts for it): `convergio://agents/{name}`.
    Here,
}

fn require_admin(actor: &Actor, what: &str) -> Result<()> {
    if actor.is_admin {
        Ok(())
    } else {
        Err(RegistryError::forbidden(format!(
            "{what} requires an administrator"
        )))
    }
}

/// The `protocolBinding` values a registration may use: the three standard
/// A2A bindings, all forwarded by the gateway (gRPC in 1.0, at `host:port`
/// or an http(s) URL; a 0.3 gRPC interface is kept but never routed to).
/// Anything else — a misspelling such as `JSON-RPC`, a custom binding URI —
/// is refused: the gateway could never reach it, and the caller would only
/// learn so from a failed call.
pub const ACCEPTED_BINDINGS: [&str; 3] = ["JSONRPC", "HTTP+JSON", "GRPC"];

/// The accepted bindings as an error message lists them.
const ACCEPTED_BINDINGS_TEXT: &str = "JSONRPC, HTTP+JSON or GRPC";

/// Whether the gateway can forward to an upstream: JSON-RPC in A2A 1.0 or
/// 0.3, or HTTP+JSON in 1.0, at an http(s) URL, or gRPC in 1.0 at an
/// http(s) URL or a bare `host:port` (the gateway's `Binding` and
/// `RouteTarget::from_card` make the same choice).
fn is_forwardable(binding: &str, version: &str, url: &str) -> bool {
    connect_url(binding, version, url).is_some()
}

/// The URL the gateway connects to for an upstream it forwards to (a gRPC
/// `host:port` is read as `http://host:port`, cleartext HTTP/2), which the
/// [`UpstreamCheck`] judges; `None` for one it never connects to.
fn connect_url(binding: &str, version: &str, url: &str) -> Option<String> {
    let http = url.starts_with("http://") || url.starts_with("https://");
    match (binding, version) {
        ("JSONRPC", "1.0") | ("JSONRPC", "0.3") | ("HTTP+JSON", "1.0") if http => {
            Some(url.to_owned())
        }
        ("GRPC", "1.0") if http => Some(url.to_owned()),
        ("GRPC", "1.0") if !url.is_empty() && !url.contains("://") && !url.contains('/') => {
            Some(format!("http://{url}"))
        }
        _ => None,
    }
}

/// Refuses bindings the gateway cannot speak, in the card's
/// `supportedInterfaces` and in explicit upstreams, and an agent with no
/// upstream the gateway can forward to.
fn check_bindings(card: &Value, upstreams: &[Upstream], explicit: bool) -> Result<()> {
    let mut violations = Vec::new();
    let refused = |binding: &str| {
        format!("protocolBinding {binding:?} is not one the gateway accepts; use {ACCEPTED_BINDINGS_TEXT}")
    };
    let interfaces = card
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, interface) in interfaces.iter().enumerate() {
        if let Some(binding) = interface.get("protocolBinding").and_then(Value::as_str) {
            if !ACCEPTED_BINDINGS.contains(&binding) {
                violations.push(Violation {
                    pointer: format!("/card/supportedInterfaces/{index}/protocolBinding"),
                    message: refused(binding),
                });
            }
        }
    }
    if explicit {
        for (index, upstream) in upstreams.iter().enumerate() {
            let binding = upstream.protocol_binding.as_str();
            if !ACCEPTED_BINDINGS.contains(&binding) {
                violations.push(Violation {
                    pointer: format!("/upstreams/{index}/protocol_binding"),
                    message: refused(binding),
                });
            }
        }
    }
    let usable = upstreams.iter().any(|upstream| {
        is_forwardable(
            &upstream.protocol_binding,
            &upstream.protocol_version,
            &upstream.url,
        )
    });
    if violations.is_empty() && !usable {
        violations.push(Violation {
            pointer: if explicit {
                "/upstreams".to_owned()
            } else {
                "/card/supportedInterfaces".to_owned()
            },
            message: "no interface the gateway can forward to: it needs JSONRPC (protocolVersion \
                      1.0 or 0.3) or HTTP+JSON (1.0) at an http(s) url"
                .to_owned(),
        });
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::InvalidCard { violations })
    }
}

/// `card` without its addresses: every interface's `url`, and the 0.3
/// top-level `url`, blanked.
fn without_addresses(card: &Value) -> Value {
    let mut card = card.clone();
    if let Some(interfaces) = card
        .get_mut("supportedInterfaces")
        .and_then(Value::as_array_mut)
    {
        for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
            interface.insert("url".to_owned(), Value::Null);
        }
    }
    if let Some(object) = card.as_object_mut() {
        if object.contains_key("url") {
            object.insert("url".to_owned(), Value::Null);
        }
    }
    card
}

/// `upstreams` without their URLs.
fn upstreams_without_addresses(upstreams: &[Upstream]) -> Vec<Upstream> {
    upstreams
        .iter()
        .map(|upstream| Upstream {
            url: String::new(),
            ..upstream.clone()
        })
        .collect()
}

fn check_upstreams(upstreams: &[Upstream]) -> Result<()> {
    let mut violations = Vec::new();
    if upstreams.is_empty() {
        violations.push(Violation {
            pointer: "/upstreams".to_owned(),
            message: "an agent needs at least one upstream".to_owned(),
        });
    }
    for (index, upstream) in upstreams.iter().enumerate() {
        let mut field = |name: &str, message: &str| {
            violations.push(Violation {
                pointer: format!("/upstreams/{index}/{name}"),
                message: message.to_owned(),
            });
        };
        if upstream.url.trim().is_empty() || upstream.url.len() > 2048 {
            field("url", "must be 1 to 2048 characters");
        }
        if upstream.protocol_binding.trim().is_empty() {
            field("protocol_binding", "must not be empty");
        }
        let version_ok = upstream
            .protocol_version
            .split_once('.')
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && minor.bytes().all(|b| b.is_ascii_digit())
            });
        if !version_ok {
            field("protocol_version", "must be Major.Minor, e.g. 1.0");
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::InvalidCard { violations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_1_0_upstreams_are_judged_as_the_urls_the_gateway_dials() {
        assert_eq!(
            connect_url("GRPC", "1.0", "10.0.0.1:50051").as_deref(),
            Some("http://10.0.0.1:50051")
        );
        assert_eq!(
            connect_url("GRPC", "1.0", "https://a.example:443").as_deref(),
            Some("https://a.example:443")
        );
        assert_eq!(connect_url("GRPC", "0.3", "a.example:443"), None);
        assert_eq!(connect_url("GRPC", "1.0", "a.example:443/x"), None);
        assert_eq!(connect_url("JSONRPC", "1.0", "a.example:443"), None);
        assert!(is_forwardable("HTTP+JSON", "1.0", "http://a.example/rest"));
    }
}
