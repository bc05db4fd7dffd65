//! `performance_expert`: pattern checks for common performance mistakes.
//!
//! Input: source code as described in [`crate::examples::review`]. Loop
//! bodies are found by indentation (see
//! [`crate::examples::review::Code::loop_depths`]).
//!
//! Checks (rule id, severity): `performance/nested-loop` medium (a loop
//! inside a loop: quadratic or worse), `performance/clone-in-loop` low
//! (`.clone()` in a loop body), `performance/string-concat-in-loop` medium
//! (`+=` of a string in a loop body), `performance/sleep-call` medium
//! (`sleep(` anywhere; high inside a loop), `performance/range-len` low
//! (`range(len(…))` instead of iterating directly),
//! `performance/query-in-loop` high (`.execute(`/`.query(` in a loop body:
//! one database round trip per item). Findings stream as artifact chunks.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::review::{
    has_call, is_loop_header, review_card, run_review, Check, Code, Finding, Severity,
};
use crate::logic::AgentLogic;
use crate::tasks::TaskContext;
use crate::AgentsError;

const AGENT: &str = "performance_expert";

/// The performance reviewer's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct PerformanceExpertLogic;

/// `(line number, line, loop depth)` of every non-comment line.
fn lines_with_depth<'a>(code: &'a Code<'_>) -> Vec<(usize, &'a str, usize)> {
    let depths = code.loop_depths();
    code.code_lines()
        .map(|(number, line)| (number, line, depths.get(number - 1).copied().unwrap_or(0)))
        .collect()
}

fn in_loop(
    code: &Code<'_>,
    rule: &str,
    severity: Severity,
    message: &str,
    test: impl Fn(&str) -> bool,
) -> Vec<Finding> {
    lines_with_depth(code)
        .into_iter()
        .filter(|(_, line, depth)| *depth > 0 && test(line))
        .map(|(number, line, _)| Finding::at(AGENT, rule, severity, number, message, line))
        .collect()
}

fn nested_loop(code: &Code<'_>) -> Vec<Finding> {
    in_loop(
        code,
        "performance/nested-loop",
        Severity::Medium,
        "nested loop: quadratic work; consider a lookup table or a single pass",
        |line| is_loop_header(line.trim_start()),
    )
}

fn clone_in_loop(code: &Code<'_>) -> Vec<Finding> {
    in_loop(
        code,
        "performance/clone-in-loop",
        Severity::Low,
        ".clone() inside a loop copies on every iteration; borrow or move instead",
        |line| line.contains(".clone()"),
    )
}

fn string_concat_in_loop(code: &Code<'_>) -> Vec<Finding> {
    in_loop(
        code,
        "performance/string-concat-in-loop",
        Severity::Medium,
        "string concatenation in a loop is quadratic; collect parts and join once",
        |line| {
            line.split_once("+=").is_some_and(|(_, value)| {
                let value = value.trim_start();
                value.starts_with('"')
                    || value.starts_with('\'')
                    || value.starts_with("f\"")
                    || value.starts_with("str(")
                    || value.contains("+ \"")
                    || value.contains("\" +")
            })
        },
    )
}

fn sleep_call(code: &Code<'_>) -> Vec<Finding> {
    lines_with_depth(code)
        .into_iter()
        .filter(|(_, line, _)| {
            has_call(line, "sleep(") || line.contains(".sleep(") || line.contains("::sleep(")
        })
        .map(|(number, line, depth)| {
            let (severity, message) = if depth > 0 {
                (
                    Severity::High,
                    "sleep inside a loop stalls every iteration; use a timer or backoff",
                )
            } else {
                (
                    Severity::Medium,
                    "blocking sleep call; prefer an event or timer",
                )
            };
            Finding::at(
                AGENT,
                "performance/sleep-call",
                severity,
                number,
                message,
                line,
            )
        })
        .collect()
}

fn range_len(code: &Code<'_>) -> Vec<Finding> {
    code.code_lines()
        .filter(|(_, line)| line.contains("range(len("))
        .map(|(number, line)| {
            Finding::at(
                AGENT,
                "performance/range-len",
                Severity::Low,
                number,
                "range(len(x)) indexing; iterate over x (or enumerate) directly",
                line,
            )
        })
        .collect()
}

fn query_in_loop(code: &Code<'_>) -> Vec<Finding> {
    in_loop(
        code,
        "performance/query-in-loop",
        Severity::High,
        "a database query per loop iteration (N+1); batch it",
        |line| line.contains(".execute(") || line.contains(".query("),
    )
}

/// The checks, in the order they run.
pub const CHECKS: [Check; 6] = [
    ("nested-loop", nested_loop),
    ("clone-in-loop", clone_in_loop),
    ("string-concat-in-loop", string_concat_in_loop),
    ("sleep-call", sleep_call),
    ("range-len", range_len),
    ("query-in-loop", query_in_loop),
];

/// The performance reviewer's card template.
pub fn card() -> Value {
    review_card(
        AGENT,
        "Reviews source code for performance mistakes: nested loops, clones and string concatenation in loops, sleeps, range(len()) and queries in loops.",
        json!({
            "id": "performance-review",
            "name": "Performance review",
            "description": "Reports performance findings with line numbers and severities; streams them as they are found.",
            "tags": ["code-review", "performance", "static-analysis"],
            "examples": ["for a in xs:\n    for b in ys:\n        pass"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json", "text/plain"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for PerformanceExpertLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        run_review(AGENT, &CHECKS, &message, &context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::review::SourceInput;

    #[test]
    fn finds_loops_by_indentation() {
        let input = SourceInput {
            source: "for a in x:\n    for b in y:\n        s += \"!\"\nprint(s)\nfor c in z:\n    pass\n".into(),
            filename: None,
            language: Some("python".into()),
        };
        let code = Code::new(&input);
        assert_eq!(code.loop_depths(), [0, 1, 2, 0, 0, 1]);
        let nested: Vec<u64> = nested_loop(&code).iter().map(|f| f.line).collect();
        assert_eq!(nested, [2]);
        assert_eq!(string_concat_in_loop(&code).len(), 1);
    }
}
