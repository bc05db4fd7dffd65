//! `convergio graph …` for real: the binary serves with its example agents,
//! and the CLI validates and runs the design document's
//! `code_review_pipeline` through them with live progress, then reads the
//! run's status and trace back by id (issue #7).

mod support;

use std::path::Path;
use std::process::Command;

use support::{start, Server, BINARY};

const PIPELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/graphs/code_review_pipeline.yaml"
);

/// Runs `convergio graph ARGS…`: (success, stdout, stderr).
fn graph(server: &Server, data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .arg("graph")
        .args(["--server", &server.base, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .output()
        .expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn graph_run_streams_the_code_review_pipeline_through_the_example_agents() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let source = data_dir.path().join("app.py");
    std::fs::write(
        &source,
        "import os\n\ndef run(cmd):\n    password = \"hunter2\"\n    os.system(cmd)\n",
    )
    .expect("writing the source file");

    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["validate", PIPELINE]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("valid (graph code_review_pipeline, 6 nodes"),
        "{stdout}"
    );

    let input = format!("source_code=@{}", source.display());
    let (ok, stdout, stderr) = graph(
        &server,
        data_dir.path(),
        &["run", PIPELINE, "--input", &input],
    );
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    // Live progress: every node started and finished, in stream order.
    for node in [
        "analyzer",
        "security_reviewer",
        "performance_reviewer",
        "style_reviewer",
        "aggregator",
        "reporter",
    ] {
        assert!(stderr.contains(&format!("▶ {node} (")), "{stderr}");
        assert!(stderr.contains(&format!("✓ {node} succeeded")), "{stderr}");
    }
    let analyzer_done = stderr.find("✓ analyzer").expect("analyzer finished");
    let reporter_started = stderr.find("▶ reporter").expect("reporter started");
    assert!(analyzer_done < reporter_started, "{stderr}");
    // The result: the Markdown report, with the hard-coded password found.
    assert!(stdout.contains('#'), "{stdout}");
    assert!(stdout.to_lowercase().contains("password"), "{stdout}");

    let run_id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("run ")?.strip_suffix(" succeeded"))
        .expect("the run's final line names it")
        .to_owned();
    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["status", &run_id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("succeeded") && stdout.contains("code_review_pipeline"));
    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["trace", &run_id]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("report_generator") && stdout.contains("total:"),
        "{stdout}"
    );

    // Errors are explained and exit non-zero.
    let bad = data_dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nnodes:\n  - id: a\n    agent: nobody_here\n",
    )
    .expect("writing the bad graph");
    let bad = bad.display().to_string();
    let (ok, _, stderr) = graph(&server, data_dir.path(), &["validate", &bad]);
    assert!(!ok);
    assert!(
        stderr.contains("nobody_here") && stderr.contains("line 4"),
        "{stderr}"
    );
    let (ok, _, stderr) = graph(&server, data_dir.path(), &["status", "no-such-run"]);
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
}

/// Issue 14: a sync run names its run id (on stderr, stdout stays the
/// report), `graph list` shows the caller's runs as a table or JSON, and the
/// trace table has aligned columns with durations.
#[test]
fn sync_runs_print_their_id_and_graph_list_shows_them() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let (ok, stdout, stderr) = graph(
        &server,
        data_dir.path(),
        &[
            "run",
            PIPELINE,
            "--mode",
            "sync",
            "--input",
            "source_code=eval(x)",
        ],
    );
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let run_id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("run ")?.strip_suffix(" succeeded"))
        .unwrap_or_else(|| panic!("stderr names the run: {stderr}"))
        .to_owned();
    assert!(!stdout.contains(&run_id), "stdout is the report only");

    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["list"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("RUN "), "{stdout}");
    assert!(
        lines[1].starts_with(&run_id)
            && lines[1].contains("code_review_pipeline")
            && lines[1].contains("succeeded"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["runs", "--output", "json"]);
    assert!(ok, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(list["runs"][0]["run_id"], run_id.as_str());
    let (ok, stdout, _) = graph(&server, data_dir.path(), &["list", "--graph", "nope"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "no runs");
    let (ok, _, stderr) = graph(&server, data_dir.path(), &["list", "--status", "sideways"]);
    assert!(!ok);
    assert!(stderr.contains("sideways"), "{stderr}");

    let (ok, stdout, stderr) = graph(&server, data_dir.path(), &["trace", &run_id]);
    assert!(ok, "{stderr}");
    let header = stdout
        .lines()
        .find(|line| line.starts_with("NODE"))
        .unwrap_or_else(|| panic!("a header: {stdout}"));
    assert!(header.contains("DURATION"), "{header}");
    let status_at = header.find("STATUS").expect("a status column");
    for row in stdout.lines().filter(|line| line.starts_with("analyzer")) {
        assert_eq!(&row[status_at..status_at + 7], "success", "{stdout}");
    }
}
