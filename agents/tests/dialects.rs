//! The 0.3 JSON-RPC dialect (no `A2A-Version` header) and the `Dialects`
//! server option: a 0.3-only and a 1.0-only agent.

mod support;

use convergio_agents::{Dialects, ExampleAgent, ServeOptions};
use convergio_schemas::{validate, SchemaId};
use serde_json::{json, Value};
use support::*;

fn v03_message(text: &str) -> Value {
    json!({"kind": "message", "messageId": uuid(), "role": "user", "parts": [{"kind": "text", "text": text}]})
}

#[tokio::test]
async fn v03_send_returns_a_kind_task_with_lowercase_states() {
    let agent = start(ExampleAgent::Echo).await;
    let response = rpc_v03(
        &agent.base_url,
        "message/send",
        json!({"message": v03_message("hi")}),
    )
    .await;
    assert_eq!(response["id"], "a");
    let task = &response["result"];
    assert_eq!(task["kind"], "task", "{response}");
    assert_eq!(task["status"]["state"], "completed");
    assert_eq!(
        task["artifacts"][0]["parts"][0],
        json!({"kind": "text", "text": "echo: hi"})
    );
    assert_eq!(task["history"][0]["kind"], "message");
    assert_eq!(task["history"][0]["role"], "user");
    assert_eq!(task["status"]["message"]["role"], "agent");

    let got = rpc_v03(
        &agent.base_url,
        "tasks/get",
        json!({"id": task["id"], "historyLength": 1}),
    )
    .await;
    assert_eq!(got["result"]["kind"], "task");
    assert_eq!(got["result"]["id"], task["id"]);
    assert_eq!(got["result"]["history"].as_array().map(Vec::len), Some(1));

    let direct = rpc_v03(
        &agent.base_url,
        "message/send",
        json!({"message": v03_message("message")}),
    )
    .await;
    assert_eq!(direct["result"]["kind"], "message");
    assert_eq!(direct["result"]["parts"][0]["kind"], "text");
}

#[tokio::test]
async fn v03_stream_uses_kind_discriminators_and_final() {
    let agent = start(ExampleAgent::Echo).await;
    let response = client()
        .post(&agent.base_url)
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "message/stream", "params": {"message": v03_message("hi")}}))
        .send()
        .await
        .expect("stream");
    let events = results(&SseReader::new(response).collect().await);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|event| event["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["task", "status-update", "artifact-update", "status-update"]
    );
    assert_eq!(events[1]["final"], false);
    assert_eq!(events[1]["status"]["state"], "working");
    assert_eq!(events[3]["final"], true);
    assert_eq!(events[3]["status"]["state"], "completed");
}

#[tokio::test]
async fn v03_cancel_and_non_blocking_send() {
    let agent = start(ExampleAgent::Echo).await;
    let sent = rpc_v03(
        &agent.base_url,
        "message/send",
        json!({"message": v03_message("sleep:60000"), "configuration": {"blocking": false}}),
    )
    .await;
    let task = &sent["result"];
    assert!(
        ["submitted", "working"].contains(&task["status"]["state"].as_str().unwrap_or("")),
        "{sent}"
    );
    let canceled = rpc_v03(&agent.base_url, "tasks/cancel", json!({"id": task["id"]})).await;
    assert_eq!(canceled["result"]["status"]["state"], "canceled");
    assert_eq!(
        error_code(&rpc_v03(&agent.base_url, "tasks/cancel", json!({"id": task["id"]})).await),
        -32002
    );
    assert_eq!(
        error_code(&rpc_v03(&agent.base_url, "tasks/get", json!({"id": "nope"})).await),
        -32001
    );
}

#[tokio::test]
async fn v03_resubscribe_streams_the_task_and_1_0_names_without_header_are_rejected() {
    let agent = start(ExampleAgent::Echo).await;
    let task = send_immediately(&agent.base_url, &["sleep:60000"]).await;
    let response = client()
        .post(&agent.base_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/resubscribe", "params": {"id": task["id"]}}))
        .send()
        .await
        .expect("resubscribe");
    let mut reader = SseReader::new(response);
    assert_eq!(
        reader.next().await.expect("snapshot")["result"]["kind"],
        "task"
    );
    rpc_ok(&agent.base_url, "CancelTask", json!({"id": task["id"]})).await;
    let rest = results(&reader.collect().await);
    assert_eq!(rest.last().expect("events")["final"], true);

    assert_eq!(
        error_code(&rpc_v03(&agent.base_url, "SendMessage", json!({})).await),
        -32009
    );
    assert_eq!(
        error_code(&rpc_v03(&agent.base_url, "no/such", json!({})).await),
        -32601
    );
    assert_eq!(
        error_code(
            &rpc_v03(
                &agent.base_url,
                "tasks/pushNotificationConfig/set",
                json!({})
            )
            .await
        ),
        -32003
    );
}

#[tokio::test]
async fn v03_only_agent_lists_0_3_and_rejects_1_0_requests() {
    let options = ServeOptions {
        dialects: Dialects {
            v1: false,
            v03: true,
        },
        gate: None,
    };
    let agent = start_with(ExampleAgent::Echo, options).await;
    let card = agent.card();
    assert!(validate(SchemaId::AgentCard, &card).is_ok());
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "0.3");
    assert_eq!(
        card["supportedInterfaces"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(card["url"], agent.base_url.as_str());
    let served: Value = client()
        .get(format!("{}/.well-known/agent-card.json", agent.base_url))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("json");
    assert_eq!(served, card);

    let ok = rpc_v03(
        &agent.base_url,
        "message/send",
        json!({"message": v03_message("hi")}),
    )
    .await;
    assert_eq!(ok["result"]["status"]["state"], "completed");
    let rejected = rpc(
        &agent.base_url,
        "SendMessage",
        json!({"message": user_message(&["hi"])}),
    )
    .await;
    assert_eq!(error_code(&rejected), -32009);
    let rest = client()
        .post(format!("{}/message:send", agent.base_url))
        .header("A2A-Version", "1.0")
        .json(&json!({"message": user_message(&["hi"])}))
        .send()
        .await
        .expect("rest");
    assert_eq!(rest.status(), 400);
}

#[tokio::test]
async fn v1_only_agent_rejects_requests_without_a_version_header() {
    let options = ServeOptions {
        dialects: Dialects {
            v1: true,
            v03: false,
        },
        gate: None,
    };
    let agent = start_with(ExampleAgent::Echo, options).await;
    let rejected = rpc_v03(
        &agent.base_url,
        "message/send",
        json!({"message": v03_message("hi")}),
    )
    .await;
    assert_eq!(error_code(&rejected), -32009);
    assert_eq!(
        rejected["error"]["data"][0]["reason"],
        "VERSION_NOT_SUPPORTED"
    );
    let ok = send_text(&agent.base_url, &["hi"]).await;
    assert_eq!(state(&ok["task"]), "TASK_STATE_COMPLETED");
    assert_eq!(
        agent.card()["supportedInterfaces"][1]["protocolBinding"],
        "HTTP+JSON"
    );
}
