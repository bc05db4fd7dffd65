//! The A2A 1.0 AgentCard as a typed view (ProtoJSON camelCase field names, as
//! in `a2a.proto`). Unknown fields are kept in `other` so a card survives a
//! round trip through Convergio unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An A2A 1.0 agent card. Validate the JSON with
/// [`crate::validate`]`(SchemaId::AgentCard, …)` before trusting its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// Human-readable name.
    pub name: String,
    /// What the agent does.
    pub description: String,
    /// Where and how the agent is reached; the first entry is preferred.
    #[serde(default)]
    pub supported_interfaces: Vec<AgentInterface>,
    /// The organisation that provides the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgentProvider>,
    /// The agent's own version string.
    pub version: String,
    /// Optional protocol features.
    #[serde(default)]
    pub capabilities: AgentCapabilities,
    /// Media types accepted across skills.
    #[serde(default)]
    pub default_input_modes: Vec<String>,
    /// Media types produced across skills.
    #[serde(default)]
    pub default_output_modes: Vec<String>,
    /// What the agent can do.
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    /// Every other field (signatures, security schemes, future fields).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One way to reach an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    /// The endpoint URL.
    pub url: String,
    /// `JSONRPC`, `GRPC`, `HTTP+JSON` or a URI.
    pub protocol_binding: String,
    /// Opaque tenant routing string, copied into every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `"1.0"` or `"0.3"`.
    pub protocol_version: String,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The provider of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentProvider {
    /// The provider's website.
    pub url: String,
    /// The provider's organisation name.
    pub organization: String,
}

/// Optional features an agent supports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// Server-sent event streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Push notifications to webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notifications: Option<bool>,
    /// An authenticated extended card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_agent_card: Option<bool>,
    /// Unknown fields (extensions list), kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One skill of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    /// Unique id within the card.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What the skill does.
    pub description: String,
    /// Keywords.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Example prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Input media types, overriding the card's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modes: Vec<String>,
    /// Output media types, overriding the card's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_modes: Vec<String>,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

// === impl AgentCard ===

impl AgentCard {
    /// Input modes the agent accepts anywhere: the defaults plus every skill's.
    pub fn all_input_modes(&self) -> impl Iterator<Item = &str> {
        self.default_input_modes
            .iter()
            .chain(
                self.skills
                    .iter()
                    .flat_map(|skill| skill.input_modes.iter()),
            )
            .map(String::as_str)
    }

    /// Output modes the agent produces anywhere: the defaults plus every skill's.
    pub fn all_output_modes(&self) -> impl Iterator<Item = &str> {
        self.default_output_modes
            .iter()
            .chain(
                self.skills
                    .iter()
                    .flat_map(|skill| skill.output_modes.iter()),
            )
            .map(String::as_str)
    }

    /// Whether the agent says it streams.
    pub fn streams(&self) -> bool {
        self.capabilities.streaming.unwrap_or(false)
    }
}
