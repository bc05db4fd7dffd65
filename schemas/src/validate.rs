//! Runtime JSON Schema validation with the `jsonschema` crate. Schemas are
//! the files under `schemas/json/`, compiled once on first use.

use std::sync::OnceLock;

use serde_json::Value;

use crate::problem::echo;
use crate::Violation;

/// The schemas Convergio validates against at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaId {
    /// A2A 1.0 AgentCard (`agent-card.schema.json`).
    AgentCard,
    /// The design document's envelope (`envelope.schema.json`).
    Envelope,
    /// An orchestrator graph document (`graph.schema.json`).
    Graph,
    /// A model agent declaration (`model-agent.schema.json`, issue 17).
    ModelAgent,
    /// A plan document (`plan.schema.json`, issue 19).
    Plan,
}

// === impl SchemaId ===

impl SchemaId {
    /// Every schema.
    pub const ALL: [SchemaId; 5] = [
        Self::AgentCard,
        Self::Envelope,
        Self::Graph,
        Self::ModelAgent,
        Self::Plan,
    ];

    /// The schema's file name under `schemas/json/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::AgentCard => "agent-card.schema.json",
            Self::Envelope => "envelope.schema.json",
            Self::Graph => "graph.schema.json",
            Self::ModelAgent => "model-agent.schema.json",
            Self::Plan => "plan.schema.json",
        }
    }

    /// The schema document's text.
    pub fn text(self) -> &'static str {
        match self {
            Self::AgentCard => include_str!("../json/agent-card.schema.json"),
            Self::Envelope => include_str!("../json/envelope.schema.json"),
            Self::Graph => include_str!("../json/graph.schema.json"),
            Self::ModelAgent => include_str!("../json/model-agent.schema.json"),
            Self::Plan => include_str!("../json/plan.schema.json"),
        }
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static CARD: OnceLock<jsonschema::Validator> = OnceLock::new();
        static ENVELOPE: OnceLock<jsonschema::Validator> = OnceLock::new();
        static GRAPH: OnceLock<jsonschema::Validator> = OnceLock::new();
        static MODEL_AGENT: OnceLock<jsonschema::Validator> = OnceLock::new();
        static PLAN: OnceLock<jsonschema::Validator> = OnceLock::new();
        let cell = match self {
            Self::AgentCard => &CARD,
            Self::Envelope => &ENVELOPE,
            Self::Graph => &GRAPH,
            Self::ModelAgent => &MODEL_AGENT,
            Self::Plan => &PLAN,
        };
        cell.get_or_init(|| {
            let schema: Value = serde_json::from_str(self.text())
                .expect("schemas shipped in the crate are valid JSON (tested)");
            jsonschema::validator_for(&schema)
                .expect("schemas shipped in the crate compile (tested)")
        })
    }
}

/// Validates `instance`, returning every violation with its JSON pointer.
pub fn validate(schema: SchemaId, instance: &Value) -> Result<(), Vec<Violation>> {
    let violations: Vec<Violation> = schema
        .validator()
        .iter_errors(instance)
        .map(|error| Violation {
            pointer: error.instance_path().to_string(),
            message: quoted_briefly(&error),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// The JSON pointer of the first string (value or key) in `value` that holds
/// a NUL character, if any. Text with NUL is refused at the edge, the same
/// for every backend (PostgreSQL cannot store it; issue 15).
pub fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, pointer: &mut String) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
                let length = pointer.len();
                pointer.push_str(&format!("/{index}"));
                let found = walk(item, pointer);
                if !found {
                    pointer.truncate(length);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let length = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let found = key.contains('\0') || walk(item, pointer);
                if !found {
                    pointer.truncate(length);
                }
                found
            }),
            _ => false,
        }
    }
    let mut pointer = String::new();
    walk(value, &mut pointer).then_some(pointer)
}

/// The message for text refused because it holds a NUL character.
pub const NUL_MESSAGE: &str = "text must not contain the NUL character (U+0000)";

/// The validator's message with the offending value quoted through
/// [`echo`]: its messages quote the whole instance (a 250 KB string field
/// made a 250 KB error).
fn quoted_briefly(error: &jsonschema::ValidationError<'_>) -> String {
    let message = error.to_string();
    let instance = error.instance().to_string();
    if instance.chars().count() <= crate::problem::ECHO_LIMIT {
        return message;
    }
    message.replacen(&instance, &echo(&instance), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_shipped_schema_compiles() {
        for schema in SchemaId::ALL {
            // Forces compilation; a broken schema panics here, not in production.
            let _ = validate(schema, &json!({}));
        }
    }

    #[test]
    fn reports_each_violation_with_its_pointer() {
        let card = json!({
            "name": "x",
            "description": "d",
            "version": "1",
            "capabilities": {},
            "supportedInterfaces": [{"url": "http://127.0.0.1:1", "protocolBinding": "JSONRPC", "protocolVersion": "one"}],
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": [],
            "skills": [{"id": "s", "name": "s", "description": "d", "tags": []}]
        });
        let violations = validate(SchemaId::AgentCard, &card).expect_err("invalid card");
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert!(
            pointers.contains(&"/supportedInterfaces/0/protocolVersion"),
            "{pointers:?}"
        );
        assert!(pointers.contains(&"/defaultOutputModes"), "{pointers:?}");
        assert!(pointers.contains(&"/skills/0/tags"), "{pointers:?}");
    }

    #[test]
    fn find_nul_points_at_the_first_string_holding_nul() {
        assert_eq!(
            find_nul(&json!({"a": ["x", "y\u{0}"]})),
            Some("/a/1".to_owned())
        );
        assert_eq!(
            find_nul(&json!({"a/b": {"c\u{0}": 1}})),
            Some("/a~1b/c\u{0}".to_owned())
        );
        assert_eq!(find_nul(&json!({"a": ["x", 1, null]})), None);
    }

    // Regression: issue #15, defect 12
    #[test]
    fn violation_quotes_a_long_value_briefly() {
        let card = json!({"name": "n".repeat(250_000)});
        let violations = validate(SchemaId::AgentCard, &card).expect_err("invalid card");
        for violation in violations {
            assert!(
                violation.message.len() < 2_000,
                "{}",
                violation.message.len()
            );
        }
    }
}
