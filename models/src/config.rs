//! [`ModelAgentConfig`]: everything one model agent needs at run time,
//! built by the declaration loader from a validated declaration, and
//! [`card`], the A2A card template made from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::{ProviderKind, ToolSpec};

/// One skill the agent's card advertises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillSpec {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Search tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Example prompts.
    #[serde(default)]
    pub examples: Vec<String>,
}

/// One model agent, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelAgentConfig {
    /// The agent's name (its card name and `/agents/{name}`).
    pub name: String,
    /// The organisation that owns it (pays, and whose keys it uses).
    pub org: String,
    /// What it does (the card's description).
    pub description: String,
    /// The card's version.
    pub version: String,
    /// The card's skills; one made from the name and description when empty.
    pub skills: Vec<SkillSpec>,
    /// The provider's protocol.
    pub provider: ProviderKind,
    /// The provider's model name.
    pub model: String,
    /// The provider's base URL.
    pub base_url: String,
    /// The API key reference (`env:NAME`, `file:PATH`, `secret:NAME`);
    /// empty for a provider that takes no key (a local server): its
    /// requests then carry no key header.
    pub api_key: String,
    /// The system prompt.
    pub instructions: Option<String>,
    /// The agents it may call, as tools.
    pub tools: Vec<ToolSpec>,
    /// When set, the answer is a JSON data part that validates against it.
    pub output_schema: Option<Value>,
    /// The most tokens one provider call may produce.
    pub max_tokens: u64,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// The most tool calls in one turn.
    pub max_tool_calls: u32,
    /// The longest one turn may take, tool calls included.
    pub timeout: Duration,
    /// The most tokens of earlier turns sent with each call (the
    /// conversation window, see [`crate::window`]); `None` sends every
    /// stored turn.
    pub history_max_tokens: Option<u32>,
    /// The agent that summarises the turns the window leaves out (see
    /// [`crate::window::transcript`]); `None`: they are only dropped.
    pub history_summary_agent: Option<String>,
    /// Memory namespaces searched with the user's text before each turn
    /// (see [`crate::recall`]); empty: none.
    pub memory_search: Vec<crate::recall::RecallSearch>,
    /// The bound on the recalled paragraph, in characters.
    pub memory_max_chars: usize,
}

// === impl ModelAgentConfig ===

impl ModelAgentConfig {
    /// Default `max_tokens`.
    pub const DEFAULT_MAX_TOKENS: u64 = 1024;
    /// Default `max_tool_calls`.
    pub const DEFAULT_MAX_TOOL_CALLS: u32 = 8;
    /// Default turn timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A configuration with the required fields and documented defaults:
    /// no instructions, tools, skills or output schema; version `1.0.0`;
    /// [`Self::DEFAULT_MAX_TOKENS`], [`Self::DEFAULT_MAX_TOOL_CALLS`],
    /// [`Self::DEFAULT_TIMEOUT`]; the provider's temperature.
    pub fn new(
        name: impl Into<String>,
        org: impl Into<String>,
        provider: ProviderKind,
        model: impl Into<String>,
        base_url: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        let name = name.into();
        Self {
            description: format!("Model agent {name}"),
            name,
            org: org.into(),
            version: "1.0.0".into(),
            skills: Vec::new(),
            provider,
            model: model.into(),
            base_url: base_url.into(),
            api_key: api_key.into(),
            instructions: None,
            tools: Vec::new(),
            output_schema: None,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            temperature: None,
            max_tool_calls: Self::DEFAULT_MAX_TOOL_CALLS,
            timeout: Self::DEFAULT_TIMEOUT,
            history_max_tokens: None,
            history_summary_agent: None,
            memory_search: Vec::new(),
            memory_max_chars: crate::recall::DEFAULT_RECALL_CHARS,
        }
    }
}

/// The A2A 1.0 card template of a model agent (everything but
/// `supportedInterfaces`, which the server fills in): name, description,
/// version, skills, streaming, and JSON output when it has an output schema.
pub fn card(config: &ModelAgentConfig) -> Value {
    let output_modes = if config.output_schema.is_some() {
        json!(["application/json"])
    } else {
        json!(["text/plain"])
    };
    let skills: Vec<Value> = if config.skills.is_empty() {
        vec![json!({
            "id": config.name,
            "name": config.name,
            "description": config.description,
            "tags": ["model", config.provider.name()],
        })]
    } else {
        config
            .skills
            .iter()
            .map(|skill| {
                let mut value = json!({
                    "id": skill.id,
                    "name": skill.name,
                    "description": skill.description,
                    "tags": skill.tags,
                });
                if !skill.examples.is_empty() {
                    value["examples"] = json!(skill.examples);
                }
                value
            })
            .collect()
    };
    json!({
        "name": config.name,
        "description": config.description,
        "version": config.version,
        "capabilities": {"streaming": true, "pushNotifications": false, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": output_modes,
        "skills": skills,
    })
}
