//! `convergio graph …` for real: the binary serves with its example agents,
//! and the CLI validates and runs the design document's
//! `code_review_pipeline` through them with live progress, then reads the
//! run's status and trace back by id (issue #7).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_convergio");
const PIPELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/graphs/code_review_pipeline.yaml"
);

/// A running `convergio serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("CONVERGIO_LOG", "warn")
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .env_remove("CONVERGIO_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("convergio starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // The first line names the bound address; reading it waits for start-up.
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    reader
        .read_line(&mut first)
        .expect("reads the start-up line");
    let base = first
        .trim()
        .strip_prefix("convergio listening on ")
        .unwrap_or_else(|| panic!("unexpected start-up line {first:?}"))
        .to_owned();
    Server {
        child,
        base,
        _stdout: reader,
    }
}

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
