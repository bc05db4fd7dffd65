//! The Cedar engine: the active policy set behind an atomically swapped
//! `Arc`, strict validation against the shipped schema, and per-request
//! entity construction.
//!
//! Why an index: Cedar evaluates every policy of a set for each request.
//! At load time the set is split into slices that a request can skip
//! without changing the answer:
//! - by action: a policy whose action scope does not name the requested
//!   action cannot match (unconstrained actions go into every action);
//! - within an action, by the first of: `resource == R` in the scope,
//!   `principal == P` in the scope, or a leading `context.caller_org ==
//!   "o"` conjunct of the first `when` (the shape of per-organisation
//!   grants). Such a policy cannot be satisfied by a request with another
//!   resource, principal or caller organisation, and it cannot error either
//!   (the scope fails first, or `&&` short-circuits on the false leading
//!   conjunct). Every other policy is in the generic slice.
//!
//! A request evaluates the generic slice plus the one slice per key that
//! matches it, and the answers are combined with Cedar's own rule: allow
//! iff some permit is satisfied and no forbid is. `engine/tests.rs` checks
//! the sliced and the whole-set decisions agree over generated requests.
//!
//! Why a cache: the gateway asks the same question on every call of the
//! same caller to the same agent; each active set remembers its answers
//! (`engine/decisions.rs` says what the key holds and why a policy, trust or key
//! change can never be answered from it).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, Principal, TrustLevel};
use serde::{Deserialize, Serialize};

/// Defined with the error that carries it (a leaf module); named here too.
pub use crate::error::PolicyDiagnostic;
use crate::error::{PolicyError, Result};

mod decisions;

use decisions::DecisionCache;

/// The shipped Cedar schema (`policies/schema.cedarschema`).
pub const DEFAULT_SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
/// The shipped example policy set (`policies/example.cedar`), the embedded default.
pub const EXAMPLE_POLICIES: &str = include_str!("../../policies/example.cedar");
/// The minimal set that keeps administrators able to manage policy; what
/// `DELETE /v1/policies` activates.
pub const ADMIN_ONLY_POLICIES: &str = r#"// Administrators only: every other request is denied.
@id("admin-administer-policy")
permit (principal, action == Action::"administer_policy", resource)
when { context.scopes.contains("admin") };
"#;

/// The subject of the synthetic administrator used by the lock-out check.
pub const LOCKOUT_PROBE_SUBJECT: &str = "convergio:lockout-probe";

/// What a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// List or search agents.
    Discover,
    /// Read one agent card.
    ReadCard,
    /// `SendMessage` to an agent.
    SendMessage,
    /// `SendStreamingMessage` / resubscribe.
    Stream,
    /// `GetTask` / `ListTasks`.
    GetTask,
    /// `CancelTask`.
    CancelTask,
    /// Register an agent.
    RegisterAgent,
    /// Update or deregister an agent.
    UpdateAgent,
    /// Change an agent's trust level.
    SetTrust,
    /// Read or change policy, read the audit log.
    AdministerPolicy,
    /// Start a graph run.
    RunGraph,
    /// Store a graph document (a new version of an organisation's graph).
    StoreGraph,
    /// Read a stored graph (and list, validate against, run it by name).
    ReadGraph,
    /// Read the deployment's metrics (`/metrics`).
    ReadMetrics,
    /// Create, update or delete an organisation's model agent declaration
    /// (issue 17).
    ManageModelAgent,
    /// List or read an organisation's model agent declarations.
    ReadModelAgent,
    /// Set, list (names only) or delete an organisation's secrets.
    ManageSecret,
    /// Ask for a plan for a goal (issue 19; the resource is the graph
    /// `plan` of the caller's organisation). Running it is `run_graph`.
    CreatePlan,
    /// List an organisation's memory namespaces, read a namespace and its
    /// items (issue 20).
    ReadMemory,
    /// Create or delete a memory namespace, put or delete its items.
    WriteMemory,
    /// Search a vector memory namespace.
    SearchMemory,
    /// See this deployment's timing of a call it answered for another
    /// organisation (the caller's run trace shows it, issue 18); decided
    /// with the agent called as the resource.
    ShareTimings,
    /// Run a guardrail rule the configuration leaves to policy
    /// (`by_policy: true`, issue 21) on a call to an agent: decided with
    /// the agent called as the resource and the rule in `context.guardrail`,
    /// the payload's way in `context.direction`. Not recorded.
    ApplyGuardrail,
}

// === impl Action ===

impl Action {
    /// Every action.
    pub const ALL: [Action; 23] = [
        Self::Discover,
        Self::ReadCard,
        Self::SendMessage,
        Self::Stream,
        Self::GetTask,
        Self::CancelTask,
        Self::RegisterAgent,
        Self::UpdateAgent,
        Self::SetTrust,
        Self::AdministerPolicy,
        Self::RunGraph,
        Self::StoreGraph,
        Self::ReadGraph,
        Self::ReadMetrics,
        Self::ManageModelAgent,
        Self::ReadModelAgent,
        Self::ManageSecret,
        Self::CreatePlan,
        Self::ReadMemory,
        Self::WriteMemory,
        Self::SearchMemory,
        Self::ShareTimings,
        Self::ApplyGuardrail,
    ];

    /// The Cedar action id (and wire name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::ReadCard => "read_card",
            Self::SendMessage => "send_message",
            Self::Stream => "stream",
            Self::GetTask => "get_task",
            Self::CancelTask => "cancel_task",
            Self::RegisterAgent => "register_agent",
            Self::UpdateAgent => "update_agent",
            Self::SetTrust => "set_trust",
            Self::AdministerPolicy => "administer_policy",
            Self::RunGraph => "run_graph",
            Self::StoreGraph => "store_graph",
            Self::ReadGraph => "read_graph",
            Self::ReadMetrics => "read_metrics",
            Self::ManageModelAgent => "manage_model_agent",
            Self::ReadModelAgent => "read_model_agent",
            Self::ManageSecret => "manage_secret",
            Self::CreatePlan => "create_plan",
            Self::ReadMemory => "read_memory",
            Self::WriteMemory => "write_memory",
            Self::SearchMemory => "search_memory",
            Self::ShareTimings => "share_timings",
            Self::ApplyGuardrail => "apply_guardrail",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
            .ok_or_else(|| PolicyError::InvalidInput(format!("unknown action {text:?}")))
    }
}

/// What a request acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Resource {
    /// One agent, with the attributes policies may look at.
    Agent {
        /// The agent's id.
        id: AgentId,
        /// The owning organisation.
        org: String,
        /// Its trust level.
        trust: TrustLevel,
        /// Its role.
        #[serde(default)]
        role: AgentRole,
        /// Its tags.
        #[serde(default)]
        tags: Vec<String>,
        /// Whether it accepts callers from other organisations.
        #[serde(default)]
        opt_in_external: bool,
    },
    /// An organisation (registering into it).
    Org {
        /// The organisation's domain.
        name: String,
    },
    /// A graph definition.
    Graph {
        /// The graph's id.
        id: String,
        /// The organisation that owns it (policies see it as
        /// `context.target_org`); empty when it has none.
        #[serde(default)]
        org: String,
    },
    /// The policy store.
    Policy,
    /// The deployment itself.
    System,
}

// === impl Resource ===

impl Resource {
    /// A short description for the audit log (`agent:acme/x`, `policy`).
    pub fn describe(&self) -> String {
        match self {
            Self::Agent { id, .. } => format!("agent:{id}"),
            Self::Org { name } => format!("org:{name}"),
            Self::Graph { id, org } if org.is_empty() => format!("graph:{id}"),
            Self::Graph { id, org } => format!("graph:{org}/{id}"),
            Self::Policy => "policy".to_owned(),
            Self::System => "system".to_owned(),
        }
    }
}

/// Per-request facts beyond principal, action and resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContext {
    /// The A2A method (`SendMessage`, …), empty for REST administration.
    #[serde(default)]
    pub a2a_method: Option<String>,
    /// The skill the message names, if any.
    #[serde(default)]
    pub skill: Option<String>,
    /// The graph run the call belongs to, if any.
    #[serde(default)]
    pub graph_run: Option<String>,
    /// Now, in seconds since the Unix epoch.
    #[serde(default)]
    pub now: i64,
    /// Whether the caller connected from a loopback address (this machine).
    #[serde(default)]
    pub loopback: bool,
    /// The guardrail rule asked about (`apply_guardrail`).
    #[serde(default)]
    pub guardrail: Option<String>,
    /// The way the payload travels (`request` or `response`;
    /// `apply_guardrail`).
    #[serde(default)]
    pub direction: Option<String>,
    /// A memory decision's namespace scope (issue 20): the agent whose
    /// memory it is, `""` for the organisation's shared knowledge; `None`
    /// when the decision is about no one namespace.
    #[serde(default)]
    pub namespace_agent: Option<String>,
}

/// One authorisation question.
#[derive(Debug, Clone)]
pub struct AuthzRequest<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// What it wants to do.
    pub action: Action,
    /// On what.
    pub resource: &'a Resource,
    /// With which context.
    pub context: &'a RequestContext,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The ids of the policies that determined the decision (empty for a
    /// default deny).
    pub determining: Vec<String>,
    /// Evaluation errors (a policy that errors is skipped, never allowed).
    pub errors: Vec<String>,
}

/// The active policy set and its index (module docs).
#[derive(Debug)]
struct ActiveSet {
    version: Option<i64>,
    text: String,
    /// The whole set, for reference evaluation.
    full: PolicySet,
    by_action: Vec<ActionSlices>,
    /// The answers given with this set (`decisions` module docs).
    decisions: DecisionCache,
}

/// The policies that may match one action, sliced by scope key.
#[derive(Debug)]
struct ActionSlices {
    generic: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
    by_principal: HashMap<EntityUid, PolicySet>,
    by_caller_org: HashMap<String, PolicySet>,
}

impl ActionSlices {
    fn new() -> Self {
        Self {
            generic: PolicySet::new(),
            by_resource: HashMap::new(),
            by_principal: HashMap::new(),
            by_caller_org: HashMap::new(),
        }
    }

    fn add(&mut self, key: &SliceKey, policy: Policy) {
        let set = match key {
            SliceKey::Generic => &mut self.generic,
            SliceKey::Resource(uid) => self.by_resource.entry(uid.clone()).or_default(),
            SliceKey::Principal(uid) => self.by_principal.entry(uid.clone()).or_default(),
            SliceKey::CallerOrg(org) => self.by_caller_org.entry(org.clone()).or_default(),
        };
        // Ids are unique within the validated set, so adding cannot collide.
        let _ = set.add(policy);
    }
}

/// Which slice a policy belongs to (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SliceKey {
    Generic,
    Resource(EntityUid),
    Principal(EntityUid),
    CallerOrg(String),
}

/// Entity types and action ids, parsed once.
#[derive(Debug)]
struct Names {
    principal: EntityTypeName,
    agent: EntityTypeName,
    org: EntityTypeName,
    graph: EntityTypeName,
    policy: EntityTypeName,
    system: EntityTypeName,
    actions: Vec<EntityUid>,
}

/// The Cedar policy engine. Cheap to share (`Arc<PolicyEngine>`); the active
/// set is swapped atomically, so a decision sees either the old or the new
/// set, never a mix.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    validator: Validator,
    authorizer: Authorizer,
    names: Names,
    active: RwLock<Arc<ActiveSet>>,
}

// === impl PolicyEngine ===

impl PolicyEngine {
    /// An engine for `schema_text` (Cedar schema syntax) with an empty,
    /// deny-everything policy set.
    pub fn new(schema_text: &str) -> Result<Self> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_text).map_err(|error| {
            PolicyError::InvalidSchema {
                message: error.to_string(),
            }
        })?;
        let type_name = |name: &str| {
            EntityTypeName::from_str(name).map_err(|error| PolicyError::InvalidSchema {
                message: error.to_string(),
            })
        };
        let action_type = type_name("Action")?;
        let names = Names {
            principal: type_name("Principal")?,
            agent: type_name("Agent")?,
            org: type_name("Org")?,
            graph: type_name("Graph")?,
            policy: type_name("Policy")?,
            system: type_name("System")?,
            actions: Action::ALL
                .iter()
                .map(|action| {
                    EntityUid::from_type_name_and_id(
                        action_type.clone(),
                        EntityId::new(action.as_str()),
                    )
                })
                .collect(),
        };
        let empty = ActiveSet {
            version: None,
            text: String::new(),
            full: PolicySet::new(),
            by_action: Action::ALL.iter().map(|_| ActionSlices::new()).collect(),
            decisions: DecisionCache::new(false),
        };
        Ok(Self {
            validator: Validator::new(schema.clone()),
            schema,
            authorizer: Authorizer::new(),
            names,
            active: RwLock::new(Arc::new(empty)),
        })
    }

    /// An engine for the shipped schema with the example policies active
    /// (version `None`: not from the database).
    pub fn with_defaults() -> Result<Self> {
        let engine = Self::new(DEFAULT_SCHEMA)?;
        engine.load(None, EXAMPLE_POLICIES)?;
        Ok(engine)
    }

    /// The schema policies are validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Parses `text` and validates it strictly against the schema. Policy ids
    /// come from each policy's `@id` annotation (else `policyN`).
    pub fn validate(&self, text: &str) -> std::result::Result<PolicySet, Vec<PolicyDiagnostic>> {
        let parsed = PolicySet::from_str(text).map_err(|errors| {
            errors
                .iter()
                .map(|error| diagnostic_from(text, error, error.to_string()))
                .collect::<Vec<_>>()
        })?;
        if parsed.templates().next().is_some() {
            return Err(vec![PolicyDiagnostic {
                line: 1,
                column: 1,
                message: "policy templates are not supported; write static policies".to_owned(),
            }]);
        }
        let mut named = PolicySet::new();
        let mut diagnostics = Vec::new();
        for policy in parsed.policies() {
            let policy = match policy.annotation("id") {
                Some(id) => policy.new_id(PolicyId::new(id)),
                None => policy.clone(),
            };
            let id = policy.id().to_string();
            if let Err(error) = named.add(policy) {
                let offset = text.rfind(&format!("\"{id}\"")).unwrap_or(0);
                let (line, column) = line_column(text, offset);
                diagnostics.push(PolicyDiagnostic {
                    line,
                    column,
                    message: error.to_string(),
                });
            }
        }
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }
        let result = self.validator.validate(&named, ValidationMode::Strict);
        let diagnostics: Vec<_> = result
            .validation_errors()
            .map(|error| {
                diagnostic_from(
                    text,
                    error,
                    format!("policy {:?}: {error}", error.policy_id().to_string()),
                )
            })
            .collect();
        if diagnostics.is_empty() {
            Ok(named)
        } else {
            Err(diagnostics)
        }
    }

    /// Validates `text` and makes it active as `version`.
    pub fn load(&self, version: Option<i64>, text: &str) -> Result<()> {
        let set = self
            .validate(text)
            .map_err(|diagnostics| PolicyError::InvalidPolicy { diagnostics })?;
        self.install(version, text, &set);
        Ok(())
    }

    /// Makes an already validated set active as `version`.
    pub fn install(&self, version: Option<i64>, text: &str, set: &PolicySet) {
        let active = Arc::new(self.index(version, text, set));
        let mut slot = self
            .active
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        *slot = active;
    }

    /// The version of the active set (`None` before any stored set is loaded).
    pub fn active_version(&self) -> Option<i64> {
        self.current().version
    }

    /// The text of the active set.
    pub fn active_text(&self) -> String {
        self.current().text.clone()
    }

    /// Decides `request` against the active set: the answer the set gave
    /// to the same question before, else a fresh evaluation (module docs).
    pub fn authorize(&self, request: &AuthzRequest<'_>) -> Decision {
        let active = self.current();
        let fingerprint = active.decisions.fingerprint(request);
        if let Some(decision) = active.decisions.get(fingerprint, request) {
            return decision;
        }
        let decision = self.decide(&active, request);
        active.decisions.insert(fingerprint, request, &decision);
        decision
    }

    /// Decides `request` against the active set without its cache: what
    /// [`PolicyEngine::authorize`] must always agree with (tests, benches).
    pub fn authorize_uncached(&self, request: &AuthzRequest<'_>) -> Decision {
        let active = self.current();
        self.decide(&active, request)
    }

    /// Decides `request` against the whole active set, without the index:
    /// the reference the index must agree with (tests, the bench).
    pub fn authorize_unindexed(&self, request: &AuthzRequest<'_>) -> Decision {
        let active = self.current();
        match self.build(request) {
            Ok((cedar_request, entities)) => {
                let response =
                    self.authorizer
                        .is_authorized(&cedar_request, &active.full, &entities);
                let diagnostics = response.diagnostics();
                let mut determining: Vec<String> =
                    diagnostics.reason().map(ToString::to_string).collect();
                determining.sort();
                let mut errors: Vec<String> =
                    diagnostics.errors().map(ToString::to_string).collect();
                errors.sort();
                Decision {
                    allowed: response.decision() == cedar_policy::Decision::Allow,
                    determining,
                    errors,
                }
            }
            Err(message) => Decision {
                allowed: false,
                determining: Vec::new(),
                errors: vec![message],
            },
        }
    }

    /// Whether `set`, if activated, still lets an administrator (any
    /// principal with scope `admin`) administer policy: the lock-out check.
    pub fn keeps_an_administrator(&self, set: &PolicySet) -> bool {
        let candidate = self.index(None, "", set);
        let probes = [AuthMethod::Jwt, AuthMethod::AdminToken, AuthMethod::Mtls];
        probes.into_iter().any(|method| {
            let probe = Principal {
                subject: LOCKOUT_PROBE_SUBJECT.to_owned(),
                org: None,
                scopes: vec!["admin".to_owned()],
                method,
            };
            let context = RequestContext::default();
            let request = AuthzRequest {
                principal: &probe,
                action: Action::AdministerPolicy,
                resource: &Resource::Policy,
                context: &context,
            };
            self.decide(&candidate, &request).allowed
        })
    }

    fn current(&self) -> Arc<ActiveSet> {
        self.active
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn index(&self, version: Option<i64>, text: &str, set: &PolicySet) -> ActiveSet {
        let mut by_action: Vec<ActionSlices> =
            Action::ALL.iter().map(|_| ActionSlices::new()).collect();
        let uses_now = set
            .policies()
            .any(|policy| mentions_now(&policy.to_string()));
        for policy in set.policies() {
            let key = slice_key(policy);
            for action in Action::ALL {
                if self.scope_names(policy, action) {
                    by_action[action.index()].add(&key, policy.clone());
                }
            }
        }
        ActiveSet {
            version,
            text: text.to_owned(),
            full: set.clone(),
            by_action,
            decisions: DecisionCache::new(uses_now),
        }
    }

    fn scope_names(&self, policy: &Policy, action: Action) -> bool {
        let uid = &self.names.actions[action.index()];
        match policy.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(named) => &named == uid,
            ActionConstraint::In(named) => named.iter().any(|named| named == uid),
        }
    }

    fn decide(&self, active: &ActiveSet, request: &AuthzRequest<'_>) -> Decision {
        let (cedar_request, entities) = match self.build(request) {
            Ok(built) => built,
            Err(message) => {
                return Decision {
                    allowed: false,
                    determining: Vec::new(),
                    errors: vec![message],
                }
            }
        };
        let slices = &active.by_action[request.action.index()];
        let resource = cedar_request.resource();
        let principal = cedar_request.principal();
        let caller_org = request.principal.org.as_deref().unwrap_or_default();
        let candidates = [
            Some(&slices.generic),
            resource.and_then(|uid| slices.by_resource.get(uid)),
            principal.and_then(|uid| slices.by_principal.get(uid)),
            slices.by_caller_org.get(caller_org),
        ];
        // Cedar's rule over the union of the slices: allow iff some permit
        // is satisfied and no forbid is. A slice's Allow lists satisfied
        // permits; its Deny lists satisfied forbids (none: no permit).
        let mut permits = Vec::new();
        let mut forbids = Vec::new();
        let mut errors = Vec::new();
        for set in candidates.into_iter().flatten() {
            if set.is_empty() {
                continue;
            }
            let response = self
                .authorizer
                .is_authorized(&cedar_request, set, &entities);
            let diagnostics = response.diagnostics();
            let reasons = diagnostics.reason().map(ToString::to_string);
            if response.decision() == cedar_policy::Decision::Allow {
                permits.extend(reasons);
            } else {
                forbids.extend(reasons);
            }
            errors.extend(diagnostics.errors().map(ToString::to_string));
        }
        let allowed = forbids.is_empty() && !permits.is_empty();
        let mut determining = if allowed { permits } else { forbids };
        determining.sort();
        errors.sort();
        Decision {
            allowed,
            determining,
            errors,
        }
    }

    fn build(
        &self,
        request: &AuthzRequest<'_>,
    ) -> std::result::Result<(Request, Entities), String> {
        let principal = request.principal;
        let caller_org = principal.org.clone().unwrap_or_default();
        let method = method_name(principal.method);
        let principal_uid = EntityUid::from_type_name_and_id(
            self.names.principal.clone(),
            EntityId::new(&principal.subject),
        );
        let principal_entity = Entity::new(
            principal_uid.clone(),
            HashMap::from([
                (
                    "subject".to_owned(),
                    RestrictedExpression::new_string(principal.subject.clone()),
                ),
                (
                    "org".to_owned(),
                    RestrictedExpression::new_string(caller_org.clone()),
                ),
                (
                    "auth_method".to_owned(),
                    RestrictedExpression::new_string(method.to_owned()),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|error| error.to_string())?;

        let (resource_uid, resource_entity, target_rank, target_org) = match request.resource {
            Resource::Agent {
                id,
                org,
                trust,
                role,
                tags,
                opt_in_external,
            } => {
                let uid = EntityUid::from_type_name_and_id(
                    self.names.agent.clone(),
                    EntityId::new(id.to_string()),
                );
                let entity = Entity::new(
                    uid.clone(),
                    HashMap::from([
                        (
                            "trust_rank".to_owned(),
                            RestrictedExpression::new_long(i64::from(trust.rank())),
                        ),
                        (
                            "trust".to_owned(),
                            RestrictedExpression::new_string(trust.as_str().to_owned()),
                        ),
                        (
                            "org".to_owned(),
                            RestrictedExpression::new_string(org.clone()),
                        ),
                        (
                            "role".to_owned(),
                            RestrictedExpression::new_string(role.as_str().to_owned()),
                        ),
                        (
                            "tags".to_owned(),
                            RestrictedExpression::new_set(
                                tags.iter()
                                    .map(|tag| RestrictedExpression::new_string(tag.clone())),
                            ),
                        ),
                        (
                            "opt_in_external".to_owned(),
                            RestrictedExpression::new_bool(*opt_in_external),
                        ),
                    ]),
                    HashSet::new(),
                )
                .map_err(|error| error.to_string())?;
                (uid, entity, i64::from(trust.rank()), org.clone())
            }
            Resource::Org { name } => {
                let uid =
                    EntityUid::from_type_name_and_id(self.names.org.clone(), EntityId::new(name));
                (
                    uid.clone(),
                    Entity::new_no_attrs(uid, HashSet::new()),
                    -1,
                    name.clone(),
                )
            }
            Resource::Graph { id, org } => {
                let uid =
                    EntityUid::from_type_name_and_id(self.names.graph.clone(), EntityId::new(id));
                (
                    uid.clone(),
                    Entity::new_no_attrs(uid, HashSet::new()),
                    -1,
                    org.clone(),
                )
            }
            Resource::Policy => {
                let uid = EntityUid::from_type_name_and_id(
                    self.names.policy.clone(),
                    EntityId::new("active"),
                );
                (
                    uid.clone(),
                    Entity::new_no_attrs(uid, HashSet::new()),
                    -1,
                    String::new(),
                )
            }
            Resource::System => {
                let uid = EntityUid::from_type_name_and_id(
                    self.names.system.clone(),
                    EntityId::new("convergio"),
                );
                (
                    uid.clone(),
                    Entity::new_no_attrs(uid, HashSet::new()),
                    -1,
                    String::new(),
                )
            }
        };

        let context = request.context;
        let mut pairs = vec![
            (
                "caller_org".to_owned(),
                RestrictedExpression::new_string(caller_org),
            ),
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set(
                    principal
                        .scopes
                        .iter()
                        .map(|scope| RestrictedExpression::new_string(scope.clone())),
                ),
            ),
            (
                "auth_method".to_owned(),
                RestrictedExpression::new_string(method.to_owned()),
            ),
            (
                "target_trust_rank".to_owned(),
                RestrictedExpression::new_long(target_rank),
            ),
            (
                "target_org".to_owned(),
                RestrictedExpression::new_string(target_org),
            ),
            (
                "a2a_method".to_owned(),
                RestrictedExpression::new_string(context.a2a_method.clone().unwrap_or_default()),
            ),
            (
                "now".to_owned(),
                RestrictedExpression::new_long(context.now),
            ),
            (
                "loopback".to_owned(),
                RestrictedExpression::new_bool(context.loopback),
            ),
        ];
        if let Some(skill) = &context.skill {
            pairs.push((
                "skill".to_owned(),
                RestrictedExpression::new_string(skill.clone()),
            ));
        }
        for (name, value) in [
            ("graph_run", &context.graph_run),
            ("guardrail", &context.guardrail),
            ("direction", &context.direction),
        ] {
            if let Some(value) = value {
                pairs.push((
                    name.to_owned(),
                    RestrictedExpression::new_string(value.clone()),
                ));
            }
        }
        pairs.push((
            "caller_agent".to_owned(),
            RestrictedExpression::new_string(
                caller_agent(principal).unwrap_or_default().to_owned(),
            ),
        ));
        if let Some(namespace_agent) = &context.namespace_agent {
            pairs.push((
                "namespace_agent".to_owned(),
                RestrictedExpression::new_string(namespace_agent.clone()),
            ));
        }
        let cedar_context = Context::from_pairs(pairs).map_err(|error| error.to_string())?;
        let cedar_request = Request::new(
            principal_uid,
            self.names.actions[request.action.index()].clone(),
            resource_uid,
            cedar_context,
            None,
        )
        .map_err(|error| error.to_string())?;
        let entities = Entities::from_entities([principal_entity, resource_entity], None)
            .map_err(|error| error.to_string())?;
        Ok((cedar_request, entities))
    }
}

/// The agent an agent principal acts for: `NAME` of subject `agent:NAME`
/// when the server itself authenticated it (`AuthMethod::System`: model and
/// graph agents calling as themselves). No credential a client presents
/// yields one, whatever its subject says.
pub fn caller_agent(principal: &Principal) -> Option<&str> {
    if principal.method != AuthMethod::System {
        return None;
    }
    principal
        .subject
        .strip_prefix("agent:")
        .filter(|name| !name.is_empty())
}

/// Whether `text` has the word `now` (as in `context.now` or
/// `context["now"]`, and in comments or strings too: a mention too many
/// only keeps `now` in the decision cache's key).
fn mentions_now(text: &str) -> bool {
    let is_word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    text.match_indices("now").any(|(at, _)| {
        let before = at.checked_sub(1).map(|index| text.as_bytes()[index]);
        let after = text.as_bytes().get(at + 3).copied();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The slice a policy belongs to (module docs).
fn slice_key(policy: &Policy) -> SliceKey {
    if let ResourceConstraint::Eq(uid) = policy.resource_constraint() {
        return SliceKey::Resource(uid);
    }
    if let PrincipalConstraint::Eq(uid) = policy.principal_constraint() {
        return SliceKey::Principal(uid);
    }
    match leading_caller_org(policy) {
        Some(org) => SliceKey::CallerOrg(org),
        None => SliceKey::Generic,
    }
}

/// `o` when the first condition is a `when` whose leftmost `&&` operand is
/// `context.caller_org == "o"` (either way round).
fn leading_caller_org(policy: &Policy) -> Option<String> {
    let json = policy.to_json().ok()?;
    let first = json.get("conditions")?.as_array()?.first()?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    let mut body = first.get("body")?;
    while let Some(and) = body.get("&&") {
        body = and.get("left")?;
    }
    let equality = body.get("==")?;
    let (left, right) = (equality.get("left")?, equality.get("right")?);
    caller_org_literal(left, right).or_else(|| caller_org_literal(right, left))
}

fn caller_org_literal(attribute: &serde_json::Value, value: &serde_json::Value) -> Option<String> {
    let access = attribute.get(".")?;
    let is_caller_org = access.get("left")?.get("Var")?.as_str()? == "context"
        && access.get("attr")?.as_str()? == "caller_org";
    if !is_caller_org {
        return None;
    }
    value.get("Value")?.as_str().map(str::to_owned)
}

/// The wire name of an authentication method, as policies see it.
pub fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::Jwt => "jwt",
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Mtls => "mtls",
        AuthMethod::AdminToken => "admin_token",
        AuthMethod::System => "system",
        AuthMethod::Peer => "peer",
    }
}

fn diagnostic_from(
    text: &str,
    diagnostic: &dyn miette::Diagnostic,
    message: String,
) -> PolicyDiagnostic {
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
        .unwrap_or(0);
    let (line, column) = line_column(text, offset);
    let message = match diagnostic.help() {
        Some(help) => format!("{message} ({help})"),
        None => message,
    };
    PolicyDiagnostic {
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|index| index + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
