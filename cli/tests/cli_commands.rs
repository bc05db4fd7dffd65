//! The CLI commands that reach the rest of the REST API (issue 22): agent
//! update, policy reset, stored graphs (store, list, show, run by name),
//! batch runs, following a run's events, and memory namespaces, items and
//! search, against a real `convergio serve` with the example agents.

mod support;

use serde_json::Value;
use support::{cli, start};

const GRAPH: &str = "name: cli_echo\ndescription: one echo\nnodes:\n  - id: say\n    agent: echo\n    inputs: [text]\n";

#[test]
fn the_cli_stores_shows_runs_and_batches_graphs_and_follows_events() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));
    let graph = data_dir.path().join("cli_echo.yaml");
    std::fs::write(&graph, GRAPH).expect("graph file");
    let graph = graph.to_string_lossy().into_owned();

    let (ok, out, err) = cli(at, &["graph", "store", &graph]);
    assert!(ok, "{err}");
    assert!(out.contains("stored graph cli_echo version 1"), "{out}");
    let (ok, out, err) = cli(at, &["graph", "stored"]);
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|line| line.starts_with("cli_echo ")),
        "{out}"
    );
    let (ok, out, err) = cli(at, &["graph", "show", "cli_echo"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("graph cli_echo version 1") && out.contains("agent: echo"),
        "{out}"
    );
    let (ok, _, err) = cli(at, &["graph", "show", "no_such_graph"]);
    assert!(!ok);
    assert!(err.contains("404"), "{err}");

    // A stored graph runs by name.
    let (ok, out, err) = cli(
        at,
        &[
            "graph", "run", "cli_echo", "--stored", "--mode", "sync", "--input", "text=hi",
            "--output", "json",
        ],
    );
    assert!(ok, "{err}");
    let outcome: Value = serde_json::from_str(&out).expect("the run's JSON");
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    let run_id = outcome["run_id"].as_str().expect("run id").to_owned();

    // Its events replay from the start to the end.
    let (ok, _, err) = cli(at, &["graph", "events", &run_id]);
    assert!(ok, "{err}");
    assert!(err.contains("say"), "node progress on stderr: {err}");

    // A batch: one run per input; a bad input file is refused before sending.
    let inputs = data_dir.path().join("inputs.jsonl");
    std::fs::write(
        &inputs,
        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n\n{\"text\": \"three\"}\n",
    )
    .expect("inputs");
    let inputs = inputs.to_string_lossy().into_owned();
    let (ok, out, err) = cli(
        at,
        &[
            "graph",
            "batch",
            &graph,
            "--inputs",
            &inputs,
            "--concurrency",
            "2",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("3 succeeded, 0 failed"), "{out}");
    let (ok, out, err) = cli(
        at,
        &[
            "graph", "batch", "cli_echo", "--stored", "--inputs", &inputs,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("3 succeeded"), "{out}");
    let bad = data_dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"one\"}\n[1]\n").expect("bad inputs");
    let (ok, _, err) = cli(
        at,
        &["graph", "batch", &graph, "--inputs", &bad.to_string_lossy()],
    );
    assert!(!ok);
    assert!(err.contains("input 2 is not a JSON object"), "{err}");
}

#[test]
fn the_cli_updates_agents_and_resets_policies() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));
    let card_path = data_dir.path().join("card.json");
    let mut card: Value = serde_json::json!({
        "name": "Weather", "description": "forecasts", "version": "1.0.0",
        "supportedInterfaces": [{"url": "http://127.0.0.1:9/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "forecast", "name": "Forecast", "description": "forecasts", "tags": ["weather"]}]
    });
    std::fs::write(&card_path, card.to_string()).expect("card");
    let card_file = card_path.to_string_lossy().into_owned();
    let (ok, out, err) = cli(at, &["agents", "register", &card_file]);
    assert!(ok, "{err}");
    assert!(
        out.contains("registered convergio://agents/weather (version 1"),
        "{out}"
    );

    card["description"] = "forecasts, now hourly".into();
    std::fs::write(&card_path, card.to_string()).expect("card");
    let (ok, out, err) = cli(at, &["agents", "update", "weather", &card_file]);
    assert!(ok, "{err}");
    assert!(
        out.contains("updated convergio://agents/weather (version 2"),
        "{out}"
    );
    // A stale version is refused, and nothing changes.
    let (ok, _, err) = cli(
        at,
        &["agents", "update", "weather", &card_file, "--version", "1"],
    );
    assert!(!ok);
    assert!(err.contains("412"), "{err}");
    let (ok, out, _) = cli(at, &["agents", "show", "weather", "--output", "json"]);
    assert!(ok);
    let record: Value = serde_json::from_str(&out).expect("record");
    assert_eq!(record["version"], 2);
    assert_eq!(record["card"]["description"], "forecasts, now hourly");

    // The same record as YAML, and as the table `--output table` (the
    // default) prints.
    let (ok, out, err) = cli(at, &["agents", "show", "weather", "--output", "yaml"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("---\n"), "{out}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&out).expect("YAML");
    assert_eq!(
        yaml["id"].as_str(),
        Some("convergio://agents/weather"),
        "{out}"
    );
    assert_eq!(
        yaml["card"]["description"].as_str(),
        Some("forecasts, now hourly")
    );
    let (ok, out, _) = cli(at, &["agents", "show", "weather", "--output", "table"]);
    assert!(ok);
    assert!(out.starts_with("id ") && !out.contains('{'), "{out}");

    let (ok, out, err) = cli(at, &["policy", "reset"]);
    assert!(ok, "{err}");
    assert!(out.contains("reset to the shipped set"), "{out}");
    let (ok, out, _) = cli(at, &["policy", "show"]);
    assert!(ok);
    assert!(out.contains("active version"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_memory_namespaces_items_and_search() {
    let provider =
        convergio_tests::embeddings::FakeEmbeddings::start("sk-cli-memory-1a2b", 32).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let stored = reqwest::Client::new()
        .put(format!("{}/v1/secrets/embeddings", server.base))
        .bearer_auth(support::admin_token(data_dir.path()))
        .body("sk-cli-memory-1a2b")
        .send()
        .await
        .expect("answers");
    assert_eq!(stored.status(), 204);
    let at = Some((&server, data_dir.path()));
    let notes = data_dir.path().join("notes.yaml");
    std::fs::write(
        &notes,
        "kind: structured\nschema:\n  type: object\n  required: [text]\n",
    )
    .expect("declaration");
    let kb = data_dir.path().join("kb.yaml");
    std::fs::write(
        &kb,
        format!(
            "kind: vector\nembedding:\n  provider: openai\n  base_url: {}\n  model: bag\n  api_key: secret:embeddings\n  dimensions: 32\n",
            provider.base_url
        ),
    )
    .expect("declaration");

    let (ok, out, err) = cli(at, &["memory", "create", "notes", &notes.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("created namespace notes (structured)"),
        "{out}"
    );
    let (ok, out, err) = cli(
        at,
        &["memory", "put", "notes", "first", r#"{"text": "hello"}"#],
    );
    assert!(ok, "{err}");
    assert!(out.contains("wrote first (version 1)"), "{out}");
    let (ok, _, err) = cli(at, &["memory", "put", "notes", "bad", r#"{"other": 1}"#]);
    assert!(!ok, "a record breaking the schema is refused");
    assert!(err.contains("400") || err.contains("422"), "{err}");
    let (ok, out, err) = cli(at, &["memory", "get", "notes", "first"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), r#"{"text":"hello"}"#);
    let (ok, out, _) = cli(at, &["memory", "items", "notes"]);
    assert!(ok);
    assert!(out.lines().any(|line| line.starts_with("first ")), "{out}");
    let (ok, out, _) = cli(at, &["memory", "show", "notes"]);
    assert!(ok);
    assert!(
        out.contains("(structured)") && out.contains("required"),
        "{out}"
    );

    let (ok, _, err) = cli(at, &["memory", "create", "kb", &kb.to_string_lossy()]);
    assert!(ok, "{err}");
    for (key, text) in [
        ("pets", "the kitten sleeps on the sofa"),
        ("tax", "quarterly tax filing is due"),
    ] {
        let value = serde_json::json!({ "text": text }).to_string();
        let (ok, _, err) = cli(at, &["memory", "put", "kb", key, &value]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = cli(
        at,
        &["memory", "search", "kb", "kitten sofa", "--top-k", "1"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("pets#0: the kitten sleeps on the sofa"),
        "{out}"
    );
    let (ok, out, _) = cli(at, &["memory", "list"]);
    assert!(ok);
    assert!(out.contains("notes") && out.contains("vector"), "{out}");
    assert!(out.contains("global"), "the scope column: {out}");
    // Only an agent's own namespaces (none here: every one is global).
    let (ok, out, err) = cli(at, &["memory", "list", "--agent", "echo"]);
    assert!(ok, "{err}");
    assert!(!out.contains("notes") && !out.contains("kb"), "{out}");

    let (ok, _, err) = cli(at, &["memory", "forget", "notes", "first"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(at, &["memory", "get", "notes", "first"]);
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = cli(at, &["memory", "delete", "notes"]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(at, &["memory", "list"]);
    assert!(ok);
    assert!(!out.contains("notes"), "{out}");
}
