//! Model agent declarations (issue 17): `kind: ModelAgent` documents,
//! described by `json/model-agent.schema.json`, parsed into a typed
//! [`ModelAgentSpec`] and checked once, every failure a [`Violation`] with
//! its JSON pointer into the document.
//!
//! Checking runs in two steps: the JSON Schema (shape, bounds, the key
//! reference grammar), then the rules a schema cannot say (the name rule of
//! every agent name, an `output_schema` that compiles). A document that
//! passes both is what the store keeps and what `serve` runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::check_name;
use crate::validate::{find_nul, validate, SchemaId, NUL_MESSAGE};
use crate::Violation;

/// The `apiVersion` every declaration carries.
pub const API_VERSION: &str = "convergio/v1";
/// The `kind` of a model agent declaration.
pub const KIND: &str = "ModelAgent";

/// Which wire protocol the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible chat completions API (OpenAI, llama.cpp,
    /// Ollama, vLLM, LM Studio).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

// === impl ProviderKind ===

impl ProviderKind {
    /// `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// The provider's public API, used when a declaration names no `base_url`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Openai => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a model agent's key comes from: `env:NAME | file:PATH |
/// secret:NAME | caller`. The reference is what logs and errors name; the
/// key itself never is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyReference {
    /// An environment variable of the server.
    Env(String),
    /// A file on the server (its content, trimmed).
    File(String),
    /// A secret of the organisation that owns the agent (`/v1/secrets`).
    Secret(String),
    /// The caller organisation's secret named after the provider
    /// (`openai`, `anthropic`): the caller brings its own key.
    Caller,
}

/// Why text is not a key reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key reference is env:NAME, file:PATH, secret:NAME or caller, not {}", crate::problem::echo(.input))]
pub struct KeyReferenceError {
    /// The rejected text.
    pub input: String,
}

// === impl KeyReference ===

impl KeyReference {
    /// The secret's name for `secret:NAME`, or the provider's for `caller`.
    pub fn secret_name(&self, provider: ProviderKind) -> Option<&str> {
        match self {
            Self::Secret(name) => Some(name),
            Self::Caller => Some(provider.as_str()),
            Self::Env(_) | Self::File(_) => None,
        }
    }
}

impl fmt::Display for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{path}"),
            Self::Secret(name) => write!(f, "secret:{name}"),
            Self::Caller => f.write_str("caller"),
        }
    }
}

impl FromStr for KeyReference {
    type Err = KeyReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let refused = || KeyReferenceError {
            input: input.to_owned(),
        };
        if input == "caller" {
            return Ok(Self::Caller);
        }
        let (scheme, rest) = input.split_once(':').ok_or_else(refused)?;
        match scheme {
            "env" if is_env_name(rest) => Ok(Self::Env(rest.to_owned())),
            "file" if !rest.is_empty() => Ok(Self::File(rest.to_owned())),
            "secret" if check_secret_name(rest).is_ok() => Ok(Self::Secret(rest.to_owned())),
            _ => Err(refused()),
        }
    }
}

impl Serialize for KeyReference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyReference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a secret's name: the agent name rule (1 to 100 of
/// `[A-Za-z0-9_.-]`, not starting with a dot), so it is one plain path
/// segment of `/v1/secrets/{name}`.
pub fn check_secret_name(name: &str) -> Result<(), crate::AgentIdError> {
    check_name(name)
}

/// One skill of the generated agent card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillSpec {
    /// The skill's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One memory namespace a model agent searches before it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySearchSpec {
    /// The vector namespace (the agent's own, or its organisation's shared
    /// knowledge when policy lets the agent read it); the JSON Schema holds
    /// it to the namespace name rule.
    pub namespace: String,
    /// Hits wanted (1–20, default [`MemorySearchSpec::DEFAULT_TOP_K`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
}

// === impl MemorySearchSpec ===

impl MemorySearchSpec {
    /// Hits wanted when `top_k` is not given.
    pub const DEFAULT_TOP_K: u32 = 5;

    /// The hits wanted.
    pub fn top_k(&self) -> u32 {
        self.top_k.unwrap_or(Self::DEFAULT_TOP_K)
    }
}

/// A model agent's memory (issue 20): what it recalls before each turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelMemorySpec {
    /// Vector namespaces searched with the user's text, as the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<MemorySearchSpec>,
    /// The bound on what is recalled, in characters (default 4,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u32>,
}

/// A checked model agent declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAgentSpec {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// The agent's name (`/agents/{name}`).
    pub name: String,
    /// What the agent does (the card's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The provider's protocol.
    pub provider: ProviderKind,
    /// The model name the provider knows.
    pub model: String,
    /// The provider's base URL; `None` is the provider's public API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Where the key comes from; `None` sends no key (local servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<KeyReference>,
    /// The system instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The card's skills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<SkillSpec>,
    /// Agents this one may call as tools, through the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// A JSON Schema the answer must validate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// The most tokens one model call may produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The most tool calls one task may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u32>,
    /// The whole call's bound, in seconds (capped by the server's maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The conversation window: the most tokens of a context's earlier
    /// turns sent with each call (oldest whole turns dropped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_max_tokens: Option<u32>,
    /// An agent (by name) that summarises the earlier turns the window
    /// leaves out; its summary goes with the call (needs
    /// `history_max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_summary_agent: Option<String>,
    /// Memory searched before each turn (issue 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ModelMemorySpec>,
}

/// Why a document is not a valid model agent declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model agent declaration is invalid: {}", summary(.violations))]
pub struct ModelAgentError {
    /// Every violation, with its JSON pointer into the document.
    pub violations: Vec<Violation>,
}

fn summary(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|violation| {
            let pointer = if violation.pointer.is_empty() {
                "/"
            } else {
                violation.pointer.as_str()
            };
            format!("{pointer}: {}", violation.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// === impl ModelAgentSpec ===

impl ModelAgentSpec {
    /// Checks `document` (JSON, or YAML turned into JSON) and returns the
    /// typed declaration, or every violation found.
    pub fn from_value(document: &Value) -> Result<Self, ModelAgentError> {
        let invalid = |pointer: &str, message: String| ModelAgentError {
            violations: vec![Violation {
                pointer: pointer.to_owned(),
                message,
            }],
        };
        if let Some(pointer) = find_nul(document) {
            return Err(invalid(&pointer, NUL_MESSAGE.to_owned()));
        }
        validate(SchemaId::ModelAgent, document)
            .map_err(|violations| ModelAgentError { violations })?;
        let spec: Self = serde_json::from_value(document.clone())
            .map_err(|error| invalid("", error.to_string()))?;
        let mut violations = Vec::new();
        if let Err(error) = check_name(&spec.name) {
            violations.push(Violation {
                pointer: "/name".to_owned(),
                message: error.to_string(),
            });
        }
        for (index, tool) in spec.tools.iter().enumerate() {
            if let Err(error) = check_name(tool) {
                violations.push(Violation {
                    pointer: format!("/tools/{index}"),
                    message: error.to_string(),
                });
            }
            if *tool == spec.name {
                violations.push(Violation {
                    pointer: format!("/tools/{index}"),
                    message: "an agent may not list itself as a tool".to_owned(),
                });
            }
        }
        if let Some(summariser) = &spec.history_summary_agent {
            if let Err(error) = check_name(summariser) {
                violations.push(Violation {
                    pointer: "/history_summary_agent".to_owned(),
                    message: error.to_string(),
                });
            }
            if *summariser == spec.name {
                violations.push(Violation {
                    pointer: "/history_summary_agent".to_owned(),
                    message: "an agent may not summarise its own conversations".to_owned(),
                });
            }
            if spec.history_max_tokens.is_none() {
                violations.push(Violation {
                    pointer: "/history_summary_agent".to_owned(),
                    message: "a summary agent needs history_max_tokens (nothing falls out of an unbounded window)".to_owned(),
                });
            }
        }
        if let Some(schema) = &spec.output_schema {
            if let Err(error) = jsonschema::validator_for(schema) {
                violations.push(Violation {
                    pointer: format!("/output_schema{}", error.instance_path()),
                    message: format!("not a usable JSON Schema: {error}"),
                });
            }
        }
        if violations.is_empty() {
            Ok(spec)
        } else {
            Err(ModelAgentError { violations })
        }
    }

    /// The declaration as the document the store keeps.
    pub fn to_value(&self) -> Value {
        // Strings, numbers, lists and a JSON value: serialising cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The base URL to call: the declared one, else the provider's.
    pub fn effective_base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or_else(|| self.provider.default_base_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "apiVersion": "convergio/v1",
            "kind": "ModelAgent",
            "name": "summarizer",
            "provider": "openai",
            "model": "gpt-4o-mini"
        })
    }

    fn pointers(document: &Value) -> Vec<String> {
        ModelAgentSpec::from_value(document)
            .expect_err("invalid")
            .violations
            .into_iter()
            .map(|violation| violation.pointer)
            .collect()
    }

    #[test]
    fn parses_the_issue_example_and_round_trips() {
        let document = json!({
            "apiVersion": "convergio/v1",
            "kind": "ModelAgent",
            "name": "summarizer",
            "description": "Summarises a document in five bullet points",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": "https://api.openai.com/v1",
            "api_key": "env:OPENAI_API_KEY",
            "instructions": "You summarise the user's text in five bullet points.\n",
            "skills": [{"id": "summarize", "name": "Summarize", "description": "Five-bullet summary", "tags": ["text"]}],
            "tools": ["weather"],
            "output_schema": {"type": "object"},
            "max_tokens": 1024,
            "temperature": 0.2,
            "memory": {"search": [{"namespace": "summarizer-notes", "top_k": 3}], "max_chars": 2000}
        });
        let spec = ModelAgentSpec::from_value(&document).expect("valid");
        assert_eq!(
            spec.api_key,
            Some(KeyReference::Env("OPENAI_API_KEY".to_owned()))
        );
        assert_eq!(spec.tools, vec!["weather".to_owned()]);
        let memory = spec.memory.clone().expect("memory");
        assert_eq!(memory.search[0].namespace, "summarizer-notes");
        assert_eq!(memory.search[0].top_k(), 3);
        assert_eq!(spec.to_value(), document);
        let minimal = ModelAgentSpec::from_value(&minimal()).expect("valid");
        assert_eq!(minimal.effective_base_url(), "https://api.openai.com/v1");
    }

    #[test]
    fn key_references_follow_the_grammar() {
        for (text, expected) in [
            (
                "env:OPENAI_API_KEY",
                Some(KeyReference::Env("OPENAI_API_KEY".into())),
            ),
            (
                "file:/run/keys/openai",
                Some(KeyReference::File("/run/keys/openai".into())),
            ),
            (
                "secret:openai-prod",
                Some(KeyReference::Secret("openai-prod".into())),
            ),
            ("caller", Some(KeyReference::Caller)),
            ("env:1BAD", None),
            ("env:", None),
            ("file:", None),
            ("secret:../x", None),
            ("secret:.hidden", None),
            ("sk-live-123", None),
            ("Caller", None),
        ] {
            let parsed = text.parse::<KeyReference>().ok();
            assert_eq!(parsed, expected, "{text:?}");
            if let Some(reference) = parsed {
                assert_eq!(reference.to_string(), text);
            }
        }
        assert_eq!(
            KeyReference::Caller.secret_name(ProviderKind::Anthropic),
            Some("anthropic")
        );
    }

    #[test]
    fn reports_violations_with_json_pointers() {
        let mut document = minimal();
        document["name"] = json!("..");
        document["provider"] = json!("gemini");
        document["api_key"] = json!("sk-plain-key");
        document["temperature"] = json!(7);
        document["skills"] = json!([{"id": "s"}]);
        document["extra"] = json!(1);
        document["memory"] = json!({"search": [{"namespace": "ok"}, {"namespace": ".hidden"}]});
        let found = pointers(&document);
        for pointer in [
            "/name",
            "/provider",
            "/api_key",
            "/temperature",
            "/skills/0",
            "/memory/search/1/namespace",
            "",
        ] {
            assert!(
                found.iter().any(|found| found == pointer),
                "{pointer} in {found:?}"
            );
        }
    }

    #[test]
    fn checks_what_the_schema_cannot_say() {
        let mut document = minimal();
        document["tools"] = json!(["weather", "summarizer"]);
        document["output_schema"] = json!({"type": 12});
        let found = pointers(&document);
        assert!(found.contains(&"/tools/1".to_owned()), "{found:?}");
        assert!(
            found
                .iter()
                .any(|pointer| pointer.starts_with("/output_schema")),
            "{found:?}"
        );
        let mut document = minimal();
        document["instructions"] = json!("a\u{0}b");
        assert_eq!(pointers(&document), vec!["/instructions".to_owned()]);
        let mut document = minimal();
        document["kind"] = json!("Agent");
        assert_eq!(pointers(&document), vec!["/kind".to_owned()]);
        // A summary agent needs a window to summarise what falls out of.
        let mut document = minimal();
        document["history_summary_agent"] = json!("summariser");
        assert_eq!(
            pointers(&document),
            vec!["/history_summary_agent".to_owned()]
        );
        document["history_max_tokens"] = json!(2000);
        assert!(ModelAgentSpec::from_value(&document).is_ok());
    }

    #[test]
    fn the_error_message_names_each_pointer() {
        let mut document = minimal();
        document["name"] = json!("a/b");
        let error = ModelAgentSpec::from_value(&document).expect_err("invalid");
        assert!(error.to_string().contains("/name"), "{error}");
    }
}
