//! Starting and stopping agents, every example agent's card, names, and
//! custom logic through `spawn_logic`.

mod support;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, ExampleAgent, ServeOptions, TaskContext,
};
use convergio_schemas::{validate, SchemaId};
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn every_example_agent_serves_a_valid_card() {
    for agent in ExampleAgent::ALL {
        let running = start(agent).await;
        let card = running.card();
        assert_eq!(validate(SchemaId::AgentCard, &card), Ok(()), "{agent}");
        assert_eq!(card["name"], agent.name());
        assert_eq!(card["provider"]["organization"], "Convergio examples");
        assert_eq!(card["capabilities"]["pushNotifications"], false);
        assert_eq!(card["capabilities"]["streaming"], true);
        assert!(running.base_url.starts_with("http://127.0.0.1:"));
        assert_eq!(
            card["supportedInterfaces"][0]["url"],
            running.base_url.as_str()
        );
        running.shutdown().await;
    }
}

#[test]
fn names_round_trip_and_unknown_names_are_errors() {
    for agent in ExampleAgent::ALL {
        assert_eq!(ExampleAgent::from_str(agent.name()).ok(), Some(agent));
    }
    let error = ExampleAgent::from_str("nope").expect_err("unknown");
    assert!(matches!(error, AgentsError::UnknownAgent { .. }));
    assert_eq!(error.kind(), convergio_schemas::ErrorKind::NotFound);
}

#[tokio::test]
async fn shutdown_closes_open_streams_and_stops_listening() {
    let agent = start(ExampleAgent::Echo).await;
    let base_url = agent.base_url.clone();
    let mut reader = rpc_stream(
        &base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["sleep:60000"])}),
    )
    .await;
    reader.next().await.expect("task");
    agent.shutdown().await;
    let rest = results(&reader.collect().await);
    assert!(rest
        .last()
        .is_some_and(|event| event["statusUpdate"]["status"]["state"] == "TASK_STATE_CANCELED"));
    assert!(client()
        .get(format!("{base_url}/.well-known/agent-card.json"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn dropping_the_agent_stops_the_server() {
    let agent = start(ExampleAgent::Echo).await;
    let url = format!("{}/.well-known/agent-card.json", agent.base_url);
    drop(agent);
    // The listener is closed once the aborted server task is dropped; poll
    // with a bounded number of attempts rather than sleeping.
    let mut refused = false;
    for _ in 0..200 {
        if reqwest::Client::new().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
}

struct Upper;

#[async_trait]
impl AgentLogic for Upper {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let text = message["parts"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_uppercase();
        Some(json!({"parts": [{"text": text}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Ok(())
    }
}

struct Panics;

#[async_trait]
impl AgentLogic for Panics {
    async fn execute(&self, _message: Value, context: TaskContext) -> Result<(), AgentsError> {
        context.working()?;
        panic!("logic bug");
    }
}

fn minimal_card(streaming: bool) -> Value {
    json!({
        "name": "custom", "description": "custom logic", "version": "0.1.0",
        "capabilities": {"streaming": streaming},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "s", "name": "s", "description": "d", "tags": ["t"]}]
    })
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

#[tokio::test]
async fn custom_logic_can_answer_with_direct_messages() {
    let agent = spawn_logic(
        Arc::new(Upper),
        minimal_card(true),
        listener().await,
        ServeOptions::default(),
    )
    .await
    .expect("spawn");
    let result = send_text(&agent.base_url, &["shout"]).await;
    assert_eq!(result["message"]["parts"][0]["text"], "SHOUT");
    assert_eq!(result["message"]["role"], "ROLE_AGENT");
    assert!(result["message"]["messageId"].is_string());
}

#[tokio::test]
async fn a_panicking_logic_fails_the_task_and_the_server_stays_up() {
    let agent = spawn_logic(
        Arc::new(Panics),
        minimal_card(true),
        listener().await,
        ServeOptions::default(),
    )
    .await
    .expect("spawn");
    let result = send_text(&agent.base_url, &["x"]).await;
    assert_eq!(state(&result["task"]), "TASK_STATE_FAILED");
    let again = send_text(&agent.base_url, &["x"]).await;
    assert_eq!(state(&again["task"]), "TASK_STATE_FAILED");
}

#[tokio::test]
async fn streaming_is_refused_when_the_card_says_no() {
    let agent = spawn_logic(
        Arc::new(Upper),
        minimal_card(false),
        listener().await,
        ServeOptions::default(),
    )
    .await
    .expect("spawn");
    let response = rpc(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["x"])}),
    )
    .await;
    assert_eq!(error_code(&response), -32004);
}

#[tokio::test]
async fn an_invalid_card_template_is_a_typed_error() {
    let error = spawn_logic(
        Arc::new(Upper),
        json!({"name": ""}),
        listener().await,
        ServeOptions::default(),
    )
    .await
    .expect_err("invalid card");
    assert!(matches!(error, AgentsError::InvalidCard { .. }), "{error}");
}
