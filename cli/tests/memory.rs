//! `convergio serve` serves `/v1/memory` (issue 20) on its own database:
//! the administrator creates a structured namespace and writes a record,
//! a record breaking the schema is refused, and both survive a restart on
//! the same data dir (migration 0013 applied once, rows read back). Graph
//! nodes read and write memory (`memory:` on a node) as their run's
//! caller: what they find reaches the agent, what they write is keyed by
//! run, node and iteration, and a caller policy keeps out finds nothing.

mod support;

use convergio_tests::embeddings::FakeEmbeddings;
use serde_json::{json, Value};
use support::{admin_token, issue_key, run_to_end, start};

const EMBEDDING_KEY: &str = "sk-graph-memory-test-9z8y";

async fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_keeps_memory_across_a_restart() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    {
        let server = start(data_dir.path());
        let token = admin_token(data_dir.path());
        let declaration = json!({
            "kind": "structured",
            "schema": {"type": "object", "required": ["name"],
                       "properties": {"name": {"type": "string"}}}
        });
        let (status, body) = call(
            &server.base,
            &token,
            reqwest::Method::PUT,
            "/v1/memory/profiles",
            Some(declaration),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            &server.base,
            &token,
            reqwest::Method::PUT,
            "/v1/memory/profiles/items/ann",
            Some(json!({"name": "Ann"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            &server.base,
            &token,
            reqwest::Method::PUT,
            "/v1/memory/profiles/items/bad",
            Some(json!({"name": 1})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    let (status, body) = call(
        &server.base,
        &token,
        reqwest::Method::GET,
        "/v1/memory/profiles/items/ann",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], json!({"name": "Ann"}));
    let (status, body) = call(
        &server.base,
        &token,
        reqwest::Method::GET,
        "/v1/memory",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["namespaces"][0]["name"], json!("profiles"), "{body}");
    let (status, _) = call(
        &server.base,
        &token,
        reqwest::Method::GET,
        "/v1/memory/profiles/items/bad",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// How many live items namespace `namespace` holds (one page).
async fn item_count(base: &str, token: &str, namespace: &str) -> usize {
    let path = format!("/v1/memory/{namespace}/items");
    let (status, listed) = call(base, token, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{listed}");
    listed["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_nodes_read_and_write_memory_as_their_caller() {
    let provider = FakeEmbeddings::start(EMBEDDING_KEY, 32).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    let put = reqwest::Method::PUT;
    let stored = reqwest::Client::new()
        .put(format!("{}/v1/secrets/embeddings", server.base))
        .bearer_auth(&token)
        .body(EMBEDDING_KEY)
        .send()
        .await
        .expect("answers");
    assert_eq!(stored.status(), 204);
    let vector = json!({"kind": "vector",
        "embedding": {"provider": "openai", "base_url": provider.base_url, "model": "bag",
                      "api_key": "secret:embeddings", "dimensions": 32}});
    let (status, body) = call(
        &server.base,
        &token,
        put.clone(),
        "/v1/memory/kb",
        Some(vector),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (key, text) in [
        ("pets", "the kitten sleeps on the sofa"),
        ("tax", "quarterly tax filing is due"),
    ] {
        let path = format!("/v1/memory/kb/items/{key}");
        let (status, body) = call(
            &server.base,
            &token,
            put.clone(),
            &path,
            Some(json!({"text": text})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = call(
        &server.base,
        &token,
        put.clone(),
        "/v1/memory/answers",
        Some(json!({"kind": "structured"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // `ask` searches kb with the graph input; echo answers with what it
    // got, and that output is written to `answers`.
    let graph = "name: remember\nnodes:\n  - id: ask\n    agent: echo\n    inputs: [question]\n    memory:\n      read: [{namespace: kb, query: question, top_k: 1}]\n      write: [{namespace: answers}]\n";
    let run = run_to_end(
        &server,
        &token,
        json!({"graph_yaml": graph, "mode": "async",
        "input": {"question": "where does the kitten sleep"}}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["run_id"].as_str().expect("a run id");
    // Keyed by run, node and iteration (the first, 1).
    let key = format!("{run_id}.ask.1");
    let (status, item) = call(
        &server.base,
        &token,
        reqwest::Method::GET,
        &format!("/v1/memory/answers/items/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{item}");
    let written = item["value"].to_string();
    assert!(
        written.contains("echo: where does the kitten sleep"),
        "{written}"
    );
    assert!(
        written.contains("kitten sleeps on the sofa"),
        "the hit reached the agent: {written}"
    );
    assert!(!written.contains("quarterly"), "top_k 1: {written}");
    assert_eq!(item_count(&server.base, &token, "answers").await, 1);

    // A member of the organisation who may run graphs but not read its
    // memory: policy judges the node's search as that caller and refuses
    // it, so the node fails, the agent is not called and nothing is
    // written. (Another organisation's namespace is refused by the same
    // decision, answered as missing: gateway/tests/memory.rs.)
    let other = issue_key(
        &server,
        data_dir.path(),
        "eve",
        "convergio.local",
        &["graphs:run"],
    );
    let sync =
        |graph: &str| json!({"graph_yaml": graph, "mode": "sync", "input": {"question": "kitten"}});
    let post = reqwest::Method::POST;
    let (_, accepted) = call(
        &server.base,
        &other,
        post.clone(),
        "/v1/runs",
        Some(sync(graph)),
    )
    .await;
    assert_eq!(accepted["status"], "failed", "{accepted}");
    let error = accepted.to_string();
    assert!(
        error.contains("memory `kb`") && error.contains("forbidden: search_memory"),
        "{error}"
    );
    assert!(!error.contains("kitten sleeps"), "{error}");
    assert_eq!(item_count(&server.base, &token, "answers").await, 1);

    // A node reading a namespace that does not exist fails with a clear error.
    let missing = graph.replace("namespace: kb", "namespace: nowhere");
    let (_, run) = call(&server.base, &token, post, "/v1/runs", Some(sync(&missing))).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory `nowhere`") && error.contains("404"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_node_memory_declaration_is_refused_before_the_run() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    for (memory, pointer) in [
        (
            "{read: [{namespace: kb, query: nothing.output}]}",
            "/nodes/0/memory/read/0/query",
        ),
        (
            "{read: [{namespace: kb, query: question, top_k: 0}]}",
            "/nodes/0/memory/read/0/top_k",
        ),
        (
            "{write: [{namespace: kb, from: input}]}",
            "/nodes/0/memory/write/0/from",
        ),
        ("{forget: [kb]}", "/nodes/0/memory"),
    ] {
        let graph = format!("name: bad\nnodes:\n  - id: ask\n    agent: echo\n    inputs: [question]\n    memory: {memory}\n");
        let response = reqwest::Client::new()
            .post(format!("{}/v1/runs", server.base))
            .bearer_auth(&token)
            .json(&json!({"graph_yaml": graph, "mode": "sync", "input": {"question": "q"}}))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(status, 400, "{memory}: {body}");
        assert!(body.contains(pointer), "{memory}: {body}");
    }
}
