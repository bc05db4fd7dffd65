//! Stored graphs served as A2A agents in `convergio serve` (issue 18).
//!
//! - [`GraphLogic`]: the [`AgentLogic`] of one published graph. A message
//!   starts a run of the graph through the gateway's own `POST /v1/runs`
//!   (stream mode), made in-process as the graph agent's principal, so the
//!   run is decided by policy (`read_graph`, `run_graph`), bounded by the
//!   server's ceilings, journaled and traced like any other, and each node's
//!   call is decided again. The message becomes the run's input (a text part
//!   is input `text`, a data part holding an object gives the inputs by
//!   name); each node event becomes a `TASK_STATE_WORKING` status update
//!   whose message names the node and its state in text and metadata
//!   (`convergio.node_id`, `convergio.node_state`); the run's output ends
//!   the task as an artifact, with its usage in the task's
//!   `metadata.usage` (`tokens_in`, `tokens_out`, `tool_calls`, `cost`, as
//!   a calling graph's node reads it). A failed run fails the task with the
//!   run's reason; a cancelled task cancels the run. The task's metadata
//!   carries the run's id (`convergio.run_id`) from its first update on.
//! - [`GraphDirectory`]: which graph agents this replica serves, and why
//!   one cannot answer (written by the fleet, read by the REST host).
//! - [`GraphNotifier`]: the REST surface's [`GraphAgentHost`]; it hands
//!   each change to the fleet over a channel and waits for it to be
//!   applied.
//! - [`GraphFleet`]: one task that owns the running graph agents. Each
//!   published graph runs on a loopback slot split off the model agents'
//!   pool (`graphs.max_agents` of them; same token, so only the gateway
//!   reaches it), is registered under its organisation (`internal` for the
//!   deployment's, `registered` for another: `Registry::upsert_system`)
//!   with a generated card (one skill describing the graph, its nodes and
//!   its inputs), and is reconciled with the store every interval, so a
//!   publication made through another replica is served here too.
//!
//! The fleet is built after the gateway's router, with the router as a
//! constructor argument (the agents' runs go through it), which is why the
//! REST host, which the router holds, reaches the fleet through a channel
//! rather than owning it.
//!
//! Whose run: the graph agent's own principal (subject `agent:<name>`, its
//! organisation, scope `graphs:run`, method `system`), not the caller's.
//! The agent's server never sees the caller's credentials (the gateway
//! keeps them), and a caller from another organisation is a federation
//! peer, which may never start a run here (`peers-call-only`); the caller's
//! right to call the agent is decided by the gateway before the message
//! reaches it, and publishing (decided as `store_graph`) is the
//! organisation's consent that whoever may call the agent runs the graph.
//! The run is owned by that principal, and joins the caller's trace when
//! spans are exported (the task runs in the agent server's request span).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use convergio_agents::logic::{data_part, data_parts, text_part, text_parts};
use convergio_agents::{AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext};
use convergio_gateway::a2a::AgentTimeouts;
use convergio_gateway::graph_agents_api::GraphAgentHost;
use convergio_gateway::model_agents::AgentStatus;
use convergio_orchestrator::{
    parse_yaml, validate, GraphAgentRow, GraphAgentStore, GraphStore, Limits, StaticCatalog,
};
use convergio_registry::model_agents::ModelAgentStore;
use convergio_registry::{Actor, Registration, Registry, RegistryError};
use convergio_schemas::a2a::{TaskState, MEDIA_JSON};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, GraphAgentSpec, Principal};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt as _;

use crate::model_serving::ListenerPool;

/// What the gateway adds to a graph agent's run ceiling before it gives up
/// on the agent (so the run's own limit answers first).
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The largest run result read.
const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// How long a REST write waits for the fleet to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// The logic of one published graph.
pub struct GraphLogic {
    graph: String,
    graph_version: Option<u32>,
    principal: Principal,
    /// Weak: the router holds the REST host that feeds the fleet that
    /// holds this logic.
    app: Weak<Router>,
}

/// An in-process answer: status, `Location`, body.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Body,
}

fn logic(reason: impl Into<String>) -> AgentsError {
    AgentsError::Logic {
        reason: reason.into(),
    }
}

// === impl GraphLogic ===

impl GraphLogic {
    /// The agent `name` of `org` running `spec`'s graph through `app`.
    pub fn new(name: &str, org: &str, spec: &GraphAgentSpec, app: Weak<Router>) -> Self {
        Self {
            graph: spec.graph.clone(),
            graph_version: spec.graph_version,
            principal: Principal {
                subject: format!("agent:{name}"),
                org: Some(org.to_owned()),
                scopes: vec!["graphs:run".to_owned()],
                method: AuthMethod::System,
            },
            app,
        }
    }

    /// One request through the gateway's router, as the agent's principal.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AgentsError> {
        let app = self
            .app
            .upgrade()
            .map(|app| (*app).clone())
            .ok_or_else(|| logic("the gateway is not serving"))?;
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, MEDIA_JSON);
        // The task runs in the agent server's request span, whose parent is
        // the caller's: the run joins the caller's trace (when spans are
        // exported; without the exporter there is no span context to pass).
        if let Some(traceparent) = convergio_agents::trace_context::traceparent() {
            builder = builder.header(convergio_agents::trace_context::TRACEPARENT, traceparent);
        }
        let mut request = builder
            .body(body)
            .map_err(|error| logic(format!("building a request: {error}")))?;
        request.extensions_mut().insert(self.principal.clone());
        let response = app
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Answer {
            status: response.status(),
            location,
            body: response.into_body(),
        })
    }

    /// A JSON answer's body.
    async fn json(answer: Answer) -> Result<Value, AgentsError> {
        let bytes = axum::body::to_bytes(answer.body, MAX_RESULT_BYTES)
            .await
            .map_err(|error| logic(format!("reading an answer: {error}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| logic(format!("an answer is not JSON: {error}")))
    }

    /// Cancels the run (the task was cancelled); a failure is only logged,
    /// as the task is over whatever the run does.
    async fn cancel_run(&self, run_id: &str) {
        match self
            .call(Method::POST, &format!("/v1/runs/{run_id}:cancel"), None)
            .await
        {
            Ok(answer) if answer.status.is_success() => {
                tracing::info!(run_id = %run_id, "graph agent task cancelled; its run is cancelled");
            }
            Ok(answer) => {
                tracing::warn!(run_id = %run_id, status = %answer.status, "cancelling a graph agent's run was refused");
            }
            Err(error) => {
                tracing::warn!(run_id = %run_id, %error, "cancelling a graph agent's run failed")
            }
        }
    }

    /// Relays the run's node events as WORKING updates until its stream
    /// ends; `TaskClosed` as soon as the task is cancelled.
    async fn follow(&self, body: Body, context: &TaskContext) -> Result<(), AgentsError> {
        let mut events = body.into_data_stream();
        let mut buffer = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = events.next() => chunk,
                () = context.canceled() => {
                    return Err(AgentsError::TaskClosed { task_id: context.task_id().to_owned() });
                }
            };
            let Some(chunk) = chunk else {
                return Ok(());
            };
            let chunk =
                chunk.map_err(|error| logic(format!("reading the run's events: {error}")))?;
            buffer.extend_from_slice(&chunk);
            for event in take_events(&mut buffer) {
                if let Some((text, metadata)) = node_update(&event) {
                    let update = context.agent_message(vec![text_part(text)], Some(metadata));
                    context.status(TaskState::Working, Some(update))?;
                }
            }
        }
    }
}

/// The run input a message means: its data parts' objects merged, and its
/// text parts (joined by newlines) as `text`.
pub fn run_input(message: &Value) -> Value {
    let mut input = Map::new();
    for data in data_parts(message) {
        if let Value::Object(fields) = data {
            input.extend(fields.clone());
        }
    }
    let texts = text_parts(message);
    if !texts.is_empty() {
        input.insert("text".to_owned(), Value::from(texts.join("\n")));
    }
    Value::Object(input)
}

/// The status message of one run event, if it is a node event.
fn node_update(event: &Value) -> Option<(String, Value)> {
    let kind = event.get("type").and_then(Value::as_str)?;
    let node = event.get("node_id").and_then(Value::as_str)?.to_owned();
    let (state, text, mut metadata) = match kind {
        "node_started" => {
            let agent = event.get("agent").and_then(Value::as_str);
            (
                "started".to_owned(),
                match agent {
                    Some(agent) => format!("node {node} started ({agent})"),
                    None => format!("node {node} started"),
                },
                json!({"convergio.agent": agent}),
            )
        }
        "node_finished" => {
            let status = event
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("finished")
                .to_owned();
            (
                status.clone(),
                format!("node {node} {status}"),
                json!({"convergio.duration_ms": event.get("duration_ms")}),
            )
        }
        "node_error" => {
            let error = event.get("error").and_then(Value::as_str).unwrap_or("");
            (
                "error".to_owned(),
                format!("node {node} failed: {error}"),
                json!({"convergio.next": event.get("action")}),
            )
        }
        _ => return None,
    };
    metadata["convergio.node_id"] = Value::from(node);
    metadata["convergio.node_state"] = Value::from(state);
    Some((text, metadata))
}

/// The usage a run's trace reports, as `metadata.usage`.
fn run_usage(outcome: &Value) -> Value {
    let nodes = outcome
        .pointer("/trace/nodes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let sum = |field: &str| -> u64 {
        nodes
            .iter()
            .filter_map(|node| node.get(field).and_then(Value::as_u64))
            .sum()
    };
    json!({
        "tokens_in": sum("tokens_in"),
        "tokens_out": sum("tokens_out"),
        "tool_calls": sum("tool_calls"),
        "cost": outcome.pointer("/trace/total_cost").and_then(Value::as_f64).unwrap_or(0.0),
    })
}

/// The run's output as the parts of the answer's artifact: a string as a
/// text part, anything else as a data part holding it (A2A 1.0 data parts
/// hold any JSON value), so a calling graph's node reads it back unchanged.
fn output_parts(output: &Value) -> Vec<Value> {
    match output {
        Value::String(text) => vec![text_part(text.clone())],
        other => vec![data_part(other.clone())],
    }
}

/// Takes every complete server-sent event off the front of `buffer`: the
/// JSON of each one's `data` lines.
fn take_events(buffer: &mut Vec<u8>) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
        let frame: Vec<u8> = buffer.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&frame);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(event) = serde_json::from_str(&data.join("\n")) {
            events.push(event);
        }
    }
    events
}

#[async_trait]
impl AgentLogic for GraphLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let mut start = json!({
            "graph": self.graph,
            "mode": "stream",
            "input": run_input(&message),
        });
        if let Some(version) = self.graph_version {
            start["graph_version"] = json!(version);
        }
        let answer = self.call(Method::POST, "/v1/runs", Some(&start)).await?;
        if !answer.status.is_success() {
            let problem = Self::json(answer).await.unwrap_or(Value::Null);
            let detail = problem
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("the run could not start");
            let reply = context.agent_message(
                vec![text_part(format!(
                    "the graph {} did not start: {detail}",
                    self.graph
                ))],
                None,
            );
            return context.status(TaskState::Failed, Some(reply));
        }
        let run_id = answer
            .location
            .as_deref()
            .and_then(|location| location.rsplit('/').next())
            .ok_or_else(|| logic("the run's answer names no run"))?
            .to_owned();
        let followed = match context
            .set_metadata("convergio.run_id", json!(run_id))
            .and_then(|()| context.working())
        {
            Ok(()) => self.follow(answer.body, &context).await,
            Err(error) => Err(error),
        };
        // A task cancelled at any point cancels its run.
        if context.is_canceled() {
            self.cancel_run(&run_id).await;
        }
        followed?;
        let answer = self
            .call(Method::GET, &format!("/v1/runs/{run_id}/result"), None)
            .await?;
        let outcome = Self::json(answer).await?;
        let usage = run_usage(&outcome);
        context.set_metadata("usage", usage.clone())?;
        let metadata = json!({"usage": usage, "convergio.run_id": run_id});
        if outcome.get("status").and_then(Value::as_str) == Some("succeeded") {
            let output = outcome.get("output").cloned().unwrap_or(Value::Null);
            context.artifact(
                json!({
                    "artifactId": format!("{}-result", context.task_id()),
                    "name": self.graph,
                    "parts": output_parts(&output),
                    "metadata": {"convergio.run_id": run_id},
                }),
                false,
                true,
            )?;
            let done = context.agent_message(
                vec![text_part(format!("the graph {} succeeded", self.graph))],
                Some(metadata),
            );
            return context.status(TaskState::Completed, Some(done));
        }
        let status = outcome
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("failed");
        let error = outcome
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        let reply = context.agent_message(
            vec![text_part(format!(
                "the run {run_id} of the graph {} {status}: {error}",
                self.graph
            ))],
            Some(metadata),
        );
        context.status(TaskState::Failed, Some(reply))
    }
}

/// The card of `name`, publishing `spec`'s graph of `org` whose document
/// is `source` (described by `description` when the publication has none).
pub fn card(
    name: &str,
    org: &str,
    spec: &GraphAgentSpec,
    description: Option<&str>,
    source: &str,
    version: i64,
) -> Value {
    let (nodes, inputs) = match parse_yaml(source) {
        Ok(parsed) => {
            let catalog = StaticCatalog::new(parsed.agent_names());
            match validate(&parsed, &catalog, &Limits::default()) {
                Ok(graph) => (
                    graph
                        .nodes
                        .iter()
                        .map(|node| node.id.to_string())
                        .collect::<Vec<_>>(),
                    graph.graph_inputs.clone(),
                ),
                Err(_) => (Vec::new(), Vec::new()),
            }
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    let graph = &spec.graph;
    let description = spec
        .description
        .clone()
        .or_else(|| description.map(str::to_owned))
        .unwrap_or_else(|| format!("The graph {graph} of {org}, published as an agent."));
    let input_text = if inputs.is_empty() {
        "It declares no named inputs; the whole message is its input.".to_owned()
    } else {
        format!("Inputs: {}.", inputs.join(", "))
    };
    let mut tags = vec!["graph".to_owned()];
    tags.extend(spec.tags.iter().cloned());
    json!({
        "name": name,
        "description": description,
        "version": format!("1.0.{version}"),
        "provider": {"organization": org, "url": format!("https://{org}")},
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [{
            "id": format!("graph-{graph}"),
            "name": graph,
            "description": format!(
                "Runs the graph {graph} (nodes: {}) and answers with its output. {input_text} A text part is input `text`; a data part's object gives the inputs by name. Node progress streams as working status updates.",
                nodes.join(", ")
            ),
            "tags": tags,
            "examples": [],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json", "text/plain"],
        }],
    })
}

// === the directory ===

/// One publication as this replica serves it, as the REST host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The publication's version being served.
    pub version: i64,
    /// Why it cannot answer, if it cannot (no free slot, name taken…).
    pub problem: Option<String>,
}

/// The graph agents this replica serves (written by the fleet, read by the
/// REST host).
#[derive(Debug, Default)]
pub struct GraphDirectory {
    entries: RwLock<HashMap<String, DirectoryEntry>>,
}

// === impl GraphDirectory ===

impl GraphDirectory {
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

    fn set(&self, name: &str, entry: DirectoryEntry) {
        self.write().insert(name.to_owned(), entry);
    }

    fn remove(&self, name: &str) {
        self.write().remove(name);
    }
}

// === the REST host ===

/// A change for the graph fleet, with the channel to say it is done.
#[derive(Debug)]
pub enum GraphChange {
    /// A publication was created or updated.
    Applied(GraphAgentRow, oneshot::Sender<()>),
    /// A publication was deleted.
    Removed(String, oneshot::Sender<()>),
}

/// The REST surface's [`GraphAgentHost`]: hands each change to the fleet
/// (built after the router) and waits for it to be applied; answers status
/// from the directory the fleet keeps.
pub struct GraphNotifier {
    changes: mpsc::Sender<GraphChange>,
    directory: Arc<GraphDirectory>,
}

impl std::fmt::Debug for GraphNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphNotifier").finish_non_exhaustive()
    }
}

// === impl GraphNotifier ===

impl GraphNotifier {
    /// A host sending to `changes`, reading status from `directory`.
    pub fn new(changes: mpsc::Sender<GraphChange>, directory: Arc<GraphDirectory>) -> Self {
        Self { changes, directory }
    }

    async fn send(&self, change: GraphChange, done: oneshot::Receiver<()>) {
        if self.changes.send(change).await.is_err() {
            tracing::warn!("the graph agent fleet has stopped; the change is stored only");
            return;
        }
        if tokio::time::timeout(APPLY_WAIT, done).await.is_err() {
            tracing::warn!("the graph agent fleet did not apply a change within 10 s");
        }
    }
}

#[async_trait]
impl GraphAgentHost for GraphNotifier {
    async fn applied(&self, row: &GraphAgentRow) {
        let (done, wait) = oneshot::channel();
        self.send(GraphChange::Applied(row.clone(), done), wait)
            .await;
    }

    async fn removed(&self, _org: &str, name: &str) {
        let (done, wait) = oneshot::channel();
        self.send(GraphChange::Removed(name.to_owned(), done), wait)
            .await;
    }

    async fn status(&self, row: &GraphAgentRow) -> AgentStatus {
        match self.directory.get(&row.name) {
            None => AgentStatus::unavailable("not started on this replica yet"),
            Some(entry) if entry.version != row.version => {
                AgentStatus::unavailable("the new version is starting")
            }
            Some(DirectoryEntry {
                problem: Some(problem),
                ..
            }) => AgentStatus::unavailable(problem),
            Some(_) => AgentStatus::available(),
        }
    }
}

// === the fleet ===

/// One publication as this replica serves it.
struct Served {
    version: i64,
    agent: Option<(RunningAgent, SocketAddr)>,
}

/// Owns the graph agents this replica serves (one task, like the model
/// agents' fleet).
pub struct GraphFleet {
    pool: ListenerPool,
    served: HashMap<String, Served>,
    directory: Arc<GraphDirectory>,
    store: Arc<dyn GraphAgentStore>,
    graphs: Arc<dyn GraphStore>,
    registry: Registry,
    timeouts: AgentTimeouts,
    reserved: HashSet<String>,
    model_agents: Arc<dyn ModelAgentStore>,
    app: Weak<Router>,
    run_timeout: Duration,
}

impl std::fmt::Debug for GraphFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphFleet").finish_non_exhaustive()
    }
}

/// What a graph fleet is built from.
pub struct GraphFleetParts {
    /// Its loopback slots (`graphs.max_agents`).
    pub pool: ListenerPool,
    /// Where it says what it serves (the REST host reads it).
    pub directory: Arc<GraphDirectory>,
    /// The publications.
    pub store: Arc<dyn GraphAgentStore>,
    /// The stored graphs.
    pub graphs: Arc<dyn GraphStore>,
    /// Where the agents are registered.
    pub registry: Registry,
    /// The gateway's per-agent timeouts (each graph agent's is set).
    pub timeouts: AgentTimeouts,
    /// Names no publication may take (the example agents').
    pub reserved: HashSet<String>,
    /// Model agent declarations, whose names a publication may not take.
    pub model_agents: Arc<dyn ModelAgentStore>,
    /// The gateway's router, which the agents' runs go through (weak: the
    /// router owns the REST host that feeds this fleet).
    pub app: Weak<Router>,
    /// The server's run ceiling (`graphs.max_run_seconds`).
    pub run_timeout: Duration,
}

// === impl GraphFleet ===

impl GraphFleet {
    /// A fleet serving nothing yet.
    pub fn new(parts: GraphFleetParts) -> Self {
        Self {
            pool: parts.pool,
            served: HashMap::new(),
            directory: parts.directory,
            store: parts.store,
            graphs: parts.graphs,
            registry: parts.registry,
            timeouts: parts.timeouts,
            reserved: parts.reserved,
            model_agents: parts.model_agents,
            app: parts.app,
            run_timeout: parts.run_timeout,
        }
    }

    /// Serves every stored publication (before it returns, so a replica
    /// that says it listens serves them), then applies `changes` as they
    /// come and reconciles with the store every `interval` (a publication
    /// made or withdrawn through another replica) until `changes` closes.
    /// Returns the task.
    pub async fn spawn(
        mut self,
        mut changes: mpsc::Receiver<GraphChange>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.reconcile().await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Some(GraphChange::Applied(row, done)) => {
                            self.apply(&row).await;
                            let _ = done.send(());
                        }
                        Some(GraphChange::Removed(name, done)) => {
                            self.remove(&name).await;
                            let _ = done.send(());
                        }
                        None => break,
                    },
                    _ = tick.tick() => self.reconcile().await,
                }
            }
            let names: Vec<String> = self.served.keys().cloned().collect();
            for name in names {
                self.stop(&name).await;
            }
        })
    }

    /// Brings what runs here in line with the store.
    async fn reconcile(&mut self) {
        let rows = match self.store.list_graph_agents(None).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "listing graph agents failed; retrying at the next interval");
                return;
            }
        };
        let stored: HashMap<String, GraphAgentRow> = rows
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
                self.apply(&row).await;
            }
        }
    }

    async fn stop(&mut self, name: &str) {
        if let Some(served) = self.served.remove(name) {
            if let Some((agent, socket)) = served.agent {
                self.pool.slots().unserve(name);
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
                tracing::info!(agent = %name, "graph agent stopped");
            }
            Err(error) => {
                tracing::warn!(%error, agent = %name, "deregistering a graph agent failed")
            }
        }
    }

    /// (Re)starts `row`'s agent; a failure leaves it listed with the reason.
    async fn apply(&mut self, row: &GraphAgentRow) {
        self.stop(&row.name).await;
        let (agent, problem) = match self.start(row).await {
            Ok(started) => {
                tracing::info!(agent = %row.name, org = %row.org, version = row.version, "graph agent serving");
                (Some(started), None)
            }
            Err(problem) => {
                tracing::warn!(agent = %row.name, org = %row.org, %problem, "graph agent not served");
                (None, Some(problem))
            }
        };
        self.served.insert(
            row.name.clone(),
            Served {
                version: row.version,
                agent,
            },
        );
        self.directory.set(
            &row.name,
            DirectoryEntry {
                version: row.version,
                problem,
            },
        );
    }

    async fn start(&mut self, row: &GraphAgentRow) -> Result<(RunningAgent, SocketAddr), String> {
        let spec = GraphAgentSpec::from_value(&row.spec).map_err(|error| error.to_string())?;
        let id = AgentId::internal(&row.name).map_err(|error| error.to_string())?;
        if self.reserved.contains(&row.name) {
            return Err(format!(
                "{} is one of this server's example agents",
                row.name
            ));
        }
        // A model agent of the same organisation would share the registry
        // entry and the slot table's row: the declaration keeps its name.
        match self.model_agents.get(&row.name).await {
            Ok(None) => {}
            Ok(Some(_)) => return Err(format!("{} is a model agent's name", row.name)),
            Err(error) => return Err(format!("reading the model agents: {error}")),
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
        let document = self
            .graphs
            .get(&row.org, &spec.graph, spec.graph_version)
            .await
            .map_err(|error| format!("reading the graph {}: {error}", spec.graph))?
            .ok_or_else(|| format!("{} has no stored graph {}", row.org, spec.graph))?;
        let card_template = card(
            &row.name,
            &row.org,
            &spec,
            document.summary.description.as_deref(),
            &document.source,
            row.version,
        );
        let listener = self.pool.take().ok_or_else(|| {
            "every loopback slot for graph agents is in use (graphs.max_agents)".to_owned()
        })?;
        let socket = listener
            .local_addr()
            .map_err(|error| format!("reading a loopback slot: {error}"))?;
        let logic = GraphLogic::new(&row.name, &row.org, &spec, self.app.clone());
        let running = match convergio_agents::spawn_logic(
            Arc::new(logic),
            card_template,
            listener,
            ServeOptions {
                gate: Some(self.pool.gate()),
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
        self.timeouts
            .set(&row.name, self.run_timeout + TIMEOUT_MARGIN);
        let registered = self
            .registry
            .upsert_system(Registration {
                name: Some(row.name.clone()),
                org: Some(row.org.clone()),
                role: Some(AgentRole::Supervisor),
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
        self.pool.slots().serve(&row.name, socket);
        Ok((running, socket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_the_runs_input() {
        let message = json!({"parts": [
            {"text": "first"},
            {"data": {"topic": "rust", "depth": 2}},
            {"text": "second"},
            {"data": [1, 2]},
        ]});
        assert_eq!(
            run_input(&message),
            json!({"topic": "rust", "depth": 2, "text": "first\nsecond"})
        );
        assert_eq!(run_input(&json!({"parts": []})), json!({}));
    }

    #[test]
    fn node_events_become_status_messages_and_others_do_not() {
        let (text, metadata) = node_update(&json!({
            "type": "node_finished", "run_id": "r", "node_id": "a",
            "status": "succeeded", "duration_ms": 3
        }))
        .expect("a node event");
        assert_eq!(text, "node a succeeded");
        assert_eq!(metadata["convergio.node_id"], "a");
        assert_eq!(metadata["convergio.node_state"], "succeeded");
        assert!(node_update(&json!({"type": "run_finished", "run_id": "r"})).is_none());
    }

    #[test]
    fn server_sent_events_are_read_whole_across_chunks() {
        let mut buffer = b"event: node_started\ndata: {\"type\":\"node_started\"}\n\n: keep\n\nevent: x\ndata: {\"ty".to_vec();
        let events = take_events(&mut buffer);
        assert_eq!(events, vec![json!({"type": "node_started"})]);
        buffer.extend_from_slice(b"pe\":\"run_finished\"}\n\n");
        assert_eq!(
            take_events(&mut buffer),
            vec![json!({"type": "run_finished"})]
        );
        assert!(buffer.is_empty());
    }

    #[tokio::test]
    async fn the_notifier_waits_for_the_fleet_and_reads_its_directory() {
        let directory = Arc::new(GraphDirectory::default());
        let (sender, mut changes) = mpsc::channel(4);
        let notifier = GraphNotifier::new(sender, directory.clone());
        let row = GraphAgentRow {
            org: "acme.example".to_owned(),
            name: "twice".to_owned(),
            spec: json!({"graph": "twice"}),
            version: 2,
            updated_at: 0,
        };
        assert!(!notifier.status(&row).await.available);
        // A stand-in for the fleet's task: it records what it applied.
        let fleet_directory = directory.clone();
        let fleet = tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    GraphChange::Applied(row, done) => {
                        fleet_directory.set(
                            &row.name,
                            DirectoryEntry {
                                version: row.version,
                                problem: None,
                            },
                        );
                        let _ = done.send(());
                    }
                    GraphChange::Removed(name, done) => {
                        fleet_directory.remove(&name);
                        let _ = done.send(());
                    }
                }
            }
        });
        // Applied: answered once the fleet has applied it.
        notifier.applied(&row).await;
        assert!(notifier.status(&row).await.available);
        let newer = GraphAgentRow {
            version: 3,
            ..row.clone()
        };
        assert_eq!(
            notifier.status(&newer).await.reason.as_deref(),
            Some("the new version is starting")
        );
        notifier.removed("acme.example", "twice").await;
        assert!(directory.get("twice").is_none());
        drop(notifier);
        fleet
            .await
            .expect("the stand-in fleet ends with the channel");
    }

    #[test]
    fn usage_sums_the_nodes_and_keeps_the_cost() {
        let outcome = json!({"trace": {"total_cost": 0.5, "nodes": [
            {"tokens_in": 2, "tokens_out": 3, "tool_calls": 0},
            {"tokens_in": 5, "tokens_out": 7, "tool_calls": 1},
        ]}});
        assert_eq!(
            run_usage(&outcome),
            json!({"tokens_in": 7, "tokens_out": 10, "tool_calls": 1, "cost": 0.5})
        );
        assert_eq!(output_parts(&json!("hi")), vec![text_part("hi")]);
        assert_eq!(output_parts(&json!([1])), vec![data_part(json!([1]))]);
    }
}
