//! The graph and run API, mounted behind the same layers as every surface:
//!
//! - `POST /v1/graphs` stores a graph document (YAML or JSON text) after
//!   validating it, agents checked against the registry; `GET /v1/graphs`
//!   lists, `GET /v1/graphs/{name}` returns one, `POST /v1/graphs:validate`
//!   validates without storing.
//! - `POST /v1/runs` starts a run of a stored graph (`graph`) or an inline
//!   document (`graph_yaml`) in mode `sync` (the finished run), `async`
//!   (202 and the run id), `stream` (server-sent events) or `batch` (one
//!   result per input); `GET /v1/runs/{id}` (status), `…/result`,
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
//! - `GET /metrics`: the §8.2 metrics in the Prometheus text format.
//!
//! Errors are problem documents (YAML errors and validation failures list
//! every violation with its line); a failed request changes nothing stored.
//!
//! Decisions: graphs are kept **in memory** (per replica, lost on restart)
//! until durable runs (issue 8) bring the orchestrator's storage module;
//! runs are in memory too. Every HTTP run is started as a streaming run whose
//! events a pump task appends to a per-run [`EventLog`], so `sync`, `async`
//! and `stream` share one code path and `/events` can replay a run that is
//! already going. A run belongs to the principal that started it: anyone
//! else asking for it gets the unknown-run answer. A `sync` request is
//! bounded by the gateway's request timeout like any request; the run itself
//! continues and stays reachable by id, so long runs should use `async` or
//! `stream`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use convergio_orchestrator::api::{
    BatchItem, BatchOutcome, GraphDocument, GraphList, GraphSummary, RunAccepted, RunMode,
    RunOutcome, StartRun,
};
use convergio_orchestrator::{
    parse_yaml, validate, Continue, Executor, Graph, Limits, OrchestratorError, RunEvent,
    RunEvents, RunOptions, RunStatus, RunSummary, StaticCatalog,
};
use convergio_schemas::problem::PROBLEM_JSON;
use convergio_schemas::{AgentId, ErrorKind, Principal, Problem};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::a2a::RouteTable;
use crate::authorize::Gatekeeper;
use crate::layers::{is_length_limit, RequestId};

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
    /// Retention's counters and the database size, appended to `/metrics`
    /// when the server runs a pruner (issue 15).
    pub retention_metrics: Option<Arc<crate::retention::RetentionMetrics>>,
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
        }
    }
}

/// The state behind the graph and run routes. Cheap to clone.
#[derive(Clone)]
pub struct RunsApi {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Executor,
    /// Decides `run_graph` before a run starts (node calls are decided by
    /// the A2A handlers they pass through).
    gate: Arc<dyn Gatekeeper>,
    routes: Arc<dyn RouteTable>,
    config: GraphsConfig,
    /// One permit per graph document being parsed or validated.
    compile_slots: Arc<tokio::sync::Semaphore>,
    graphs: RwLock<BTreeMap<String, StoredGraph>>,
    runs: Mutex<RunIndex>,
}

struct StoredGraph {
    summary: GraphSummary,
    source: String,
    graph: Arc<Graph>,
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
    /// The API over `executor`, checking agents against `routes`.
    pub fn new(
        executor: Executor,
        routes: Arc<dyn RouteTable>,
        gate: Arc<dyn Gatekeeper>,
        config: GraphsConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                executor,
                gate,
                routes,
                compile_slots: Arc::new(tokio::sync::Semaphore::new(
                    config.compile_concurrency.max(1),
                )),
                config,
                graphs: RwLock::new(BTreeMap::new()),
                runs: Mutex::new(RunIndex::default()),
            }),
        }
    }

    /// The executor runs go to.
    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// Parses and validates a document, agents checked against the registry.
    ///
    /// Parsing and validation are CPU work on a caller's document, so they
    /// run on blocking threads, at most [`GraphsConfig::compile_concurrency`]
    /// at once (regression: issue #15, defect 1: two hostile documents kept
    /// the async workers busy and `/healthz` stalled for a minute).
    async fn compile(&self, text: &str) -> Result<(Arc<Graph>, Vec<String>), ApiError> {
        let owned = text.to_owned();
        let spec = self.off_runtime(move || parse_yaml(&owned)).await??;
        let agents = spec.agent_names();
        let catalog = StaticCatalog::new(self.known_agents(&agents).await?);
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
            tracing::error!(%error, "checking a graph document failed");
            ApiError::new(ErrorKind::Internal, "internal error; see the server log")
        })
    }

    /// The names among `agents` that can be called: registered agents, and
    /// well-formed `external://` ids (their organisation answers for them).
    async fn known_agents(
        &self,
        agents: &std::collections::BTreeSet<String>,
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
            if found.is_some() {
                known.push(agent.clone());
            }
        }
        Ok(known)
    }

    fn stored(&self, name: &str) -> Result<(Arc<Graph>, String), ApiError> {
        let graphs = self.inner.graphs.read().map_err(|_| ApiError::poisoned())?;
        graphs
            .get(name)
            .map(|stored| (stored.graph.clone(), stored.source.clone()))
            .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("graph {name} not found")))
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
    fn start_logged(
        &self,
        graph: Arc<Graph>,
        source: String,
        input: Value,
        principal: &Principal,
        origin: Option<std::net::IpAddr>,
    ) -> Result<(Uuid, Arc<EventLog>), ApiError> {
        let options = RunOptions {
            caller: Some(principal.clone()),
            origin,
            source: Some(source),
        };
        // The executor closes the stream only once the result is
        // retrievable by id.
        let events = self.inner.executor.stream_with(graph, input, options)?;
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
        .route("/v1/runs", post(start_run))
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

/// A request's principal, request id and body.
struct Incoming {
    principal: Principal,
    request_id: Option<RequestId>,
    /// Where the caller connected from, handed to the run's agent calls.
    origin: Option<std::net::IpAddr>,
    body: Body,
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

async fn store_graph(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let request_id = request.request_id.clone();
    let outcome = async {
        let source = read_text(request.body).await?;
        let (graph, agents) = api.compile(&source).await?;
        let mut graphs = api.inner.graphs.write().map_err(|_| ApiError::poisoned())?;
        let version = graphs
            .get(&*graph.name)
            .map(|stored| stored.summary.version + 1)
            .unwrap_or(1);
        let summary = GraphSummary::new(&graph, agents, version);
        graphs.insert(
            graph.name.to_string(),
            StoredGraph {
                summary: summary.clone(),
                source,
                graph,
            },
        );
        let status = if version == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut response = json_response(status, &summary);
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/graphs/{}", summary.name)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    };
    respond(outcome.await, request_id)
}

async fn validate_graph(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let request_id = request.request_id.clone();
    let outcome = async {
        let source = read_text(request.body).await?;
        let (graph, agents) = api.compile(&source).await?;
        Ok(json_response(
            StatusCode::OK,
            &GraphSummary::new(&graph, agents, 0),
        ))
    };
    respond(outcome.await, request_id)
}

async fn list_graphs(State(api): State<RunsApi>, request: Request) -> Response {
    let request_id = incoming(request).request_id;
    let outcome = api
        .inner
        .graphs
        .read()
        .map_err(|_| ApiError::poisoned())
        .map(|graphs| {
            let list = GraphList {
                graphs: graphs
                    .values()
                    .map(|stored| stored.summary.clone())
                    .collect(),
            };
            json_response(StatusCode::OK, &list)
        });
    respond(outcome, request_id)
}

async fn get_graph(
    State(api): State<RunsApi>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let request_id = incoming(request).request_id;
    let outcome = api
        .inner
        .graphs
        .read()
        .map_err(|_| ApiError::poisoned())
        .and_then(|graphs| match graphs.get(&name) {
            Some(stored) => Ok(json_response(
                StatusCode::OK,
                &GraphDocument {
                    summary: stored.summary.clone(),
                    source: stored.source.clone(),
                },
            )),
            None => Err(ApiError::new(
                ErrorKind::NotFound,
                format!("graph {name} not found"),
            )),
        });
    respond(outcome, request_id)
}

async fn start_run(State(api): State<RunsApi>, request: Request) -> Response {
    let request = incoming(request);
    let request_id = request.request_id.clone();
    let principal = request.principal;
    let origin = request.origin;
    let outcome = async {
        let text = read_text(request.body).await?;
        let start: StartRun = serde_json::from_str(&text).map_err(|error| {
            ApiError::new(
                ErrorKind::InvalidInput,
                format!("invalid run request: {error}"),
            )
        })?;
        let (graph, source) = match (&start.graph, &start.graph_yaml) {
            (Some(name), None) => api.stored(name)?,
            (None, Some(document)) => (api.compile(document).await?.0, document.clone()),
            _ => {
                return Err(ApiError::new(
                    ErrorKind::InvalidInput,
                    "name exactly one of graph (a stored graph) and graph_yaml (a document)",
                ))
            }
        };
        let loopback = origin.is_some_and(|address| address.is_loopback());
        api.inner
            .gate
            .admit_run(&principal, &graph.name, loopback, request_id.as_ref())
            .await
            .map_err(|error| ApiError::new(error.kind(), error.to_string()))?;
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
                let (run_id, log) = api.start_logged(graph, source, input, &principal, origin)?;
                log.finished().await;
                let result = api.inner.executor.result(run_id)?;
                Ok(json_response(StatusCode::OK, &RunOutcome::from(&result)))
            }
            RunMode::Async => {
                let graph_id = graph.name.to_string();
                let (run_id, _log) = api.start_logged(graph, source, input, &principal, origin)?;
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
                let (run_id, log) = api.start_logged(graph, source, input, &principal, origin)?;
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
                let options = RunOptions {
                    caller: Some(principal.clone()),
                    origin,
                    source: Some(source),
                };
                let results = api
                    .inner
                    .executor
                    .batch_with(graph, start.inputs, concurrency, options)
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

async fn metrics(State(api): State<RunsApi>) -> Response {
    let mut text = api.inner.executor.metrics().render_prometheus();
    if let Some(retention) = &api.inner.config.retention_metrics {
        retention.render_prometheus(&mut text);
    }
    let mut response = text.into_response();
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

fn respond(outcome: Result<Response, ApiError>, request_id: Option<RequestId>) -> Response {
    match outcome {
        Ok(response) => response,
        Err(mut error) => {
            error.problem.request_id = request_id.map(|id| id.as_str().to_owned());
            error.into_response()
        }
    }
}

/// A refused graph or run request, rendered as a problem document.
#[derive(Debug)]
struct ApiError {
    problem: Box<Problem>,
}

// === impl ApiError ===

impl ApiError {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(kind, detail)),
        }
    }

    fn poisoned() -> Self {
        tracing::error!("a graph or run index lock is poisoned");
        Self::new(ErrorKind::Internal, "internal error; see the server log")
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(error: OrchestratorError) -> Self {
        let kind = error.kind();
        let detail = if kind == ErrorKind::Internal {
            tracing::error!(error = %error, "run request failed");
            "internal error; see the server log".to_owned()
        } else {
            error.to_string()
        };
        let mut api_error = Self::new(kind, detail);
        api_error.problem.violations = error.violations();
        api_error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&*self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}
