//! `review_aggregator`: merges the findings of several reviewers.
//!
//! Input: one message whose parts hold the reviewers' output, as data parts
//! (finding objects at any depth, e.g. the reviewers' `findings` artifacts
//! or whole tasks) and/or text parts (lines of the form
//! `- [severity] rule (line N): message`). See
//! [`crate::examples::review`] for the finding shape.
//!
//! Output: one artifact `aggregated` with a data part
//! `{"agent":"review_aggregator","findings":[…],"counts":{severity→n},
//! "total","by_agent":{agent→n}}` — findings de-duplicated by (rule, line,
//! message), keeping the most serious copy, sorted by severity then line —
//! and a text part listing them. `tool_calls` is the number of input parts
//! read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use convergio_schemas::a2a::TaskState;
use serde_json::{json, Value};

use crate::examples::review::{
    collect_findings, dedupe_and_sort, review_card, review_usage, severity_counts, Finding,
};
use crate::logic::{parts, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

const AGENT: &str = "review_aggregator";

/// The aggregator's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReviewAggregatorLogic;

/// The aggregate of a message's findings, as JSON.
pub fn aggregate(message: &Value) -> (Vec<Finding>, Value) {
    let findings = dedupe_and_sort(collect_findings(message));
    let mut by_agent: BTreeMap<String, usize> = BTreeMap::new();
    for finding in &findings {
        *by_agent.entry(finding.agent.clone()).or_default() += 1;
    }
    let report = json!({
        "agent": AGENT,
        "findings": findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
        "counts": severity_counts(&findings),
        "total": findings.len(),
        "by_agent": by_agent,
    });
    (findings, report)
}

/// The aggregator's card template.
pub fn card() -> Value {
    review_card(
        AGENT,
        "Merges review findings from several reviewers into one de-duplicated list sorted by severity.",
        json!({
            "id": "aggregate-findings",
            "name": "Aggregate findings",
            "description": "Accepts reviewer outputs (data and/or text parts) and returns one de-duplicated, severity-sorted findings list.",
            "tags": ["code-review", "aggregation"],
            "examples": ["- [high] security/eval-call (line 3): eval() executes arbitrary code"],
            "inputModes": ["application/json", "text/plain"],
            "outputModes": ["application/json", "text/plain"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for ReviewAggregatorLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        context.working()?;
        let (findings, report) = aggregate(&message);
        let mut summary = format!("{} unique findings", findings.len());
        for finding in &findings {
            summary.push('\n');
            summary.push_str(&finding.to_line());
        }
        let output = vec![json!({ "data": report }), json!({ "text": summary })];
        let usage = review_usage(&message, &output, parts(&message).len() as u64);
        context.set_metadata("usage", usage.clone())?;
        context.artifact(
            json!({"artifactId": format!("{}-aggregated", context.task_id()), "name": "aggregated", "parts": output}),
            false,
            true,
        )?;
        let reply = context.agent_message(
            vec![json!({ "text": summary })],
            Some(json!({ "usage": usage })),
        );
        context.status(TaskState::Completed, Some(reply))
    }
}
