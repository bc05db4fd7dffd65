//! `code_analyzer`: measures source code without running it.
//!
//! Input: source code, as described in [`crate::examples::review`] (text
//! parts, or a data part with a `source` field); a part's `filename` helps
//! the language guess.
//!
//! Output: one artifact `analysis` with a data part
//! `{"agent":"code_analyzer","filename","language","lines","blank_lines",
//! "comment_lines","code_lines","functions":[{"name","line"}],
//! "longest_line":{"line","length"},"source"}` (the source is passed on so
//! that the reviewers can take this output as their input) and a text part
//! summarising it. Six measurements are reported as `tool_calls`.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::examples::review::{review_card, review_usage, source_input};
use crate::logic::{data_part, text_part, AgentLogic};
use crate::tasks::TaskContext;
use crate::AgentsError;

/// Measurements made: lines, blank lines, comment lines, functions,
/// longest line, language.
const MEASUREMENTS: u64 = 6;

/// The analyzer's logic.
#[derive(Debug, Default, Clone, Copy)]
pub struct CodeAnalyzerLogic;

/// Guesses the language from a file name, then from the text.
pub fn guess_language(filename: Option<&str>, source: &str) -> &'static str {
    let extension = filename
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let by_extension = match extension.as_deref() {
        Some("py") => Some("python"),
        Some("rs") => Some("rust"),
        Some("js" | "mjs" | "cjs") => Some("javascript"),
        Some("ts" | "tsx") => Some("typescript"),
        Some("go") => Some("go"),
        Some("java") => Some("java"),
        Some("c" | "h") => Some("c"),
        Some("cc" | "cpp" | "hpp") => Some("cpp"),
        Some("rb") => Some("ruby"),
        Some("sh" | "bash") => Some("shell"),
        _ => None,
    };
    if let Some(language) = by_extension {
        return language;
    }
    let has_line = |prefix: &str| {
        source
            .lines()
            .any(|line| line.trim_start().starts_with(prefix))
    };
    if has_line("fn ") || has_line("pub fn ") || has_line("use ") && source.contains("::") {
        "rust"
    } else if has_line("def ")
        || has_line("import ") && !source.contains(';')
        || has_line("class ") && source.contains("):")
    {
        "python"
    } else if has_line("package ") && has_line("func ") {
        "go"
    } else if has_line("function ") || source.contains("const ") && source.contains("=>") {
        "javascript"
    } else if source.contains("#include") {
        "c"
    } else {
        "unknown"
    }
}

/// The line-comment prefixes of a language.
pub fn comment_prefixes(language: &str) -> &'static [&'static str] {
    match language {
        "python" | "ruby" | "shell" => &["#"],
        "unknown" => &["#", "//", "/*", "*"],
        _ => &["//", "/*", "*", "*/"],
    }
}

/// Whether a line is only a comment.
pub fn is_comment(line: &str, language: &str) -> bool {
    let trimmed = line.trim_start();
    comment_prefixes(language)
        .iter()
        .any(|prefix| trimmed.starts_with(prefix))
}

/// Function definitions found by keyword scanning: `(name, 1-based line)`.
pub fn functions(source: &str) -> Vec<(String, usize)> {
    const KEYWORDS: [&str; 4] = ["def ", "fn ", "function ", "func "];
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let mut rest = line.trim_start();
        // Strip modifiers that may precede the keyword.
        for modifier in [
            "pub(crate) ",
            "pub ",
            "async ",
            "export ",
            "const ",
            "unsafe ",
            "static ",
        ] {
            rest = rest.strip_prefix(modifier).unwrap_or(rest).trim_start();
        }
        let Some(after) = KEYWORDS
            .iter()
            .find_map(|keyword| rest.strip_prefix(keyword))
        else {
            continue;
        };
        // Go methods: `func (r *T) Name(`.
        let after = if after.starts_with('(') {
            after
                .split_once(')')
                .map(|(_, tail)| tail.trim_start())
                .unwrap_or(after)
        } else {
            after
        };
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push((name, index + 1));
        }
    }
    found
}

/// The analysis of one source text, as JSON.
pub fn analyze(source: &str, filename: Option<&str>, language: Option<&str>) -> Value {
    let language = language
        .unwrap_or_else(|| guess_language(filename, source))
        .to_owned();
    let lines: Vec<&str> = source.lines().collect();
    let blank = lines.iter().filter(|line| line.trim().is_empty()).count();
    let comments = lines
        .iter()
        .filter(|line| is_comment(line, &language))
        .count();
    let longest = lines
        .iter()
        .enumerate()
        .map(|(index, line)| (index + 1, line.chars().count()))
        .fold(
            (0, 0),
            |best, current| if current.1 > best.1 { current } else { best },
        );
    let functions: Vec<Value> = functions(source)
        .into_iter()
        .map(|(name, line)| json!({"name": name, "line": line}))
        .collect();
    json!({
        "agent": "code_analyzer",
        "filename": filename,
        "language": language,
        "lines": lines.len(),
        "blank_lines": blank,
        "comment_lines": comments,
        "code_lines": lines.len() - blank - comments,
        "functions": functions,
        "longest_line": {"line": longest.0, "length": longest.1},
        "source": source,
    })
}

/// The analyzer's card template.
pub fn card() -> Value {
    review_card(
        "code_analyzer",
        "Measures source code: line counts, blank and comment lines, functions, the longest line and a language guess. Passes the source on for reviewers.",
        json!({
            "id": "analyze-code",
            "name": "Analyze code",
            "description": "Counts lines, blank and comment lines, finds function definitions and the longest line, and guesses the language.",
            "tags": ["code-review", "analysis", "metrics"],
            "examples": ["def add(a, b):\n    return a + b"],
            "inputModes": ["text/plain", "application/json"],
            "outputModes": ["application/json", "text/plain"]
        }),
        true,
    )
}

#[async_trait]
impl AgentLogic for CodeAnalyzerLogic {
    async fn execute(&self, message: Value, context: TaskContext) -> Result<(), AgentsError> {
        let Some(input) = source_input(&message) else {
            return Err(AgentsError::Logic {
                reason:
                    "no source code found: send a text part or a data part with a `source` field"
                        .into(),
            });
        };
        context.working()?;
        let analysis = analyze(
            &input.source,
            input.filename.as_deref(),
            input.language.as_deref(),
        );
        let summary = format!(
            "{} source: {} lines ({} code, {} blank, {} comment), {} functions, longest line {} ({} chars)",
            analysis["language"].as_str().unwrap_or("unknown"),
            analysis["lines"],
            analysis["code_lines"],
            analysis["blank_lines"],
            analysis["comment_lines"],
            analysis["functions"].as_array().map_or(0, Vec::len),
            analysis["longest_line"]["line"],
            analysis["longest_line"]["length"],
        );
        let parts = vec![data_part(analysis), text_part(summary.clone())];
        let usage = review_usage(&message, &[text_part(summary.clone())], MEASUREMENTS);
        context.set_metadata("usage", usage.clone())?;
        context.artifact(
            json!({"artifactId": format!("{}-analysis", context.task_id()), "name": "analysis", "parts": parts}),
            false,
            true,
        )?;
        let reply =
            context.agent_message(vec![text_part(summary)], Some(json!({ "usage": usage })));
        context.status(convergio_schemas::a2a::TaskState::Completed, Some(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_functions_in_several_languages() {
        let source =
            "def a(x):\n    pass\npub async fn b() {}\nfunction c() {}\nfunc (r *T) D() {}\n";
        let names: Vec<String> = functions(source)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a", "b", "c", "D"]);
    }

    #[test]
    fn guesses_language_from_extension_then_text() {
        assert_eq!(guess_language(Some("x.rs"), ""), "rust");
        assert_eq!(guess_language(None, "def f():\n    return 1\n"), "python");
        assert_eq!(guess_language(None, "hello"), "unknown");
    }
}
