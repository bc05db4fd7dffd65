//! Shared pieces of the code-review agents: how they find source code in a
//! message, the finding shape, severities, collecting findings from earlier
//! agents' output, and the usage report.
//!
//! **Source input** (reviewers and analyzer): if any data part holds (at any
//! depth up to 16) an object with a string `source` field, that is the source
//! code (this is what `code_analyzer` emits, so reviewers can take its output
//! directly); an optional sibling `filename` and `language` are used too.
//! Otherwise all text parts, joined by newlines, are the source, and a text
//! or data part's `filename` names the file.
//!
//! **Finding** (JSON, in data parts): `{"agent", "rule", "severity"
//! ("critical"|"high"|"medium"|"low"|"info"), "line" (1-based, 0 = whole
//! file), "message", "snippet"}`. Any JSON object with string `rule`,
//! `severity` and `message` is read as a finding, wherever it sits in a data
//! part; findings in text come as lines of the form
//! `- [severity] rule (line N): message` (what the reviewers write).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::logic::{count_part_tokens, data_parts, parts, text_parts, usage};

/// Deepest nesting searched for source or findings in a data part.
const MAX_DEPTH: usize = 16;

/// How serious a finding is, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Exploitable or data-losing.
    Critical,
    /// Likely bug or vulnerability.
    High,
    /// Worth fixing soon.
    Medium,
    /// Minor.
    Low,
    /// Informational.
    Info,
}

// === impl Severity ===

impl Severity {
    /// Every severity, most serious first.
    pub const ALL: [Severity; 5] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Info,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Info => "info",
        }
    }

    /// Parses the lowercase name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|severity| severity.as_str().eq_ignore_ascii_case(name))
    }
}

/// One review finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The agent that reported it.
    #[serde(default)]
    pub agent: String,
    /// A stable rule id, e.g. `security/eval-call`.
    pub rule: String,
    /// How serious it is.
    pub severity: Severity,
    /// 1-based line; 0 means the whole file.
    #[serde(default)]
    pub line: u64,
    /// What is wrong.
    pub message: String,
    /// The offending line, trimmed (may be empty).
    #[serde(default)]
    pub snippet: String,
}

// === impl Finding ===

impl Finding {
    /// A finding for `line` (1-based) of `source_line`.
    pub fn at(
        agent: &str,
        rule: &str,
        severity: Severity,
        line: usize,
        message: impl Into<String>,
        source_line: &str,
    ) -> Self {
        let snippet: String = source_line.trim().chars().take(120).collect();
        Self {
            agent: agent.to_owned(),
            rule: rule.to_owned(),
            severity,
            line: line as u64,
            message: message.into(),
            snippet,
        }
    }

    /// The finding as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The text form `- [severity] rule (line N): message`.
    pub fn to_line(&self) -> String {
        format!(
            "- [{}] {} (line {}): {}",
            self.severity.as_str(),
            self.rule,
            self.line,
            self.message
        )
    }

    /// Severity first, then line, then rule.
    pub fn order(&self, other: &Self) -> Ordering {
        self.severity
            .cmp(&other.severity)
            .then(self.line.cmp(&other.line))
            .then_with(|| self.rule.cmp(&other.rule))
            .then_with(|| self.message.cmp(&other.message))
    }
}

/// The source code a message carries, with its file name and declared
/// language if known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInput {
    /// The source text.
    pub source: String,
    /// The file name, if given.
    pub filename: Option<String>,
    /// The language, if an earlier agent named it.
    pub language: Option<String>,
}

fn find_source(value: &Value, depth: usize) -> Option<SourceInput> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::String(source)) = map.get("source") {
                return Some(SourceInput {
                    source: source.clone(),
                    filename: map
                        .get("filename")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    language: map
                        .get("language")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
            map.values().find_map(|inner| find_source(inner, depth + 1))
        }
        Value::Array(items) => items.iter().find_map(|inner| find_source(inner, depth + 1)),
        _ => None,
    }
}

/// Reads the source code from a message (see the module docs).
pub fn source_input(message: &Value) -> Option<SourceInput> {
    if let Some(found) = data_parts(message)
        .into_iter()
        .find_map(|data| find_source(data, 0))
    {
        return Some(found);
    }
    let texts = text_parts(message);
    if texts.is_empty() {
        return None;
    }
    let filename = parts(message)
        .iter()
        .find_map(|part| part.get("filename").and_then(Value::as_str))
        .map(str::to_owned);
    Some(SourceInput {
        source: texts.join("\n"),
        filename,
        language: None,
    })
}

fn collect_value(value: &Value, depth: usize, out: &mut Vec<Finding>) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let is_finding = ["rule", "severity", "message"]
                .iter()
                .all(|key| map.get(*key).is_some_and(Value::is_string));
            if is_finding {
                if let Ok(finding) = serde_json::from_value::<Finding>(value.clone()) {
                    out.push(finding);
                    return;
                }
            }
            for inner in map.values() {
                collect_value(inner, depth + 1, out);
            }
        }
        Value::Array(items) => {
            for inner in items {
                collect_value(inner, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Parses `- [severity] rule (line N): message` (the leading `- ` optional).
pub fn parse_finding_line(line: &str) -> Option<Finding> {
    let line = line.trim().trim_start_matches("- ").trim_start();
    let rest = line.strip_prefix('[')?;
    let (severity, rest) = rest.split_once(']')?;
    let severity = Severity::parse(severity.trim())?;
    let (rule, rest) = rest.trim_start().split_once(" (line ")?;
    let (number, message) = rest.split_once("):")?;
    let (agent, _) = rule.split_once('/').unwrap_or(("", ""));
    Some(Finding {
        agent: agent.to_owned(),
        rule: rule.trim().to_owned(),
        severity,
        line: number.trim().parse().ok()?,
        message: message.trim().to_owned(),
        snippet: String::new(),
    })
}

/// Every finding in a message: finding objects in data parts, and finding
/// lines in text parts. Not yet de-duplicated.
pub fn collect_findings(message: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    for data in data_parts(message) {
        collect_value(data, 0, &mut findings);
    }
    for text in text_parts(message) {
        findings.extend(text.lines().filter_map(parse_finding_line));
    }
    findings
}

/// De-duplicates by (rule, line, message), keeping the most serious copy
/// and the first non-empty snippet, and sorts by severity, line, rule.
pub fn dedupe_and_sort(findings: Vec<Finding>) -> Vec<Finding> {
    let mut unique: Vec<Finding> = Vec::new();
    for finding in findings {
        match unique.iter_mut().find(|kept| {
            kept.rule == finding.rule
                && kept.line == finding.line
                && kept.message == finding.message
        }) {
            Some(kept) => {
                if finding.severity < kept.severity {
                    kept.severity = finding.severity;
                }
                if kept.snippet.is_empty() {
                    kept.snippet = finding.snippet;
                }
                if kept.agent.is_empty() {
                    kept.agent = finding.agent;
                }
            }
            None => unique.push(finding),
        }
    }
    unique.sort_by(Finding::order);
    unique
}

/// Counts per severity, as a JSON object with every severity present.
pub fn severity_counts(findings: &[Finding]) -> Value {
    let mut counts = serde_json::Map::new();
    for severity in Severity::ALL {
        let count = findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count();
        counts.insert(severity.as_str().to_owned(), json!(count));
    }
    Value::Object(counts)
}

/// The usage report for a reply: input tokens of the message, output
/// tokens of `output` parts, and the checks run.
pub fn review_usage(message: &Value, output: &[Value], checks: u64) -> Value {
    usage(
        count_part_tokens(parts(message)),
        count_part_tokens(output),
        checks,
    )
}

/// A card template for a code-review agent.
pub fn review_card(name: &str, description: &str, skill: Value, streaming: bool) -> Value {
    json!({
        "name": name,
        "description": description,
        "version": "1.0.0",
        "provider": {"organization": "Convergio examples", "url": "https://convergio.dev/examples"},
        "capabilities": {"streaming": streaming, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [skill]
    })
}

/// Source code prepared for line checks.
pub struct Code<'a> {
    /// The lines, without terminators.
    pub lines: Vec<&'a str>,
    /// The language (guessed if not given).
    pub language: String,
}

// === impl Code ===

impl<'a> Code<'a> {
    /// Splits `input` into lines and settles its language.
    pub fn new(input: &'a SourceInput) -> Self {
        let language = input.language.clone().unwrap_or_else(|| {
            super::code_analyzer::guess_language(input.filename.as_deref(), &input.source)
                .to_owned()
        });
        Self {
            lines: input.source.lines().collect(),
            language,
        }
    }

    /// `(1-based line number, line)` for every line that is not only a comment.
    pub fn code_lines(&self) -> impl Iterator<Item = (usize, &'a str)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| !super::code_analyzer::is_comment(line, &self.language))
            .map(|(index, line)| (index + 1, *line))
    }

    /// For every line, whether it sits inside a loop body, judged by
    /// indentation: a line is in a loop when an earlier `for`/`while`/`loop`
    /// header is less indented and no line in between closed that block by
    /// being indented at or left of the header. Also returns the loop depth.
    pub fn loop_depths(&self) -> Vec<usize> {
        let mut open: Vec<usize> = Vec::new();
        let mut depths = Vec::with_capacity(self.lines.len());
        for line in &self.lines {
            if line.trim().is_empty() {
                depths.push(open.len());
                continue;
            }
            let indent = indentation(line);
            let trimmed = line.trim_start();
            let closes_only = trimmed.starts_with('}') || trimmed.starts_with(')');
            while open
                .last()
                .is_some_and(|header| *header > indent || (*header == indent && !closes_only))
            {
                open.pop();
            }
            if closes_only {
                open.retain(|header| *header < indent);
            }
            depths.push(open.len());
            if is_loop_header(trimmed) {
                open.push(indent);
            }
        }
        depths
    }
}

/// Leading whitespace width, a tab counting as four columns.
pub fn indentation(line: &str) -> usize {
    line.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// Whether a trimmed line opens a loop.
pub fn is_loop_header(trimmed: &str) -> bool {
    [
        "for ",
        "while ",
        "loop ",
        "loop{",
        "for(",
        "while(",
        "async for ",
    ]
    .iter()
    .any(|keyword| trimmed.starts_with(keyword))
        || trimmed.contains(".forEach(")
}

/// Whether `needle` occurs in `line` not preceded by an identifier
/// character (so `eval(` matches `x = eval(y)` but not `safe_eval(y)`).
pub fn has_call(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(index, _)| {
        line[..index]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// A named check over source code.
pub type Check = (&'static str, fn(&Code<'_>) -> Vec<Finding>);

/// Runs a reviewer: the checks in order, streaming each check's findings as
/// an appended chunk of the `findings` artifact, then a last chunk with the
/// full report (`{"agent","filename","language","checks_run","findings",
/// "counts"}`) and a text summary in the `- [severity] rule (line N): message`
/// form, and completes with the summary and usage.
pub async fn run_review(
    agent: &'static str,
    checks: &[Check],
    message: &Value,
    context: &crate::TaskContext,
) -> Result<(), crate::AgentsError> {
    let Some(input) = source_input(message) else {
        return Err(crate::AgentsError::Logic {
            reason: "no source code found: send a text part or a data part with a `source` field"
                .into(),
        });
    };
    context.working()?;
    let code = Code::new(&input);
    let artifact_id = format!("{}-findings", context.task_id());
    let mut started = false;
    let mut all = Vec::new();
    for (_, check) in checks {
        let mut found = check(&code);
        for finding in &mut found {
            finding.agent = agent.to_owned();
        }
        if !found.is_empty() {
            let parts: Vec<Value> = found
                .iter()
                .map(|finding| json!({ "data": finding.to_json() }))
                .collect();
            context.artifact(
                json!({"artifactId": artifact_id, "name": "findings", "parts": parts}),
                started,
                false,
            )?;
            started = true;
        }
        all.extend(found);
    }
    let all = dedupe_and_sort(all);
    let counts = severity_counts(&all);
    let mut summary = format!(
        "{agent}: {} findings from {} checks",
        all.len(),
        checks.len()
    );
    for finding in &all {
        summary.push('\n');
        summary.push_str(&finding.to_line());
    }
    let report = json!({
        "agent": agent,
        "filename": input.filename,
        "language": code.language,
        "checks_run": checks.len(),
        "findings": all.iter().map(Finding::to_json).collect::<Vec<_>>(),
        "counts": counts,
    });
    let summary_part = json!({ "text": summary });
    let output = vec![json!({ "data": report }), summary_part.clone()];
    let usage = review_usage(message, &output, checks.len() as u64);
    context.set_metadata("usage", usage.clone())?;
    context.artifact(
        json!({"artifactId": artifact_id, "name": "findings", "parts": output}),
        started,
        true,
    )?;
    let reply = context.agent_message(vec![summary_part], Some(json!({ "usage": usage })));
    context.status(convergio_schemas::a2a::TaskState::Completed, Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_lines_round_trip() {
        let finding = Finding::at(
            "security_expert",
            "security/eval-call",
            Severity::High,
            7,
            "eval() runs arbitrary code",
            "x = eval(y)",
        );
        let parsed = parse_finding_line(&finding.to_line()).expect("parses");
        assert_eq!(parsed.rule, finding.rule);
        assert_eq!(parsed.severity, finding.severity);
        assert_eq!(parsed.line, 7);
        assert_eq!(parsed.message, finding.message);
    }

    #[test]
    fn dedupes_keeping_the_most_serious_copy_and_sorts() {
        let low = Finding::at("a", "r", Severity::Low, 3, "m", "");
        let high = Finding::at("b", "r", Severity::High, 3, "m", "code");
        let other = Finding::at("a", "q", Severity::Critical, 9, "n", "");
        let merged = dedupe_and_sort(vec![low, high, other]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].rule, "q");
        assert_eq!(merged[1].severity, Severity::High);
        assert_eq!(merged[1].snippet, "code");
    }

    #[test]
    fn finds_source_nested_in_a_data_part_before_text() {
        let message = json!({"parts": [
            {"text": "summary only"},
            {"data": {"result": {"analysis": {"source": "print(1)", "language": "python"}}}}
        ]});
        let found = source_input(&message).expect("source");
        assert_eq!(found.source, "print(1)");
        assert_eq!(found.language.as_deref(), Some("python"));
    }
}
