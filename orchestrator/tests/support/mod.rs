//! Deterministic in-process agents for the orchestrator's end-to-end tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use convergio_orchestrator::{
    parse_yaml, validate, AgentCall, AgentReply, AnyAgent, Dispatch, DispatchError, Executor,
    ExecutorConfig, Graph, Limits, Usage,
};
use serde_json::{json, Value};

/// A fake agent's answer to a call.
pub type Answer = Box<dyn Fn(&AgentCall) -> Result<AgentReply, DispatchError> + Send + Sync>;

/// What a fake agent does with a call.
pub enum Behavior {
    /// Answers at once.
    Reply(Answer),
    /// Yields to the scheduler `n` times, then answers.
    Slow(usize, Answer),
    /// Never answers.
    Hang,
}

/// A dispatcher over named fake agents that records every call.
#[derive(Default)]
pub struct FakeAgents {
    agents: HashMap<String, Behavior>,
    pub calls: Mutex<Vec<AgentCall>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl FakeAgents {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn agent<F>(mut self, name: &str, behavior: F) -> Self
    where
        F: Fn(&AgentCall) -> Result<AgentReply, DispatchError> + Send + Sync + 'static,
    {
        self.agents
            .insert(name.to_owned(), Behavior::Reply(Box::new(behavior)));
        self
    }

    pub fn slow_agent<F>(mut self, name: &str, yields: usize, behavior: F) -> Self
    where
        F: Fn(&AgentCall) -> Result<AgentReply, DispatchError> + Send + Sync + 'static,
    {
        self.agents
            .insert(name.to_owned(), Behavior::Slow(yields, Box::new(behavior)));
        self
    }

    pub fn hanging_agent(mut self, name: &str) -> Self {
        self.agents.insert(name.to_owned(), Behavior::Hang);
        self
    }

    pub fn calls_to(&self, agent: &str) -> Vec<AgentCall> {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .filter(|call| call.agent == agent)
            .cloned()
            .collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().expect("calls lock").len()
    }
}

#[async_trait]
impl Dispatch for FakeAgents {
    async fn call(&self, call: AgentCall) -> Result<AgentReply, DispatchError> {
        self.calls.lock().expect("calls lock").push(call.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let result = match self.agents.get(&call.agent) {
            None => Err(DispatchError::AgentNotFound {
                agent: call.agent.clone(),
            }),
            Some(Behavior::Reply(behavior)) => behavior(&call),
            Some(Behavior::Slow(yields, behavior)) => {
                for _ in 0..*yields {
                    tokio::task::yield_now().await;
                }
                behavior(&call)
            }
            Some(Behavior::Hang) => std::future::pending().await,
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// The joined text parts of a call's message.
pub fn text_of(call: &AgentCall) -> String {
    parts(call)
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first data part of a call's message (null when none).
pub fn data_of(call: &AgentCall) -> Value {
    parts(call)
        .iter()
        .find_map(|part| part.get("data").cloned())
        .unwrap_or(Value::Null)
}

fn parts(call: &AgentCall) -> Vec<Value> {
    call.message
        .get("parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A message reply with one text part.
pub fn text_reply(text: &str) -> Result<AgentReply, DispatchError> {
    Ok(AgentReply::from_response(
        json!({"message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"text": text}]}}),
    ))
}

/// A message reply with one data part.
pub fn data_reply(data: Value) -> Result<AgentReply, DispatchError> {
    Ok(AgentReply::from_response(
        json!({"message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"data": data}]}}),
    ))
}

/// A text reply reporting usage in its metadata.
pub fn text_reply_with_usage(text: &str, usage: Usage) -> Result<AgentReply, DispatchError> {
    let mut reported = json!({"tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out, "tool_calls": usage.tool_calls});
    if let Some(micros) = usage.cost_micros {
        reported["cost"] = json!(micros as f64 / 1_000_000.0);
    }
    Ok(AgentReply::from_response(
        json!({"message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"text": text}],
        "metadata": {"usage": reported}}}),
    ))
}

/// Reads an example graph from `examples/graphs/`.
pub fn example(name: &str) -> String {
    let path = format!("{}/../examples/graphs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("example graph exists")
}

/// Parses and validates YAML with every agent accepted.
pub fn graph(yaml: &str) -> Arc<Graph> {
    let spec = parse_yaml(yaml).expect("graph parses");
    Arc::new(validate(&spec, &AnyAgent, &Limits::default()).expect("graph validates"))
}

/// An executor with fast retries over `agents`.
pub fn executor(agents: Arc<FakeAgents>) -> Executor {
    let config = ExecutorConfig {
        retry_base_delay: std::time::Duration::from_millis(1),
        retry_max_delay: std::time::Duration::from_millis(5),
        ..ExecutorConfig::default()
    };
    Executor::new(agents, config)
}
