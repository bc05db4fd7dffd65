//! Decisions already taken against one active policy set (issue #25).
//!
//! A Cedar decision is a pure function of the principal (subject,
//! organisation, scopes, authentication method), the action, the resource's
//! attributes, the request context and the policy set. The gateway asks the
//! same question again and again (the same caller sending to the same
//! agent), so each active set keeps the answers it gave, keyed by all of
//! those inputs:
//! - the policy set: the cache lives in the active set itself, so an
//!   activation, a rollback or the watcher installing another replica's
//!   version starts from an empty cache;
//! - the resource by its attributes (organisation, trust, role, tags,
//!   opt-in), not by a version number: a trust change or a re-registration
//!   makes a different key at once, whoever wrote it;
//! - the principal by everything policy sees of it; a revoked or expired
//!   credential never reaches the question (authentication refuses it), and
//!   a key's scopes cannot change under its id;
//! - the context whole, except `now` when no policy of the set mentions
//!   `now` (then the answer cannot depend on it).
//!
//! An entry is found by a 64-bit fingerprint of the inputs and used only
//! when its stored inputs equal the question's, so a fingerprint collision
//! costs an evaluation, never a wrong answer. The cache is bounded: when
//! full it is emptied and refilled by the questions still being asked.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use foldhash::fast::RandomState;

use convergio_schemas::Principal;

use super::{Action, AuthzRequest, Decision, RequestContext, Resource};

/// The most decisions one active set keeps.
pub(super) const MAX_CACHED_DECISIONS: usize = 16_384;

/// One answered question, with the inputs that make it reusable.
#[derive(Debug)]
struct CachedDecision {
    principal: Principal,
    action: Action,
    resource: Resource,
    context: RequestContext,
    decision: Decision,
}

/// The decisions of one active set (module docs).
#[derive(Debug)]
pub(super) struct DecisionCache {
    /// Whether some policy of the set mentions `now`.
    uses_now: bool,
    /// Seeds the fingerprint: foldhash, as hashbrown uses, at a fraction of
    /// SipHash's cost; a collision only costs an evaluation (module docs).
    seed: RandomState,
    entries: RwLock<HashMap<u64, Arc<CachedDecision>, RandomState>>,
}

// === impl DecisionCache ===

impl DecisionCache {
    /// An empty cache for a set whose policies do (`uses_now`) or do not
    /// mention `now`.
    pub(super) fn new(uses_now: bool) -> Self {
        Self {
            uses_now,
            seed: RandomState::default(),
            entries: RwLock::new(HashMap::default()),
        }
    }

    /// The fingerprint of `request` (module docs).
    pub(super) fn fingerprint(&self, request: &AuthzRequest<'_>) -> u64 {
        let mut hasher = self.seed.build_hasher();
        request.principal.hash(&mut hasher);
        request.action.hash(&mut hasher);
        request.resource.hash(&mut hasher);
        let context = request.context;
        context.a2a_method.hash(&mut hasher);
        context.skill.hash(&mut hasher);
        context.graph_run.hash(&mut hasher);
        context.loopback.hash(&mut hasher);
        context.namespace_agent.hash(&mut hasher);
        if self.uses_now {
            context.now.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The decision taken before for exactly this question, if any.
    pub(super) fn get(&self, fingerprint: u64, request: &AuthzRequest<'_>) -> Option<Decision> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let cached = entries.get(&fingerprint)?;
        self.same_question(cached, request)
            .then(|| cached.decision.clone())
    }

    /// Remembers `decision` as the answer to `request`.
    pub(super) fn insert(&self, fingerprint: u64, request: &AuthzRequest<'_>, decision: &Decision) {
        let cached = Arc::new(CachedDecision {
            principal: request.principal.clone(),
            action: request.action,
            resource: request.resource.clone(),
            context: request.context.clone(),
            decision: decision.clone(),
        });
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if entries.len() >= MAX_CACHED_DECISIONS && !entries.contains_key(&fingerprint) {
            entries.clear();
        }
        entries.insert(fingerprint, cached);
    }

    /// How many decisions are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    fn same_question(&self, cached: &CachedDecision, request: &AuthzRequest<'_>) -> bool {
        let context = request.context;
        cached.action == request.action
            && cached.principal == *request.principal
            && cached.resource == *request.resource
            && cached.context.a2a_method == context.a2a_method
            && cached.context.skill == context.skill
            && cached.context.graph_run == context.graph_run
            && cached.context.loopback == context.loopback
            && cached.context.namespace_agent == context.namespace_agent
            && (!self.uses_now || cached.context.now == context.now)
    }
}
