//! `convergio serve` serves `/v1/memory` (issue 20) on its own database:
//! the administrator creates a structured namespace and writes a record,
//! a record breaking the schema is refused, and both survive a restart on
//! the same data dir (migration 0013 applied once, rows read back). Graph
//! nodes read and write memory (`memory:` on a node) as their run's
//! caller: what they find reaches the agent, what they write is keyed by
//! run, node and iteration, and a caller policy keeps out finds nothing.
//! Agent and global contexts: a model agent recalls its own namespace and
//! its organisation's shared one before answering (the provider's request
//! holds the hits), never another agent's; a graph node may use an agent's
//! namespace only when it calls that agent. Two replicas on one PostgreSQL
//! database: a document put or deleted through one is followed by the
//! other's index within a few `memory.follow_interval_ms`, no restart.

mod support;

use convergio_models::fake::{FakeOpenAi, FakeReply};
use convergio_models::Usage;
use convergio_tests::embeddings::FakeEmbeddings;
use serde_json::{json, Value};
use support::{admin_token, issue_key, run_to_end, start, start_logged};

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

/// Stores the embedding key and creates vector namespace `name` of `scope`
/// holding `texts` (keys `d0`, `d1`, …).
async fn vector_namespace(
    base: &str,
    token: &str,
    provider: &FakeEmbeddings,
    name: &str,
    scope: Value,
    texts: &[&str],
) {
    let declaration = json!({"kind": "vector", "scope": scope,
        "embedding": {"provider": "openai", "base_url": provider.base_url, "model": "bag",
                      "api_key": "secret:embeddings", "dimensions": 32}});
    let path = format!("/v1/memory/{name}");
    let (status, body) = call(base, token, reqwest::Method::PUT, &path, Some(declaration)).await;
    assert_eq!(status, 201, "{body}");
    for (index, text) in texts.iter().enumerate() {
        let path = format!("/v1/memory/{name}/items/d{index}");
        let document = Some(json!({"text": text}));
        let (status, body) = call(base, token, reqwest::Method::PUT, &path, document).await;
        assert_eq!(status, 201, "{body}");
    }
}

async fn store_embedding_key(base: &str, token: &str) {
    let stored = reqwest::Client::new()
        .put(format!("{base}/v1/secrets/embeddings"))
        .bearer_auth(token)
        .body(EMBEDDING_KEY)
        .send()
        .await
        .expect("answers");
    assert_eq!(stored.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_agent_recalls_its_own_and_shared_memory_before_answering() {
    let provider = FakeEmbeddings::start(EMBEDDING_KEY, 32).await;
    let model = FakeOpenAi::start().await.expect("the fake starts");
    model.set_fallback(FakeReply::text(
        "On the sofa.",
        1,
        Usage {
            input_tokens: 10,
            output_tokens: 3,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    store_embedding_key(&server.base, &token).await;
    // The agent is declared first: its namespace's scope must name it.
    let file = data_dir.path().join("scribe.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: scribe\nprovider: openai\n\
             model: fake-model\nbase_url: {}\ninstructions: Answer briefly.\nmax_tokens: 64\n\
             memory:\n  search:\n    - {{namespace: scribe-notes, top_k: 1}}\n\
             \x20   - {{namespace: house-style, top_k: 1}}\n    - {{namespace: echo-notes}}\n",
            model.base_url()
        ),
    )
    .expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((&server, data_dir.path())),
        &["agents", "apply", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "{stdout}\n{stderr}");
    vector_namespace(
        &server.base,
        &token,
        &provider,
        "scribe-notes",
        json!({"agent": "scribe"}),
        &[
            "the kitten sleeps on the sofa",
            "quarterly tax filing is due",
        ],
    )
    .await;
    vector_namespace(
        &server.base,
        &token,
        &provider,
        "house-style",
        json!("global"),
        &["a kitten is always called a cat here"],
    )
    .await;
    // Another agent's memory: scribe's search of it is refused by policy.
    vector_namespace(
        &server.base,
        &token,
        &provider,
        "echo-notes",
        json!({"agent": "echo"}),
        &["echo keeps the kitten plans"],
    )
    .await;

    let response = reqwest::Client::new()
        .post(format!("{}/agents/scribe", server.base))
        .bearer_auth(&token)
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER",
                                   "parts": [{"text": "where does the kitten sleep"}]},
                       "configuration": {"returnImmediately": false}},
        }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    let system = requests[0].body["messages"][0].clone();
    assert_eq!(system["role"], "system", "{system}");
    let system = system["content"].as_str().unwrap_or_default().to_owned();
    assert!(
        system.starts_with(
            "Answer briefly.\n\nRelevant memory:\n- [scribe-notes] the kitten sleeps on the sofa\n- [house-style] a kitten is always called a cat here"
        ),
        "{system}"
    );
    assert!(!system.contains("quarterly"), "top_k 1: {system}");
    assert!(
        !system.contains("echo keeps"),
        "another agent's memory: {system}"
    );
    let memory = &task["metadata"]["memory"];
    assert_eq!(
        memory[0],
        json!({"namespace": "scribe-notes", "hits": 1}),
        "{memory}"
    );
    assert_eq!(
        memory[1],
        json!({"namespace": "house-style", "hits": 1}),
        "{memory}"
    );
    assert_eq!(memory[2]["hits"], json!(0), "{memory}");
    let refusal = memory[2]["error"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("echo-notes was refused") && refusal.contains("403"),
        "{memory}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graph_node_uses_an_agents_memory_only_when_it_calls_that_agent() {
    let provider = FakeEmbeddings::start(EMBEDDING_KEY, 32).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let token = admin_token(data_dir.path());
    store_embedding_key(&server.base, &token).await;
    vector_namespace(
        &server.base,
        &token,
        &provider,
        "echo-kb",
        json!({"agent": "echo"}),
        &["the kitten sleeps on the sofa"],
    )
    .await;
    let graph = |agent: &str| {
        format!("name: recall\nnodes:\n  - id: ask\n    agent: {agent}\n    inputs: [question]\n    memory:\n      read: [{{namespace: echo-kb, query: question, top_k: 1}}]\n")
    };
    let sync = |graph: String| json!({"graph_yaml": graph, "mode": "sync", "input": {"question": "where does the kitten sleep"}});
    let post = reqwest::Method::POST;
    let (_, run) = call(
        &server.base,
        &token,
        post.clone(),
        "/v1/runs",
        Some(sync(graph("echo"))),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run.to_string().contains("kitten sleeps on the sofa"),
        "echo got its memory: {run}"
    );
    let (_, run) = call(
        &server.base,
        &token,
        post,
        "/v1/runs",
        Some(sync(graph("summarizer"))),
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory `echo-kb`")
            && error.contains(
                "memory namespace echo-kb is the memory of agent echo; node ask calls summarizer"
            ),
        "{run}"
    );
}

/// The keys of `base`'s top `top_k` hits for `query` in namespace `kb`.
async fn search_keys(base: &str, token: &str, query: &str, top_k: usize) -> Vec<String> {
    let (status, body) = call(
        base,
        token,
        reqwest::Method::POST,
        "/v1/memory/kb:search",
        Some(json!({"query": query, "top_k": top_k})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|hit| hit["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Searches `base` until its top `top_k` keys for `query` are `wanted`
/// (15 s at most); how long that took.
async fn until_found(
    base: &str,
    token: &str,
    query: &str,
    top_k: usize,
    wanted: &[&str],
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let keys = search_keys(base, token, query, top_k).await;
        if keys == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{base} never answered {wanted:?} for {query:?}: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Issue 20: the vector index follows other replicas' writes on
/// PostgreSQL. A document put through the first replica is found by a
/// search on the second without a restart; deleted through the first, it
/// leaves the second's index too — observable with `top_k: 1`, since a
/// deleted chunk the index still ranks first is read back from the rows,
/// found gone and not answered, so the second document appears only once
/// the index has dropped the first.
#[test]
fn a_replica_finds_what_another_put_and_forgets_what_it_deleted() {
    let database = convergio_tests::postgres::TestDatabase::create_blocking("convergio_m");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let replica = |log: &str| {
        start_logged(
            data_dir.path(),
            &[],
            &[
                ("CONVERGIO_DATABASE_URL", database.url()),
                ("CONVERGIO_MEMORY_FOLLOW_INTERVAL_MS", "200"),
            ],
            &data_dir.path().join(log),
        )
    };
    let first = replica("first.log");
    let second = replica("second.log");
    let token = admin_token(data_dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let provider = FakeEmbeddings::start(EMBEDDING_KEY, 32).await;
        let stored = reqwest::Client::new()
            .put(format!("{}/v1/secrets/embeddings", first.base))
            .bearer_auth(&token)
            .body(EMBEDDING_KEY)
            .send()
            .await
            .expect("answers");
        assert_eq!(stored.status(), 204);
        let vector = json!({"kind": "vector",
            "embedding": {"provider": "openai", "base_url": provider.base_url, "model": "bag",
                          "api_key": "secret:embeddings", "dimensions": 32}});
        let put = reqwest::Method::PUT;
        let (status, body) = call(
            &first.base,
            &token,
            put.clone(),
            "/v1/memory/kb",
            Some(vector),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        // The second replica builds the (empty) index on its first search.
        assert!(search_keys(&second.base, &token, "lighthouse keeper", 5)
            .await
            .is_empty());

        for (key, text) in [
            ("lighthouse", "the lighthouse keeper trims the lamp at dusk"),
            ("harbour", "the harbour keeper counts the boats at dawn"),
        ] {
            let path = format!("/v1/memory/kb/items/{key}");
            let (status, body) = call(
                &first.base,
                &token,
                put.clone(),
                &path,
                Some(json!({"text": text})),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        let put_seen = until_found(
            &second.base,
            &token,
            "lighthouse lamp",
            2,
            &["lighthouse", "harbour"],
        )
        .await;

        let (status, body) = call(
            &first.base,
            &token,
            reqwest::Method::DELETE,
            "/v1/memory/kb/items/lighthouse",
            None,
        )
        .await;
        assert_eq!(status, 204, "{body}");
        let delete_seen =
            until_found(&second.base, &token, "lighthouse lamp", 1, &["harbour"]).await;
        // Within a few follow intervals (200 ms), on a loaded test machine.
        for seen in [put_seen, delete_seen] {
            assert!(seen < std::time::Duration::from_secs(5), "{seen:?}");
        }
        println!("followed a put in {put_seen:?} and a delete in {delete_seen:?}");
    });
    drop((first, second));
}
