//! The boundary between the orchestrator and the agents: the [`Dispatch`]
//! trait the gateway implements, and the call and reply types.
//!
//! The orchestrator never touches the network. The gateway sends every
//! node's call through its authenticate → authorise → route pipeline, so a
//! graph gets exactly the access its caller has; an `external://…` agent is
//! just another name to the dispatcher.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use convergio_schemas::Principal;
use serde_json::Value;
use uuid::Uuid;

use tokio::sync::mpsc;

use crate::error::DispatchError;
use crate::mapping::{reported, reported_usage, NodeReport};
use crate::run_state::RunEvent;

/// What an agent reports using; defined beside the reply format it is read
/// from ([`crate::mapping`]), named here as part of the call contract.
pub use crate::mapping::Usage;

/// Sends one node's message to one agent and waits for its answer.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Calls `call.agent` with `call.message` (an A2A 1.0 `SendMessage`,
    /// blocking until the task is terminal or interrupted).
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError>;

    /// Searches or writes a memory namespace for a node's `memory:`, as the
    /// run's caller (issue 20): a search answers its hits (an array), a
    /// write `null`. A dispatcher without memory refuses both.
    async fn memory(&self, op: MemoryOp) -> Result<Value, DispatchError> {
        Err(DispatchError::NotRoutable {
            agent: format!("memory namespace {}", op.namespace),
            reason: "this dispatcher has no memory".to_owned(),
        })
    }
}

/// One memory operation of one node.
#[derive(Debug, Clone)]
pub struct MemoryOp {
    /// The run.
    pub run_id: Uuid,
    /// The graph the run executes.
    pub graph_id: Arc<str>,
    /// The node.
    pub node_id: String,
    /// The agent the node calls, as the graph names it: a namespace scoped
    /// to one agent (issue 20) is used only by nodes calling that agent.
    pub agent: String,
    /// Who started the run (policy decides as for its agent calls).
    pub caller: Option<Arc<Principal>>,
    /// Where the caller connected from, when known.
    pub origin: Option<std::net::IpAddr>,
    /// W3C trace context of the node's call.
    pub traceparent: String,
    /// The namespace.
    pub namespace: Arc<str>,
    /// Search or write.
    pub action: MemoryAction,
}

/// What a [`MemoryOp`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryAction {
    /// The `top_k` items nearest `query`.
    Search {
        /// The query text.
        query: String,
        /// Hits wanted.
        top_k: u32,
    },
    /// Writes `value` (the node's output) under `key`, which names the run,
    /// node and iteration: a resumed run that calls the node again writes
    /// the same key, never a second item.
    Write {
        /// The item's key.
        key: String,
        /// The node's output.
        value: Value,
    },
}

/// One call of one node.
#[derive(Debug, Clone)]
pub struct AgentCall {
    /// The run this call belongs to.
    pub run_id: Uuid,
    /// The graph the run executes (its `name`).
    pub graph_id: Arc<str>,
    /// Who started the run; the gateway's dispatcher calls the agent as
    /// this principal, so a graph never has more access than its caller.
    /// `None` for runs started in-process without a caller (tests, benches).
    pub caller: Option<Arc<Principal>>,
    /// Where the caller connected from, when known: the dispatcher hands it
    /// to policy as the call's origin, so a graph's calls are judged as if
    /// its caller made them from where it is.
    pub origin: Option<std::net::IpAddr>,
    /// The node making the call.
    pub node_id: String,
    /// Registry name or full agent id (`external://org/name` included).
    pub agent: String,
    /// An A2A 1.0 Message: `{"messageId","role":"ROLE_USER","parts":[…],"metadata":{…}}`.
    pub message: Value,
    /// W3C trace context: the run's trace id and this call's span id.
    pub traceparent: String,
    /// When the executor stops waiting for this call.
    pub deadline: Option<Instant>,
    /// `Some` for a streaming node (`stream: true`): call the agent with
    /// `SendStreamingMessage`, hand each event to these updates and answer
    /// with the stream folded ([`crate::mapping::StreamFold`]). A
    /// dispatcher that cannot stream may ignore it and call blocking.
    pub stream: Option<NodeUpdates>,
}

/// Where a streaming node's events go: the run's live event stream, as
/// [`RunEvent::NodeUpdate`]s, when the run has one. At most
/// [`NodeUpdates::MAX_PER_CALL`] events of one call are passed on, so a
/// chatty agent cannot flood the run's event log; the answer still holds
/// everything the agent streamed.
#[derive(Debug, Clone)]
pub struct NodeUpdates {
    run_id: Uuid,
    node_id: String,
    iteration: u32,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    sent: usize,
}

// === impl NodeUpdates ===

impl NodeUpdates {
    /// Events of one call passed on to the run's stream, at most.
    pub const MAX_PER_CALL: usize = 1_000;

    /// Updates of `node_id`'s run number `iteration`, sent to `events`
    /// (`None`: the run has no live stream, and updates go nowhere).
    pub fn new(
        run_id: Uuid,
        node_id: String,
        iteration: u32,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Self {
        Self {
            run_id,
            node_id,
            iteration,
            events,
            sent: 0,
        }
    }

    /// Passes one streamed event on.
    pub fn send(&mut self, event: &Value) {
        let Some(events) = &self.events else {
            return;
        };
        if self.sent >= Self::MAX_PER_CALL {
            return;
        }
        self.sent += 1;
        // A stream consumer that went away does not stop the call.
        let _ = events.send(RunEvent::NodeUpdate {
            run_id: self.run_id,
            node_id: self.node_id.clone(),
            iteration: self.iteration,
            event: event.clone(),
        });
    }
}

/// An agent's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    /// The `SendMessage` result: `{"message":…}` or `{"task":…}` (a bare
    /// Message or Task is accepted too).
    pub response: Value,
    /// What the agent reported using (see [`Usage`]).
    pub usage: Usage,
    /// The tool calls and remote timing the agent reported.
    pub report: NodeReport,
}

// === impl AgentReply ===

impl AgentReply {
    /// Wraps a `SendMessage` result, reading the usage the agent reported in
    /// `metadata.usage` of the message or task, and its tool calls.
    pub fn from_response(response: Value) -> Self {
        let usage = reported_usage(&response);
        let report = reported(&response);
        Self {
            response,
            usage,
            report,
        }
    }
}
