//! The plan API (issue 19), mounted behind the same layers as every surface:
//!
//! - `POST /v1/plans` `{goal, agents | filter, constraints, planner, inputs}`
//!   makes a plan (policy action `create_plan` on the graph `plan` of the
//!   caller's organisation), validates it and stores it as version 1;
//!   answers 201 with the stored plan (id, version, owner, status, the plan
//!   document and the graph YAML it runs).
//! - `GET /v1/plans/{id}` (`?version=N` an older version): its owner only;
//!   anyone else gets the unknown-plan answer. `GET /v1/plans` lists the
//!   caller's own plans (the latest version of each), newest first (plan
//!   ids are UUIDv7), filtered by `status`, paged by `page_size` and
//!   `page_token`.
//! - `POST /v1/plans/{id}:execute` `{mode, input, inputs, concurrency,
//!   review}` validates the plan again (policy may have changed) and starts
//!   a run of its graph through `POST /v1/runs` in-process, so every mode
//!   and the `run_graph` decision are the runs API's own. With `review:
//!   true` the plan waits instead (`awaiting_review`) until `POST
//!   /v1/plans/{id}:approve` (optionally `{plan}`: an edited plan, validated
//!   like a new one and stored as the next version, is what runs) or
//!   `:reject` (the plan never runs). With `replan: {max_replans: N}` the
//!   run is checkpointed and re-plans (§9.2): a step failing after its
//!   error strategy makes the executor ask [`PlanReplanner`], which asks
//!   the plan's own planner from the failure point, keeps the finished
//!   steps, checks the new plan for the run's caller like the first one and
//!   stores it as the plan's next version; the settings reach the runs API
//!   as a request extension, so no client can set them on `POST /v1/runs`.
//!
//! Candidates are the agents the caller may discover and call: the request's
//! `agents`, or the registry's discovery with the request's `filter`. A plan
//! is refused before anything runs when any step names an agent the caller
//! may not discover or call; the problem lists each violation with its step.
//!
//! Decisions: review is a plan-level wait, not a graph node: the executor's
//! human-in-the-loop path (`on_error: human`, `:approve|:reject|:input` on
//! a run) pauses a *running* graph after a node failed, and cannot swap the
//! graph it runs; approving an edited plan must run a different graph, so
//! the wait happens before the run exists. Planner agents are called with
//! the orchestrator's dispatcher, as the caller, so asking a planner passes
//! the same pipeline as any node call.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use convergio_orchestrator::api::{RunMode, StartRun};
use convergio_orchestrator::mapping::reply_output;
use convergio_orchestrator::trace::{child_traceparent, new_trace_id};
use convergio_orchestrator::{
    AgentCall, Dispatch, Limits, ReplanRequest, ReplanSettings, Replanner, Revision, Usage,
};
use convergio_planner::agent::{plan_with_agent, replan_with_agent, PlannerAgent, PLAN_SKILL};
use convergio_planner::compile::{run_input, to_yaml};
use convergio_planner::replan::{keep_completed, CompletedPlanStep, FailedPlanStep, ReplanContext};
use convergio_planner::{
    check_plan, deterministic, offending_steps, Access, AccessMap, CandidateCard, CandidateSkill,
    Constraints, ExecutePlan, PlanDocument, PlanFilter, PlanRequest, PlanStatus, PlanStore,
    PlannerError, ReviewDecision, StoredPlan, ValidPlan, MAX_REPLANS,
};
use convergio_registry::{DiscoveryQuery, Registry};
use convergio_schemas::validate::find_nul;
use convergio_schemas::{problem, AgentId, ErrorKind, Principal, Problem, TrustLevel, Violation};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

use crate::api_error::{page, respond, ApiError};
use crate::authorize::{Gatekeeper, GraphAction};
use crate::layers::{is_length_limit, RequestId};
use crate::routes::{RouteTable, RouteTarget};

/// Most candidates gathered by discovery for one plan.
const MAX_CANDIDATES: usize = 1_000;

/// The state behind the plan routes. Cheap to clone.
#[derive(Clone)]
pub struct PlansApi {
    inner: Arc<Planning>,
    /// The runs API's routes, which `:execute` calls in-process.
    runs: Router,
}

/// What making, checking and re-making plans needs: shared by the plan
/// routes and the executor's [`PlanReplanner`].
pub struct Planning {
    registry: Registry,
    routes: Arc<dyn RouteTable>,
    gate: Arc<dyn Gatekeeper>,
    dispatch: Arc<dyn Dispatch>,
    store: Arc<dyn PlanStore>,
    limits: Limits,
    /// Held by `:execute` from starting an async or streamed run until it
    /// has stored the executed version, and by a re-plan while it stores
    /// its version: a step failing at once cannot have its re-plan stored
    /// before the version it revises (the executed one would then become
    /// the latest again).
    recording: tokio::sync::Mutex<()>,
}

// === impl PlansApi ===

impl PlansApi {
    /// The plan API over `planning`, starting runs on `runs` (the runs
    /// API's router).
    pub fn new(planning: Arc<Planning>, runs: Router) -> Self {
        Self {
            inner: planning,
            runs,
        }
    }
}

impl std::ops::Deref for PlansApi {
    type Target = Planning;

    fn deref(&self) -> &Planning {
        &self.inner
    }
}

// === impl Planning ===

impl Planning {
    /// Candidates from `registry` (resolved through `routes`, decided by
    /// `gate`), planner agents called through `dispatch`, plans kept in
    /// `store`, graphs held to `limits`.
    pub fn new(
        registry: Registry,
        routes: Arc<dyn RouteTable>,
        gate: Arc<dyn Gatekeeper>,
        dispatch: Arc<dyn Dispatch>,
        store: Arc<dyn PlanStore>,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            routes,
            gate,
            dispatch,
            store,
            limits,
            recording: tokio::sync::Mutex::new(()),
        })
    }

    /// The caller's access to `target`.
    fn access_of(&self, target: &RouteTarget, caller: &Caller) -> Access {
        let gate = &self.gate;
        if !gate.may_discover(&caller.principal, target, caller.loopback) {
            Access::Unknown
        } else if !gate.may_call(&caller.principal, target, caller.loopback) {
            Access::NotCallable
        } else {
            Access::Callable(
                target
                    .facts
                    .as_ref()
                    .map_or(TrustLevel::Registered, |facts| facts.trust),
            )
        }
    }

    /// The caller's access to one agent name (unknown when unregistered).
    async fn access_by_name(
        &self,
        agent: &str,
        caller: &Caller,
    ) -> Result<(Access, Option<Arc<RouteTarget>>), ApiError> {
        let name = match agent.parse::<AgentId>() {
            Ok(AgentId::External { .. }) => return Ok((Access::External, None)),
            Ok(AgentId::Internal { name }) => name,
            Err(_) if !agent.contains("://") => agent.to_owned(),
            Err(_) => return Ok((Access::Unknown, None)),
        };
        let found = self.routes.resolve(&name).await.map_err(|error| {
            tracing::warn!(error = %error, "agent lookup failed while checking a plan");
            ApiError::new(ErrorKind::Unavailable, "the registry is unavailable")
        })?;
        Ok(match found {
            Some(target) => (self.access_of(&target, caller), Some(target)),
            None => (Access::Unknown, None),
        })
    }

    /// Access for every agent `plan` names.
    async fn access_for(
        &self,
        plan: &PlanDocument,
        caller: &Caller,
    ) -> Result<AccessMap, ApiError> {
        let mut access = AccessMap::new();
        let mut decided = std::collections::HashSet::new();
        for step in &plan.steps {
            // Each distinct agent is decided once, however many steps use it.
            if decided.insert(step.agent.as_str()) {
                let (found, _) = self.access_by_name(&step.agent, caller).await?;
                access.insert(step.agent.clone(), found);
            }
        }
        Ok(access)
    }

    /// The candidates a plan may use (callable ones) and the caller's
    /// access to every agent looked at.
    async fn candidates(
        &self,
        request: &PlanRequest,
        caller: &Caller,
    ) -> Result<(Vec<CandidateCard>, AccessMap), ApiError> {
        let mut cards = Vec::new();
        let mut access = AccessMap::new();
        if !request.agents.is_empty() {
            let mut unknown = Vec::new();
            for agent in &request.agents {
                let (found, target) = self.access_by_name(agent, caller).await?;
                access.insert(agent.clone(), found);
                match (found, target) {
                    (Access::Callable(_), Some(target)) => cards.push(candidate(agent, &target)),
                    (Access::External, _) => cards.push(CandidateCard {
                        name: agent.clone(),
                        ..CandidateCard::default()
                    }),
                    (Access::Unknown, _) => unknown.push(agent.clone()),
                    _ => {}
                }
            }
            if !unknown.is_empty() {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    format!("unknown agents: {}", unknown.join(", ")),
                ));
            }
            return Ok((cards, access));
        }
        let filter = request.filter.clone().unwrap_or_default();
        let mut query = DiscoveryQuery {
            skill: filter.skill,
            tag: filter.tag,
            org: filter.org,
            min_trust: filter.min_trust.or(request.constraints.min_trust),
            page_size: Some(100),
            ..DiscoveryQuery::default()
        };
        let mut looked_at = 0;
        loop {
            let page = self.registry.discover(&query).await.map_err(|error| {
                tracing::warn!(error = %error, "discovery failed while planning");
                ApiError::new(ErrorKind::Unavailable, "the registry is unavailable")
            })?;
            for record in &page.items {
                looked_at += 1;
                let Some(target) = self.routes.resolve(&record.name).await.ok().flatten() else {
                    continue;
                };
                let found = self.access_of(&target, caller);
                if found == Access::Unknown {
                    continue;
                }
                access.insert(record.name.clone(), found);
                if matches!(found, Access::Callable(_)) {
                    cards.push(candidate(&record.name, &target));
                }
            }
            match page.next_page_token {
                Some(token) if looked_at < MAX_CANDIDATES => query.page_token = Some(token),
                _ => break,
            }
        }
        Ok((cards, access))
    }

    /// Checks `plan` for `caller` with `access`.
    fn check(
        &self,
        plan: &PlanDocument,
        graph_name: &str,
        constraints: &Constraints,
        access: &AccessMap,
    ) -> Result<ValidPlan, ApiError> {
        check_plan(plan, graph_name, constraints, access, &self.limits).map_err(|violations| {
            ApiError::from(PlannerError::Invalid {
                steps: offending_steps(plan, &violations),
                violations,
            })
        })
    }

    /// The latest (or `version`) of a plan `caller` owns.
    async fn owned(
        &self,
        plan_id: &str,
        version: Option<u32>,
        caller: &Caller,
    ) -> Result<StoredPlan, ApiError> {
        let unknown = || {
            ApiError::from(PlannerError::NotFound {
                plan_id: plan_id.chars().take(64).collect(),
            })
        };
        let id = Uuid::parse_str(plan_id).map_err(|_| unknown())?;
        match self.store.get(id, version).await? {
            Some(plan) if plan.owner == caller.principal.owner_key() => Ok(plan),
            _ => Err(unknown()),
        }
    }
}

impl PlansApi {
    /// Starts a run of `plan` through the runs API, as the caller, and
    /// records it as the plan's next version.
    async fn execute(
        &self,
        stored: StoredPlan,
        execute: ExecutePlan,
        caller: &Caller,
        extensions: &axum::http::Extensions,
    ) -> Result<Response, ApiError> {
        // Policy and the registry may have changed since the plan was made:
        // check again, before anything runs.
        let access = self.access_for(&stored.document, caller).await?;
        let valid = self.check(
            &stored.document,
            &stored.graph_name,
            &stored.constraints,
            &access,
        )?;
        let replan = match execute.replan {
            Some(options) if options.max_replans == 0 || options.max_replans > MAX_REPLANS => {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    format!("replan.max_replans is 1 to {MAX_REPLANS}"),
                ))
            }
            Some(options) => Some(ReplanSettings {
                max_replans: options.max_replans,
                plan: plan_reference(stored.plan_id, stored.version),
            }),
            None => None,
        };
        let mut spec = valid.spec;
        // A run that re-plans is checkpointed, so that a crash between a
        // failure and its re-plan resumes where it was.
        spec.config.checkpoint_enabled |= replan.is_some();
        let start = StartRun {
            graph_yaml: Some(to_yaml(&spec)),
            mode: execute.mode,
            input: Some(run_input(&stored.document, execute.input.clone())),
            inputs: execute
                .inputs
                .iter()
                .map(|input| run_input(&stored.document, Some(input.clone())))
                .collect(),
            concurrency: execute.concurrency,
            ..StartRun::default()
        };
        if execute.mode != RunMode::Batch && !execute.inputs.is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidInput,
                "inputs is for batch mode; use input",
            ));
        }
        let body = serde_json::to_vec(&start)
            .map_err(|_| ApiError::new(ErrorKind::Internal, problem::INTERNAL_DETAIL))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/v1/runs")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .map_err(|_| ApiError::new(ErrorKind::Internal, problem::INTERNAL_DETAIL))?;
        // What the runs API reads of a request: who asks, from where, and
        // the request id its audit records quote. Nothing else of this
        // request (its route's path parameters) carries over.
        if let Some(principal) = extensions.get::<Principal>() {
            request.extensions_mut().insert(principal.clone());
        }
        if let Some(request_id) = extensions.get::<RequestId>() {
            request.extensions_mut().insert(request_id.clone());
        }
        if let Some(origin) = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
            request.extensions_mut().insert(*origin);
        }
        // Only this in-process request can carry re-plan settings: the
        // runs API reads them from the request's extensions, which no
        // client can set.
        if let Some(replan) = replan {
            request.extensions_mut().insert(replan);
        }
        // A sync or batch run ends before the answer (its re-plans are
        // recorded meanwhile, and the check below keeps them); the others
        // answer at once, so their re-plans wait for this record.
        let _recording = match execute.mode {
            RunMode::Async | RunMode::Stream => Some(self.recording.lock().await),
            RunMode::Sync | RunMode::Batch => None,
        };
        let response = match self.runs.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if !response.status().is_success() {
            return Ok(response);
        }
        let location_id = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| location.strip_prefix("/v1/runs/"))
            .and_then(|id| Uuid::parse_str(id).ok());
        let (response, run_id) = match (location_id, execute.mode) {
            (Some(id), _) => (response, Some(id)),
            (None, RunMode::Sync) => {
                let (parts, body) = response.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map_err(|_| ApiError::new(ErrorKind::Internal, problem::INTERNAL_DETAIL))?;
                let run_id = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|value| {
                        value
                            .get("run_id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .and_then(|id| Uuid::parse_str(&id).ok());
                (Response::from_parts(parts, Body::from(bytes)), run_id)
            }
            (None, _) => (response, None),
        };
        // A sync run that re-planned stored its new plans as later
        // versions already (executed, with the run): they stay the latest.
        let latest = self.inner.store.get(stored.plan_id, None).await?;
        let executed = match latest {
            Some(latest)
                if latest.version > stored.version
                    && run_id.is_some()
                    && latest.run_id == run_id =>
            {
                latest
            }
            _ => {
                let mut executed = stored;
                executed.status = PlanStatus::Executed;
                executed.pending_execution = None;
                executed.run_id = run_id;
                self.inner.store.put(&executed).await?
            }
        };
        let mut response = response;
        if let Ok(value) = HeaderValue::from_str(&format!(
            "/v1/plans/{}?version={}",
            executed.plan_id, executed.version
        )) {
            response
                .headers_mut()
                .insert(header::CONTENT_LOCATION, value);
        }
        Ok(response)
    }
}

/// What a planner is told of a candidate.
fn candidate(name: &str, target: &RouteTarget) -> CandidateCard {
    let card = &target.card;
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
    let skills = card
        .get("skills")
        .and_then(Value::as_array)
        .map(|skills| {
            skills
                .iter()
                .map(|skill| CandidateSkill {
                    id: text(skill.get("id")),
                    name: text(skill.get("name")),
                    description: text(skill.get("description")),
                    tags: strings(skill.get("tags")),
                })
                .collect()
        })
        .unwrap_or_default();
    CandidateCard {
        name: name.to_owned(),
        description: text(card.get("description")),
        skills,
        input_modes: strings(card.get("defaultInputModes")),
        output_modes: strings(card.get("defaultOutputModes")),
        role: target
            .facts
            .as_ref()
            .map(|facts| facts.role)
            .unwrap_or_default(),
        trust: target
            .facts
            .as_ref()
            .map_or(TrustLevel::Registered, |facts| facts.trust),
        org: target.facts.as_ref().map(|facts| facts.org.clone()),
    }
}

/// A planner agent called through the orchestrator's dispatcher, as the
/// caller.
struct DispatchPlanner {
    dispatch: Arc<dyn Dispatch>,
    principal: Arc<Principal>,
    origin: Option<std::net::IpAddr>,
    agent: String,
    plan_id: Uuid,
    graph_name: Arc<str>,
    /// What the planner reported using, over every answer.
    usage: std::sync::Mutex<Usage>,
}

#[async_trait::async_trait]
impl PlannerAgent for DispatchPlanner {
    async fn ask(&self, message: Value) -> Result<Value, PlannerError> {
        let call = AgentCall {
            run_id: self.plan_id,
            graph_id: self.graph_name.clone(),
            caller: Some(self.principal.clone()),
            origin: self.origin,
            node_id: "planner".to_owned(),
            agent: self.agent.clone(),
            message,
            traceparent: child_traceparent(&new_trace_id()),
            deadline: None,
            stream: None,
        };
        let reply =
            self.dispatch
                .call(call)
                .await
                .map_err(|error| PlannerError::PlannerFailed {
                    message: error.to_string(),
                })?;
        if let Ok(mut usage) = self.usage.lock() {
            usage.add(reply.usage);
        }
        reply_output(&reply.response).map_err(|error| PlannerError::PlannerFailed {
            message: error.message,
        })
    }
}

/// What a run's re-plan settings say about its plan: the id and version
/// the run is on.
fn plan_reference(plan_id: Uuid, version: u32) -> Value {
    serde_json::json!({"plan_id": plan_id, "version": version})
}

/// The planner's name without what `:approve` and re-plans add to it.
fn planner_of(stored: &StoredPlan) -> &str {
    stored
        .planner
        .split_once(" (")
        .map_or(stored.planner.as_str(), |(name, _)| name)
}

/// The executor's [`Replanner`] (§9.2): asks a plan's own planner (the
/// built-in one or its planner agent, as the run's caller) for a new plan
/// from the failure point, keeps the finished steps, checks the new plan
/// for the caller exactly like the first one (schema, constraints, policy,
/// graph rules), stores it as the plan's next version and hands the
/// executor its graph.
pub struct PlanReplanner {
    planning: Arc<Planning>,
}

// === impl PlanReplanner ===

impl PlanReplanner {
    /// A replanner over `planning`.
    pub fn new(planning: Arc<Planning>) -> Self {
        Self { planning }
    }

    async fn revise(&self, request: ReplanRequest) -> Result<Revision, ApiError> {
        let planning = &self.planning;
        let reference = |key: &str| request.plan.get(key).cloned().unwrap_or(Value::Null);
        let plan_id: Uuid = serde_json::from_value(reference("plan_id"))
            .map_err(|_| ApiError::new(ErrorKind::Internal, "the run names no plan"))?;
        let version: u32 = serde_json::from_value(reference("version"))
            .map_err(|_| ApiError::new(ErrorKind::Internal, "the run names no plan version"))?;
        let principal = request
            .caller
            .as_deref()
            .cloned()
            .unwrap_or_else(Principal::anonymous);
        let caller = Caller {
            loopback: request.origin.is_some_and(|address| address.is_loopback()),
            origin: request.origin,
            principal,
            request_id: None,
        };
        let stored = planning
            .owned(&plan_id.to_string(), Some(version), &caller)
            .await?;
        let previous = stored.document.clone();
        // The candidates: the agents the plan considered and used, as the
        // caller may use them now.
        let mut names: Vec<String> = previous
            .candidates
            .iter()
            .map(|considered| considered.agent.clone())
            .chain(previous.steps.iter().map(|step| step.agent.clone()))
            .collect();
        names.sort();
        names.dedup();
        let asked = PlanRequest {
            goal: previous.goal.clone(),
            agents: names,
            constraints: stored.constraints.clone(),
            ..PlanRequest::default()
        };
        let (candidates, access) = planning.candidates(&asked, &caller).await?;
        let step_agent = |id: &str| {
            previous
                .steps
                .iter()
                .find(|step| step.id == id)
                .map(|step| step.agent.clone())
                .unwrap_or_default()
        };
        let context = ReplanContext {
            number: request.number,
            current_plan: previous.clone(),
            failed: FailedPlanStep {
                id: request.failed.node_id.clone(),
                agent: request
                    .failed
                    .agent
                    .clone()
                    .unwrap_or_else(|| step_agent(&request.failed.node_id)),
                error: request.failed.error.clone(),
            },
            completed: request
                .completed
                .iter()
                .map(|step| CompletedPlanStep {
                    id: step.node_id.clone(),
                    agent: step
                        .agent
                        .clone()
                        .unwrap_or_else(|| step_agent(&step.node_id)),
                    output: step.output.clone(),
                })
                .collect(),
        };
        let completed: Vec<String> = context
            .completed
            .iter()
            .map(|step| step.id.clone())
            .collect();
        let limits = planning.limits;
        let constraints = stored.constraints.clone();
        let name = stored.graph_name.clone();
        let check = move |plan: &PlanDocument| {
            let merged = keep_completed(&previous, plan, &completed)?;
            check_plan(&merged, &name, &constraints, &access, &limits)
        };
        let planner = planner_of(&stored).to_owned();
        let (valid, usage) = if planner == "builtin" {
            // Agents that failed in earlier re-plans of this plan are not
            // chosen again.
            let failed_before: Vec<String> = stored
                .document
                .candidates
                .iter()
                .filter(|considered| considered.reason.starts_with("failed in re-plan"))
                .map(|considered| considered.agent.clone())
                .collect();
            let document = convergio_planner::replan::deterministic(
                &context,
                &candidates,
                &stored.constraints,
                &failed_before,
            )?;
            let valid = check(&document).map_err(|violations| {
                ApiError::from(PlannerError::Invalid {
                    steps: offending_steps(&document, &violations),
                    violations,
                })
            })?;
            (valid, Usage::default())
        } else {
            let agent = DispatchPlanner {
                dispatch: planning.dispatch.clone(),
                principal: Arc::new(caller.principal.clone()),
                origin: caller.origin,
                agent: planner.clone(),
                plan_id,
                graph_name: Arc::from(stored.graph_name.as_str()),
                usage: std::sync::Mutex::new(Usage::default()),
            };
            let data = serde_json::to_value(&context)
                .map_err(|_| ApiError::new(ErrorKind::Internal, problem::INTERNAL_DETAIL))?;
            let valid = replan_with_agent(
                &agent,
                &stored.document.goal,
                &stored.constraints,
                &candidates,
                &data,
                &check,
            )
            .await?
            .0;
            let usage = agent.usage.lock().map(|usage| *usage).unwrap_or_default();
            (valid, usage)
        };
        let ValidPlan {
            plan,
            mut spec,
            mut graph,
        } = valid;
        // The run is checkpointed; its new graph says so too.
        spec.config.checkpoint_enabled = true;
        graph.config.checkpoint_enabled = true;
        let source = to_yaml(&spec);
        let input = run_input(&plan, Some(request.input.clone()));
        let revised = StoredPlan {
            status: PlanStatus::Executed,
            planner: format!("{planner} (re-plan {})", request.number),
            graph_yaml: source.clone(),
            document: plan,
            pending_execution: None,
            run_id: Some(request.run_id),
            ..stored
        };
        let revised = {
            let _recording = planning.recording.lock().await;
            planning.store.put(&revised).await?
        };
        Ok(Revision {
            source,
            graph: Arc::new(graph),
            input: (input != request.input).then_some(input),
            plan: plan_reference(revised.plan_id, revised.version),
            planner,
            usage,
        })
    }
}

#[async_trait::async_trait]
impl Replanner for PlanReplanner {
    async fn replan(&self, request: ReplanRequest) -> Result<Revision, String> {
        self.revise(request).await.map_err(|error| {
            let problem = &error.problem;
            let mut text = problem.detail.clone();
            for violation in &problem.violations {
                text.push_str(&format!("; {}: {}", violation.pointer, violation.message));
            }
            text
        })
    }
}

/// The plan routes. Mount behind [`crate::layers::with_layers`].
pub fn plans_router(api: PlansApi) -> Router {
    Router::new()
        .route("/v1/plans", get(list_plans).post(create_plan))
        .route("/v1/plans/{id}", get(get_plan).post(plan_action))
        .with_state(api)
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_plan, list_plans, get_plan, plan_action),
    tags((name = "plans", description = "Plans: from a goal to a validated, executable graph"))
)]
pub(crate) struct PlansApiDoc;

/// Who asks, owned so a handler's future borrows nothing of the request.
struct Caller {
    principal: Principal,
    loopback: bool,
    origin: Option<std::net::IpAddr>,
    request_id: Option<RequestId>,
}

// === impl Caller ===

impl Caller {
    fn of(extensions: &axum::http::Extensions) -> Self {
        let origin = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(address)| address.ip());
        Self {
            principal: extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
            loopback: origin.is_some_and(|address| address.is_loopback()),
            origin,
            request_id: extensions.get::<RequestId>().cloned(),
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body, what: &str) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    "the request body is over the limit",
                )
            } else {
                ApiError::new(
                    ErrorKind::MalformedBody,
                    format!("reading the request body failed: {error}"),
                )
            }
        })?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        bytes::Bytes::from_static(b"{}")
    } else {
        bytes
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(ErrorKind::MalformedBody, format!("invalid {what}: {error}"))
    })?;
    if let Some(pointer) = find_nul(&value) {
        return Err(ApiError::from_problem(
            Problem::new(ErrorKind::InvalidInput, format!("invalid {what}")).with_violations(vec![
                Violation {
                    pointer,
                    message: convergio_schemas::validate::NUL_MESSAGE.to_owned(),
                },
            ]),
        ));
    }
    serde_json::from_value(value)
        .map_err(|error| ApiError::new(ErrorKind::InvalidInput, format!("invalid {what}: {error}")))
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

#[utoipa::path(
    post,
    path = "/v1/plans",
    operation_id = "createPlan",
    tag = "plans",
    request_body(description = "`{goal, inputs?, constraints?, planner?}`", content((Object = "application/json"))),
    responses(
        (status = 201, description = "The validated plan.", body = Object),
        (status = 404, description = "An agent the caller may not use"),
        (status = 415, description = "The body is not application/json"),
        (status = 422, description = "The plan does not validate"),
        (status = 502, description = "The planner agent answered badly"),
        (status = 504, description = "The planner agent did not answer in time"),
    )
)]
async fn create_plan(State(api): State<PlansApi>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let outcome = async {
        let asked: PlanRequest = read_json(body, "plan request").await?;
        if asked.goal.trim().is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidInput,
                "goal must not be empty",
            ));
        }
        let org = caller.principal.org.clone().unwrap_or_default();
        let allowed = api
            .inner
            .gate
            .decide_graph(
                &caller.principal,
                GraphAction::Plan,
                "plan",
                &org,
                caller.loopback,
                caller.request_id.as_ref(),
            )
            .await;
        if !allowed {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "forbidden: create_plan on graph:plan",
            ));
        }
        let (candidates, access) = api.candidates(&asked, &caller).await?;
        if candidates.is_empty() {
            return Err(PlannerError::NoCandidates.into());
        }
        // UUIDv7: id order is creation order, which listings page by.
        let plan_id = Uuid::now_v7();
        let graph_name = format!("plan-{}", plan_id.simple());
        let planner = asked
            .planner
            .clone()
            .unwrap_or_else(|| "builtin".to_owned());
        let valid = if planner == "builtin" {
            let document =
                deterministic::plan(&asked.goal, &candidates, &asked.inputs, &asked.constraints)?;
            api.check(&document, &graph_name, &asked.constraints, &access)?
        } else {
            let (found, target) = api.access_by_name(&planner, &caller).await?;
            let declares_plan = target.as_ref().is_some_and(|target| {
                candidate(&planner, target)
                    .skills
                    .iter()
                    .any(|skill| skill.id == PLAN_SKILL)
            });
            let why = match found {
                Access::Callable(_) if declares_plan => None,
                Access::Callable(_) => Some(format!("its card declares no `{PLAN_SKILL}` skill")),
                Access::NotCallable => Some("policy does not let the caller call it".to_owned()),
                Access::External => {
                    Some("planners of other organisations are not supported yet".to_owned())
                }
                Access::Unknown => Some("no agent of that name is known to the caller".to_owned()),
            };
            if let Some(why) = why {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    format!("planner {planner} cannot plan: {why}"),
                ));
            }
            let agent = DispatchPlanner {
                dispatch: api.inner.dispatch.clone(),
                principal: Arc::new(caller.principal.clone()),
                origin: caller.origin,
                agent: planner.clone(),
                plan_id,
                graph_name: Arc::from(graph_name.as_str()),
                usage: std::sync::Mutex::new(Usage::default()),
            };
            let limits = api.inner.limits;
            let constraints = asked.constraints.clone();
            let name = graph_name.clone();
            let check =
                move |plan: &PlanDocument| check_plan(plan, &name, &constraints, &access, &limits);
            plan_with_agent(&agent, &asked.goal, &asked.constraints, &candidates, &check)
                .await?
                .0
        };
        let stored = StoredPlan {
            plan_id,
            version: 0,
            org,
            owner: caller.principal.owner_key(),
            status: PlanStatus::Proposed,
            planner,
            constraints: asked.constraints.clone(),
            graph_yaml: to_yaml(&valid.spec),
            document: valid.plan,
            graph_name,
            pending_execution: None,
            run_id: None,
            stored_at: chrono::Utc::now(),
        };
        let stored = api.inner.store.put(&stored).await?;
        let mut response = json_response(StatusCode::CREATED, &stored);
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/plans/{}", stored.plan_id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    };
    respond(outcome.await, caller.request_id.clone())
}

/// The query of `GET /v1/plans`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansQuery {
    /// Only plans whose latest version is in this status.
    #[serde(default)]
    status: Option<String>,
    /// Plans per page (default 50, at most 500).
    #[serde(default)]
    page_size: Option<u32>,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    page_token: Option<String>,
}

/// `GET /v1/plans`: the caller's plans, newest first. Like a plan itself,
/// a listing is its owner's only, so it needs no decision beyond who asks.
#[utoipa::path(
    get,
    path = "/v1/plans",
    operation_id = "listPlans",
    tag = "plans",
    params(
        ("status" = Option<String>, Query, description = "Only plans in this status: proposed, awaiting_review, rejected or executed"),
        ("page_size" = Option<u32>, Query, description = "Plans per page (default 50, at most 500)"),
        ("page_token" = Option<String>, Query, description = "The previous page's next_page_token"),
    ),
    responses(
        (status = 200, description = "`{plans, next_page_token?}`: the caller's plans (latest versions), newest first.", body = Object),
        (status = 400, description = "A bad filter or page token"),
    )
)]
async fn list_plans(State(api): State<PlansApi>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let outcome = async {
        let query: PlansQuery = match parts.uri.query() {
            None | Some("") => PlansQuery::default(),
            Some(_) => axum::extract::Query::try_from_uri(&parts.uri)
                .map(|axum::extract::Query(query)| query)
                .map_err(|error| ApiError::new(ErrorKind::InvalidInput, error.body_text()))?,
        };
        let status = query
            .status
            .map(|text| {
                serde_json::from_value::<PlanStatus>(Value::String(text.clone())).map_err(|_| {
                    ApiError::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "unknown status {:?}; use proposed, awaiting_review, rejected or executed",
                            convergio_schemas::echo(&text)
                        ),
                    )
                })
            })
            .transpose()?;
        let (page_size, before) = page(query.page_size, query.page_token)?;
        let mut plans = api
            .inner
            .store
            .list(&PlanFilter {
                owner: caller.principal.owner_key(),
                status,
                before,
                limit: page_size + 1,
            })
            .await?;
        let next_page_token = if plans.len() > page_size as usize {
            plans.truncate(page_size as usize);
            plans.last().map(|plan| plan.plan_id.to_string())
        } else {
            None
        };
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "plans": plans, "next_page_token": next_page_token }),
        ))
    };
    respond(outcome.await, caller.request_id.clone())
}

/// The query of `GET /v1/plans/{id}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    #[serde(default)]
    version: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/plans/{id}",
    operation_id = "getPlan",
    tag = "plans",
    params(
        ("id" = String, Path, description = "The plan's id"),
        ("version" = Option<u32>, Query, description = "An older version"),
    ),
    responses(
        (status = 200, description = "The plan.", body = Object),
        (status = 404, description = "No such plan"),
    )
)]
async fn get_plan(
    State(api): State<PlansApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let outcome = async {
        let query: PlanQuery = match parts.uri.query() {
            None | Some("") => PlanQuery::default(),
            Some(_) => axum::extract::Query::try_from_uri(&parts.uri)
                .map(|axum::extract::Query(query)| query)
                .map_err(|error| ApiError::new(ErrorKind::InvalidInput, error.body_text()))?,
        };
        let plan = api.owned(&id, query.version, &caller).await?;
        Ok(json_response(StatusCode::OK, &plan))
    };
    respond(outcome.await, caller.request_id.clone())
}

#[utoipa::path(
    post,
    path = "/v1/plans/{id}",
    operation_id = "actOnPlan",
    tag = "plans",
    params(
        ("id" = String, Path, description = "`<plan id>:execute`, `:approve` or `:reject`"),
    ),
    request_body(description = "The action's arguments, if any", content((Object = "application/json"))),
    responses(
        (status = 200, description = "Done.", body = Object),
        (status = 202, description = "Executing; waiting for a human.", body = Object),
        (status = 404, description = "No such plan or action"),
        (status = 409, description = "The plan is not in a state that allows it"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn plan_action(
    State(api): State<PlansApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let outcome = async {
        let Some((plan_id, action)) = id.rsplit_once(':') else {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "use :execute, :approve or :reject",
            ));
        };
        let stored = api.owned(plan_id, None, &caller).await?;
        let wrong_state = |action: &str| {
            ApiError::from(PlannerError::WrongState {
                plan_id: stored.plan_id.to_string(),
                status: stored.status.as_str().to_owned(),
                action: action.to_owned(),
            })
        };
        match action {
            "execute" => {
                let execute: ExecutePlan = read_json(body, "execute request").await?;
                if matches!(
                    stored.status,
                    PlanStatus::AwaitingReview | PlanStatus::Rejected
                ) {
                    return Err(wrong_state("execute"));
                }
                if execute.review {
                    // Validate now too: a plan that cannot run is not worth
                    // a reviewer's time.
                    let access = api.access_for(&stored.document, &caller).await?;
                    api.check(
                        &stored.document,
                        &stored.graph_name,
                        &stored.constraints,
                        &access,
                    )?;
                    let mut waiting = stored.clone();
                    waiting.status = PlanStatus::AwaitingReview;
                    waiting.pending_execution = serde_json::to_value(ExecutePlan {
                        review: false,
                        ..execute
                    })
                    .ok();
                    let waiting = api.inner.store.put(&waiting).await?;
                    return Ok(json_response(StatusCode::ACCEPTED, &waiting));
                }
                api.execute(stored, execute, &caller, &parts.extensions)
                    .await
            }
            "approve" => {
                let decision: ReviewDecision = read_json(body, "review decision").await?;
                if stored.status != PlanStatus::AwaitingReview {
                    return Err(wrong_state("approve"));
                }
                let execute: ExecutePlan = stored
                    .pending_execution
                    .clone()
                    .and_then(|value| serde_json::from_value(value).ok())
                    .unwrap_or_default();
                let mut approved = stored.clone();
                if let Some(edited) = decision.plan {
                    let access = api.access_for(&edited, &caller).await?;
                    let valid =
                        api.check(&edited, &stored.graph_name, &stored.constraints, &access)?;
                    approved.graph_yaml = to_yaml(&valid.spec);
                    approved.document = valid.plan;
                    approved.planner = format!("{} (edited in review)", stored.planner);
                    approved.status = PlanStatus::Proposed;
                    approved.pending_execution = None;
                    approved = api.inner.store.put(&approved).await?;
                }
                api.execute(approved, execute, &caller, &parts.extensions)
                    .await
            }
            "reject" => {
                let _decision: ReviewDecision = read_json(body, "review decision").await?;
                if stored.status != PlanStatus::AwaitingReview {
                    return Err(wrong_state("reject"));
                }
                let mut rejected = stored.clone();
                rejected.status = PlanStatus::Rejected;
                rejected.pending_execution = None;
                let rejected = api.inner.store.put(&rejected).await?;
                Ok(json_response(StatusCode::OK, &rejected))
            }
            _ => Err(ApiError::new(
                ErrorKind::NotFound,
                "use :execute, :approve or :reject",
            )),
        }
    };
    respond(outcome.await, caller.request_id.clone())
}

impl From<PlannerError> for ApiError {
    fn from(error: PlannerError) -> Self {
        // The one error path: internals are logged once and never shown.
        let violations = error.violations().to_vec();
        Self::from_problem(
            problem::http::problem_for(&error, error.kind()).with_violations(violations),
        )
    }
}
