//! `convergio send` and `convergio tasks` (issue 22: the CLI reaches A2A
//! calls through the gateway) against a real `convergio serve` and its
//! example echo agent, on both JSON bindings; `envelope` and `openapi`;
//! and `completions`/`man`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{cli, start, BINARY};

/// The last `status <STATE>` line of `lines`.
fn last_status<S: AsRef<str>>(lines: &[S]) -> Option<&str> {
    lines
        .iter()
        .map(AsRef::as_ref)
        .rev()
        .find(|line| line.starts_with("status "))
}

/// The task id in a `task <id> <STATE>` line of `output`.
fn task_id(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("task "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no task line in {output:?}"))
        .to_owned()
}

#[test]
fn send_and_tasks_reach_the_echo_agent_over_either_binding() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));
    for binding in ["jsonrpc", "rest"] {
        let (ok, out, err) = cli(at, &["send", "echo", "hello", "--binding", binding]);
        assert!(ok, "{binding}: {err}");
        assert!(out.contains(" COMPLETED"), "{binding}: {out}");
        assert!(out.contains("echo: hello"), "{binding}: {out}");
        let id = task_id(&out);

        let (ok, out, err) = cli(
            at,
            &["send", "echo", "again", "--stream", "--binding", binding],
        );
        assert!(ok, "{binding}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("artifact ") && line.ends_with("echo: again")),
            "{binding}: {out}"
        );
        assert_eq!(
            last_status(&lines),
            Some("status COMPLETED"),
            "{binding}: {out}"
        );

        let (ok, out, err) = cli(at, &["tasks", "get", "echo", &id, "--binding", binding]);
        assert!(ok, "{binding}: {err}");
        assert!(
            out.starts_with(&format!("task {id} COMPLETED")),
            "{binding}: {out}"
        );
        let (ok, out, err) = cli(at, &["tasks", "list", "echo", "--binding", binding]);
        assert!(ok, "{binding}: {err}");
        assert!(
            out.lines().any(|line| line.starts_with(&id)),
            "{binding}: {out}"
        );
        let (ok, out, err) = cli(
            at,
            &[
                "tasks",
                "get",
                "echo",
                &id,
                "--binding",
                binding,
                "--output",
                "json",
            ],
        );
        assert!(ok, "{binding}: {err}");
        let task: Value = serde_json::from_str(out.trim()).expect("one JSON document");
        assert_eq!(task["id"], id.as_str(), "{binding}");
    }

    // A task still working is cancelled, and the stream watching it ends
    // with the cancellation.
    let mut streaming = Command::new(BINARY)
        .args([
            "send",
            "echo",
            "sleep:60000 wait",
            "--stream",
            "--server",
            &server.base,
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("send --stream starts");
    let mut lines = BufReader::new(streaming.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("reads");
    let id = task_id(&first);
    let (ok, out, err) = cli(at, &["tasks", "cancel", "echo", &id]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("task {id} CANCELED")), "{out}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("status CANCELED"),
        "{rest:?}"
    );
    assert!(streaming.wait().expect("exits").success());

    // The design document's envelope, from a file.
    let envelope = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        envelope.path(),
        r#"{"protocol": "a2a/1.0", "from": "convergio://agents/cli", "to": "convergio://agents/echo", "action": "query", "payload": {"q": "status"}}"#,
    )
    .expect("envelope");
    let (ok, out, err) = cli(at, &["envelope", &envelope.path().to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("query.result from convergio://agents/echo"),
        "{out}"
    );
    assert!(out.contains(" COMPLETED"), "{out}");
    let (ok, out, err) = cli(at, &["openapi", "--output", "json"]);
    assert!(ok, "{err}");
    let document: Value = serde_json::from_str(&out).expect("the OpenAPI document");
    assert!(document["paths"].is_object(), "{out}");

    // Errors are the agent's or the gateway's, readable, with a failing exit.
    let (ok, _, err) = cli(at, &["tasks", "get", "echo", "no-such-task"]);
    assert!(!ok);
    assert!(err.contains("GetTask /agents/echo failed"), "{err}");
    let (ok, _, err) = cli(
        at,
        &["tasks", "get", "echo", "no-such-task", "--binding", "rest"],
    );
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = cli(at, &["send", "no-such-agent", "hi"]);
    assert!(!ok);
    assert!(err.contains("404") || err.contains("not found"), "{err}");
    let (ok, _, err) = cli(at, &["send", "a/b", "hi"]);
    assert!(!ok);
    assert!(err.contains("not an agent name"), "{err}");
}

#[test]
fn completions_and_man_pages_cover_the_commands() {
    let (ok, out, err) = cli(None, &["completions", "bash"]);
    assert!(ok, "{err}");
    for command in ["send", "tasks", "agents", "graph", "policy"] {
        assert!(
            out.contains(command),
            "{command} missing from the bash completions"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, _, err) = cli(None, &["man", &dir.path().to_string_lossy()]);
    assert!(ok, "{err}");
    for page in [
        "convergio.1",
        "convergio-send.1",
        "convergio-tasks-cancel.1",
        "convergio-agents-register.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|_| panic!("{page} not written"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
}
