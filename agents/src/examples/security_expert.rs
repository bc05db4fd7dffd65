//! `security_expert`: pattern checks for common security mistakes.
//!
//! Input: source code as described in [`crate::examples::review`] (a text
//! part, or `code_analyzer`'s output as a data part). Comment-only lines are
//! skipped.
//!
//! Checks (rule id, severity): `security/eval-call` high (`eval(`),
//! `security/exec-call` high (`exec(`, `os.system(`, `shell=True`),
//! `security/hardcoded-secret` critical (`password=`, `secret=`, `api_key=`,
//! `token=` assigned a string literal), `security/sql-concatenation` high
//! (an SQL statement built with `+`, `%`, an f-string or `.format(`),
//! `security/insecure-http` medium (`http://` URLs other than
//! localhost/127.0.0.1), `security/unsafe-deserialization` high
//! (`pickle.loads(`, `yaml.load(` without a safe loader),
//! `security/unwrap` low (`.unwrap()`), `security/unsafe-block` medium
//! (`unsafe` blocks). Findings stream as artifact chunks; see
//! [`crate::examples::review::run_review`] for the output.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::review::{has_call, review_card, run_review, Check, Code, Finding, Severity};
use crate::logic::AgentLogic;
use crate::tasks::TaskContext;
use crate::AgentsError;

const AGENT: &str = "security_expert";

/// The security reviewer's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct SecurityExpertLogic;

fn each_line(
    code: &Code<'_>,
    rule: &str,
    severity: Severity,
    message: &str,
    test: impl Fn(&str) -> bool,
) -> Vec<Finding> {
    code.code_lines()
        .filter(|(_, line)| test(line))
        .map(|(number, line)| Finding::at(AGENT, rule, severity, number, message, line))
        .collect()
}

fn eval_call(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/eval-call",
        Severity::High,
        "eval() executes arbitrary code; parse the input instead",
        |line| has_call(line, "eval("),
    )
}

fn exec_call(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/exec-call",
        Severity::High,
        "executing code or shell commands built at runtime allows injection",
        |line| {
            has_call(line, "exec(") || line.contains("os.system(") || line.contains("shell=True")
        },
    )
}

/// `key = "literal"` or `key: "literal"` for a secret-looking key.
fn assigns_secret_literal(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["password", "passwd", "secret", "api_key", "apikey", "token"]
        .iter()
        .any(|key| {
            lower.match_indices(key).any(|(index, _)| {
                let rest = &lower[index + key.len()..];
                // A quoted key (`'secret': …`) ends with its quote.
                let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest).trim_start();
                let Some(value) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) else {
                    return false;
                };
                if value.starts_with('=') {
                    return false;
                }
                let value = value.trim_start();
                (value.starts_with('"') || value.starts_with('\''))
                    && !value.starts_with("\"\"")
                    && !value.starts_with("''")
            })
        })
}

fn hardcoded_secret(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/hardcoded-secret",
        Severity::Critical,
        "hard-coded credential; load it from the environment or a secret store",
        assigns_secret_literal,
    )
}

fn sql_concatenation(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/sql-concatenation",
        Severity::High,
        "SQL built by string concatenation or formatting is injectable; use bound parameters",
        |line| {
            let lower = line.to_ascii_lowercase();
            let sql = ["select ", "insert into", "update ", "delete from"]
                .iter()
                .any(|keyword| lower.contains(keyword));
            let built = line.contains("\" +")
                || line.contains("+ \"")
                || line.contains("' +")
                || line.contains("+ '")
                || line.contains("f\"")
                || line.contains("f'")
                || line.contains(".format(")
                || line.contains("\" %")
                || line.contains("' %")
                || line.contains("format!(");
            sql && built
        },
    )
}

fn insecure_http(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/insecure-http",
        Severity::Medium,
        "plain http:// URL; use https://",
        |line| {
            line.match_indices("http://").any(|(index, _)| {
                let host = &line[index + "http://".len()..];
                !(host.starts_with("localhost")
                    || host.starts_with("127.0.0.1")
                    || host.starts_with("[::1]"))
            })
        },
    )
}

fn unsafe_deserialization(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/unsafe-deserialization",
        Severity::High,
        "deserializing untrusted data can execute code",
        |line| {
            line.contains("pickle.loads(")
                || line.contains("pickle.load(")
                || (line.contains("yaml.load(") && !line.contains("SafeLoader"))
        },
    )
}

fn unwrap_call(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/unwrap",
        Severity::Low,
        "unwrap() panics on bad input; handle the error",
        |line| line.contains(".unwrap()"),
    )
}

fn unsafe_block(code: &Code<'_>) -> Vec<Finding> {
    each_line(
        code,
        "security/unsafe-block",
        Severity::Medium,
        "unsafe code bypasses the compiler's memory-safety checks",
        |line| {
            line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "unsafe")
        },
    )
}

/// The checks, in the order they run.
pub const CHECKS: [Check; 8] = [
    ("eval-call", eval_call),
    ("exec-call", exec_call),
    ("hardcoded-secret", hardcoded_secret),
    ("sql-concatenation", sql_concatenation),
    ("insecure-http", insecure_http),
    ("unsafe-deserialization", unsafe_deserialization),
    ("unwrap", unwrap_call),
    ("unsafe-block", unsafe_block),
];

/// The security reviewer's card template.
pub fn card() -> Value {
    review_card(
        AGENT,
        "Reviews source code for security mistakes by pattern: eval/exec, hard-coded secrets, SQL built from strings, plain http URLs, unsafe deserialization, unwrap and unsafe.",
        json!({
            "id": "security-review",
            "name": "Security review",
            "description": "Reports security findings with line numbers and severities; streams them as they are found.",
            "tags": ["code-review", "security", "static-analysis"],
            "examples": ["password = \"hunter2\""],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json", "text/plain"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for SecurityExpertLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        run_review(AGENT, &CHECKS, &message, &context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_secret_literals_but_not_comparisons() {
        assert!(assigns_secret_literal("DB_PASSWORD = \"hunter2\""));
        assert!(assigns_secret_literal("config = {'secret': 'abc'}"));
        assert!(!assigns_secret_literal("if password == \"x\":"));
        assert!(!assigns_secret_literal("password = os.environ['PW']"));
    }
}
