//! `project_manager`: the supervisor of `examples/graphs/supervisor_worker.yaml`.
//! It hands the task to its workers and finishes once every one of them has
//! reported.
//!
//! Input: the orchestrator's data part, keyed by input reference. Keys
//! without a dot are graph inputs (the task); keys naming a node's output
//! (`security.output`) are the workers' reports, `null` until that worker
//! has run. The task is the graph inputs' strings joined by blank lines
//! (else the text parts).
//!
//! Output: one data part. While some report is missing:
//! `{"done": false, "instructions": <the task>, "waiting_for": [keys]}`,
//! so the graph's `when: {path: done, equals: false}` edge sends the
//! workers `supervisor.output.instructions`. Once every report is in:
//! `{"done": true, "reports": [keys], "summary"}`. A worker that keeps
//! failing to report keeps the round going, which the graph bounds with
//! `config.max_iterations`.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::shared::{card, complete, message_text};
use crate::logic::{data_part, data_parts, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// The project manager's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProjectManagerLogic;

/// The project manager's decision on `message`.
pub fn decide(message: &Value) -> Value {
    let mut task: Vec<&str> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    let mut reported: Vec<&str> = Vec::new();
    for data in data_parts(message) {
        let Some(inputs) = data.as_object() else {
            continue;
        };
        for (key, value) in inputs {
            if !key.contains('.') {
                if let Some(text) = value.as_str() {
                    task.push(text);
                }
            } else if value.is_null() {
                missing.push(key);
            } else {
                reported.push(key);
            }
        }
    }
    if !missing.is_empty() {
        let instructions = if task.is_empty() {
            message_text(message)
        } else {
            task.join("\n\n")
        };
        return json!({"done": false, "instructions": instructions, "waiting_for": missing});
    }
    json!({
        "done": true,
        "reports": reported,
        "summary": format!("all {} worker report(s) are in: {}", reported.len(), reported.join(", ")),
    })
}

/// The project manager's card template.
pub fn card_template() -> Value {
    card(
        "project_manager",
        "Supervises a round of work: hands the task to every worker and finishes once each has reported.",
        json!({
            "id": "supervise-workers",
            "name": "Supervise workers",
            "description": "Returns {\"done\": false, \"instructions\", \"waiting_for\"} while a worker's report is missing, then {\"done\": true, \"reports\", \"summary\"}.",
            "tags": ["supervision", "delegation", "coordination"],
            "examples": ["{\"task\": \"review this code\", \"security.output\": null}"],
            "inputModes": ["application/json", "text/plain"],
            "outputModes": ["application/json"]
        }),
    )
}

#[async_trait]
impl AgentLogic for ProjectManagerLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let decision = decide(&message);
        complete(&context, &message, "decision", vec![data_part(decision)], 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegates_until_every_worker_has_reported() {
        let first = json!({"parts": [
            {"data": {"task": "eval(x)", "security.output": null, "style.output": null}},
            {"text": "eval(x)"}
        ]});
        assert_eq!(
            decide(&first),
            json!({"done": false, "instructions": "eval(x)", "waiting_for": ["security.output", "style.output"]})
        );
        let half = json!({"parts": [{"data": {"task": "eval(x)", "security.output": ["found"], "style.output": null}}]});
        assert_eq!(decide(&half)["waiting_for"], json!(["style.output"]));
        let done = json!({"parts": [{"data": {"task": "eval(x)", "security.output": ["found"], "style.output": "ok"}}]});
        let decision = decide(&done);
        assert_eq!(decision["done"], true);
        assert_eq!(
            decision["reports"],
            json!(["security.output", "style.output"])
        );
    }
}
