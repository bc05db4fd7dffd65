//! Shared helpers for the model agent tests: a fake provider, a
//! [`ModelLogic`] served on 127.0.0.1:0 with `spawn_logic`, JSON-RPC calls
//! and SSE reading. Every wait is bounded by [`TIMEOUT`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use convergio_agents::{spawn_logic, RunningAgent, ServeOptions};
use convergio_models::fake::{FakeProvider, FakeRequest};
use convergio_models::{
    card, provider, ClientSettings, Conversations, EnvKeys, InMemoryConversations, Meter,
    ModelAgentConfig, ModelLogic, NoRecall, ProviderKind, Recall, ToolCaller, ToolError,
    ToolInvocation, Unmetered,
};
use convergio_tests::sse::EventStream;
use serde_json::{json, Value};

/// Upper bound on any single wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The key the tests' agents use (never to be seen in any answer).
pub const KEY: &str = "sk-fake-7f3a9c1e5b2d4068";

/// Its reference.
pub const KEY_REFERENCE: &str = "env:FAKE_PROVIDER_KEY";

/// Both provider kinds, for tests that run against both fakes.
pub const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];

/// Client settings with short backoffs.
pub fn settings() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(15),
        max_attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
        resolver: None,
    }
}

/// Resolves [`KEY_REFERENCE`] to [`KEY`].
pub fn keys() -> Arc<EnvKeys> {
    Arc::new(EnvKeys::from_map(HashMap::from([(
        "FAKE_PROVIDER_KEY".to_owned(),
        KEY.to_owned(),
    )])))
}

/// A model agent named `assistant` of org `acme` on `fake`.
pub fn config(fake: &FakeProvider, kind: ProviderKind) -> ModelAgentConfig {
    let mut config = ModelAgentConfig::new(
        "assistant",
        "acme",
        kind,
        "fake-model",
        fake.base_url(),
        KEY_REFERENCE,
    );
    config.instructions = Some("You are a helpful test assistant.".into());
    config
}

/// Starts a fake of `kind`.
pub async fn fake(kind: ProviderKind) -> FakeProvider {
    FakeProvider::start(kind)
        .await
        .expect("fake provider starts")
}

/// The collaborators of a served model agent.
pub struct Parts {
    pub settings: ClientSettings,
    pub conversations: Arc<dyn Conversations>,
    pub tools: Arc<dyn ToolCaller>,
    pub meter: Arc<dyn Meter>,
    pub recall: Arc<dyn Recall>,
}

impl Default for Parts {
    fn default() -> Self {
        Self {
            settings: settings(),
            conversations: Arc::new(InMemoryConversations::default()),
            tools: Arc::new(ScriptedTools::default()),
            meter: Arc::new(Unmetered),
            recall: Arc::new(NoRecall),
        }
    }
}

/// Serves the model agent `config` describes with `parts`.
pub async fn serve(config: ModelAgentConfig, parts: Parts) -> RunningAgent {
    let provider =
        provider::client(config.provider, &config.base_url, parts.settings).expect("client");
    let template = card(&config);
    let logic = ModelLogic::new(
        config,
        provider,
        keys(),
        parts.conversations,
        parts.tools,
        parts.meter,
        parts.recall,
    )
    .expect("logic");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    spawn_logic(Arc::new(logic), template, listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

/// A tool caller that answers every call with a completed task holding
/// `answer`, or refuses when `refuse` is set; it records every invocation.
#[derive(Default)]
pub struct ScriptedTools {
    pub answer: String,
    pub refuse: bool,
    pub invocations: Mutex<Vec<ToolInvocation>>,
}

impl ScriptedTools {
    pub fn answering(answer: &str) -> Self {
        Self {
            answer: answer.to_owned(),
            ..Self::default()
        }
    }

    pub fn invocations(&self) -> Vec<ToolInvocation> {
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ToolCaller for ScriptedTools {
    async fn call(&self, invocation: ToolInvocation) -> Result<Value, ToolError> {
        let tool = invocation.tool.clone();
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(invocation);
        if self.refuse {
            return Err(ToolError::Refused {
                tool,
                reason: "policy denies invoke_agent".into(),
            });
        }
        Ok(json!({"task": {
            "id": "tool-task",
            "contextId": "tool-context",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "a", "parts": [{"text": self.answer}]}],
        }}))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client")
}

/// A 1.0 user message.
pub fn user_message(text: &str, context_id: Option<&str>) -> Value {
    let mut message = json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    });
    if let Some(context_id) = context_id {
        message["contextId"] = json!(context_id);
    }
    message
}

/// A 1.0 JSON-RPC call; the whole response.
pub async fn rpc(base_url: &str, method: &str, params: Value) -> Value {
    client()
        .post(base_url)
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON answer")
}

/// A blocking `SendMessage`; the task it answers with.
pub async fn send(base_url: &str, text: &str, context_id: Option<&str>) -> Value {
    let response = rpc(
        base_url,
        "SendMessage",
        json!({"message": user_message(text, context_id)}),
    )
    .await;
    assert!(response.get("error").is_none(), "{response}");
    response["result"]["task"].clone()
}

/// A `SendStreamingMessage`; every event's `result`, in order.
pub async fn send_streaming(base_url: &str, text: &str) -> Vec<Value> {
    let response = client()
        .post(base_url)
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
            "params": {"message": user_message(text, None)},
        }))
        .send()
        .await
        .expect("request sent");
    let mut stream = EventStream::new(response);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event["result"].clone());
    }
    events
}

/// The task's state name.
pub fn state(task: &Value) -> &str {
    task.pointer("/status/state")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The text of the task's status message.
pub fn status_text(task: &Value) -> String {
    task.pointer("/status/message/parts/0/text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The key header a request carried.
pub fn presented_key(kind: ProviderKind, request: &FakeRequest) -> Option<String> {
    match kind {
        ProviderKind::OpenAi => request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned),
        ProviderKind::Anthropic => request.header("x-api-key").map(str::to_owned),
    }
}

/// Waits until the fake has received `count` requests.
pub async fn wait_for_requests(fake: &FakeProvider, count: usize) {
    tokio::time::timeout(TIMEOUT, fake.wait_for_requests(count))
        .await
        .expect("the fake received the requests");
}
