//! `report_generator`: renders findings as a Markdown report.
//!
//! Input: findings, as data parts (typically `review_aggregator`'s output;
//! any finding objects at any depth) and/or text parts with finding lines
//! (`- [severity] rule (line N): message`). Findings are de-duplicated and
//! sorted again, so raw reviewer output works too.
//!
//! Output: one artifact `report` with a text part (`mediaType`
//! `text/markdown`, `filename` `review.md`): a title, a severity table and
//! the findings grouped by severity; plus a data part
//! `{"agent":"report_generator","total","counts"}`. `tool_calls` is 1.

use async_trait::async_trait;
use convergio_schemas::a2a::TaskState;
use serde_json::{json, Value};

use crate::examples::review::{
    collect_findings, dedupe_and_sort, review_card, review_usage, severity_counts, Finding,
    Severity,
};
use crate::logic::AgentLogic;
use crate::tasks::TaskContext;
use crate::AgentsError;

const AGENT: &str = "report_generator";

/// The report generator's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReportGeneratorLogic;

/// Renders findings (already sorted) as Markdown.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::from("# Code review report\n\n");
    let count = |severity: Severity| findings.iter().filter(|f| f.severity == severity).count();
    out.push_str(&format!("**{} findings**", findings.len()));
    let nonzero: Vec<String> = Severity::ALL
        .into_iter()
        .filter(|severity| count(*severity) > 0)
        .map(|severity| format!("{} {}", count(severity), severity.as_str()))
        .collect();
    if !nonzero.is_empty() {
        out.push_str(&format!(": {}", nonzero.join(", ")));
    }
    out.push_str("\n\n| Severity | Count |\n|---|---|\n");
    for severity in Severity::ALL {
        out.push_str(&format!(
            "| {} | {} |\n",
            severity.as_str(),
            count(severity)
        ));
    }
    if findings.is_empty() {
        out.push_str("\nNo findings.\n");
        return out;
    }
    for severity in Severity::ALL {
        let group: Vec<&Finding> = findings.iter().filter(|f| f.severity == severity).collect();
        if group.is_empty() {
            continue;
        }
        let mut title = severity.as_str().to_owned();
        title[..1].make_ascii_uppercase();
        out.push_str(&format!("\n## {title}\n\n"));
        for finding in group {
            let agent = if finding.agent.is_empty() {
                String::new()
            } else {
                format!(" ({})", finding.agent)
            };
            out.push_str(&format!(
                "- **line {}** `{}`{}: {}\n",
                finding.line, finding.rule, agent, finding.message
            ));
            if !finding.snippet.is_empty() {
                out.push_str(&format!("  `{}`\n", finding.snippet.replace('`', "'")));
            }
        }
    }
    out
}

/// The report generator's card template.
pub fn card() -> Value {
    review_card(
        AGENT,
        "Turns review findings into a Markdown report with a severity summary.",
        json!({
            "id": "render-report",
            "name": "Render report",
            "description": "Accepts aggregated findings (data or text parts) and returns a Markdown report.",
            "tags": ["code-review", "report", "markdown"],
            "examples": ["- [high] security/eval-call (line 3): eval() executes arbitrary code"],
            "inputModes": ["application/json", "text/plain"],
            "outputModes": ["text/markdown", "application/json"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for ReportGeneratorLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        context.working()?;
        let findings = dedupe_and_sort(collect_findings(&message));
        let markdown = render(&findings);
        let output = vec![
            json!({"text": markdown, "mediaType": "text/markdown", "filename": "review.md"}),
            json!({"data": {"agent": AGENT, "total": findings.len(), "counts": severity_counts(&findings)}}),
        ];
        let usage = review_usage(&message, &output[..1], 1);
        context.set_metadata("usage", usage.clone())?;
        context.artifact(
            json!({"artifactId": format!("{}-report", context.task_id()), "name": "report", "parts": output}),
            false,
            true,
        )?;
        let summary = format!("report written: {} findings", findings.len());
        let reply = context.agent_message(
            vec![json!({ "text": summary })],
            Some(json!({ "usage": usage })),
        );
        context.status(TaskState::Completed, Some(reply))
    }
}
