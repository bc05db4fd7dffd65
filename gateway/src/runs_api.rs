//! The graph and run API, mounted behind the same layers as every surface:
//!
//! - `POST /v1/graphs` stores a graph document (YAML or JSON text) after
//!   validating it, agents checked against the registry, as a new version
//!   of the caller's organisation's graph of that name; `GET /v1/graphs`
//!   lists the latest versions, `GET /v1/graphs/{name}` returns one with
//!   its source parsed as `spec` (`?version=N` an older one; `?org=` names another organisation's,
//!   for callers policy lets read it), `POST /v1/graphs:validate`
//!   validates without storing. Storing, reading and running are the
//!   policy actions `store_graph`, `read_graph` and `run_graph` on the
//!   graph, whose organisation policies see as `context.target_org`; a
//!   graph the caller may not read is answered as an unknown one.
//! - `POST /v1/runs` starts a run of a stored graph (`graph`) or an inline
//!   document (`graph_yaml`) in mode `sync` (the finished run), `async`
//!   (202 and the run id), `stream` (server-sent events) or `batch` (one
//!   result per input); `GET /v1/runs` lists the caller's runs, newest
//!   first (filters `status`, `graph`, `since`, `until`; `page_size` and
//!   `page_token` paging); `GET /v1/runs/{id}` (status), `…/result`,
//!   `…/events` (SSE, replayed from the start then live) and `…/trace`.
//! - Durable runs (issue 8, when the executor has a journal): `POST
//!   /v1/runs/{id}:resume` continues an interrupted run (or, with
//!   `checkpoint`, starts a new run from a named checkpoint, optionally with
//!   a new `input`), `GET|POST /v1/runs/{id}/checkpoints` lists and names
//!   checkpoints, `POST /v1/runs/{id}:approve|:reject|:input` decide a run
//!   `waiting_for_human`. `POST /v1/runs/{id}:cancel` stops a run (its
//!   owner only) and, for a checkpointed run, marks it cancelled in the
//!   store so no replica resumes it. Status, result and trace of a checkpointed run are
//!   read from the store when this replica does not hold it (after a
//!   restart, or a run of another replica).
//! - `GET /metrics`: the §8.2 metrics and the gateway's families
//!   ([`crate::metrics`]) in the Prometheus text format, for callers policy
//!   lets `read_metrics` (operators and administrators in the shipped
//!   policies).
//! - Validation treats an agent the caller may not `discover` as unknown,
//!   so validating a graph reveals nothing the registry's discovery would
//!   not.
//!
//! Errors are problem documents (YAML errors and validation failures list
//! every violation with its line); a failed request changes nothing stored.
//!
//! Decisions: graphs are kept in a [`GraphStore`] (the database's `graphs`
//! table in `convergio serve`; in memory when none is given), recompiled
//! against the registry on every run by name; runs are in memory unless
//! checkpointed. Every HTTP run is started as a streaming run whose
//! events a pump task appends to a per-run [`EventLog`], so `sync`, `async`
//! and `stream` share one code path and `/events` can replay a run that is
//! already going. A run belongs to the principal that started it: anyone
//! else asking for it gets the unknown-run answer. A `sync` request is
//! bounded by the gateway's request timeout like any request; the run itself
//! continues and stays reachable by id, so long runs should use `async` or
//! `stream`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Query;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use convergio_orchestrator::api::{
    BatchItem, BatchOutcome, GraphList, GraphSummary, RunAccepted, RunList, RunMode, RunOutcome,
    StartRun,
};
use convergio_orchestrator::{
    parse_yaml, validate, Continue, Executor, Graph, GraphStore, Limits, OrchestratorError,
    ReplanSettings, RunEvent, RunEvents, RunFilter, RunOptions, RunStatus, RunSummary,
    StaticCatalog,
};
use convergio_schemas::problem;
use convergio_schemas::{AgentId, ErrorKind, Principal};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::api_error::{page, respond, ApiError};
use crate::authorize::{Gatekeeper, GraphAction};
use crate::layers::{is_length_limit, RequestId};
use crate::metrics::Exposition;
use crate::routes::RouteTable;

/// Settings of the graph and run API.
#[derive(Debug, Clone)]
pub struct GraphsConfig {
    /// Size limits of a graph document.
    pub limits: Limits,
    /// Runs of a batch at a time when the request does not say (default 4).
    pub default_batch_concurrency: usize,
    /// Most inputs in one batch request (default 1,000).
    pub max_batch_inputs: usize,
    /// Runs whose events and owner are kept for lookups (default 10,000).
    pub max_retained_runs: usize,
    /// Graph documents parsed and validated at once, each on a blocking
    /// thread (default: half the CPUs, at least one), so callers' documents
    /// never take every core nor any async worker.
    pub compile_concurrency: usize,
    /// How long a document waits for a compile slot before 503 (default 10 s).
    pub compile_wait: std::time::Duration,
    /// Retention's counters and the database size, shown in `/metrics`
    /// when the server runs a pruner (issue 15).
    pub retention_metrics: Option<Arc<crate::retention::RetentionMetrics>>,
    /// Model agents' usage, cost and budget refusals, appended to
    /// `/metrics` when the server serves model agents (issue 17).
    pub model_metrics: Option<Arc<crate::model_metrics::ModelUsageMetrics>>,
}

impl Default for GraphsConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_batch_concurrency: 4,
            max_batch_inputs: 1_000,
            max_retained_runs: 10_000,
            compile_concurrency: std::thread::available_parallelism()
                .map(|cpus| (cpus.get() / 2).max(1))
                .unwrap_or(1),
            compile_wait: std::time::Duration::from_secs(10),
            retention_metrics: None,
            model_metrics: None,
        }
    }
}

/// The state behind the graph and run routes. Cheap to clone.
#[derive(Clone)]
pub struct RunsApi {
    inner: Arc<Inner>,
}

struct Inner {
    /// Everything `/metrics` shows.
    exposition: Arc<Exposition>,
    executor: Executor,
    /// Decides `run_graph` before a run starts (node calls are decided by
    /// the A2A handlers they pass through).
    gate: Arc<dyn Gatekeeper>,
    routes: Arc<dyn RouteTable>,
    config: GraphsConfig,
    /// One permit per graph document being parsed or validated.
    compile_slots: Arc<tokio::sync::Semaphore>,
    graphs: Arc<dyn GraphStore>,
    runs: Mutex<RunIndex>,
}

#[derive(Default)]
struct RunIndex {
    records: HashMap<Uuid, RunRecord>,
    order: VecDeque<Uuid>,
}

struct RunRecord {
    owner: String,
    log: Arc<EventLog>,
}

/// The events of one run so far, and a signal for followers.
pub struct EventLog {
    events: Mutex<Vec<RunEvent>>,
    /// Most events kept (the run's `max_run_events`); the final
    /// `run_finished` is kept beyond it.
    cap: usize,
    /// Bumped on every append; `true` once the run's stream ended.
    version: watch::Sender<(u64, bool)>,
}

// === impl EventLog ===

impl EventLog {
    fn new(cap: usize) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            cap,
            version: watch::Sender::new((0, false)),
        }
    }

    fn push(&self, event: RunEvent) {
        if let Ok(mut events) = self.events.lock() {
            if events.len() < self.cap || matches!(event, RunEvent::RunFinished { .. }) {
                events.push(event);
            } else {
                // Not kept: followers read by position, so nothing changed.
                return;
            }
        }
        self.version.send_modify(|(count, _)| *count += 1);
    }

    fn close(&self) {
        self.version.send_modify(|(_, done)| *done = true);
    }

    fn since(&self, cursor: usize) -> Vec<RunEvent> {
        match self.events.lock() {
            Ok(events) => events.get(cursor..).map(<[_]>::to_vec).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Every event from the first, then live ones until the run ends.
    fn follow(self: Arc<Self>) -> impl Stream<Item = RunEvent> + Send + 'static {
        let mut changes = self.version.subscribe();
        async_stream::stream! {
            let mut cursor = 0;
            loop {
                // Mark the current version seen before reading, so an append
                // racing the read wakes the wait below.
                let (_, done) = *changes.borrow_and_update();
                let batch = self.since(cursor);
                cursor += batch.len();
                for event in batch {
                    yield event;
                }
                if done || changes.changed().await.is_err() {
                    break;
                }
            }
            // Anything appended between the last read and the close.
            for event in self.since(cursor) {
                yield event;
            }
        }
    }

    /// Waits until the run's stream ended.
    async fn finished(&self) {
        let mut changes = self.version.subscribe();
        let _ = changes.wait_for(|(_, done)| *done).await;
    }
}

// === impl RunsApi ===

impl RunsApi {
    /// The API over `executor`, checking agents against `routes` and
    /// keeping stored graphs in `graphs`.
    pub fn new(
        executor: Executor,
        routes: Arc<dyn RouteTable>,
        gate: Arc<dyn Gatekeeper>,
        graphs: Arc<dyn GraphStore>,
        config: GraphsConfig,
        exposition: Arc<Exposition>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                exposition,
                executor,
                gate,
                routes,
                compile_slots: Arc::new(tokio::sync::Semaphore::new(
                    config.compile_concurrency.max(1),
                )),
                config,
                graphs,
                runs: Mutex::new(RunIndex::default()),
            }),
        }
    }

    /// The executor runs go to.
    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// Parses and validates a document, agents checked against the
    /// registry as `caller` sees it.
    ///
    /// Parsing and validation are CPU work on a caller's document, so they
    /// run on blocking threads, at most [`GraphsConfig::compile_concurrency`]
    /// at once (regression: issue #15, defect 1: two hostile documents kept
    /// the async workers busy and `/healthz` stalled for a minute).
    async fn compile(
        &self,
        text: &str,
        caller: &Caller,
    ) -> Result<(Arc<Graph>, Vec<String>), ApiError> {
        let owned = text.to_owned();
        let spec = self.off_runtime(move || parse_yaml(&owned)).await??;
        let agents = spec.agent_names();
        let catalog = StaticCatalog::new(self.known_agents(&agents, caller).await?);
        let limits = self.inner.config.limits;
        let graph = self
            .off_runtime(move || validate(&spec, &catalog, &limits))
            .await?
            .map_err(OrchestratorError::from)?;
        Ok((Arc::new(graph), agents.into_iter().collect()))
    }

    /// Runs `work` on a blocking thread once one of the compile slots is
    /// free; a request that waits longer than the compile wait gets 503.
    async fn off_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = || {
            ApiError::new(
                ErrorKind::Unavailable,
                "too many graph documents are being checked; retry shortly",
            )
        };
        let permit = tokio::time::timeout(
            self.inner.config.compile_wait,
            self.inner.compile_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|error| {
            ApiError::from_problem(problem::http::problem_for(&error, ErrorKind::Internal))
        })
    }

    /// The names among `agents` that can be called: registered agents the
    /// caller may discover (any other is unknown to it, exactly as an
    /// unregistered one: validation is no oracle), and well-formed
    /// `external://` ids (their organisation answers for them).
    async fn known_agents(
        &self,
        agents: &std::collections::BTreeSet<String>,
        caller: &Caller,
    ) -> Result<Vec<String>, ApiError> {
        let mut known = Vec::with_capacity(agents.len());
        for agent in agents {
            let name = match agent.parse::<AgentId>() {
                Ok(AgentId::External { .. }) => {
                    known.push(agent.clone());
                    continue;
                }
                Ok(AgentId::Internal { name }) => name,
                Err(_) if !agent.contains("://") => agent.clone(),
                Err(_) => continue,
            };
            let found = self.inner.routes.resolve(&name).await.map_err(|error| {
                tracing::warn!(error = %error, "agent lookup failed while validating a graph");
                ApiError::new(ErrorKind::Unavailable, "the registry is unavailable")
            })?;
            let visible = found.is_some_and(|target| {
                self.inner
                    .gate
                    .may_discover(&caller.principal, &target, caller.loopback)
            });
            if visible {
                known.push(agent.clone());
            }
        }
        Ok(known)
    }

    /// A stored graph the caller may read, compiled; the unknown-graph
    /// answer when it does not exist or the caller may not read it.
    async fn stored(
        &self,
        name: &str,
        org: &str,
        version: Option<u32>,
        caller: &Caller,
    ) -> Result<(Arc<Graph>, String), ApiError> {
        if !caller.may(self, GraphAction::Read, name, org).await {
            return Err(unknown_graph(name));
        }
        let document = self
            .inner
            .graphs
            .get(org, name, version)
            .await?
            .ok_or_else(|| unknown_graph(name))?;
        let (graph, _) = self.compile(&document.source, caller).await?;
        Ok((graph, document.source))
    }

    fn remember(&self, run_id: Uuid, owner: String, log: Arc<EventLog>) {
        if let Ok(mut index) = self.inner.runs.lock() {
            index.records.insert(run_id, RunRecord { owner, log });
            index.order.push_back(run_id);
            while index.order.len() > self.inner.config.max_retained_runs.max(1) {
                if let Some(old) = index.order.pop_front() {
                    index.records.remove(&old);
                }
            }
        }
    }

    /// The run's id and event log (`None` for a stored run this replica
    /// did not start), if it exists and belongs to `principal`.
    async fn owned_run(
        &self,
        run_id: &str,
        principal: &Principal,
    ) -> Result<(Uuid, Option<Arc<EventLog>>), ApiError> {
        let unknown = || {
            ApiError::from(OrchestratorError::RunNotFound {
                run_id: run_id.to_owned(),
            })
        };
        let id = Uuid::parse_str(run_id).map_err(|_| unknown())?;
        {
            let index = self.inner.runs.lock().map_err(|_| ApiError::poisoned())?;
            match index.records.get(&id) {
                Some(record) if record.owner == principal.owner_key() => {
                    return Ok((id, Some(record.log.clone())))
                }
                Some(_) => return Err(unknown()),
                None => {}
            }
        }
        let Some(journal) = self.inner.executor.journal() else {
            return Err(unknown());
        };
        match journal.load(id, Some(0)).await {
            Ok(stored) if stored.owner == principal.owner_key() => Ok((id, None)),
            Ok(_) | Err(OrchestratorError::RunNotFound { .. }) => Err(unknown()),
            Err(error) => Err(error.into()),
        }
    }

    /// A run's result: from memory, else from the store.
    async fn any_result(
        &self,
        run_id: Uuid,
    ) -> Result<convergio_orchestrator::RunResult, ApiError> {
        match self.inner.executor.result(run_id) {
            Err(OrchestratorError::RunNotFound { .. })
                if self.inner.executor.journal().is_some() =>
            {
                let result = self.inner.executor.stored_result(run_id).await?;
                if result.status == RunStatus::Running {
                    return Err(OrchestratorError::RunNotFinished {
                        run_id: run_id.to_string(),
                    }
                    .into());
                }
                Ok(result)
            }
            other => Ok(other?),
        }
    }

    /// A run's status: from memory, else from the store.
    async fn any_status(&self, run_id: Uuid) -> Result<RunSummary, ApiError> {
        match self.inner.executor.status(run_id) {
            Err(OrchestratorError::RunNotFound { .. })
                if self.inner.executor.journal().is_some() =>
            {
                let result = self.inner.executor.stored_result(run_id).await?;
                Ok(RunSummary {
                    run_id,
                    graph_id: result.state.graph_id,
                    status: result.status,
                    started_at: result.state.started_at,
                    finished_at: result.state.finished_at,
                })
            }
            other => Ok(other?),
        }
    }

    /// Logs a continued run's events like a new run's.
    fn pump(&self, mut events: RunEvents, owner: String) -> (Uuid, Arc<EventLog>) {
        let run_id = events.run_id;
        let log = Arc::new(EventLog::new(self.inner.config.limits.max_run_events));
        self.remember(run_id, owner, log.clone());
        let pump = log.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                pump.push(event);
            }
            pump.close();
        });
        (run_id, log)
    }

    /// Starts a streaming run whose events a pump task logs.
    /// `options.caller` is `principal`.
    fn start_logged(
        &self,
        graph: Arc<Graph>,
        input: Value,
        principal: &Principal,
        options: RunOptions,
    ) -> Result<(Uuid, Arc<EventLog>), ApiError> {
        // The run's task lives in its `invoke_workflow` span, a child of
        // this request's span (issue 18).
        let span = crate::telemetry::invoke_workflow_span(
            graph.name.as_ref(),
            principal.org.as_deref().unwrap_or_default(),
        );
        // The executor closes the stream only once the result is
        // retrievable by id.
        let events = span.in_scope(|| self.inner.executor.stream_with(graph, input, options))?;
        span.record("convergio.run_id", events.run_id.to_string());
        Ok(self.pump(events, principal.owner_key()))
    }
}

/// The graph and run routes plus `/metrics`. Mount behind
/// [`crate::layers::with_layers`].
pub fn runs_router(api: RunsApi) -> Router {
    Router::new()
        .route("/v1/graphs", post(store_graph).get(list_graphs))
        .route("/v1/graphs:validate", post(validate_graph))
        .route("/v1/graphs/{name}", get(get_graph))
        .route("/v1/runs", post(start_run).get(list_runs))
        .route("/v1/runs/{id}", get(run_status).post(run_action))
        .route(
            "/v1/runs/{id}/checkpoints",
            get(list_checkpoints).post(name_checkpoint),
        )
        .route("/v1/runs/{id}/result", get(run_result))
        .route("/v1/runs/{id}/events", get(run_events))
        .route("/v1/runs/{id}/trace", get(run_trace))
        .route("/metrics", get(metrics))
        .with_state(api)
}

/// A request's principal, request id, URI and body.
struct Incoming {
    principal: Principal,
    request_id: Option<RequestId>,
    /// Where the caller connected from, handed to the run's agent calls.
    origin: Option<std::net::IpAddr>,
    uri: axum::http::Uri,
    body: Body,
    /// How the run re-plans: set only in-process, by the plan API's
    /// `:execute` (a request extension no client can send).
    replan: Option<ReplanSettings>,
}

fn incoming(request: Request) -> Incoming {
    let (parts, body) = request.into_parts();
    Incoming {
        principal: parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::anonymous),
        request_id: parts.extensions.get::<RequestId>().cloned(),
        origin: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(address)| address.ip()),
        replan: parts.extensions.get::<ReplanSettings>().cloned(),
        uri: parts.uri,
        body,
    }
}

async fn read_text(body: Body) -> Result<String, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, usize::MAX)
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
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::new(ErrorKind::MalformedBody, "the body is not UTF-8 text"))
}

/// Who asks, as the graph decisions need it. Owned, so a handler's future
/// holds no borrow of the request (whose body is not `Sync`).
struct Caller {
    principal: Principal,
    loopback: bool,
    request_id: Option<RequestId>,
}

// === impl Caller ===

impl Caller {
    fn of(request: &Incoming) -> Self {
        Self {
            principal: request.principal.clone(),
            loopback: request.origin.is_some_and(|address| address.is_loopback()),
            request_id: request.request_id.clone(),
        }
    }

    /// The organisation a graph request means: the one asked for, else the
    /// caller's own (empty for callers without one).
    fn org(&self, asked: Option<String>) -> String {
        asked.unwrap_or_else(|| self.principal.org.clone().unwrap_or_default())
    }

    /// Decides (and records) `action` on `org`'s graph `name`.
    async fn may(&self, api: &RunsApi, action: GraphAction, name: &str, org: &str) -> bool {
        api.inner
            .gate
            .decide_graph(
                &self.principal,
                action,
                name,
                org,
                self.loopback,
                self.request_id.as_ref(),
            )
            .await
    }

    /// A refusal of `action`: forbidden when the caller may know the graph
    /// (its own organisation's, or one it may read), else the unknown-graph
    /// answer, so another organisation's graphs do not leak.
    async fn refusal(&self, api: &RunsApi, action: GraphAction, name: &str, org: &str) -> ApiError {
        let own = self.principal.org.as_deref().unwrap_or_default() == org;
        if own || (action != GraphAction::Read && self.may(api, GraphAction::Read, name, org).await)
        {
            let verb = match action {
                GraphAction::Store => "store_graph",
                GraphAction::Read => "read_graph",
                GraphAction::Run => "run_graph",
                GraphAction::Plan => "create_plan",
            };
            ApiError::new(
                ErrorKind::Forbidden,
                format!("forbidden: {verb} on graph:{name}"),
            )
        } else {
            unknown_graph(name)
        }
    }
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(store_graph, validate_graph, list_graphs, get_graph, start_run, list_runs, run_status, run_action, list_checkpoints, name_checkpoint, run_result, run_events, run_trace),
    tags((name = "runs", description = "Graphs of agents and their runs"))
)]
pub(crate) struct RunsApiDoc;

fn unknown_graph(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("graph {name} not found"))
}

/// The query of the stored-graph routes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphQuery {
    /// Another organisation's graphs (policy decides).
    #[serde(default)]
    org: Option<String>,
    /// One version (`GET /v1/graphs/{name}` only).
    #[serde(default)]
    version: Option<u32>,
}

/// A query string as `T`, or a problem naming what is wrong.
fn query<T: serde::de::DeserializeOwned + Default>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    if uri.query().is_none_or(str::is_empty) {
        return Ok(T::default());
    }
    Query::<T>::try_from_uri(uri)
        .map(|Query(value)| value)
        .map_err(|error| ApiError::new(ErrorKind::InvalidInput, error.body_text()))
}

#[utoipa::path(
    post,
    path = "/v1/graphs",
    operation_id = "storeGraph",
    tag = "graphs",
    request_body(description = "A graph document (YAML or JSON text)", content((String = "application/yaml"), (String = "application/json"), (String = "text/plain"))),
    responses(
        (status = 201, description = "Stored as a new version.", body = Object),
        (status = 415, description = "Not a graph document media type"),
        (status = 422, description = "The graph does not validate"),
    )
)]
async fn store_graph(State(api): State<RunsApi>, request: Request) -> Response {
    let mut request = incoming(request);
    let body = std::mem::take(&mut request.body);
    let caller = Caller::of(&request);
    let uri = request.uri.clone();
    let outcome = async {
        let asked: GraphQuery = query(&uri)?;
        let org = caller.org(asked.org);
        let source = read_text(body).await?;
        let (graph, agents) = api.compile(&source, &caller).await?;
        if !caller
            .may(&api, GraphAction::Store, &graph.name, &org)
            .await
        {
            return Err(caller
                .refusal(&api, GraphAction::Store, &graph.name, &org)
                .await);
        }
        let mut summary = GraphSummary::new(&graph, agents, 0);
        summary.org = org;
        let summary = api.inner.graphs.put(&summary, &source).await?;
        let status = if summary.version == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut response = json_response(status, &summary);
        if let Ok(location) = HeaderValue::from_str(&format!(
            "/v1/graphs/{}?version={}",
            summary.name, summary.version
        )) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    };
    respond(outcome.await, request.request_id.clone())
}

#[utoipa::path(
    post,
    path = "/v1/graphs:validate",
    operation_id = "validateGraph",
    tag = "graphs",
    request_body(description = "A graph document (YAML or JSON text)", content((String = "application/yaml"), (String = "application/json"), (String = "text/plain"))),
    responses(
        (status = 200, description = "Valid.", body = Object),
        (status = 415, description = "Not a graph document media type"),
        (status = 422, description = "The graph does not validate"),
    )
)]
async fn validate_graph(State(api): State<RunsApi>, request: Request) -> Response {
    let mut request = incoming(request);
    let body = std::mem::take(&mut request.body);
    let caller = Caller::of(&request);
    let outcome = async {
        let source = read_text(body).await?;
        let (graph, agents) = api.compile(&source, &caller).await?;
        Ok(json_response(
            StatusCode::OK,
            &GraphSummary::new(&graph, agents, 0),
        ))
    };
    respond(outcome.await, request.request_id.clone())
}

#[utoipa::path(
    get,
    path = "/v1/graphs",
    operation_id = "listGraphs",
    tag = "graphs",
    params(
        ("org" = Option<String>, Query, description = "Another organisation's graphs (policy decides)"),
    ),
    responses(
        (status = 200, description = "The latest version of every graph.", body = Object),
    )
)]
async fn list_graphs(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let caller = Caller::of(&request);
    let uri = request.uri.clone();
    let outcome = async {
        let asked: GraphQuery = query(&uri)?;
        let org = caller.org(asked.org);
        let mut graphs = Vec::new();
        for summary in api.inner.graphs.list(&org).await? {
            if caller
                .may(&api, GraphAction::Read, &summary.name, &org)
                .await
            {
                graphs.push(summary);
            }
        }
        Ok(json_response(StatusCode::OK, &GraphList { graphs }))
    };
    respond(outcome.await, request.request_id.clone())
}

#[utoipa::path(
    get,
    path = "/v1/graphs/{name}",
    operation_id = "getGraph",
    tag = "graphs",
    params(
        ("name" = String, Path, description = "The graph's name"),
        ("org" = Option<String>, Query, description = "Another organisation's graphs (policy decides)"),
        ("version" = Option<u32>, Query, description = "An older version"),
    ),
    responses(
        (status = 200, description = "The graph, its source parsed as `spec`.", body = Object),
        (status = 404, description = "No such graph, or the caller may not read it"),
    )
)]
async fn get_graph(
    State(api): State<RunsApi>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let caller = Caller::of(&request);
    let uri = request.uri.clone();
    let outcome = async {
        let asked: GraphQuery = query(&uri)?;
        let org = caller.org(asked.org);
        if !caller.may(&api, GraphAction::Read, &name, &org).await {
            return Err(unknown_graph(&name));
        }
        let document = api
            .inner
            .graphs
            .get(&org, &name, asked.version)
            .await?
            .ok_or_else(|| unknown_graph(&name))?;
        Ok(json_response(StatusCode::OK, &with_spec(&document)))
    };
    respond(outcome.await, request.request_id.clone())
}

/// A stored graph's answer: the document plus `spec`, its source parsed
/// (nodes, edges, config as JSON), so a client such as the web console can
/// draw the graph without a YAML parser of its own. A source that no
/// longer parses (it was validated when stored) is answered without it.
fn with_spec(document: &convergio_orchestrator::api::GraphDocument) -> Value {
    let mut answer = serde_json::to_value(document).unwrap_or(Value::Null);
    let spec = parse_yaml(&document.source)
        .ok()
        .and_then(|spec| serde_json::to_value(spec).ok());
    if let (Some(object), Some(spec)) = (answer.as_object_mut(), spec) {
        object.insert("spec".to_owned(), spec);
    }
    answer
}

/// The query of `GET /v1/runs`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// Only runs in this status.
    #[serde(default)]
    status: Option<String>,
    /// Only runs of this graph.
    #[serde(default)]
    graph: Option<String>,
    /// Only runs started at or after this RFC 3339 time.
    #[serde(default)]
    since: Option<String>,
    /// Only runs started before this RFC 3339 time.
    #[serde(default)]
    until: Option<String>,
    /// Runs per page (default 50, at most 500).
    #[serde(default)]
    page_size: Option<u32>,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    page_token: Option<String>,
}

fn rfc3339(field: &str, text: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidInput,
                    format!("{field} must be an RFC 3339 time such as 2026-01-31T09:00:00Z, not {text:?}"),
                )
            })
    })
    .transpose()
}

/// `GET /v1/runs`: the caller's runs, newest first, from this replica's
/// memory and from the run store (checkpointed runs of any replica).
#[utoipa::path(
    get,
    path = "/v1/runs",
    operation_id = "listRuns",
    tag = "runs",
    params(
        ("status" = Option<String>, Query, description = "Only runs in this status"),
        ("graph" = Option<String>, Query, description = "Only runs of this graph"),
        ("since" = Option<String>, Query, description = "Only runs started at or after this RFC 3339 time"),
        ("until" = Option<String>, Query, description = "Only runs started before this RFC 3339 time"),
        ("page_size" = Option<u32>, Query, description = "Runs per page (default 50, at most 500)"),
        ("page_token" = Option<String>, Query, description = "The previous page's next_page_token"),
    ),
    responses(
        (status = 200, description = "The caller's runs, newest first.", body = Object),
    )
)]
async fn list_runs(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let uri = request.uri.clone();
    let owner = request.principal.owner_key();
    let outcome = async {
        let asked: RunsQuery = query(&uri)?;
        let status = asked
            .status
            .map(|text| {
                serde_json::from_value::<RunStatus>(Value::String(text.clone())).map_err(|_| {
                    ApiError::new(
                        ErrorKind::InvalidInput,
                        format!("unknown status {text:?}; use running, succeeded, failed, timed_out, iteration_limit, waiting_for_human, cancelled, replans_exhausted or replan_failed"),
                    )
                })
            })
            .transpose()?;
        let (page_size, before) = page(asked.page_size, asked.page_token)?;
        let filter = RunFilter {
            owner,
            status,
            graph_id: asked.graph,
            since: rfc3339("since", asked.since)?,
            until: rfc3339("until", asked.until)?,
            before,
            limit: page_size + 1,
        };
        let wanted = |summary: &RunSummary| {
            filter.status.is_none_or(|status| summary.status == status)
                && filter
                    .graph_id
                    .as_deref()
                    .is_none_or(|graph| summary.graph_id == graph)
                && filter.since.is_none_or(|since| summary.started_at >= since)
                && filter.until.is_none_or(|until| summary.started_at < until)
                && filter.before.is_none_or(|before| summary.run_id < before)
        };
        // Runs this replica started: their status in memory is the freshest.
        let mine: Vec<Uuid> = {
            let index = api.inner.runs.lock().map_err(|_| ApiError::poisoned())?;
            index
                .records
                .iter()
                .filter(|(_, record)| record.owner == filter.owner)
                .map(|(run_id, _)| *run_id)
                .collect()
        };
        let mut found: BTreeMap<Uuid, RunSummary> = BTreeMap::new();
        for run_id in mine {
            if let Ok(summary) = api.inner.executor.status(run_id) {
                if wanted(&summary) {
                    found.insert(run_id, summary);
                }
            }
        }
        if let Some(journal) = api.inner.executor.journal() {
            for stored in journal.list_runs(&filter).await? {
                found.entry(stored.run_id).or_insert(RunSummary {
                    run_id: stored.run_id,
                    graph_id: stored.graph_id,
                    status: stored.status,
                    started_at: stored.started_at,
                    finished_at: None,
                });
            }
        }
        // Run ids are UUIDv7: the highest is the newest.
        let mut runs: Vec<RunSummary> = found.into_values().rev().collect();
        let next_page_token = if runs.len() > page_size as usize {
            runs.truncate(page_size as usize);
            runs.last().map(|run| run.run_id.to_string())
        } else {
            None
        };
        Ok(json_response(
            StatusCode::OK,
            &RunList {
                runs,
                next_page_token,
            },
        ))
    };
    respond(outcome.await, request.request_id.clone())
}

#[utoipa::path(
    post,
    path = "/v1/runs",
    operation_id = "startRun",
    tag = "runs",
    request_body(description = "`{graph | graph_yaml, input?, mode?: sync|async|stream|batch, inputs?, checkpoint?}`", content((Object = "application/json"))),
    responses(
        (status = 200, description = "`sync`: the finished run; `batch`: one result per input.", body = Object),
        (status = 202, description = "`async`: accepted; the run id.", body = Object),
        (status = 404, description = "No such graph"),
        (status = 409, description = "A conflict with the current state"),
        (status = 415, description = "The body is not application/json"),
        (status = 422, description = "The graph does not validate"),
        (status = 502, description = "An agent answered badly"),
        (status = 504, description = "The run took too long"),
    )
)]
async fn start_run(State(api): State<RunsApi>, request: Request) -> Response {
    // The run joins its caller's trace (issue 18): every node call and
    // every hop to another organisation carries the same trace id. With
    // spans exported it is this request's span's (which adopted the
    // caller's `traceparent`), so the run's trace and the exported one
    // agree even when the caller sent none.
    let trace_id = crate::telemetry::trace_id(&tracing::Span::current()).or_else(|| {
        request
            .headers()
            .get(crate::dispatch::TRACEPARENT_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(convergio_orchestrator::trace::trace_id_of)
    });
    let mut request = incoming(request);
    let body = std::mem::take(&mut request.body);
    let request_id = request.request_id.clone();
    let principal = request.principal.clone();
    let origin = request.origin;
    let replan = request.replan.clone();
    let run_options = |source: String| RunOptions {
        caller: Some(principal.clone()),
        origin,
        source: Some(source),
        trace_id: trace_id.clone(),
        replan: replan.clone(),
    };
    let caller = Caller::of(&request);
    let outcome = async {
        let text = read_text(body).await?;
        let start: StartRun = serde_json::from_str(&text).map_err(|error| {
            ApiError::new(
                ErrorKind::InvalidInput,
                format!("invalid run request: {error}"),
            )
        })?;
        let by_name = start.graph_org.is_some() || start.graph_version.is_some();
        let org = caller.org(start.graph_org.clone());
        let (graph, source) = match (&start.graph, &start.graph_yaml) {
            (Some(name), None) => {
                api.stored(name, &org, start.graph_version, &caller)
                    .await?
            }
            (None, Some(document)) if !by_name => {
                (api.compile(document, &caller).await?.0, document.clone())
            }
            _ => {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    "name exactly one of graph (a stored graph, with graph_org and graph_version if need be) and graph_yaml (a document)",
                ))
            }
        };
        if !caller.may(&api, GraphAction::Run, &graph.name, &org).await {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!("forbidden: run_graph on graph:{}", graph.name),
            ));
        }
        if start.mode != RunMode::Batch && !start.inputs.is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidInput,
                "inputs is for batch mode; use input",
            ));
        }
        let input = start
            .input
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        match start.mode {
            RunMode::Sync => {
                let (run_id, log) =
                    api.start_logged(graph, input, &principal, run_options(source))?;
                log.finished().await;
                let result = api.inner.executor.result(run_id)?;
                Ok(json_response(StatusCode::OK, &RunOutcome::from(&result)))
            }
            RunMode::Async => {
                let graph_id = graph.name.to_string();
                let (run_id, _log) =
                    api.start_logged(graph, input, &principal, run_options(source))?;
                let accepted = RunAccepted {
                    run_id,
                    graph_id,
                    status: RunStatus::Running,
                };
                let mut response = json_response(StatusCode::ACCEPTED, &accepted);
                if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{run_id}")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                Ok(response)
            }
            RunMode::Stream => {
                let (run_id, log) =
                    api.start_logged(graph, input, &principal, run_options(source))?;
                let mut response = sse_response(log);
                if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{run_id}")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                Ok(response)
            }
            RunMode::Batch => {
                if start.inputs.len() > api.inner.config.max_batch_inputs {
                    return Err(ApiError::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "a batch takes at most {} inputs",
                            api.inner.config.max_batch_inputs
                        ),
                    ));
                }
                let concurrency = start
                    .concurrency
                    .unwrap_or(api.inner.config.default_batch_concurrency)
                    .max(1);
                let graph_id = graph.name.to_string();
                let options = run_options(source);
                let span = crate::telemetry::invoke_workflow_span(&graph_id, &org);
                let results = api
                    .inner
                    .executor
                    .batch_with(graph, start.inputs, concurrency, options)
                    .instrument(span)
                    .await;
                let mut outcome = BatchOutcome {
                    graph_id,
                    succeeded: 0,
                    failed: 0,
                    results: Vec::with_capacity(results.len()),
                };
                for (index, result) in results.into_iter().enumerate() {
                    let item = match result {
                        Ok(result) => BatchItem {
                            index,
                            run: Some(RunOutcome::from(&result)),
                            error: None,
                        },
                        Err(error) => BatchItem {
                            index,
                            run: None,
                            error: Some(error.to_string()),
                        },
                    };
                    let succeeded = item
                        .run
                        .as_ref()
                        .is_some_and(|run| run.status == RunStatus::Succeeded);
                    if succeeded {
                        outcome.succeeded += 1;
                    } else {
                        outcome.failed += 1;
                    }
                    outcome.results.push(item);
                }
                Ok(json_response(StatusCode::OK, &outcome))
            }
        }
    };
    respond(outcome.await, request_id)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    operation_id = "getRun",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    responses(
        (status = 200, description = "The run's status.", body = Object),
        (status = 404, description = "No such run"),
    )
)]
async fn run_status(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        let (run_id, _) = api.owned_run(&id, &request.principal).await?;
        let summary = api.any_status(run_id).await?;
        Ok(json_response(StatusCode::OK, &summary))
    };
    respond(outcome.await, request.request_id)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}/result",
    operation_id = "getRunResult",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    responses(
        (status = 200, description = "The run's result.", body = Object),
        (status = 404, description = "No such run"),
        (status = 409, description = "The run has not finished"),
    )
)]
async fn run_result(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        let (run_id, _) = api.owned_run(&id, &request.principal).await?;
        let result = api.any_result(run_id).await?;
        Ok(json_response(StatusCode::OK, &RunOutcome::from(&result)))
    };
    respond(outcome.await, request.request_id)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}/trace",
    operation_id = "getRunTrace",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    responses(
        (status = 200, description = "The run's trace.", body = Object),
        (status = 404, description = "No such run"),
    )
)]
async fn run_trace(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        let (run_id, _) = api.owned_run(&id, &request.principal).await?;
        let result = api.any_result(run_id).await?;
        Ok(json_response(StatusCode::OK, &result.trace))
    };
    respond(outcome.await, request.request_id)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}/events",
    operation_id = "getRunEvents",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    responses(
        (status = 200, description = "The run's events as server-sent events, replayed then live.", body = String, content_type = "text/event-stream"),
        (status = 404, description = "No such run"),
    )
)]
async fn run_events(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        match api.owned_run(&id, &request.principal).await? {
            (_, Some(log)) => Ok(sse_response(log)),
            (_, None) => Err(ApiError::new(
                ErrorKind::Conflict,
                "this replica did not drive the run, so it has no event log; read its status, result or trace",
            )),
        }
    };
    respond(outcome.await, request.request_id)
}

/// The body of `:resume`, `:approve`, `:reject` and `:input` (all optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunActionBody {
    /// `async` (default: 202 and the run id), `sync` or `stream`.
    #[serde(default)]
    mode: Option<RunMode>,
    /// `:resume` only: start a new run from this named checkpoint.
    #[serde(default)]
    checkpoint: Option<String>,
    /// `:resume` from a checkpoint: the new run's input.
    #[serde(default)]
    input: Option<Value>,
    /// `:input`: the waiting node's output.
    #[serde(default)]
    output: Option<Value>,
    /// `:reject`: why.
    #[serde(default)]
    reason: Option<String>,
}

/// The body of `POST /v1/runs/{id}/checkpoints`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NameCheckpoint {
    name: String,
}

#[utoipa::path(
    post,
    path = "/v1/runs/{id}",
    operation_id = "actOnRun",
    tag = "runs",
    params(
        ("id" = String, Path, description = "`<run id>:cancel`, `:resume`, `:approve`, `:reject` or `:input`"),
    ),
    request_body(description = "The action's arguments (`checkpoint`, `input`, `reason`), if any", content((Object = "application/json"))),
    responses(
        (status = 200, description = "Done; the run.", body = Object),
        (status = 202, description = "Accepted.", body = Object),
        (status = 404, description = "No such run or action"),
        (status = 409, description = "The run is not in a state that allows it"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn run_action(
    State(api): State<RunsApi>,
    Path(target): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let request_id = request.request_id.clone();
    let principal = request.principal;
    let origin = request.origin;
    let outcome = async {
        let Some((id, verb)) = target.split_once(':') else {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "POST /v1/runs/{id}:resume, :approve, :reject, :input or :cancel",
            ));
        };
        if verb == "cancel" {
            // Owner only, like every run route; stopping a run needs no
            // policy decision beyond owning it.
            let (run_id, _) = api.owned_run(id, &principal).await?;
            api.inner.executor.cancel(run_id).await?;
            let graph_id = api.any_status(run_id).await?.graph_id;
            let cancelled = RunAccepted {
                run_id,
                graph_id,
                status: RunStatus::Cancelled,
            };
            return Ok(json_response(StatusCode::OK, &cancelled));
        }
        let text = read_text(request.body).await?;
        let body: RunActionBody = if text.trim().is_empty() {
            RunActionBody::default()
        } else {
            serde_json::from_str(&text).map_err(|error| {
                ApiError::new(ErrorKind::InvalidInput, format!("invalid request: {error}"))
            })?
        };
        let action = match verb {
            "resume" => Continue::Resume,
            "approve" => Continue::Approve,
            "reject" => Continue::Reject {
                reason: body.reason.clone(),
            },
            "input" => Continue::Input {
                output: body.output.clone().ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::InvalidInput,
                        ":input needs output, the node's output",
                    )
                })?,
            },
            other => {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!(
                        "unknown run action {:?}; use resume, approve, reject, input or cancel",
                        convergio_schemas::echo(other)
                    ),
                ))
            }
        };
        if body.checkpoint.is_none() && body.input.is_some() {
            return Err(ApiError::new(
                ErrorKind::InvalidInput,
                "input is for a resume from a named checkpoint (checkpoint)",
            ));
        }
        let (run_id, _) = api.owned_run(id, &principal).await?;
        // Continuing a run is running its graph again: decided like a start.
        let graph_id = api.any_status(run_id).await?.graph_id;
        let loopback = origin.is_some_and(|address| address.is_loopback());
        api.inner
            .gate
            .admit_run(&principal, &graph_id, loopback, request_id.as_ref())
            .await
            .map_err(|error| ApiError::new(error.kind(), error.to_string()))?;
        let executor = &api.inner.executor;
        let events = match (&action, body.checkpoint) {
            (Continue::Resume, Some(name)) => {
                executor
                    .resume_from_checkpoint(run_id, &name, body.input, None, origin)
                    .await?
            }
            (_, Some(_)) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    "checkpoint is for :resume",
                ))
            }
            (_, None) => {
                executor
                    .continue_stream(run_id, action, None, origin)
                    .await?
            }
        };
        let (run_id, log) = api.pump(events, principal.owner_key());
        match body.mode.unwrap_or(RunMode::Async) {
            RunMode::Sync => {
                log.finished().await;
                let result = api.any_result(run_id).await?;
                Ok(json_response(StatusCode::OK, &RunOutcome::from(&result)))
            }
            RunMode::Stream => Ok(sse_response(log)),
            RunMode::Async => {
                let summary = api.any_status(run_id).await?;
                let accepted = RunAccepted {
                    run_id,
                    graph_id: summary.graph_id,
                    status: RunStatus::Running,
                };
                let mut response = json_response(StatusCode::ACCEPTED, &accepted);
                if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{run_id}")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                Ok(response)
            }
            RunMode::Batch => Err(ApiError::new(
                ErrorKind::InvalidInput,
                "mode is async, sync or stream",
            )),
        }
    };
    respond(outcome.await, request_id)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}/checkpoints",
    operation_id = "listCheckpoints",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    responses(
        (status = 200, description = "The run's checkpoints.", body = Object),
        (status = 404, description = "No such run"),
    )
)]
async fn list_checkpoints(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        let (run_id, _) = api.owned_run(&id, &request.principal).await?;
        let checkpoints = api.inner.executor.checkpoints(run_id).await?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "run_id": run_id, "checkpoints": checkpoints }),
        ))
    };
    respond(outcome.await, request.request_id)
}

#[utoipa::path(
    post,
    path = "/v1/runs/{id}/checkpoints",
    operation_id = "nameCheckpoint",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
    ),
    request_body(description = "`{name, step?}`", content((Object = "application/json"))),
    responses(
        (status = 201, description = "Named.", body = Object),
        (status = 404, description = "No such run"),
        (status = 409, description = "The name is taken"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn name_checkpoint(
    State(api): State<RunsApi>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let request = incoming(request);
    let outcome = async {
        let (run_id, _) = api.owned_run(&id, &request.principal).await?;
        let text = read_text(request.body).await?;
        let body: NameCheckpoint = serde_json::from_str(&text).map_err(|error| {
            ApiError::new(ErrorKind::InvalidInput, format!("invalid request: {error}"))
        })?;
        let checkpoint = api.inner.executor.checkpoint(run_id, &body.name).await?;
        Ok(json_response(StatusCode::CREATED, &checkpoint))
    };
    respond(outcome.await, request.request_id)
}

async fn metrics(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let caller = Caller::of(&request);
    let admitted = api
        .inner
        .gate
        .admit_metrics(
            &caller.principal,
            caller.loopback,
            caller.request_id.as_ref(),
        )
        .await;
    if let Err(error) = admitted {
        let refusal = ApiError::new(error.kind(), error.to_string());
        return respond(Err(refusal), request.request_id.clone());
    }
    let mut response = api.inner.exposition.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The run's events as SSE: `event: <type>` and the event as JSON data.
fn sse_response(log: Arc<EventLog>) -> Response {
    let events = log.follow().map(|event| {
        let data = serde_json::to_value(&event).unwrap_or(Value::Null);
        let name = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("event")
            .to_owned();
        Ok::<_, Infallible>(Event::default().event(name).data(data.to_string()))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl ApiError {
    fn poisoned() -> Self {
        // A panic elsewhere poisoned the lock; its message was logged then.
        tracing::error!("a graph or run index lock is poisoned");
        Self::new(ErrorKind::Internal, problem::INTERNAL_DETAIL)
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(error: OrchestratorError) -> Self {
        // The one error path: internals are logged once and never shown.
        let problem =
            problem::http::problem_for(&error, error.kind()).with_violations(error.violations());
        Self::from_problem(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convergio_schemas::Problem;

    #[tokio::test]
    async fn an_internal_failure_renders_the_one_problem_shape_without_its_cause() {
        let error = OrchestratorError::RunLost {
            run_id: "secret-run".to_owned(),
        };
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            problem::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a small body");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
        let document: Problem = serde_json::from_slice(&body).expect("a problem document");
        assert_eq!(
            document,
            Problem::new(ErrorKind::Internal, problem::INTERNAL_DETAIL)
        );
    }
}
