//! Issue 14, "errors a user can act on", against the real binary: a refused
//! or missing admin token says where the token came from and how to give
//! one; audit filters the server cannot match are refused with the allowed
//! forms; `audit list` has a header and says when nothing matched; an
//! unknown agent gets close names; records, versions and trust histories
//! read as text (`--output json` gives the documents); and `peers add`
//! warns when the peer's JWKS could not be fetched, which `peers show`
//! keeps showing with the next retry.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{start_with, Server, BINARY};

/// Runs `convergio <args>` against `server` with `data_dir` and extra
/// environment: whether it succeeded, its stdout and its stderr.
fn run(
    server: &Server,
    data_dir: &Path,
    environment: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .args(["--server", &server.base, "--data-dir"])
        .arg(data_dir)
        .env_remove("CONVERGIO_ADMIN_TOKEN");
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn start_server(data_dir: &Path) -> Server {
    start_with(data_dir, &[("CONVERGIO_ORG_DOMAIN", "b.example")])
}

#[test]
fn refused_and_missing_tokens_say_where_the_token_came_from() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(data_dir.path());
    let data = data_dir.path();

    let (ok, _, stderr) = run(&server, data, &[], &["audit", "list", "--token", "wrong"]);
    assert!(!ok);
    assert!(
        stderr.contains("401") && stderr.contains("refused the admin token given with --token"),
        "{stderr}"
    );

    let (ok, _, stderr) = run(
        &server,
        data,
        &[("CONVERGIO_ADMIN_TOKEN", "wrong")],
        &["audit", "list"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("refused the admin token from CONVERGIO_ADMIN_TOKEN"),
        "{stderr}"
    );

    // Run from elsewhere: no token file where the CLI looks.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let (ok, _, stderr) = run(&server, elsewhere.path(), &[], &["audit", "list"]);
    assert!(!ok);
    for needed in [
        "no admin token was sent",
        "--data-dir",
        "CONVERGIO_ADMIN_TOKEN",
    ] {
        assert!(stderr.contains(needed), "{needed} missing from {stderr}");
    }

    // The data dir's token works, and its source is not blamed when it does.
    let (ok, stdout, stderr) = run(&server, data, &[], &["audit", "list", "--limit", "1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("   SEQ"), "{stdout}");
}

#[test]
fn audit_filters_are_checked_and_listings_have_a_header() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(data_dir.path());
    let data = data_dir.path();

    let (ok, _, stderr) = run(
        &server,
        data,
        &[],
        &["audit", "list", "--decision", "bogus"],
    );
    assert!(!ok);
    for allowed in ["allow", "deny", "applied", "filtered", "rate_limited"] {
        assert!(stderr.contains(allowed), "{allowed} missing from {stderr}");
    }

    let (ok, _, stderr) = run(
        &server,
        data,
        &[],
        &["audit", "list", "--since", "yesterday"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("RFC 3339") && stderr.contains("2d") && !stderr.contains("deserial"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(
        &server,
        data,
        &[],
        &[
            "audit",
            "list",
            "--since",
            "1h",
            "--action",
            "agent.register",
        ],
    );
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["SEQ", "AT", "DECISION", "SUBJECT", "ACTION", "RESOURCE"] {
        assert!(header.contains(column), "{column} missing from {header}");
    }
    assert!(
        lines.any(|line| line.contains("convergio://agents/echo")),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(
        &server,
        data,
        &[],
        &["audit", "list", "--decision", "rate_limited"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no records");
}

#[test]
fn agents_read_as_text_and_unknown_names_get_suggestions() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(data_dir.path());
    let data = data_dir.path();

    let (ok, _, stderr) = run(&server, data, &[], &["agents", "show", "ecoh"]);
    assert!(!ok);
    assert!(
        stderr.contains("404") && stderr.contains("did you mean: echo"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(&server, data, &[], &["agents", "show", "echo"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("convergio://agents/echo") && stdout.contains("internal"),
        "{stdout}"
    );
    assert!(!stdout.contains('{'), "a human view, not JSON: {stdout}");
    let (ok, stdout, stderr) = run(
        &server,
        data,
        &[],
        &["agents", "show", "echo", "--output", "json"],
    );
    assert!(ok, "{stderr}");
    let record: Value = serde_json::from_str(&stdout).expect("raw JSON record");
    assert_eq!(record["id"], "convergio://agents/echo");

    let (ok, stdout, stderr) = run(&server, data, &[], &["agents", "versions", "echo"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("VER") && !stdout.contains('{'), "{stdout}");

    let (ok, stdout, stderr) = run(&server, data, &[], &["agents", "trust", "history", "echo"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("trust internal") && !stdout.contains('{'),
        "{stdout}"
    );
}

#[test]
fn peers_add_warns_when_the_jwks_fetch_failed_and_show_keeps_the_error() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(data_dir.path());
    let data = data_dir.path();
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let (ok, stdout, stderr) = run(
        &server,
        data,
        &[],
        &[
            "peers",
            "add",
            "x.example",
            "--url",
            "http://127.0.0.1:9",
            "--jwks-url",
            "http://127.0.0.1:9/jwks.json",
        ],
    );
    assert!(ok, "the peer is stored: {stderr}");
    assert!(stdout.contains("x.example"), "{stdout}");
    assert!(
        stderr.contains("warning: peer x.example added, but fetching its JWKS failed")
            && stderr.contains("127.0.0.1:9")
            && stderr.contains("retried automatically at"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(&server, data, &[], &["peers", "show", "x.example"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("jwks fetch failed at") && stdout.contains("retried automatically at"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(
        &server,
        data,
        &[],
        &["peers", "show", "x.example", "--output", "json"],
    );
    assert!(ok, "{stderr}");
    let peer: Value = serde_json::from_str(&stdout).expect("raw JSON peer");
    let failure = &peer["jwks_fetch_failure"];
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|error| error.contains("127.0.0.1:9")),
        "{peer}"
    );
    assert!(
        failure["next_retry_at"].as_i64() > failure["failed_at"].as_i64(),
        "{peer}"
    );
}
