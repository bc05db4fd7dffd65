//! The embedded orchestrator: graphs of agents written in YAML or with a
//! Rust builder, validated against the registry, and run by an async
//! executor in four modes (sync, async, streaming, batch), with budgets,
//! error strategies, §8.1 traces and §8.2 metrics.
//!
//! The crate performs no network I/O: agent calls go through a [`Dispatch`]
//! the gateway implements, so every node's call passes the same
//! authenticate → authorise → route pipeline as any outside request.
//!
//! ```text
//! parse_yaml(text) ─▶ GraphSpec ─▶ validate(spec, catalog, limits) ─▶ Graph
//! Graph::new(..).add_node(..)…build(..) ───────────────────────────▶ Graph
//! Executor::new(dispatch, config).run / spawn / stream / batch (Graph, input)
//! ```
//!
//! Module map: [`api`] (wire types of `/v1/graphs` and `/v1/runs`),
//! [`dsl`] (document types), [`source`] (parsing, line lookup),
//! [`validate`](mod@validate), [`builder`], [`graph`] (the index-based
//! validated graph), [`mapping`] (inputs → A2A message → output),
//! [`executor`], [`run_state`] (the serialisable state of a run), [`journal`] (durable runs: the store interface and step
//! deltas), [`replan`] (§9.2: a new plan from a failure point), [`graph_store`] (stored graph documents, versioned per
//! organisation, and graphs published as agents), [`trace`], [`metrics`].

pub mod api;
pub mod builder;
pub mod dispatch;
pub mod dsl;
pub mod error;
pub mod executor;
pub mod graph;
pub mod graph_store;
pub mod journal;
pub mod mapping;
pub mod metrics;
pub mod replan;
pub mod run_state;
pub mod source;
pub mod trace;
pub mod validate;

pub use builder::GraphBuilder;
pub use dispatch::{AgentCall, AgentReply, Dispatch, MemoryAction, MemoryOp, NodeUpdates, Usage};
pub use dsl::GraphSpec;
pub use error::{DispatchError, OrchestratorError};
pub use executor::{
    Continue, Executor, ExecutorConfig, RunEvents, RunHandle, RunOptions, RunResult,
};
pub use graph::Graph;
pub use graph_store::{GraphAgentRow, GraphAgentStore, GraphStore, MemoryGraphStore};
pub use journal::{
    Checkpoint, NewRun, RunFilter, RunHeader, RunJournal, RunListing, StepDelta, StoredRun,
};
pub use mapping::{NodeReport, RemoteTiming, StreamFold, ToolCallReport};
pub use metrics::Metrics;
pub use replan::{
    CompletedStep, FailedStep, ReplanRequest, ReplanSettings, Replanner, Revision, StepDiff,
};
pub use run_state::{NodeStatus, RunEvent, RunState, RunStatus, RunSummary};
pub use source::{check_nesting, parse_yaml, MAX_NESTING_DEPTH};
pub use trace::{Price, PriceTable, Trace};
pub use validate::{
    validate, AgentCatalog, AnyAgent, Limits, StaticCatalog, ValidationCode, ValidationError,
};
