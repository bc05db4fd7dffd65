//! The code-review agents on `tests/fixtures/sample.py`, whose known issues
//! are listed below with their line numbers, and the full chain
//! analyzer → reviewers → aggregator → report over HTTP.

mod support;

use std::collections::BTreeSet;

use convergio_agents::ExampleAgent;
use serde_json::{json, Value};
use support::*;

const SAMPLE: &str = include_str!("fixtures/sample.py");

/// `(rule, line, severity)` of every finding.
type Expected = BTreeSet<(String, u64, String)>;

fn expected(rows: &[(&str, u64, &str)]) -> Expected {
    rows.iter()
        .map(|(rule, line, severity)| ((*rule).to_owned(), *line, (*severity).to_owned()))
        .collect()
}

fn security_expected() -> Expected {
    expected(&[
        ("security/hardcoded-secret", 7, "critical"),
        ("security/insecure-http", 8, "medium"),
        ("security/sql-concatenation", 12, "high"),
        ("security/eval-call", 18, "high"),
        ("security/unsafe-deserialization", 22, "high"),
        ("security/exec-call", 38, "high"),
    ])
}

fn performance_expected() -> Expected {
    expected(&[
        ("performance/nested-loop", 28, "medium"),
        ("performance/string-concat-in-loop", 29, "medium"),
        ("performance/sleep-call", 30, "high"),
        ("performance/range-len", 31, "low"),
    ])
}

fn style_expected() -> Expected {
    expected(&[
        ("style/function-naming", 25, "low"),
        ("style/todo", 37, "info"),
        ("style/trailing-whitespace", 38, "info"),
        ("style/tab", 39, "info"),
        ("style/class-naming", 42, "low"),
        ("style/long-line", 44, "low"),
    ])
}

fn source_message() -> Value {
    json!({
        "messageId": uuid(),
        "role": "ROLE_USER",
        "parts": [{"text": SAMPLE, "filename": "sample.py", "mediaType": "text/x-python"}],
    })
}

fn message_with_parts(parts: Vec<Value>) -> Value {
    json!({"messageId": uuid(), "role": "ROLE_USER", "parts": parts})
}

async fn run(agent: ExampleAgent, message: Value) -> Value {
    let running = start(agent).await;
    let result = rpc_ok(
        &running.base_url,
        "SendMessage",
        json!({"message": message}),
    )
    .await;
    let task = result["task"].clone();
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{agent}: {task}");
    task
}

fn report_data(task: &Value) -> Value {
    task["artifacts"][0]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|part| part.get("data"))
        .find(|data| data.get("findings").is_some())
        .cloned()
        .expect("report data part")
}

fn findings_of(report: &Value) -> Expected {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["line"].as_u64().unwrap_or(0),
                f["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn usage(task: &Value) -> Value {
    task["status"]["message"]["metadata"]["usage"].clone()
}

#[tokio::test]
async fn code_analyzer_measures_the_sample() {
    let task = run(ExampleAgent::CodeAnalyzer, source_message()).await;
    let analysis = task["artifacts"][0]["parts"][0]["data"].clone();
    assert_eq!(analysis["language"], "python");
    assert_eq!(analysis["filename"], "sample.py");
    assert_eq!(analysis["lines"], 44);
    assert_eq!(analysis["blank_lines"], 13);
    assert_eq!(analysis["comment_lines"], 2);
    assert_eq!(analysis["code_lines"], 29);
    assert_eq!(analysis["longest_line"], json!({"line": 44, "length": 110}));
    let functions: Vec<(&str, u64)> = analysis["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or(""),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        functions,
        [
            ("load_user", 11),
            ("calculate", 17),
            ("restore", 21),
            ("buildReport", 25),
            ("run", 36),
            ("lookup", 43)
        ]
    );
    assert_eq!(analysis["source"], SAMPLE);
    assert!(task["artifacts"][0]["parts"][1]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("python source: 44 lines")));
    let usage = usage(&task);
    assert_eq!(usage["tool_calls"], 6);
    assert_eq!(usage["tokens_in"], SAMPLE.split_whitespace().count());
    assert!(usage["tokens_out"].as_u64().is_some_and(|n| n > 0));
}

#[tokio::test]
async fn security_expert_finds_the_known_issues() {
    let task = run(ExampleAgent::SecurityExpert, source_message()).await;
    let report = report_data(&task);
    assert_eq!(findings_of(&report), security_expected());
    assert_eq!(report["agent"], "security_expert");
    assert_eq!(report["counts"]["critical"], 1);
    assert_eq!(report["checks_run"], 8);
    assert_eq!(usage(&task)["tool_calls"], 8);
    assert_eq!(
        report["findings"][0]["snippet"],
        "DB_PASSWORD = \"hunter2\""
    );
}

#[tokio::test]
async fn performance_expert_finds_the_known_issues() {
    let task = run(ExampleAgent::PerformanceExpert, source_message()).await;
    assert_eq!(findings_of(&report_data(&task)), performance_expected());
    assert_eq!(usage(&task)["tool_calls"], 6);
}

#[tokio::test]
async fn style_checker_finds_the_known_issues() {
    let task = run(ExampleAgent::StyleChecker, source_message()).await;
    assert_eq!(findings_of(&report_data(&task)), style_expected());
}

#[tokio::test]
async fn reviewers_stream_findings_as_appended_artifact_chunks() {
    let agent = start(ExampleAgent::SecurityExpert).await;
    let events = results(
        &rpc_stream(
            &agent.base_url,
            "SendStreamingMessage",
            json!({"message": source_message()}),
        )
        .await
        .collect()
        .await,
    );
    let chunks: Vec<&Value> = events
        .iter()
        .filter_map(|event| event.get("artifactUpdate"))
        .collect();
    // One chunk per check with findings (6) plus the closing report chunk.
    assert_eq!(chunks.len(), 7, "{events:?}");
    assert!(chunks[0].get("append").is_none());
    assert!(chunks[1..].iter().all(|chunk| chunk["append"] == true));
    assert!(chunks[..6]
        .iter()
        .all(|chunk| chunk.get("lastChunk").is_none()));
    assert_eq!(chunks[6]["lastChunk"], true);
    assert_eq!(
        chunks[0]["artifact"]["parts"][0]["data"]["rule"],
        "security/eval-call"
    );
    assert_eq!(
        events.last().expect("events")["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
}

#[tokio::test]
async fn reviewers_without_source_fail_with_a_reason() {
    let task = {
        let running = start(ExampleAgent::StyleChecker).await;
        rpc_ok(
            &running.base_url,
            "SendMessage",
            json!({"message": message_with_parts(vec![json!({"data": {"x": 1}})])}),
        )
        .await["task"]
            .clone()
    };
    assert_eq!(state(&task), "TASK_STATE_FAILED");
    let reason = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(reason.contains("no source code found"), "{reason}");
}

#[tokio::test]
async fn aggregator_merges_text_and_data_inputs_without_duplicates() {
    let security = run(ExampleAgent::SecurityExpert, source_message()).await;
    let style = run(ExampleAgent::StyleChecker, source_message()).await;
    // Security findings as data (the whole artifact, so each finding is
    // present twice: as a chunk and in the report), style as text only.
    let style_text = style["artifacts"][0]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find_map(|part| part["text"].as_str())
        .expect("summary text")
        .to_owned();
    let message = message_with_parts(vec![
        json!({"data": security["artifacts"].clone()}),
        json!({"text": style_text}),
    ]);
    let task = run(ExampleAgent::ReviewAggregator, message).await;
    let report = report_data(&task);
    let mut all = security_expected();
    all.extend(style_expected());
    assert_eq!(findings_of(&report), all);
    assert_eq!(report["total"], 12);
    let severities: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["severity"].as_str())
        .collect();
    let mut sorted = severities.clone();
    let rank = |s: &&str| {
        ["critical", "high", "medium", "low", "info"]
            .iter()
            .position(|x| x == s)
    };
    sorted.sort_by_key(rank);
    assert_eq!(severities, sorted);
    assert_eq!(usage(&task)["tool_calls"], 2);
}

#[tokio::test]
async fn full_chain_over_http_produces_a_markdown_report() {
    let analysis = run(ExampleAgent::CodeAnalyzer, source_message()).await;
    // Each reviewer gets the analyzer's artifact parts as its input.
    let analyzer_parts = analysis["artifacts"][0]["parts"]
        .as_array()
        .expect("parts")
        .clone();
    let mut reviewer_parts = Vec::new();
    for reviewer in [
        ExampleAgent::SecurityExpert,
        ExampleAgent::PerformanceExpert,
        ExampleAgent::StyleChecker,
    ] {
        let task = run(reviewer, message_with_parts(analyzer_parts.clone())).await;
        reviewer_parts.extend(
            task["artifacts"][0]["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .cloned(),
        );
    }
    let aggregated = run(
        ExampleAgent::ReviewAggregator,
        message_with_parts(reviewer_parts),
    )
    .await;
    let report = report_data(&aggregated);
    let mut all = security_expected();
    all.extend(performance_expected());
    all.extend(style_expected());
    assert_eq!(findings_of(&report), all);
    assert_eq!(
        report["counts"],
        json!({"critical": 1, "high": 5, "medium": 3, "low": 4, "info": 3})
    );
    assert_eq!(report["findings"][0]["rule"], "security/hardcoded-secret");

    let aggregated_parts = aggregated["artifacts"][0]["parts"]
        .as_array()
        .expect("parts")
        .clone();
    let rendered = run(
        ExampleAgent::ReportGenerator,
        message_with_parts(aggregated_parts),
    )
    .await;
    let markdown_part = &rendered["artifacts"][0]["parts"][0];
    assert_eq!(markdown_part["mediaType"], "text/markdown");
    let markdown = markdown_part["text"].as_str().expect("markdown");
    assert!(markdown.starts_with("# Code review report"), "{markdown}");
    assert!(
        markdown.contains("**16 findings**: 1 critical, 5 high, 3 medium, 4 low, 3 info"),
        "{markdown}"
    );
    assert!(markdown.contains("| critical | 1 |"));
    assert!(markdown.contains("## Critical"));
    assert!(
        markdown.contains("- **line 7** `security/hardcoded-secret` (security_expert)"),
        "{markdown}"
    );
    let critical = markdown.find("## Critical").expect("critical section");
    let info = markdown.find("## Info").expect("info section");
    assert!(critical < info);
    assert_eq!(rendered["artifacts"][0]["parts"][1]["data"]["total"], 16);
    assert_eq!(usage(&rendered)["tool_calls"], 1);
}
