//! A namespace's declaration: its kind, retention, and for vector memory
//! its chunking and embedding provider; for structured memory its JSON
//! Schema; and its scope: the organisation's shared knowledge (`global`)
//! or one agent's own memory (`{"agent": NAME}`). [`NamespaceSpec::check`]
//! is the one place a declaration is judged, so the API, the CLI and stored
//! rows read back agree.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{MemoryError, Result};

/// The longest namespace name or item key, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// The largest chunk a namespace may ask for, in characters.
pub const MAX_CHUNK_CHARS: usize = 8_192;
/// The default largest item (a structured record or a vector document), in bytes.
pub const DEFAULT_MAX_ITEM_BYTES: usize = 256 * 1024;

/// What a namespace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceKind {
    /// JSON records checked against the namespace's schema.
    #[default]
    Structured,
    /// Text documents, chunked and embedded, searched by similarity.
    Vector,
}

// === impl NamespaceKind ===

impl NamespaceKind {
    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Structured => "structured",
            Self::Vector => "vector",
        }
    }
}

/// Whose memory a namespace is: its organisation's shared knowledge, or
/// one agent's own (an agent of the same organisation). On the wire
/// `"global"` or `{"agent": "NAME"}`; absent means global.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceScope {
    /// The organisation's shared knowledge: its members (and, under the
    /// example policies, its agents for reading) use it.
    #[default]
    Global,
    /// The memory of the agent named here (`/agents/{name}`).
    Agent(String),
}

// === impl NamespaceScope ===

impl NamespaceScope {
    /// Whether this is the organisation's shared knowledge.
    pub fn is_global(&self) -> bool {
        matches!(self, Self::Global)
    }

    /// The agent whose memory this is, if any.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Self::Global => None,
            Self::Agent(name) => Some(name),
        }
    }
}

/// How long items live and how many a namespace holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Seconds an item lives after its last write; `None`: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Items the namespace holds at most; a write past it is refused
    /// (`409`), never evicting silently. `None`: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
    /// The largest item in bytes (default 256 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_item_bytes: Option<usize>,
}

/// How documents are cut into chunks, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunking {
    /// Characters per chunk.
    pub size: usize,
    /// Characters each chunk repeats from the one before.
    #[serde(default)]
    pub overlap: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Self {
            size: 1_000,
            overlap: 100,
        }
    }
}

/// Where a vector namespace's embeddings come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbeddingSpec {
    /// An OpenAI-compatible `POST {base_url}/embeddings`, with the
    /// organisation's own key (`api_key: secret:NAME`, from `/v1/secrets`).
    Openai {
        /// The API's base URL (`https://api.openai.com/v1`).
        base_url: String,
        /// The embedding model.
        model: String,
        /// The key's reference: `secret:NAME`.
        api_key: String,
        /// The vectors' dimensions.
        dimensions: usize,
    },
    /// A model run in-process (`convergio-memory`'s `local` module), named
    /// as the deployment configures it (`memory.local_models`); its
    /// dimensions are the model's own.
    Local {
        /// The configured model's name (`all-minilm-l6-v2`).
        model: String,
    },
}

// === impl EmbeddingSpec ===

impl EmbeddingSpec {
    /// The vectors' dimensions when the declaration states them (a local
    /// model's come from its files).
    pub fn dimensions(&self) -> Option<usize> {
        match self {
            Self::Openai { dimensions, .. } => Some(*dimensions),
            Self::Local { .. } => None,
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            Self::Openai {
                base_url,
                api_key,
                dimensions,
                model,
            } => {
                if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
                    return Err(MemoryError::invalid(
                        "embedding.base_url must be an http(s) URL",
                    ));
                }
                if model.is_empty() {
                    return Err(MemoryError::invalid("embedding.model must not be empty"));
                }
                if !api_key.starts_with("secret:") || api_key.len() <= "secret:".len() {
                    return Err(MemoryError::invalid(
                        "embedding.api_key must name a secret: secret:NAME",
                    ));
                }
                if *dimensions == 0 || *dimensions > 8_192 {
                    return Err(MemoryError::invalid(
                        "embedding.dimensions must be between 1 and 8192",
                    ));
                }
            }
            Self::Local { model } => check_name("embedding.model", model)?,
        }
        Ok(())
    }
}

/// A namespace's declaration, as created over the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    /// What it holds.
    pub kind: NamespaceKind,
    /// Whose memory it is (default: the organisation's shared knowledge).
    #[serde(default, skip_serializing_if = "NamespaceScope::is_global")]
    pub scope: NamespaceScope,
    /// Retention of its items.
    #[serde(default)]
    pub retention: Retention,
    /// Structured: the JSON Schema every record must satisfy (any JSON
    /// value when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Vector: how documents are chunked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking: Option<Chunking>,
    /// Vector: the embedding provider (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingSpec>,
}

// === impl NamespaceSpec ===

impl NamespaceSpec {
    /// Reads and checks a declaration.
    pub fn from_value(value: Value) -> Result<Self> {
        let spec: Self = serde_json::from_value(value)
            .map_err(|error| MemoryError::invalid(format!("namespace declaration: {error}")))?;
        spec.check()?;
        Ok(spec)
    }

    /// Whether the declaration is usable: a schema that compiles, fields
    /// that fit the kind, chunking with an overlap below the size.
    pub fn check(&self) -> Result<()> {
        if let Some(agent) = self.scope.agent() {
            convergio_schemas::ids::check_name(agent)
                .map_err(|error| MemoryError::invalid(format!("scope.agent: {error}")))?;
        }
        match self.kind {
            NamespaceKind::Structured => {
                if self.chunking.is_some() || self.embedding.is_some() {
                    return Err(MemoryError::invalid(
                        "a structured namespace takes no chunking or embedding",
                    ));
                }
                if let Some(schema) = &self.schema {
                    jsonschema::validator_for(schema).map_err(|error| {
                        MemoryError::invalid(format!("schema does not compile: {error}"))
                    })?;
                }
            }
            NamespaceKind::Vector => {
                if self.schema.is_some() {
                    return Err(MemoryError::invalid("a vector namespace takes no schema"));
                }
                let Some(embedding) = &self.embedding else {
                    return Err(MemoryError::invalid(
                        "a vector namespace needs an embedding provider",
                    ));
                };
                embedding.check()?;
                let chunking = self.chunking();
                if chunking.size == 0 || chunking.size > MAX_CHUNK_CHARS {
                    return Err(MemoryError::invalid(format!(
                        "chunking.size must be between 1 and {MAX_CHUNK_CHARS}"
                    )));
                }
                if chunking.overlap >= chunking.size {
                    return Err(MemoryError::invalid(
                        "chunking.overlap must be smaller than chunking.size",
                    ));
                }
            }
        }
        if self.retention.ttl_seconds == Some(0) || self.retention.max_items == Some(0) {
            return Err(MemoryError::invalid(
                "retention bounds must be positive when given",
            ));
        }
        Ok(())
    }

    /// The chunking in force (the default when none is declared).
    pub fn chunking(&self) -> Chunking {
        self.chunking.unwrap_or_default()
    }

    /// The largest item accepted, in bytes.
    pub fn max_item_bytes(&self) -> usize {
        self.retention
            .max_item_bytes
            .unwrap_or(DEFAULT_MAX_ITEM_BYTES)
    }
}

/// Checks a namespace name or an item key: 1–128 bytes of ASCII letters,
/// digits, `-`, `_`, `.` (so it is a URL path segment as it is).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let fits = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if fits {
        Ok(())
    } else {
        Err(MemoryError::invalid(format!(
            "{what} must be 1-{MAX_NAME_BYTES} ASCII letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_scope_is_global_by_default_or_names_an_agent() {
        for (document, expected) in [
            (json!({"kind": "structured"}), NamespaceScope::Global),
            (
                json!({"kind": "structured", "scope": "global"}),
                NamespaceScope::Global,
            ),
            (
                json!({"kind": "structured", "scope": {"agent": "writer"}}),
                NamespaceScope::Agent("writer".to_owned()),
            ),
        ] {
            let spec = NamespaceSpec::from_value(document.clone()).expect("valid");
            assert_eq!(spec.scope, expected, "{document}");
            let again = NamespaceSpec::from_value(serde_json::to_value(&spec).expect("json"))
                .expect("round trip");
            assert_eq!(again, spec);
        }
        // A global namespace's stored declaration is what it was before
        // scopes existed.
        let spec = NamespaceSpec::from_value(json!({"kind": "structured", "scope": "global"}))
            .expect("valid");
        assert_eq!(
            serde_json::to_value(&spec).expect("json"),
            json!({"kind": "structured", "retention": {}})
        );
        for bad in [
            json!({"kind": "structured", "scope": {"agent": "../x"}}),
            json!({"kind": "structured", "scope": {"agent": ""}}),
            json!({"kind": "structured", "scope": "agent"}),
            json!({"kind": "structured", "scope": {"org": "x"}}),
        ] {
            assert!(NamespaceSpec::from_value(bad.clone()).is_err(), "{bad}");
        }
    }
}
