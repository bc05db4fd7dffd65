//! The normalised chat vocabulary every provider client speaks: a
//! [`ChatRequest`] of [`ChatMessage`]s and [`ToolSpec`]s in, a stream of
//! [`ChatEvent`]s out. Messages serialise to JSON so a conversation store can
//! keep them as they are.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible chat completions API (OpenAI, llama.cpp's
    /// server, Ollama, vLLM, LM Studio).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

// === impl ProviderKind ===

impl ProviderKind {
    /// The name used in declarations, metadata and usage records.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "openai" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            other => Err(format!(
                "unknown provider {other:?} (expected openai or anthropic)"
            )),
        }
    }
}

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The provider's model name (`gpt-4o-mini`, `claude-sonnet-4-5`, …).
    pub model: String,
    /// The system prompt (the agent's instructions).
    pub system: Option<String>,
    /// The conversation so far, oldest first; the last is usually the user's.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call (none: the model answers in text).
    pub tools: Vec<ToolSpec>,
    /// The most tokens the model may produce.
    pub max_tokens: u64,
    /// Sampling temperature, when set.
    pub temperature: Option<f64>,
    /// Stream the answer (SSE) rather than wait for it whole. Either way the
    /// client returns a [`ChatEvent`] stream.
    pub stream: bool,
    /// Ask for a JSON answer that validates against this schema (OpenAI's
    /// `response_format`; Anthropic has no such switch, so the caller also
    /// says it in the system prompt).
    pub response_schema: Option<Value>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    /// What the user (the A2A caller) said.
    User {
        /// The text.
        content: String,
    },
    /// What the model said: text, tool calls, or both.
    Assistant {
        /// The text (may be empty when the model only called tools).
        content: String,
        /// The tools it called, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The answer to one tool call.
    Tool {
        /// The id of the call this answers.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The answer as text (JSON text for data).
        content: String,
        /// Whether the call failed (refused by policy, tool error).
        #[serde(default)]
        is_error: bool,
    },
}

// === impl ChatMessage ===

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::User {
            content: content.into(),
        }
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant {
            content: content.into(),
            tool_calls: Vec::new(),
        }
    }
}

/// A tool the model may call: one agent reachable through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name (the agent's name; `^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub input_schema: Value,
}

// === impl ToolSpec ===

impl ToolSpec {
    /// The input schema every agent tool gets: a `text` to send and an
    /// optional `data` object (they become the A2A message's text and data
    /// parts, see [`crate::logic`]).
    pub fn agent_input_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "The message text to send to the agent"},
                "data": {"type": "object", "description": "Structured input for the agent, when it reads data"}
            },
            "required": ["text"]
        })
    }

    /// A tool for the agent whose A2A card this is: its name, its
    /// description followed by each skill's, and [`Self::agent_input_schema`].
    pub fn from_card(card: &Value) -> Self {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_owned();
        let mut description = text(card.get("description"));
        for skill in card
            .get("skills")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = text(skill.get("name"));
            let skill_description = text(skill.get("description"));
            if !skill_description.is_empty() {
                description.push_str(&format!("\n- {name}: {skill_description}"));
            }
        }
        Self {
            name: text(card.get("name")),
            description,
            input_schema: Self::agent_input_schema(),
        }
    }
}

/// One tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (answered by [`ChatMessage::Tool`]).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, parsed from the provider's JSON.
    pub arguments: Value,
}

/// Tokens the provider reported for one call. Zero when a provider does not
/// report them (some local servers); never estimated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

// === impl Usage ===

impl Usage {
    /// Both counts together.
    pub fn total(self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The sum of two reports.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It hit `max_tokens`.
    MaxTokens,
    /// It wants tool results.
    ToolUse,
    /// Anything else the provider said (`content_filter`, `stop_sequence`, …).
    Other(String),
}

// === impl StopReason ===

impl StopReason {
    /// Reads OpenAI's `finish_reason` or Anthropic's `stop_reason`.
    pub fn from_wire(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" => Self::EndTurn,
            "length" | "max_tokens" => Self::MaxTokens,
            "tool_calls" | "tool_use" | "function_call" => Self::ToolUse,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One event of a model's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More answer text.
    TextDelta(String),
    /// A complete tool call (fragments already assembled).
    ToolCall(ToolCall),
    /// The end: the provider's usage report and stop reason. Always last.
    Done {
        /// Tokens as the provider reported them.
        usage: Usage,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}
