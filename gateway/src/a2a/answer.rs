//! A unary 1.0 result on its way to the client (issue #25): built as a
//! document, or the upstream's own bytes passed through.
//!
//! A 1.0 agent's result (JSON-RPC or HTTP+JSON) that no guardrail will see
//! reaches a 1.0 JSON-RPC or HTTP+JSON client as the bytes the agent sent:
//! the gateway reads only the fields it acts on (task and context ids,
//! usage metadata) into a small [`Answer::facts`] document and never builds
//! the whole result. A consumer that needs the whole document (0.3 translation, gRPC,
//! envelopes, stored outcomes, shared timings) asks [`Answer::into_value`].

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::GatewayError;

/// A unary 1.0 result.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A document the gateway built or changed.
    Built(Value),
    /// An upstream's result, as it sent it.
    Passed(Passed),
}

/// An upstream result passed through as bytes, with the facts read from it.
#[derive(Debug)]
pub(crate) struct Passed {
    result: Box<RawValue>,
    facts: Value,
}

/// The fields of a JSON-RPC response the pass-through reads; an `error`
/// (or no result) is decoded the ordinary way.
#[derive(Deserialize)]
struct Envelope {
    result: Option<Box<RawValue>>,
    error: Option<serde::de::IgnoredAny>,
}

/// The fields of a result the gateway acts on: `task` or `message`, each
/// read by [`Side`]; every other field is skipped without being built.
#[derive(Deserialize)]
struct Facts {
    task: Option<Side>,
    message: Option<Side>,
}

/// A task's or message's ids and usage metadata.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Side {
    id: Option<Value>,
    task_id: Option<Value>,
    context_id: Option<Value>,
    metadata: Option<Value>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    message: Option<StatusMessage>,
}

#[derive(Deserialize)]
struct StatusMessage {
    metadata: Option<Value>,
}

// === impl Answer ===

impl Answer {
    /// A JSON-RPC response body's result, passed through; `None` when the
    /// body is anything else (an error, no result, a result that is not a
    /// task or message object, invalid JSON): the caller decodes it as
    /// before, with its errors.
    pub(crate) fn pass_jsonrpc(body: &[u8]) -> Option<Self> {
        let envelope: Envelope = serde_json::from_slice(body).ok()?;
        if envelope.error.is_some() {
            return None;
        }
        Self::passed(envelope.result?)
    }

    /// An HTTP+JSON success body, passed through; `None` when it is not a
    /// task or message object (the caller decodes it as before).
    pub(crate) fn pass_result(body: &[u8]) -> Option<Self> {
        Self::passed(serde_json::from_slice(body).ok()?)
    }

    fn passed(result: Box<RawValue>) -> Option<Self> {
        let facts: Facts = serde_json::from_str(result.get()).ok()?;
        Some(Self::Passed(Passed {
            facts: facts.into_value(),
            result,
        }))
    }

    /// What the gateway reads of the result (ids, usage): the whole
    /// document when it was built, else the fields read from the bytes, in
    /// the result's own shape.
    pub(crate) fn facts(&self) -> &Value {
        match self {
            Self::Built(value) => value,
            Self::Passed(passed) => &passed.facts,
        }
    }

    /// The upstream's bytes of a passed-through result.
    pub(crate) fn raw(&self) -> Option<&RawValue> {
        match self {
            Self::Built(_) => None,
            Self::Passed(passed) => Some(&passed.result),
        }
    }

    /// The whole document.
    pub(crate) fn into_value(self) -> Result<Value, GatewayError> {
        match self {
            Self::Built(value) => Ok(value),
            // Parsed once already: only a broken invariant fails here.
            Self::Passed(passed) => serde_json::from_str(passed.result.get())
                .map_err(|error| GatewayError::internal("re-reading a passed result", error)),
        }
    }
}

impl From<Value> for Answer {
    fn from(value: Value) -> Self {
        Self::Built(value)
    }
}

// === impl Facts ===

impl Facts {
    fn into_value(self) -> Value {
        let mut facts = Map::new();
        for (key, side) in [("task", self.task), ("message", self.message)] {
            if let Some(side) = side {
                facts.insert(key.to_owned(), side.into_value());
            }
        }
        Value::Object(facts)
    }
}

impl Side {
    fn into_value(self) -> Value {
        let mut side = Map::new();
        let fields = [
            ("id", self.id),
            ("taskId", self.task_id),
            ("contextId", self.context_id),
            ("metadata", self.metadata),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                side.insert(key.to_owned(), value);
            }
        }
        let status_metadata = self
            .status
            .and_then(|status| status.message)
            .and_then(|message| message.metadata);
        if let Some(metadata) = status_metadata {
            side.insert(
                "status".to_owned(),
                serde_json::json!({"message": {"metadata": metadata}}),
            );
        }
        Value::Object(side)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_task_result_passes_as_its_bytes_with_its_ids_and_usage_read() {
        let body = br#"{"jsonrpc":"2.0","id":"r1","result":{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED","message":{"role":"ROLE_AGENT","parts":[{"text":"hi"}],"metadata":{"usage":{"tokens_in":3}}}},"artifacts":[{"artifactId":"a","parts":[{"text":"x"}]}],"metadata":{"k":1}}}}"#;
        let answer = Answer::pass_jsonrpc(body).expect("passes");
        assert_eq!(
            answer.raw().map(RawValue::get),
            Some(
                r#"{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED","message":{"role":"ROLE_AGENT","parts":[{"text":"hi"}],"metadata":{"usage":{"tokens_in":3}}}},"artifacts":[{"artifactId":"a","parts":[{"text":"x"}]}],"metadata":{"k":1}}}"#
            )
        );
        assert_eq!(
            answer.facts(),
            &json!({"task": {"id": "t1", "contextId": "c1", "metadata": {"k": 1},
                "status": {"message": {"metadata": {"usage": {"tokens_in": 3}}}}}})
        );
        let whole = answer.into_value().expect("whole");
        assert_eq!(whole["task"]["artifacts"][0]["artifactId"], "a");
    }

    #[test]
    fn a_message_result_keeps_its_task_and_context_ids() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"message":{"messageId":"m","taskId":"t","contextId":"c","parts":[]}}}"#;
        let answer = Answer::pass_jsonrpc(body).expect("passes");
        assert_eq!(
            answer.facts(),
            &json!({"message": {"taskId": "t", "contextId": "c"}})
        );
    }

    #[test]
    fn an_http_json_body_passes_whole() {
        let body = br#"{"message":{"messageId":"m","contextId":"c","parts":[{"text":"x"}]}}"#;
        let answer = Answer::pass_result(body).expect("passes");
        assert_eq!(
            answer.raw().map(RawValue::get),
            std::str::from_utf8(body).ok()
        );
        assert_eq!(answer.facts(), &json!({"message": {"contextId": "c"}}));
        for body in [&b""[..], b"  ", b"[]", b"{\"task\":1}"] {
            assert!(Answer::pass_result(body).is_none());
        }
    }

    #[test]
    fn errors_and_odd_bodies_are_left_to_the_ordinary_decoder() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"task":{}},"error":{"code":1}}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":"text"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"task":"t"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"a","id":"b"}}}"#,
            br#"{"jsonrpc":"2.0","#,
            b"[1]",
        ] {
            assert!(
                Answer::pass_jsonrpc(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
