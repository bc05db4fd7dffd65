//! `Authorize`: the Cedar decision on every gateway call. It is the fifth
//! step of the pipeline (ARCHITECTURE.md), but the decision needs the target
//! agent and the A2A method, which only exist once a handler has parsed the
//! request and `Route` has resolved the agent; so it is a [`Gatekeeper`] in
//! the A2A state that handlers call after routing and before anything is
//! sent upstream, and a [`convergio_registry::api::Guard`] for the registry
//! REST API. Needs the `Principal` extension (set by authentication).
//!
//! Conventions decided here (and documented in ARCHITECTURE.md):
//! - the skill a message names is `message.metadata.skill` (a string);
//! - an agent's tags are its card's and its skills' `tags`; it opts in to
//!   callers of other organisations with the tag `external`;
//! - a refused call on an agent the caller may not even `discover` is the
//!   unknown-agent answer (404, existence does not leak); otherwise 403
//!   `PERMISSION_DENIED` (JSON-RPC -32603, the ErrorKind table's code for
//!   refusals A2A has no code for, with the HTTP status kept);
//! - a spent quota is 429 with `Retry-After` (JSON-RPC -32603, reason
//!   `RATE_LIMITED`), checked after the policy allowed the call;
//! - every single decision is audited (who, action, resource, the
//!   determining policies, request id, A2A method, skill, graph run — never
//!   credentials or bodies); a filtered listing is audited as one record
//!   with how many agents were shown and hidden.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use axum::http::Extensions;
use chrono::Utc;
use convergio_policy::{
    Action, AuditEntry, AuditSink, AuthzRequest, Decision, PolicyEngine, Quotas, RequestContext,
    Resource,
};
use convergio_registry::api::{Guard, GuardAction, GuardRequest};
use convergio_registry::{AgentRecord, ChangeHook, RegistryChange};
use convergio_schemas::a2a::Method;
use convergio_schemas::{AgentId, AgentRole, GraphCall, TrustLevel};
use serde_json::{json, Map, Value};

use crate::layers::RequestId;
use crate::routes::RouteTarget;
use crate::{GatewayError, Principal};

/// The tag with which an agent opts in to callers of other organisations.
pub const OPT_IN_EXTERNAL_TAG: &str = "external";

/// One A2A call, as the gatekeeper sees it.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// Who calls.
    pub principal: &'a Principal,
    /// The resolved agent.
    pub target: &'a RouteTarget,
    /// The A2A method (`None` for a card read).
    pub method: Option<Method>,
    /// The request's 1.0 params (to find the skill); `Null` when none.
    pub params: &'a Value,
    /// Set when a graph run makes the call.
    pub graph_call: Option<&'a GraphCall>,
    /// Whether the caller connected from a loopback address.
    pub loopback: bool,
    /// The request id, for the audit log.
    pub request_id: Option<&'a RequestId>,
}

/// What a caller asks to do with a stored graph (issue 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAction {
    /// Store a new version (`store_graph`).
    Store,
    /// List, fetch or name it in a run (`read_graph`).
    Read,
    /// Start a run of it (`run_graph`).
    Run,
    /// Ask for a plan (`create_plan`, issue 19; the graph `plan`).
    Plan,
}

// === impl GraphAction ===

impl GraphAction {
    fn policy_action(self) -> Action {
        match self {
            Self::Store => Action::StoreGraph,
            Self::Read => Action::ReadGraph,
            Self::Run => Action::RunGraph,
            Self::Plan => Action::CreatePlan,
        }
    }
}

/// A budget checked before a message reaches its agent, after policy and
/// quotas (model agents' daily budgets, issue 17): a spent one is the same
/// 429 `RATE_LIMITED` with `Retry-After` as a spent quota, and the agent
/// (and its provider) never sees the call.
#[async_trait]
pub trait CallBudget: Send + Sync + 'static {
    /// `Err(retry_after_seconds)` when `principal` may not call `agent` now.
    async fn check(&self, principal: &Principal, agent: &str) -> Result<(), u64>;
}

/// What [`Gatekeeper::may_apply_guardrail`] asks about: one guardrail rule
/// left to policy, on one payload's way, of one call.
#[derive(Debug, Clone, Copy)]
pub struct GuardQuestion<'a> {
    /// The rule's name (`context.guardrail`).
    pub guardrail: &'a str,
    /// `request` or `response` (`context.direction`).
    pub direction: &'a str,
    /// The A2A method (`context.a2a_method`).
    pub method: &'a str,
    /// The message's skill, if it names one.
    pub skill: Option<&'a str>,
    /// Whether the caller connected from this machine.
    pub loopback: bool,
}

/// What the A2A handlers ask before anything reaches an upstream.
#[async_trait]
pub trait Gatekeeper: Send + Sync {
    /// Admits the call or says why not (`AgentNotFound`, `Forbidden`,
    /// `RateLimited`). Records the decision.
    async fn admit(&self, call: &CallFacts<'_>) -> Result<(), GatewayError>;
    /// Whether the caller may discover `target` (not recorded: listings
    /// record one summary through [`Gatekeeper::record_listing`]).
    fn may_discover(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool;
    /// Whether the caller may read `target`'s card: it then also sees the
    /// cause of a failed upstream call (the card names the upstream
    /// anyway). Not recorded: it only decides how much an error says.
    fn may_read_card(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool;
    /// Whether the caller may send `target` a message (`send_message`),
    /// asked of a plan's every step before it runs (issue 19). Not
    /// recorded: each call is decided and recorded again when it is made.
    fn may_call(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool;
    /// Whether another organisation calling `target` may see how long this
    /// deployment took to answer (`share_timings`, issue 18). Not recorded:
    /// it only adds a figure to an answer already decided. Default: no.
    fn may_share_timings(
        &self,
        _principal: &Principal,
        _target: &RouteTarget,
        _loopback: bool,
    ) -> bool {
        false
    }
    /// Whether policy switches on the guardrail rule `guard.guardrail`
    /// (configured `by_policy`) for this call to `target` in
    /// `guard.direction` (`apply_guardrail`, issue 21). Not recorded: what
    /// the guardrail then refuses is. Default: no.
    fn may_apply_guardrail(
        &self,
        _principal: &Principal,
        _target: &RouteTarget,
        _guard: &GuardQuestion<'_>,
    ) -> bool {
        false
    }
    /// Records a filtered listing.
    async fn record_listing(
        &self,
        principal: &Principal,
        request_id: Option<&RequestId>,
        shown: usize,
        hidden: usize,
    );
    /// Sees a unary reply (budgets count the usage it reports).
    fn observe_reply(&self, principal: &Principal, result: &Value);
    /// Records a guardrail's refusal of a payload to or from `agent`
    /// (action `guardrail`, decision `deny`; `detail` names the guardrail,
    /// its reason and the direction, never the payload).
    async fn record_guardrail(
        &self,
        _principal: &Principal,
        _agent: &str,
        _request_id: Option<&RequestId>,
        _detail: Value,
    ) {
    }
    /// Records something the gateway did on no caller's request (a push
    /// notification delivered or dead-lettered): `action` on `resource`
    /// with its `outcome`; `detail` holds identifiers, never payloads.
    async fn record_system(&self, _action: &str, _resource: &str, _outcome: &str, _detail: Value) {}
    /// Admits starting a run of the graph named `graph` (action
    /// `run_graph`), before any node is called. Records the decision.
    async fn admit_run(
        &self,
        principal: &Principal,
        graph: &str,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError>;
    /// Whether `principal` may do `action` to the graph `graph` of the
    /// organisation `org` (empty: no organisation). Records the decision.
    async fn decide_graph(
        &self,
        principal: &Principal,
        action: GraphAction,
        graph: &str,
        org: &str,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> bool;
    /// Admits reading `/metrics` (action `read_metrics`). Records the
    /// decision.
    async fn admit_metrics(
        &self,
        principal: &Principal,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError>;
}

/// Admits everything: the A2A router used as a library (tests, benches)
/// without policy. `convergio serve` always uses [`PolicyGate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenGate;

#[async_trait]
impl Gatekeeper for OpenGate {
    async fn admit(&self, _call: &CallFacts<'_>) -> Result<(), GatewayError> {
        Ok(())
    }

    fn may_discover(&self, _principal: &Principal, _target: &RouteTarget, _loopback: bool) -> bool {
        true
    }

    // No policy to ask, so an upstream's address never leaves the gateway:
    // callers learn a failure's category only.
    fn may_call(&self, _principal: &Principal, _target: &RouteTarget, _loopback: bool) -> bool {
        true
    }

    fn may_read_card(
        &self,
        _principal: &Principal,
        _target: &RouteTarget,
        _loopback: bool,
    ) -> bool {
        false
    }

    async fn admit_run(
        &self,
        _principal: &Principal,
        _graph: &str,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn decide_graph(
        &self,
        _principal: &Principal,
        _action: GraphAction,
        _graph: &str,
        _org: &str,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> bool {
        true
    }

    async fn admit_metrics(
        &self,
        _principal: &Principal,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn record_listing(
        &self,
        _principal: &Principal,
        _request_id: Option<&RequestId>,
        _shown: usize,
        _hidden: usize,
    ) {
    }

    fn observe_reply(&self, _principal: &Principal, _result: &Value) {}
}

/// The policy engine, the audit log and the quotas, as the gateway uses them.
#[derive(Clone)]
pub struct PolicyGate {
    engine: Arc<PolicyEngine>,
    audit: Option<AuditSink>,
    quotas: Option<Arc<Quotas>>,
    metrics: Option<Arc<crate::metrics::GatewayMetrics>>,
    budget: Option<Arc<dyn CallBudget>>,
}

impl std::fmt::Debug for PolicyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGate")
            .field("version", &self.engine.active_version())
            .field("audited", &self.audit.is_some())
            .field("quotas", &self.quotas.is_some())
            .field("budget", &self.budget.is_some())
            .finish()
    }
}

// === impl PolicyGate ===

impl PolicyGate {
    /// A gate deciding with `engine`, recording to `audit` (if any) and
    /// enforcing `quotas` (if any).
    pub fn new(
        engine: Arc<PolicyEngine>,
        audit: Option<AuditSink>,
        quotas: Option<Arc<Quotas>>,
    ) -> Self {
        Self {
            engine,
            audit,
            quotas,
            metrics: None,
            budget: None,
        }
    }

    /// The same gate, counting decisions and quota refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::GatewayMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same gate, also checking `budget` before a message reaches its
    /// agent.
    pub fn with_budget(mut self, budget: Arc<dyn CallBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Decides and records an organisation-level request of the REST
    /// surfaces of issue 17 (`manage_model_agent`, `read_model_agent`,
    /// `manage_secret`) and issue 20 (`read_memory`, `write_memory`,
    /// `search_memory`): the resource is the organisation `org`, which
    /// policies see as `context.target_org`. Never records a body.
    pub async fn decide_org(
        &self,
        principal: &Principal,
        action: Action,
        org: &str,
        extensions: &Extensions,
    ) -> bool {
        self.decide_memory(principal, action, org, None, extensions)
            .await
    }

    /// [`PolicyGate::decide_org`] for a memory decision (issue 20) that
    /// may be about one namespace: `namespace_agent` is its scope (the
    /// agent whose memory it is, `""` for the organisation's shared
    /// knowledge), which policies see as `context.namespace_agent`; `None`
    /// when the decision is about no one namespace.
    pub async fn decide_memory(
        &self,
        principal: &Principal,
        action: Action,
        org: &str,
        namespace_agent: Option<&str>,
        extensions: &Extensions,
    ) -> bool {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback: is_loopback(extensions),
            namespace_agent: namespace_agent.map(str::to_owned),
            ..RequestContext::default()
        };
        let request_id = extensions.get::<RequestId>().map(RequestId::as_str);
        self.decide_recorded(
            principal,
            action,
            &Resource::Org {
                name: org.to_owned(),
            },
            &context,
            request_id,
        )
        .await
        .allowed
    }

    async fn record(&self, entry: AuditEntry) {
        if let Some(audit) = &self.audit {
            audit.record(entry).await;
        }
    }

    fn evaluate(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        context: &RequestContext,
    ) -> Decision {
        let decision = self.engine.authorize(&AuthzRequest {
            principal,
            action,
            resource,
            context,
        });
        if let Some(metrics) = &self.metrics {
            metrics.record_decision(action.as_str(), decision.allowed);
        }
        decision
    }

    /// Whether `principal` may do `action` to `target` now, unrecorded.
    fn may(
        &self,
        principal: &Principal,
        action: Action,
        target: &RouteTarget,
        loopback: bool,
    ) -> bool {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        self.evaluate(principal, action, &target_resource(target), &context)
            .allowed
    }

    /// Decides and records one request.
    async fn decide_recorded(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        context: &RequestContext,
        request_id: Option<&str>,
    ) -> Decision {
        let decision = self.evaluate(principal, action, resource, context);
        let mut entry = AuditEntry::decision(
            request_id.map(str::to_owned),
            principal,
            action,
            resource,
            &decision,
        );
        entry.detail = context_detail(context);
        self.record(entry).await;
        decision
    }
}

#[async_trait]
impl Gatekeeper for PolicyGate {
    async fn admit_run(
        &self,
        principal: &Principal,
        graph: &str,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        let resource = Resource::Graph {
            id: graph.to_owned(),
            org: String::new(),
        };
        let context = RequestContext {
            a2a_method: None,
            skill: None,
            graph_run: None,
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        let decision = self
            .decide_recorded(
                principal,
                Action::RunGraph,
                &resource,
                &context,
                request_id.map(RequestId::as_str),
            )
            .await;
        if decision.allowed {
            Ok(())
        } else {
            Err(GatewayError::Forbidden {
                agent: format!("graph:{graph}"),
                action: Action::RunGraph.as_str().to_owned(),
            })
        }
    }

    async fn decide_graph(
        &self,
        principal: &Principal,
        action: GraphAction,
        graph: &str,
        org: &str,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> bool {
        let resource = Resource::Graph {
            id: graph.to_owned(),
            org: org.to_owned(),
        };
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        self.decide_recorded(
            principal,
            action.policy_action(),
            &resource,
            &context,
            request_id.map(RequestId::as_str),
        )
        .await
        .allowed
    }

    async fn admit_metrics(
        &self,
        principal: &Principal,
        loopback: bool,
        request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        let decision = self
            .decide_recorded(
                principal,
                Action::ReadMetrics,
                &Resource::System,
                &context,
                request_id.map(RequestId::as_str),
            )
            .await;
        if decision.allowed {
            Ok(())
        } else {
            Err(GatewayError::Forbidden {
                agent: "metrics".to_owned(),
                action: Action::ReadMetrics.as_str().to_owned(),
            })
        }
    }

    async fn admit(&self, call: &CallFacts<'_>) -> Result<(), GatewayError> {
        let action = call.method.map_or(Action::ReadCard, action_for);
        let resource = target_resource(call.target);
        let context = RequestContext {
            a2a_method: call.method.map(|method| method.v1_name().to_owned()),
            skill: message_skill(call.params),
            graph_run: call.graph_call.map(|graph| graph.run_id.clone()),
            now: Utc::now().timestamp(),
            loopback: call.loopback,
            ..RequestContext::default()
        };
        let request_id = call.request_id.map(RequestId::as_str);
        let decision = self
            .decide_recorded(call.principal, action, &resource, &context, request_id)
            .await;
        if !decision.allowed {
            // Whether the caller may know the agent exists decides between
            // "unknown agent" and "forbidden".
            let visible = action != Action::ReadCard
                && self
                    .decide_recorded(
                        call.principal,
                        Action::Discover,
                        &resource,
                        &context,
                        request_id,
                    )
                    .await
                    .allowed;
            return Err(if visible {
                GatewayError::Forbidden {
                    agent: call.target.name.clone(),
                    action: action.as_str().to_owned(),
                }
            } else {
                GatewayError::AgentNotFound {
                    agent: call.target.name.clone(),
                }
            });
        }
        if call.method.is_none() {
            // Card reads do not reach the upstream: no quota.
            return Ok(());
        }
        let mut limited = self
            .quotas
            .as_ref()
            .and_then(|quotas| quotas.check(call.principal, Some(&call.target.name)).err())
            .map(|retry_after| retry_after.seconds());
        if limited.is_some() {
            if let Some(metrics) = &self.metrics {
                metrics.record_quota_refusal(&call.target.name);
            }
        } else if matches!(action, Action::SendMessage | Action::Stream) {
            if let Some(budget) = &self.budget {
                limited = budget
                    .check(call.principal, &call.target.name)
                    .await
                    .err()
                    .map(|seconds| seconds.max(1));
            }
        }
        if let Some(retry_after_seconds) = limited {
            let mut entry = AuditEntry::decision(
                request_id.map(str::to_owned),
                call.principal,
                action,
                &resource,
                &decision,
            );
            entry.decision = "rate_limited".to_owned();
            entry.detail = context_detail(&context);
            self.record(entry).await;
            return Err(GatewayError::RateLimited {
                retry_after_seconds,
            });
        }
        Ok(())
    }

    fn may_discover(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        self.evaluate(
            principal,
            Action::Discover,
            &target_resource(target),
            &context,
        )
        .allowed
    }

    fn may_call(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool {
        let context = RequestContext {
            a2a_method: Some(Method::SendMessage.v1_name().to_owned()),
            now: Utc::now().timestamp(),
            loopback,
            ..RequestContext::default()
        };
        self.evaluate(
            principal,
            Action::SendMessage,
            &target_resource(target),
            &context,
        )
        .allowed
    }

    fn may_read_card(&self, principal: &Principal, target: &RouteTarget, loopback: bool) -> bool {
        self.may(principal, Action::ReadCard, target, loopback)
    }

    fn may_share_timings(
        &self,
        principal: &Principal,
        target: &RouteTarget,
        loopback: bool,
    ) -> bool {
        self.may(principal, Action::ShareTimings, target, loopback)
    }

    fn may_apply_guardrail(
        &self,
        principal: &Principal,
        target: &RouteTarget,
        guard: &GuardQuestion<'_>,
    ) -> bool {
        let context = RequestContext {
            a2a_method: Some(guard.method.to_owned()),
            skill: guard.skill.map(str::to_owned),
            guardrail: Some(guard.guardrail.to_owned()),
            direction: Some(guard.direction.to_owned()),
            now: Utc::now().timestamp(),
            loopback: guard.loopback,
            ..RequestContext::default()
        };
        self.evaluate(
            principal,
            Action::ApplyGuardrail,
            &target_resource(target),
            &context,
        )
        .allowed
    }

    async fn record_listing(
        &self,
        principal: &Principal,
        request_id: Option<&RequestId>,
        shown: usize,
        hidden: usize,
    ) {
        self.record(listing_entry(
            principal,
            request_id.map(RequestId::as_str),
            shown,
            hidden,
        ))
        .await;
    }

    async fn record_system(&self, action: &str, resource: &str, outcome: &str, detail: Value) {
        self.record(AuditEntry {
            at: chrono::Utc::now(),
            request_id: None,
            subject: "convergio".to_owned(),
            org: None,
            method: "system".to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            decision: outcome.to_owned(),
            determining: Vec::new(),
            detail,
        })
        .await;
    }

    async fn record_guardrail(
        &self,
        principal: &Principal,
        agent: &str,
        request_id: Option<&RequestId>,
        detail: Value,
    ) {
        let mut entry = AuditEntry::change(
            request_id.map(|id| id.as_str().to_owned()),
            principal,
            "guardrail",
            &format!("agent:{agent}"),
            detail,
        );
        entry.decision = "deny".to_owned();
        self.record(entry).await;
    }

    fn observe_reply(&self, principal: &Principal, result: &Value) {
        if let Some(quotas) = &self.quotas {
            let (tokens, tool_calls) = reported_usage(result);
            if tokens > 0 || tool_calls > 0 {
                quotas.report_usage(principal, tokens, tool_calls);
            }
        }
    }
}

impl PolicyGate {
    /// Whether policy allows `action` on a registry request's agent,
    /// without recording the decision.
    fn allows_unrecorded(&self, action: Action, request: GuardRequest<'_>) -> bool {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback: is_loopback(request.extensions),
            ..RequestContext::default()
        };
        self.evaluate(
            request.caller,
            action,
            &record_resource(request.target),
            &context,
        )
        .allowed
    }
}

#[async_trait]
impl Guard for PolicyGate {
    async fn decide(&self, request: GuardRequest<'_>) -> bool {
        let context = RequestContext {
            now: Utc::now().timestamp(),
            loopback: is_loopback(request.extensions),
            ..RequestContext::default()
        };
        let request_id = request.extensions.get::<RequestId>().map(RequestId::as_str);
        self.decide_recorded(
            request.caller,
            guard_action(request.action),
            &record_resource(request.target),
            &context,
            request_id,
        )
        .await
        .allowed
    }

    fn may_discover(&self, request: GuardRequest<'_>) -> bool {
        self.allows_unrecorded(Action::Discover, request)
    }

    fn may_see_upstreams(&self, request: GuardRequest<'_>) -> bool {
        self.allows_unrecorded(Action::UpdateAgent, request)
    }

    async fn record_listing(
        &self,
        caller: &Principal,
        extensions: &Extensions,
        shown: usize,
        hidden: usize,
    ) {
        let request_id = extensions.get::<RequestId>().map(RequestId::as_str);
        self.record(listing_entry(caller, request_id, shown, hidden))
            .await;
    }
}

/// Records every committed registry change (registrations, updates,
/// deregistrations, trust changes) in the audit log.
#[derive(Debug, Clone)]
pub struct AuditChanges {
    sink: AuditSink,
}

// === impl AuditChanges ===

impl AuditChanges {
    /// Changes recorded through `sink`.
    pub fn new(sink: AuditSink) -> Self {
        Self { sink }
    }
}

impl ChangeHook for AuditChanges {
    fn changed(&self, change: RegistryChange) {
        // Queued here and now when there is room, so changes keep their
        // order and none is still in flight when the server closes the queue
        // at shutdown; only a full queue needs a task that waits.
        let Some(entry) = self.sink.try_record(change_entry(change)) else {
            return;
        };
        let sink = self.sink.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { sink.record(entry).await });
        } else {
            tracing::error!(action = %entry.action, resource = %entry.resource, "registry change outside a runtime; not audited");
        }
    }
}

/// The audit entry of a registry change.
pub fn change_entry(change: RegistryChange) -> AuditEntry {
    let (actor, action, id, detail) = match change {
        RegistryChange::Registered { actor, record } => (
            actor,
            "agent.register",
            record.id.clone(),
            json!({"version": record.version, "trust": record.trust.as_str(), "org": record.org}),
        ),
        RegistryChange::Updated { actor, record } => (
            actor,
            "agent.update",
            record.id.clone(),
            json!({"version": record.version}),
        ),
        RegistryChange::UpstreamsRefreshed { actor, record } => (
            actor,
            "agent.refresh_upstreams",
            record.id.clone(),
            json!({"version": record.version, "upstreams": record.upstreams}),
        ),
        RegistryChange::Deregistered { actor, record } => (
            actor,
            "agent.deregister",
            record.id.clone(),
            json!({"version": record.version}),
        ),
        RegistryChange::TrustChanged { change, version } => (
            change.actor.clone(),
            "agent.set_trust",
            change.agent_id.clone(),
            json!({
                "version": version,
                "from": change.from.as_str(),
                "to": change.to.as_str(),
                "reason": change.reason,
            }),
        ),
    };
    AuditEntry {
        at: Utc::now(),
        request_id: None,
        subject: actor.subject,
        org: None,
        method: "registry".to_owned(),
        action: action.to_owned(),
        resource: format!("agent:{id}"),
        decision: "applied".to_owned(),
        determining: Vec::new(),
        detail,
    }
}

fn listing_entry(
    principal: &Principal,
    request_id: Option<&str>,
    shown: usize,
    hidden: usize,
) -> AuditEntry {
    let mut entry = AuditEntry::change(
        request_id.map(str::to_owned),
        principal,
        Action::Discover.as_str(),
        "agents",
        json!({"shown": shown, "hidden": hidden}),
    );
    entry.decision = "filtered".to_owned();
    entry
}

/// The policy action of an A2A method. Push-notification config writes
/// instruct the agent to send data, so they count as `send_message`; their
/// reads as `get_task`.
pub fn action_for(method: Method) -> Action {
    match method {
        Method::SendMessage
        | Method::CreateTaskPushNotificationConfig
        | Method::DeleteTaskPushNotificationConfig => Action::SendMessage,
        Method::SendStreamingMessage | Method::SubscribeToTask => Action::Stream,
        Method::GetTask
        | Method::ListTasks
        | Method::GetTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs => Action::GetTask,
        Method::CancelTask => Action::CancelTask,
        Method::GetExtendedAgentCard => Action::ReadCard,
    }
}

fn guard_action(action: GuardAction) -> Action {
    match action {
        GuardAction::Discover => Action::Discover,
        GuardAction::ReadCard => Action::ReadCard,
        GuardAction::RegisterAgent => Action::RegisterAgent,
        GuardAction::UpdateAgent => Action::UpdateAgent,
        GuardAction::SetTrust => Action::SetTrust,
    }
}

/// The skill a message names: `message.metadata.skill`.
pub fn message_skill(params: &Value) -> Option<String> {
    // `get` by `get`: `Value::pointer` allocates each step of its path.
    params
        .get("message")
        .and_then(|message| message.get("metadata"))
        .and_then(|metadata| metadata.get("skill"))
        .and_then(Value::as_str)
        .filter(|skill| !skill.is_empty())
        .map(str::to_owned)
}

/// The card's and its skills' tags, deduplicated and sorted.
pub fn card_tags(card: &Value) -> Vec<String> {
    let mut tags = BTreeSet::new();
    let mut add = |list: Option<&Value>| {
        for tag in list.and_then(Value::as_array).into_iter().flatten() {
            if let Some(tag) = tag.as_str() {
                tags.insert(tag.to_owned());
            }
        }
    };
    add(card.get("tags"));
    for skill in card
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(skill.get("tags"));
    }
    tags.into_iter().collect()
}

fn agent_resource(
    id: AgentId,
    org: String,
    trust: TrustLevel,
    role: AgentRole,
    card: &Value,
) -> Resource {
    let tags = card_tags(card);
    let opt_in_external = tags.iter().any(|tag| tag == OPT_IN_EXTERNAL_TAG);
    Resource::Agent {
        id,
        org,
        trust,
        role,
        tags,
        opt_in_external,
    }
}

/// The policy resource of a routed agent.
pub fn target_resource(target: &RouteTarget) -> Resource {
    let id = AgentId::internal(&target.name).unwrap_or(AgentId::Internal {
        name: target.name.clone(),
    });
    match &target.facts {
        Some(facts) => agent_resource(id, facts.org.clone(), facts.trust, facts.role, &target.card),
        None => agent_resource(
            id,
            String::new(),
            TrustLevel::Registered,
            AgentRole::default(),
            &target.card,
        ),
    }
}

/// The policy resource of a registry record.
pub fn record_resource(record: &AgentRecord) -> Resource {
    agent_resource(
        record.id.clone(),
        record.org.clone(),
        record.trust,
        record.role,
        &record.card,
    )
}

/// Whether the connection came from this machine.
pub fn is_loopback(extensions: &Extensions) -> bool {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(address)| address.ip().is_loopback())
}

fn context_detail(context: &RequestContext) -> Value {
    let mut detail = Map::new();
    if let Some(method) = &context.a2a_method {
        detail.insert("a2a_method".into(), Value::from(method.as_str()));
    }
    if let Some(skill) = &context.skill {
        detail.insert("skill".into(), Value::from(skill.as_str()));
    }
    if let Some(run) = &context.graph_run {
        detail.insert("graph_run".into(), Value::from(run.as_str()));
    }
    if let Some(agent) = &context.namespace_agent {
        detail.insert("namespace_agent".into(), Value::from(agent.as_str()));
    }
    Value::Object(detail)
}

/// Message tokens and tool calls an agent reported in its reply's metadata
/// (the orchestrator's convention: `metadata.usage` of the task or message,
/// else of the task's status message; `tokens_in + tokens_out` are tokens).
pub fn reported_usage(result: &Value) -> (u64, u64) {
    let object = result
        .get("task")
        .or_else(|| result.get("message"))
        .or_else(|| result.get("statusUpdate"))
        .unwrap_or(result);
    let usage = object
        .pointer("/metadata/usage")
        .or_else(|| object.pointer("/status/message/metadata/usage"));
    let field = |name: &str| {
        usage
            .and_then(|usage| usage.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (
        field("tokens_in").saturating_add(field("tokens_out")),
        field("tool_calls"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starting_a_run_is_decided_by_run_graph() {
        let engine = Arc::new(PolicyEngine::with_defaults().expect("shipped policies"));
        let gate = PolicyGate::new(engine, None, None);
        let anonymous = Principal::anonymous();
        let runner = Principal {
            subject: "ci".into(),
            org: Some("convergio.local".into()),
            scopes: vec!["graphs:run".into()],
            method: convergio_schemas::AuthMethod::Jwt,
        };
        let plain = Principal {
            scopes: Vec::new(),
            ..runner.clone()
        };
        // The tour's anonymous caller on this machine, and a caller with
        // `graphs:run` from anywhere, may start runs; nobody else may.
        assert!(gate.admit_run(&anonymous, "g", true, None).await.is_ok());
        assert!(gate.admit_run(&runner, "g", false, None).await.is_ok());
        for (principal, loopback) in [(&anonymous, false), (&plain, false), (&plain, true)] {
            let refused = gate.admit_run(principal, "g", loopback, None).await;
            assert!(
                matches!(refused, Err(GatewayError::Forbidden { .. })),
                "{principal:?} loopback={loopback}: {refused:?}"
            );
        }
    }

    #[test]
    fn methods_map_onto_policy_actions() {
        let cases = [
            (Method::SendMessage, Action::SendMessage),
            (Method::SendStreamingMessage, Action::Stream),
            (Method::SubscribeToTask, Action::Stream),
            (Method::GetTask, Action::GetTask),
            (Method::ListTasks, Action::GetTask),
            (Method::CancelTask, Action::CancelTask),
            (
                Method::CreateTaskPushNotificationConfig,
                Action::SendMessage,
            ),
            (Method::GetExtendedAgentCard, Action::ReadCard),
        ];
        for (method, action) in cases {
            assert_eq!(action_for(method), action, "{method:?}");
        }
    }

    #[test]
    fn skill_tags_and_usage_follow_the_conventions() {
        let params = json!({"message": {"metadata": {"skill": "translate"}}});
        assert_eq!(message_skill(&params).as_deref(), Some("translate"));
        assert_eq!(message_skill(&json!({"message": {}})), None);
        let card = json!({"tags": ["b"], "skills": [{"tags": ["external", "a"]}, {"tags": ["b"]}]});
        assert_eq!(card_tags(&card), vec!["a", "b", "external"]);
        let reply = json!({"task": {"metadata": {"usage": {"tokens_in": 3, "tokens_out": 4, "tool_calls": 1}}}});
        assert_eq!(reported_usage(&reply), (7, 1));
        let reply = json!({"message": {"parts": []}});
        assert_eq!(reported_usage(&reply), (0, 0));
        // A streamed status update reports in its status message.
        let event = json!({"statusUpdate": {"status": {"state": "TASK_STATE_COMPLETED",
            "message": {"metadata": {"usage": {"tokens_in": 2, "tokens_out": 5}}}}}});
        assert_eq!(reported_usage(&event), (7, 0));
    }
}
