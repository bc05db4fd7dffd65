//! Stored graphs for real (issue 14): the binary keeps them in its database,
//! so they outlive a restart, and each belongs to the organisation of the
//! caller that stored it: another organisation's key gets the unknown-graph
//! answer.

mod support;

use serde_json::{json, Value};
use support::{admin_token, issue_key, start};

const PIPELINE: &str = include_str!("../../examples/graphs/code_review_pipeline.yaml");

/// A graph any caller can validate: its one agent is another
/// organisation's, which the gateway does not look up.
const PARTNER: &str =
    "name: partner_review\nnodes:\n  - id: a\n    agent: external://partner.example/agents/reviewer\n";

async fn call(
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(bearer);
    if let Some(body) = body {
        let kind = if body.starts_with('{') {
            "application/json"
        } else {
            "application/yaml"
        };
        request = request.header("content-type", kind).body(body.to_owned());
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_graphs_survive_a_restart_and_stay_with_their_organisation() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let admin = admin_token(data_dir.path());
    let acme = issue_key(
        &server,
        data_dir.path(),
        "author",
        "acme.example",
        &["graphs:write"],
    );
    let other = issue_key(
        &server,
        data_dir.path(),
        "author",
        "other.example",
        &["graphs:write"],
    );
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let (status, stored) = call(
        post.clone(),
        format!("{}/v1/graphs", server.base),
        &acme,
        Some(PARTNER),
    )
    .await;
    assert_eq!(
        (status, stored["org"].clone()),
        (201, json!("acme.example")),
        "{stored}"
    );
    let (status, stored) = call(
        post.clone(),
        format!("{}/v1/graphs", server.base),
        &admin,
        Some(PIPELINE),
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    server.kill();

    let server = start(data_dir.path());
    let (status, kept) = call(
        get.clone(),
        format!("{}/v1/graphs/partner_review", server.base),
        &acme,
        None,
    )
    .await;
    assert_eq!((status, kept["version"].clone()), (200, json!(1)), "{kept}");
    assert_eq!(kept["source"], PARTNER);
    // Another organisation: as for a graph that does not exist.
    for path in [
        "/v1/graphs/partner_review",
        "/v1/graphs/partner_review?org=acme.example",
    ] {
        let (status, refused) =
            call(get.clone(), format!("{}{path}", server.base), &other, None).await;
        assert_eq!(status, 404, "{path}: {refused}");
        assert_eq!(refused["detail"], "graph partner_review not found");
    }
    let (status, refused) = call(
        post.clone(),
        format!("{}/v1/graphs?org=acme.example", server.base),
        &other,
        Some(PARTNER),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
    let (_, kept) = call(
        get.clone(),
        format!("{}/v1/graphs/partner_review", server.base),
        &acme,
        None,
    )
    .await;
    assert_eq!(kept["version"], 1, "not overwritten: {kept}");

    // The stored pipeline still runs by name after the restart.
    let run = json!({"graph": "code_review_pipeline", "mode": "sync", "input": {"source_code": "eval(x)"}});
    let (status, outcome) = call(
        post,
        format!("{}/v1/runs", server.base),
        &admin,
        Some(&run.to_string()),
    )
    .await;
    assert_eq!(
        (status, outcome["status"].clone()),
        (200, json!("succeeded")),
        "{outcome}"
    );
}
