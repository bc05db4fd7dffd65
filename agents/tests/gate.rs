//! A gated server (`ServeOptions::gate`) answers only requests bearing its
//! token, on both bindings; its card stays public.

mod support;

use convergio_agents::{ExampleAgent, GateToken, ServeOptions};
use serde_json::json;
use support::*;

#[tokio::test]
async fn only_the_token_bearer_reaches_a_gated_agent() {
    let options = ServeOptions {
        gate: Some(GateToken::new("the-gateways-token")),
        ..ServeOptions::default()
    };
    let agent = start_with(ExampleAgent::Echo, options).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}});
    let client = reqwest::Client::new();
    for presented in [
        None,
        Some("wrong"),
        Some("the-gateways-token-and-more"),
        Some("the-gateways-toke"),
    ] {
        let mut request = client
            .post(&agent.base_url)
            .header("A2A-Version", "1.0")
            .json(&send);
        if let Some(token) = presented {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answers");
        assert_eq!(response.status(), 401, "{presented:?}");
        let rest = client
            .get(format!("{}/tasks", agent.base_url))
            .header("A2A-Version", "1.0")
            .send()
            .await
            .expect("answers");
        assert_eq!(rest.status(), 401);
    }
    let answered = client
        .post(&agent.base_url)
        .header("A2A-Version", "1.0")
        .bearer_auth("the-gateways-token")
        .json(&send)
        .send()
        .await
        .expect("answers");
    assert_eq!(answered.status(), 200);
    let card = client
        .get(format!("{}/.well-known/agent-card.json", agent.base_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(card.status(), 200, "the card stays public");
    assert_eq!(
        format!("{:?}", GateToken::new("secret")),
        "GateToken(<redacted>)"
    );
}
