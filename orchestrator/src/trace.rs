//! The §8.1 run trace, the price table behind its `total_cost`, and W3C
//! `traceparent` ids.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::mapping::{RemoteTiming, ToolCallReport};
use crate::replan::RevisionSummary;
use crate::run_state::{ExecutionStatus, RunState};

/// The trace every run produces (design document §8.1, field for field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// W3C trace id (32 hex digits), also sent to agents in `traceparent`.
    pub trace_id: String,
    /// The graph's name.
    pub graph_id: String,
    /// One entry per node execution (a node in a loop appears once per run of it).
    pub nodes: Vec<TraceNode>,
    /// Tokens in and out over the run.
    pub total_tokens: u64,
    /// The nodes' costs: what each agent reported, else the configured
    /// [`PriceTable`].
    pub total_cost: f64,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// The re-plans the run made (§9.2), oldest first; their planners'
    /// usage is in the totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionSummary>,
}

/// One node execution in a [`Trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceNode {
    /// The node.
    pub node_id: String,
    /// The agent that answered (the fallback when one was used).
    pub agent: String,
    /// When the node started.
    pub start_time: DateTime<Utc>,
    /// When it finished.
    pub end_time: DateTime<Utc>,
    /// Reported prompt tokens.
    pub tokens_in: u64,
    /// Reported completion tokens.
    pub tokens_out: u64,
    /// Reported tool calls.
    pub tool_calls: u64,
    /// Each tool call, as the agent reported it (Convergio's model agents
    /// do), in the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolCallReport>,
    /// For a node in another organisation that shares its timings: how
    /// long it took there (the rest of the node's time is the way there
    /// and back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteTiming>,
    /// What the call cost: the agent's report, else the price table.
    #[serde(default)]
    pub cost: f64,
    /// `success`, `failed`, `skipped` or `cancelled`.
    pub status: ExecutionStatus,
}

/// Prices per 1,000 tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Price of 1,000 prompt tokens.
    pub input_per_1k: f64,
    /// Price of 1,000 completion tokens.
    pub output_per_1k: f64,
}

/// Prices by agent, with a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Used for agents not listed.
    #[serde(default)]
    pub default: Price,
    /// Per-agent prices.
    #[serde(default)]
    pub agents: HashMap<String, Price>,
}

// === impl PriceTable ===

impl PriceTable {
    /// The cost of `tokens_in`/`tokens_out` for `agent`.
    pub fn cost(&self, agent: &str, tokens_in: u64, tokens_out: u64) -> f64 {
        let price = self.agents.get(agent).unwrap_or(&self.default);
        tokens_in as f64 / 1000.0 * price.input_per_1k
            + tokens_out as f64 / 1000.0 * price.output_per_1k
    }
}

// === impl Trace ===

impl Trace {
    /// Builds the trace of a run from its state.
    pub fn from_state(state: &RunState, prices: &PriceTable) -> Self {
        let mut total_tokens = 0u64;
        let mut total_cost = 0.0;
        let nodes = state
            .executions
            .iter()
            .map(|execution| {
                total_tokens = total_tokens.saturating_add(execution.usage.tokens());
                // What the agent reported (a model agent prices its own
                // provider calls), else the run's price table.
                let cost = match execution.usage.cost_micros {
                    Some(micros) => micros as f64 / 1_000_000.0,
                    None => prices.cost(
                        &execution.agent,
                        execution.usage.tokens_in,
                        execution.usage.tokens_out,
                    ),
                };
                total_cost += cost;
                TraceNode {
                    node_id: execution.node_id.clone(),
                    agent: execution.agent.clone(),
                    start_time: execution.start_time,
                    end_time: execution.end_time,
                    tokens_in: execution.usage.tokens_in,
                    tokens_out: execution.usage.tokens_out,
                    tool_calls: execution.usage.tool_calls,
                    tools: execution.tools.clone(),
                    remote: execution.remote.clone(),
                    cost,
                    status: execution.status,
                }
            })
            .collect();
        for revision in &state.revisions {
            total_tokens = total_tokens.saturating_add(revision.usage.tokens());
            total_cost += match revision.usage.cost_micros {
                Some(micros) => micros as f64 / 1_000_000.0,
                None => prices.cost(
                    &revision.planner,
                    revision.usage.tokens_in,
                    revision.usage.tokens_out,
                ),
            };
        }
        let end = state.finished_at.unwrap_or_else(Utc::now);
        let duration_ms = (end - state.started_at).num_milliseconds().max(0) as u64;
        Self {
            trace_id: state.trace_id.clone(),
            graph_id: state.graph_id.clone(),
            nodes,
            total_tokens,
            total_cost,
            duration_ms,
            revisions: state.revisions.clone(),
        }
    }
}

/// A new random W3C trace id (32 lowercase hex digits, never all zero).
pub fn new_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>().max(1))
}

/// A `traceparent` header for a new child span of `trace_id`.
pub fn child_traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{:016x}-01", rand::random::<u64>().max(1))
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2
/// hex>`, neither id all zeros), lowercased; `None` for anything else, so
/// a malformed header starts a new trace instead of failing the run.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let fields: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace_id, parent_id, flags] = fields.as_slice() else {
        return None;
    };
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field.bytes().all(|byte| byte.is_ascii_hexdigit())
            && field.bytes().any(|byte| byte != b'0')
    };
    let well_formed = *version == "00"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && flags.len() == 2
        && flags.bytes().all(|byte| byte.is_ascii_hexdigit());
    well_formed.then(|| trace_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_read_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let check = |header: &str, expected: Option<&str>| {
            assert_eq!(trace_id_of(header).as_deref(), expected, "{header}");
        };
        check(&format!("00-{id}-00f067aa0ba902b7-01"), Some(id));
        check(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-00",
            Some(id),
        );
        check(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        );
        check(&format!("00-{id}-0000000000000000-01"), None);
        check(&format!("01-{id}-00f067aa0ba902b7-01"), None);
        check(&format!("00-{id}-00f067aa0ba902b7"), None);
        check("garbage", None);
        assert_eq!(trace_id_of(&child_traceparent(id)).as_deref(), Some(id));
    }

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let trace_id = new_trace_id();
        let header = child_traceparent(&trace_id);
        let fields: Vec<&str> = header.split('-').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0], "00");
        assert_eq!(fields[1], trace_id);
        assert_eq!(fields[1].len(), 32);
        assert_eq!(fields[2].len(), 16);
        assert_eq!(fields[3], "01");
    }

    #[test]
    fn cost_uses_the_agent_price_or_the_default() {
        let mut table = PriceTable {
            default: Price {
                input_per_1k: 1.0,
                output_per_1k: 2.0,
            },
            ..Default::default()
        };
        table.agents.insert(
            "cheap".to_owned(),
            Price {
                input_per_1k: 0.0,
                output_per_1k: 0.5,
            },
        );
        assert!((table.cost("other", 1000, 500) - 2.0).abs() < 1e-9);
        assert!((table.cost("cheap", 1000, 2000) - 1.0).abs() < 1e-9);
    }
}
