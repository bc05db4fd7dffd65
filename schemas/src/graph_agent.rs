//! A stored graph published as an A2A agent (issue 18): the publication
//! document `PUT /v1/graph-agents/{name}` takes and shows.
//!
//! ```json
//! {"graph": "review", "description": "Reviews a change", "tags": ["external"]}
//! ```
//!
//! `graph` names a stored graph of the publishing organisation (its latest
//! version at each call, or `graph_version`); `description` and `tags` go
//! into the generated card's skill (tag `external` opts the agent in for
//! other organisations under the shipped policies).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::AgentId;
use crate::{find_nul, Violation, NUL_MESSAGE};

/// Most tags a publication carries.
pub const MAX_TAGS: usize = 16;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// A checked publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphAgentSpec {
    /// The stored graph's name (of the publishing organisation).
    pub graph: String,
    /// A fixed version of it; the latest at each call when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<u32>,
    /// The card's description; the graph's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The skill's tags (besides `graph`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Why a publication was refused: every violation, with its pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid graph agent publication: {} violation(s)", violations.len())]
pub struct GraphAgentError {
    /// Each violation.
    pub violations: Vec<Violation>,
}

// === impl GraphAgentSpec ===

impl GraphAgentSpec {
    /// Checks `document` and returns the typed publication, or every
    /// violation found.
    pub fn from_value(document: &Value) -> Result<Self, GraphAgentError> {
        let invalid = |pointer: &str, message: String| Violation {
            pointer: pointer.to_owned(),
            message,
        };
        if let Some(pointer) = find_nul(document) {
            return Err(GraphAgentError {
                violations: vec![invalid(&pointer, NUL_MESSAGE.to_owned())],
            });
        }
        let spec: Self =
            serde_json::from_value(document.clone()).map_err(|error| GraphAgentError {
                violations: vec![invalid("", error.to_string())],
            })?;
        let mut violations = Vec::new();
        if spec.graph.trim().is_empty() || spec.graph.chars().count() > 256 {
            violations.push(invalid(
                "/graph",
                "a stored graph's name, 1 to 256 characters".to_owned(),
            ));
        }
        if spec
            .description
            .as_ref()
            .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            violations.push(invalid(
                "/description",
                format!("at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if spec.tags.len() > MAX_TAGS {
            violations.push(invalid("/tags", format!("at most {MAX_TAGS} tags")));
        }
        for (index, tag) in spec.tags.iter().enumerate() {
            if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
                violations.push(invalid(
                    &format!("/tags/{index}"),
                    format!("1 to {MAX_TAG_CHARS} characters"),
                ));
            }
        }
        if violations.is_empty() {
            Ok(spec)
        } else {
            Err(GraphAgentError { violations })
        }
    }

    /// The document as stored and shown.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Checks a graph agent's name: the rules of every agent's name.
pub fn check_agent_name(name: &str) -> Result<(), Violation> {
    AgentId::internal(name)
        .map(|_| ())
        .map_err(|error| Violation {
            pointer: String::new(),
            message: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_every_field_and_names_each_violation() {
        let spec = GraphAgentSpec::from_value(&json!({"graph": "review", "tags": ["external"]}))
            .expect("valid");
        assert_eq!(spec.graph, "review");
        assert_eq!(
            spec.to_value(),
            json!({"graph": "review", "tags": ["external"]})
        );
        let refused = |document: Value, pointer: &str| {
            let error = GraphAgentSpec::from_value(&document).expect_err("refused");
            assert!(
                error.violations.iter().any(|v| v.pointer == pointer),
                "{document}: {error:?}"
            );
        };
        refused(json!({"graph": ""}), "/graph");
        refused(json!({"graph": "g", "tags": [""]}), "/tags/0");
        refused(json!({"graph": "g", "unknown": 1}), "");
        refused(json!({"tags": []}), "");
        refused(json!({"graph": "g\u{0}"}), "/graph");
        assert!(check_agent_name("summarise").is_ok());
        assert!(check_agent_name("no/slash").is_err());
    }
}
