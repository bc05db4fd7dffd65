//! Runtime JSON Schema validation with the `jsonschema` crate. Schemas are
//! the files under `schemas/json/`, compiled once on first use.

use std::sync::OnceLock;

use serde_json::Value;

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
}

// === impl SchemaId ===

impl SchemaId {
    /// Every schema.
    pub const ALL: [SchemaId; 3] = [Self::AgentCard, Self::Envelope, Self::Graph];

    /// The schema's file name under `schemas/json/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::AgentCard => "agent-card.schema.json",
            Self::Envelope => "envelope.schema.json",
            Self::Graph => "graph.schema.json",
        }
    }

    /// The schema document's text.
    pub fn text(self) -> &'static str {
        match self {
            Self::AgentCard => include_str!("../json/agent-card.schema.json"),
            Self::Envelope => include_str!("../json/envelope.schema.json"),
            Self::Graph => include_str!("../json/graph.schema.json"),
        }
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static CARD: OnceLock<jsonschema::Validator> = OnceLock::new();
        static ENVELOPE: OnceLock<jsonschema::Validator> = OnceLock::new();
        static GRAPH: OnceLock<jsonschema::Validator> = OnceLock::new();
        let cell = match self {
            Self::AgentCard => &CARD,
            Self::Envelope => &ENVELOPE,
            Self::Graph => &GRAPH,
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
            message: error.to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
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
}
