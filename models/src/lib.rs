//! `convergio-models`: model agents. A model agent is an A2A agent whose
//! answers come from a language model: [`ModelLogic`] implements
//! [`convergio_agents::AgentLogic`] over a [`Provider`] (OpenAI-compatible
//! chat completions or Anthropic Messages), with tools, budgets and
//! conversations supplied as collaborators:
//!
//! - [`KeySource`]: API keys by reference (`env:`, `file:` here in
//!   [`EnvKeys`]; `secret:` in the store);
//! - [`Conversations`]: each context's messages, so any replica continues it;
//! - [`ToolCaller`]: tool agents called through the gateway as the agent;
//! - [`Meter`]: the organisation's token allowance and usage ledger;
//! - [`Recall`]: memory namespaces searched before each turn, as the agent.
//!
//! [`card`] builds the agent's card template from its [`ModelAgentConfig`].
//! With feature `fake`, [`fake`] has loopback fake providers for tests.

pub mod config;
pub mod conversation;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod key;
pub mod logic;
pub mod meter;
pub mod provider;
pub mod recall;
pub mod tools;
pub mod types;
pub mod window;

pub use config::{card, ModelAgentConfig, SkillSpec};
pub use conversation::{Conversations, InMemoryConversations};
pub use error::{KeyError, ModelError, ProviderError, RecallError, ToolError};
pub use key::{ApiKey, EnvKeys, KeySource};
pub use logic::ModelLogic;
pub use meter::{InMemoryMeter, Meter, Unmetered, UsageRecord};
pub use provider::{AnthropicClient, ChatStream, ClientSettings, OpenAiClient, Provider};
pub use recall::{NoRecall, Recall, RecallQuery, RecallRecord, RecallSearch};
pub use tools::{NoTools, ToolCallRecord, ToolCaller, ToolInvocation, ToolOutcome};
pub use types::{
    ChatEvent, ChatMessage, ChatRequest, ProviderKind, StopReason, ToolCall, ToolSpec, Usage,
};
