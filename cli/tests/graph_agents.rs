//! Graphs published as A2A agents (issue 18), end to end on real
//! `convergio serve` processes, each its own organisation and database.
//!
//! - In one organisation: a published graph answers `SendMessage` with its
//!   run's output and usage, streams a WORKING update per node event then
//!   COMPLETED, fails the task when the run fails, and a cancelled task
//!   cancels its run.
//! - Across three: c.example's published graph is a node
//!   (`external://c.example/agents/…`) of a run in a.example, and
//!   b.example calls it directly; both get its output.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{admin_token, issue_key, start_with, Server};

/// Two echo nodes in a row: the output is `echo: echo: <text>`.
const TWICE: &str = "name: twice\ndescription: Echoes its text twice.\nnodes:\n  - id: first\n    agent: echo\n    inputs: [text]\n  - id: second\n    agent: echo\n    inputs: [first.output]\nedges:\n  - {from: first, to: second}\n";

/// The published agent's name.
const AGENT: &str = "twice-agent";

/// One organisation: its server, data dir and a publisher's key (scopes
/// `graphs:write`, `graphs:run`).
struct Org {
    server: Server,
    dir: tempfile::TempDir,
    publisher: String,
}

fn organisation(domain: &str) -> Org {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(dir.path(), &[("CONVERGIO_ORG_DOMAIN", domain)]);
    let publisher = issue_key(
        &server,
        dir.path(),
        "publisher",
        domain,
        &["graphs:write", "graphs:run"],
    );
    Org {
        server,
        dir,
        publisher,
    }
}

/// Stores [`TWICE`] and publishes it as [`AGENT`] (tagged `external`).
async fn publish(http: &reqwest::Client, org: &Org) {
    let response = http
        .post(format!("{}/v1/graphs", org.server.base))
        .bearer_auth(&org.publisher)
        .header("content-type", "application/yaml")
        .body(TWICE)
        .send()
        .await
        .expect("graph stored");
    let status = response.status();
    let stored: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{stored}");
    let response = http
        .put(format!("{}/v1/graph-agents/{AGENT}", org.server.base))
        .bearer_auth(&org.publisher)
        .json(&json!({"graph": "twice", "tags": ["external"]}))
        .send()
        .await
        .expect("published");
    let status = response.status();
    let view: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["status"]["available"], true, "{view}");
}

fn message(text: &str) -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
           "parts": [{"text": text}]})
}

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

async fn post(http: &reqwest::Client, url: &str, bearer: &str, body: &Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(bearer)
        .header("A2A-Version", "1.0")
        .json(body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    body
}

/// The task of a JSON-RPC answer.
fn task_of(answer: &Value) -> Value {
    let result = answer
        .get("result")
        .unwrap_or_else(|| panic!("no result: {answer}"));
    result
        .get("task")
        .cloned()
        .unwrap_or_else(|| result.clone())
}

/// A blocking `SendMessage` of `text` to `url`: the finished task.
async fn send(http: &reqwest::Client, url: &str, bearer: &str, text: &str) -> Value {
    let params = json!({"message": message(text), "configuration": {"returnImmediately": false}});
    task_of(&post(http, url, bearer, &rpc("SendMessage", params)).await)
}

fn artifact_text(task: &Value) -> String {
    task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text artifact: {task:#}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_graph_answers_streams_fails_and_is_cancelled_with_its_run() {
    let org = organisation("c.example");
    let http = reqwest::Client::new();
    publish(&http, &org).await;
    let url = format!("{}/agents/{AGENT}", org.server.base);

    // The card describes the graph, its nodes and its inputs.
    let card: Value = http
        .get(format!("{url}/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("card json");
    let skill = &card["skills"][0];
    let description = skill["description"].as_str().expect("skill description");
    assert!(
        description.contains("first, second") && description.contains("Inputs: text"),
        "{card:#}"
    );
    assert_eq!(card["description"], "Echoes its text twice.");
    assert_eq!(skill["tags"], json!(["graph", "external"]));

    // SendMessage: the run's output as the artifact, its usage and run id
    // in the task's metadata.
    let task = send(&http, &url, &org.publisher, "hello").await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task:#}");
    assert_eq!(artifact_text(&task), "echo: echo: hello");
    let usage = &task["metadata"]["usage"];
    assert!(usage["tokens_in"].as_u64().unwrap_or(0) > 0, "{task:#}");
    assert!(usage["tokens_out"].as_u64().unwrap_or(0) > 0, "{task:#}");
    assert!(task["metadata"]["convergio.run_id"].is_string(), "{task:#}");

    // GetTask maps to the finished run.
    let task_id = task["id"].as_str().expect("task id");
    let got = post(
        &http,
        &url,
        &org.publisher,
        &rpc("GetTask", json!({"id": task_id})),
    )
    .await;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED");

    // SendStreamingMessage: a WORKING update per node event, then the
    // artifact and COMPLETED.
    let response = http
        .post(&url)
        .bearer_auth(&org.publisher)
        .header("A2A-Version", "1.0")
        .header("accept", "text/event-stream")
        .json(&rpc(
            "SendStreamingMessage",
            json!({"message": message("streamed")}),
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("stream body");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .map(|event| event["result"].clone())
        .collect();
    let updates: Vec<(String, Option<String>, Option<String>)> = events
        .iter()
        .filter_map(|event| event.get("statusUpdate"))
        .map(|update| {
            let metadata = &update["status"]["message"]["metadata"];
            (
                update["status"]["state"].as_str().unwrap_or("").to_owned(),
                metadata["convergio.node_id"].as_str().map(str::to_owned),
                metadata["convergio.node_state"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let node_states: Vec<(String, String)> = updates
        .iter()
        .filter(|(state, _, _)| state == "TASK_STATE_WORKING")
        .filter_map(|(_, node, node_state)| Some((node.clone()?, node_state.clone()?)))
        .collect();
    for expected in [
        ("first", "started"),
        ("first", "succeeded"),
        ("second", "started"),
        ("second", "succeeded"),
    ] {
        assert!(
            node_states
                .iter()
                .any(|(node, state)| node == expected.0 && state == expected.1),
            "{expected:?} missing from {updates:#?}"
        );
    }
    let first_done = node_states
        .iter()
        .position(|(node, state)| node == "first" && state == "succeeded");
    let second_started = node_states
        .iter()
        .position(|(node, state)| node == "second" && state == "started");
    assert!(first_done < second_started, "{updates:#?}");
    assert_eq!(
        updates.last().map(|(state, _, _)| state.as_str()),
        Some("TASK_STATE_COMPLETED"),
        "{updates:#?}"
    );
    assert!(
        events.iter().any(
            |event| event["artifactUpdate"]["artifact"]["parts"][0]["text"]
                == "echo: echo: streamed"
        ),
        "{text}"
    );

    // A failed run fails the task, with the run's reason.
    let failed = send(&http, &url, &org.publisher, "fail").await;
    assert_eq!(failed["status"]["state"], "TASK_STATE_FAILED", "{failed:#}");
    let reason = failed["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("twice") && reason.contains("failed"),
        "{failed:#}"
    );

    // CancelTask cancels the run: the run (read as its owner, the graph
    // agent's principal) reads cancelled.
    let params = json!({"message": message("sleep:60000 slow"),
                        "configuration": {"returnImmediately": true}});
    let started = task_of(&post(&http, &url, &org.publisher, &rpc("SendMessage", params)).await);
    let task_id = started["id"].as_str().expect("task id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let run_id = loop {
        let got = post(
            &http,
            &url,
            &org.publisher,
            &rpc("GetTask", json!({"id": task_id})),
        )
        .await;
        let working =
            got["result"]["status"]["message"]["metadata"]["convergio.node_id"] == "first";
        if let (true, Some(run_id)) = (
            working,
            got["result"]["metadata"]["convergio.run_id"].as_str(),
        ) {
            break run_id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{got:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cancelled = post(
        &http,
        &url,
        &org.publisher,
        &rpc("CancelTask", json!({"id": task_id})),
    )
    .await;
    assert_eq!(
        cancelled["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{cancelled:#}"
    );
    let owner = issue_key(
        &org.server,
        org.dir.path(),
        &format!("agent:{AGENT}"),
        "c.example",
        &["graphs:run"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run: Value = http
            .get(format!("{}/v1/runs/{run_id}", org.server.base))
            .bearer_auth(&owner)
            .send()
            .await
            .expect("run read")
            .json()
            .await
            .expect("json");
        if run["status"] == "cancelled" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The CLI lists it for its organisation; the administrator token, of
    // no organisation, cannot publish.
    let (ok, listed, stderr) = support::cli(
        Some((&org.server, org.dir.path())),
        &["graph", "agents", "--token", &org.publisher],
    );
    assert!(
        ok && listed.contains(AGENT) && listed.contains("twice"),
        "{listed}\n{stderr}"
    );
    let (ok, _, stderr) = support::cli(
        Some((&org.server, org.dir.path())),
        &["graph", "publish", "other-agent", "--graph", "twice"],
    );
    assert!(!ok && stderr.contains("organisation"), "{stderr}");

    // A model agent's name stays the model agent's: the publication is
    // kept but not served, and says why.
    let response = http
        .put(format!("{}/v1/model-agents/modelled", org.server.base))
        .bearer_auth(admin_token(org.dir.path()))
        .json(
            &json!({"apiVersion": "convergio/v1", "kind": "ModelAgent", "name": "modelled",
                      "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9",
                      "api_key": "env:CONVERGIO_TEST_UNSET_MODEL_KEY"}),
        )
        .send()
        .await
        .expect("declared");
    assert!(response.status().is_success(), "{}", response.status());
    let response = http
        .put(format!("{}/v1/graph-agents/modelled", org.server.base))
        .bearer_auth(&org.publisher)
        .json(&json!({"graph": "twice"}))
        .send()
        .await
        .expect("published");
    let view: Value = response.json().await.expect("json");
    assert_eq!(view["status"]["available"], false, "{view}");
    assert!(
        view["status"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("model agent")),
        "{view}"
    );

    // Withdrawn, it no longer answers.
    let response = http
        .delete(format!("{}/v1/graph-agents/{AGENT}", org.server.base))
        .bearer_auth(&org.publisher)
        .send()
        .await
        .expect("withdrawn");
    assert_eq!(response.status(), 204);
    let response = http
        .get(format!("{url}/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card asked");
    assert_eq!(response.status(), 404);
}

/// `receiver` trusts `caller`'s signing keys (fetched and approved), and
/// `caller` knows `receiver` with its keys.
async fn peer(
    http: &reqwest::Client,
    caller: &Org,
    caller_domain: &str,
    receiver: &Org,
    receiver_domain: &str,
) {
    let receiver_token = admin_token(receiver.dir.path());
    let caller_token = admin_token(caller.dir.path());
    let answer = http
        .post(format!("{}/v1/peers", receiver.server.base))
        .bearer_auth(&receiver_token)
        .json(&json!({"domain": caller_domain, "url": caller.server.base,
                      "jwks_url": format!("{}/.well-known/jwks.json", caller.server.base)}))
        .send()
        .await
        .expect("peer added");
    assert_eq!(answer.status(), 201);
    let answer = http
        .post(format!(
            "{}/v1/peers/{caller_domain}/approve",
            receiver.server.base
        ))
        .bearer_auth(&receiver_token)
        .json(&json!({}))
        .send()
        .await
        .expect("peer approved");
    assert_eq!(answer.status(), 200);
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", receiver.server.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let answer = http
        .post(format!("{}/v1/peers", caller.server.base))
        .bearer_auth(&caller_token)
        .json(
            &json!({"domain": receiver_domain, "url": receiver.server.base, "keys": jwks["keys"]}),
        )
        .send()
        .await
        .expect("peer added");
    assert_eq!(answer.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_examples_graph_agent_is_a_node_of_a_example_and_called_by_b_example() {
    let (a, b, c) = (
        organisation("a.example"),
        organisation("b.example"),
        organisation("c.example"),
    );
    let http = reqwest::Client::new();
    publish(&http, &c).await;
    peer(&http, &a, "a.example", &c, "c.example").await;
    peer(&http, &b, "b.example", &c, "c.example").await;

    // a.example runs a graph whose first node is c.example's graph agent.
    let graph = format!(
        "name: composed\nnodes:\n  - id: remote\n    agent: external://c.example/agents/{AGENT}\n    inputs: [text]\n  - id: local\n    agent: echo\n    inputs: [remote.output]\nedges:\n  - {{from: remote, to: local}}\n"
    );
    let response = http
        .post(format!("{}/v1/runs", a.server.base))
        .bearer_auth(admin_token(a.dir.path()))
        .json(&json!({"graph_yaml": graph, "mode": "sync", "input": {"text": "composed"}}))
        .send()
        .await
        .expect("run answered");
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.expect("json");
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    assert_eq!(
        outcome["output"], "echo: echo: echo: composed",
        "{outcome:#}"
    );
    // The remote node's usage is the remote run's, as c.example reported it.
    let remote = outcome["trace"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|node| node["node_id"] == "remote")
        .cloned()
        .expect("the remote node");
    assert!(remote["tokens_in"].as_u64().unwrap_or(0) > 0, "{remote:#}");

    // b.example calls it directly, as one agent.
    let task = send(
        &http,
        &format!("{}/external/c.example/agents/{AGENT}", b.server.base),
        &admin_token(b.dir.path()),
        "direct",
    )
    .await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task:#}");
    assert_eq!(artifact_text(&task), "echo: echo: direct");
}
