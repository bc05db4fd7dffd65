//! The API contract against a live server (issue 22): a real `convergio
//! serve` on loopback, and schemathesis (`scripts/schemathesis-venv.sh`)
//! generating requests from the server's own `/v1/openapi.json`,
//! authenticated as the administrator. It must find no 5xx and no answer
//! that breaks the document (status, content type and body schema).
//!
//! The examples are bounded (a fixed seed, a few cases per operation, one
//! worker) so the run stays within a couple of minutes on two cores; every
//! request goes to the server's loopback address, the only one the
//! document names.

mod support;

use std::path::Path;
use std::process::Command;

use support::{admin_token, start};

fn schemathesis() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf();
    let status = Command::new("bash")
        .arg(root.join("scripts/schemathesis-venv.sh"))
        .status()
        .expect("runs scripts/schemathesis-venv.sh");
    assert!(status.success(), "scripts/schemathesis-venv.sh failed");
    root.join(".venv-schemathesis/bin/schemathesis")
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_breaking_the_document() {
    let schemathesis = schemathesis();
    let data_dir = tempfile::tempdir().expect("data dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    let reports = tempfile::tempdir().expect("report dir");
    let output = Command::new(schemathesis)
        .arg("run")
        .arg(format!("{}/v1/openapi.json", server.base))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "6", "--seed", "22", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "20", "--no-shrink"])
        // Optional headers (`If-Match` on a path with an id) make the
        // generator discard many candidates; that is no finding.
        .args(["--suppress-health-check", "filter_too_much"])
        .arg("--report-dir")
        .arg(reports.path())
        // schemathesis keeps a cache in its working directory: the
        // temporary report dir, not the repository.
        .current_dir(reports.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
}

/// What schemathesis found, kept as plain checks: an extractor's own
/// rejection (a query that does not parse, a path segment that is not UTF-8)
/// was answered as `text/plain`, which the document does not allow.
#[tokio::test]
async fn extractor_rejections_of_the_v1_api_are_problem_documents() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    let client = reqwest::Client::new();
    for path in ["/v1/memory/notes/items?limit=-1", "/v1/runs/%FF"] {
        let response = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 400, "{path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "application/problem+json", "{path}");
        let problem: serde_json::Value = response.json().await.expect("a problem document");
        assert_eq!(problem["kind"], "invalid_input", "{path}");
    }
}
