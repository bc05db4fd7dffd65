//! `style_checker`: layout and naming checks.
//!
//! Input: source code as described in [`crate::examples::review`].
//!
//! Checks (rule id, severity): `style/long-line` low (over 100 characters),
//! `style/trailing-whitespace` info, `style/tab` info (a tab character),
//! `style/todo` info (`TODO`, `FIXME`, `XXX`), `style/function-naming` low
//! (a function name with capitals in Python, Rust or Ruby, which use
//! snake_case), `style/class-naming` low (a `class`/`struct` name that does
//! not start with a capital). Findings stream as artifact chunks.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::code_analyzer::functions;
use crate::examples::review::{review_card, run_review, Check, Code, Finding, Severity};
use crate::logic::AgentLogic;
use crate::tasks::TaskContext;
use crate::AgentsError;

const AGENT: &str = "style_checker";

/// Longest allowed line, in characters.
pub const MAX_LINE: usize = 100;

/// The style checker's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct StyleCheckerLogic;

fn every_line(
    code: &Code<'_>,
    rule: &str,
    severity: Severity,
    message: &str,
    test: impl Fn(&str) -> bool,
) -> Vec<Finding> {
    code.lines
        .iter()
        .enumerate()
        .filter(|(_, line)| test(line))
        .map(|(index, line)| Finding::at(AGENT, rule, severity, index + 1, message, line))
        .collect()
}

fn long_line(code: &Code<'_>) -> Vec<Finding> {
    every_line(
        code,
        "style/long-line",
        Severity::Low,
        "line longer than 100 characters",
        |line| line.chars().count() > MAX_LINE,
    )
}

fn trailing_whitespace(code: &Code<'_>) -> Vec<Finding> {
    every_line(
        code,
        "style/trailing-whitespace",
        Severity::Info,
        "trailing whitespace",
        |line| line.ends_with(' ') || line.ends_with('\t'),
    )
}

fn tab(code: &Code<'_>) -> Vec<Finding> {
    every_line(
        code,
        "style/tab",
        Severity::Info,
        "tab character; indent with spaces",
        |line| line.contains('\t'),
    )
}

fn todo(code: &Code<'_>) -> Vec<Finding> {
    every_line(
        code,
        "style/todo",
        Severity::Info,
        "unresolved TODO/FIXME marker",
        |line| line.contains("TODO") || line.contains("FIXME") || line.contains("XXX"),
    )
}

fn function_naming(code: &Code<'_>) -> Vec<Finding> {
    if !matches!(code.language.as_str(), "python" | "rust" | "ruby") {
        return Vec::new();
    }
    let source = code.lines.join("\n");
    functions(&source)
        .into_iter()
        .filter(|(name, _)| name.chars().any(|c| c.is_ascii_uppercase()))
        .map(|(name, line)| {
            let text = code.lines.get(line - 1).copied().unwrap_or("");
            Finding::at(
                AGENT,
                "style/function-naming",
                Severity::Low,
                line,
                format!("function `{name}` should be snake_case"),
                text,
            )
        })
        .collect()
}

fn class_naming(code: &Code<'_>) -> Vec<Finding> {
    code.code_lines()
        .filter_map(|(number, line)| {
            let trimmed = line.trim_start();
            let trimmed = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
            let rest = trimmed
                .strip_prefix("class ")
                .or_else(|| trimmed.strip_prefix("struct "))?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let first = name.chars().next()?;
            (!first.is_ascii_uppercase()).then(|| {
                Finding::at(
                    AGENT,
                    "style/class-naming",
                    Severity::Low,
                    number,
                    format!("type `{name}` should be CamelCase"),
                    line,
                )
            })
        })
        .collect()
}

/// The checks, in the order they run.
pub const CHECKS: [Check; 6] = [
    ("long-line", long_line),
    ("trailing-whitespace", trailing_whitespace),
    ("tab", tab),
    ("todo", todo),
    ("function-naming", function_naming),
    ("class-naming", class_naming),
];

/// The style checker's card template.
pub fn card() -> Value {
    review_card(
        AGENT,
        "Checks source code layout and naming: long lines, trailing whitespace, tabs, TODO/FIXME markers and function/type naming.",
        json!({
            "id": "style-review",
            "name": "Style review",
            "description": "Reports style findings with line numbers; streams them as they are found.",
            "tags": ["code-review", "style", "lint"],
            "examples": ["def BadName():\t\n    pass"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json", "text/plain"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for StyleCheckerLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        run_review(AGENT, &CHECKS, &message, &context).await
    }
}
