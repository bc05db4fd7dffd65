//! The echo agent over the HTTP+JSON binding: every route, with and without
//! a tenant prefix and a percent-encoded colon, the error bodies and
//! statuses of the v1.0.1 table, and the card endpoint's caching.

mod support;

use convergio_agents::ExampleAgent;
use serde_json::{json, Value};
use support::*;

async fn rest(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, String, Value) {
    let mut request = client().request(method, url).header("A2A-Version", "1.0");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/a2a+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn rest_stream(method: reqwest::Method, url: String, body: Option<Value>) -> SseReader {
    let mut request = client().request(method, url).header("A2A-Version", "1.0");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/a2a+json")
            .body(body.to_string());
    }
    SseReader::new(request.send().await.expect("request"))
}

#[tokio::test]
async fn send_get_list_and_cancel_work_over_rest() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    let (status, content_type, sent) = rest(
        reqwest::Method::POST,
        format!("{base}/message:send"),
        Some(json!({"message": user_message(&["hi"])})),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(content_type, "application/a2a+json");
    let task = &sent["task"];
    assert_eq!(state(task), "TASK_STATE_COMPLETED");
    let id = task["id"].as_str().expect("id");

    let (status, _, got) = rest(
        reqwest::Method::GET,
        format!("{base}/tasks/{id}?historyLength=1"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], id);
    assert_eq!(got["history"].as_array().map(Vec::len), Some(1));

    let (status, _, listed) = rest(
        reqwest::Method::GET,
        format!("{base}/tasks?pageSize=10&includeArtifacts=true&status=TASK_STATE_COMPLETED"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["tasks"][0]["id"], id);
    assert!(listed["tasks"][0].get("artifacts").is_some());
    assert_eq!(listed["nextPageToken"], "");

    let (status, content_type, error) = rest(
        reqwest::Method::POST,
        format!("{base}/tasks/{id}:cancel"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/json");
    assert_eq!(error["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(
        error["error"]["details"][0]["reason"],
        "TASK_NOT_CANCELABLE"
    );

    let (status, _, missing) = rest(reqwest::Method::GET, format!("{base}/tasks/nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], 404);
    assert_eq!(missing["error"]["status"], "NOT_FOUND");
    assert_eq!(missing["error"]["details"][0]["domain"], "a2a-protocol.org");
}

#[tokio::test]
async fn tenant_prefix_and_percent_encoded_colon_route_the_same() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    for path in [
        "/message%3Asend",
        "/acme/message:send",
        "/acme/message%3asend",
    ] {
        let (status, _, sent) = rest(
            reqwest::Method::POST,
            format!("{base}{path}"),
            Some(json!({"message": user_message(&["hi"])})),
        )
        .await;
        assert_eq!(status, 200, "{path}: {sent}");
        let id = sent["task"]["id"].as_str().expect("id").to_owned();
        let (status, _, got) = rest(
            reqwest::Method::GET,
            format!("{base}/acme/tasks/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(got["id"], id.as_str());
    }
    let (status, _, _) = rest(reqwest::Method::GET, format!("{base}/acme/tasks"), None).await;
    assert_eq!(status, 200);
    let by_query = client()
        .get(format!("{base}/tasks?A2A-Version=1.0"))
        .send()
        .await
        .expect("request");
    assert_eq!(by_query.status(), 200);
}

#[tokio::test]
async fn cancel_a_working_task_over_rest() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    let (_, _, sent) = rest(
        reqwest::Method::POST,
        format!("{base}/message:send"),
        Some(json!({"message": user_message(&["sleep:60000"]), "configuration": {"returnImmediately": true}})),
    )
    .await;
    let id = sent["task"]["id"].as_str().expect("id").to_owned();
    let (status, _, canceled) = rest(
        reqwest::Method::POST,
        format!("{base}/tasks/{id}%3Acancel"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(state(&canceled), "TASK_STATE_CANCELED");
}

#[tokio::test]
async fn rest_stream_sends_bare_stream_responses_in_order() {
    let agent = start(ExampleAgent::Echo).await;
    let reader = rest_stream(
        reqwest::Method::POST,
        format!("{}/message:stream", agent.base_url),
        Some(json!({"message": user_message(&["hi"])})),
    )
    .await;
    assert!(reader.content_type.starts_with("text/event-stream"));
    let events = reader.collect().await;
    let kinds: Vec<&str> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["task", "statusUpdate", "artifactUpdate", "statusUpdate"]
    );
    assert!(events.iter().all(|event| event.get("jsonrpc").is_none()));
}

#[tokio::test]
async fn subscribe_works_with_get_and_post() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    let task = send_immediately(base, &["sleep:60000"]).await;
    let id = task["id"].as_str().expect("id");
    let mut by_get = rest_stream(
        reqwest::Method::GET,
        format!("{base}/tasks/{id}:subscribe"),
        None,
    )
    .await;
    let mut by_post = rest_stream(
        reqwest::Method::POST,
        format!("{base}/tasks/{id}%3Asubscribe"),
        None,
    )
    .await;
    assert_eq!(by_get.next().await.expect("snapshot")["task"]["id"], id);
    assert_eq!(by_post.next().await.expect("snapshot")["task"]["id"], id);
    rest(
        reqwest::Method::POST,
        format!("{base}/tasks/{id}:cancel"),
        None,
    )
    .await;
    assert_eq!(
        by_get.collect().await.last().expect("events")["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED"
    );
    assert_eq!(
        by_post.collect().await.last().expect("events")["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED"
    );
    let (status, _, terminal) = rest(
        reqwest::Method::GET,
        format!("{base}/tasks/{id}:subscribe"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        terminal["error"]["details"][0]["reason"],
        "UNSUPPORTED_OPERATION"
    );
    let (status, _, _) = rest(
        reqwest::Method::GET,
        format!("{base}/tasks/nope:subscribe"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn push_config_and_extended_card_routes_answer_their_errors() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    let cases = [
        (
            reqwest::Method::POST,
            "/tasks/t/pushNotificationConfigs",
            "PUSH_NOTIFICATION_NOT_SUPPORTED",
        ),
        (
            reqwest::Method::GET,
            "/tasks/t/pushNotificationConfigs",
            "PUSH_NOTIFICATION_NOT_SUPPORTED",
        ),
        (
            reqwest::Method::GET,
            "/tasks/t/pushNotificationConfigs/c",
            "PUSH_NOTIFICATION_NOT_SUPPORTED",
        ),
        (
            reqwest::Method::DELETE,
            "/acme/tasks/t/pushNotificationConfigs/c",
            "PUSH_NOTIFICATION_NOT_SUPPORTED",
        ),
        (
            reqwest::Method::GET,
            "/extendedAgentCard",
            "UNSUPPORTED_OPERATION",
        ),
    ];
    for (method, path, reason) in cases {
        let (status, _, body) = rest(
            method,
            format!("{base}{path}"),
            Some(json!({"url": "https://example.com/hook"})),
        )
        .await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"]["status"], "FAILED_PRECONDITION", "{path}");
        assert_eq!(body["error"]["details"][0]["reason"], reason, "{path}");
    }
}

#[tokio::test]
async fn rest_input_errors_are_typed() {
    let agent = start(ExampleAgent::Echo).await;
    let base = &agent.base_url;
    let response = client()
        .post(format!("{base}/message:send"))
        .header("A2A-Version", "1.0")
        .body("{oops")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");

    let (status, _, invalid) = rest(
        reqwest::Method::POST,
        format!("{base}/message:send"),
        Some(json!({"message": {}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        invalid["error"]["details"][1]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );

    let (status, _, _) = rest(
        reqwest::Method::GET,
        format!("{base}/no/such/route/here"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = rest(reqwest::Method::GET, format!("{base}/message:send"), None).await;
    assert_eq!(status, 405);
    let (status, _, _) = rest(reqwest::Method::GET, format!("{base}/tasks/%FF%FE"), None).await;
    assert_eq!(status, 400);
    let (status, _, _) = rest(
        reqwest::Method::GET,
        format!("{base}/tasks?pageSize=500"),
        None,
    )
    .await;
    assert_eq!(status, 400);

    for version in [None, Some("0.5")] {
        let mut request = client().get(format!("{base}/tasks"));
        if let Some(version) = version {
            request = request.header("A2A-Version", version);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 400, "{version:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "VERSION_NOT_SUPPORTED"
        );
    }
}

#[tokio::test]
async fn card_is_served_with_etag_cache_control_and_304() {
    let agent = start(ExampleAgent::Echo).await;
    let url = format!("{}/.well-known/agent-card.json", agent.base_url);
    let response = client().get(&url).send().await.expect("card");
    assert_eq!(response.status(), 200);
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();
    assert!(response.headers().get("cache-control").is_some());
    let card: Value = response.json().await.expect("card json");
    assert_eq!(card, agent.card());
    assert_eq!(
        card["supportedInterfaces"],
        json!([
            {"url": agent.base_url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": agent.base_url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
        ])
    );
    let cached = client()
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(cached.status(), 304);
    assert_eq!(
        cached.headers().get("etag").and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );
    let stale = client()
        .get(&url)
        .header("If-None-Match", "\"other\"")
        .send()
        .await
        .expect("stale");
    assert_eq!(stale.status(), 200);
}
