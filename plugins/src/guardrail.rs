//! The [`Guardrail`] trait: what a guardrail sees of one A2A payload (the
//! request's params, a unary result or one streamed event) and what it may
//! answer ([`Verdict`]): allow, deny with a reason code, or modify (a new
//! payload, e.g. with parts redacted).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::PluginError;

/// Which way a payload travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the caller to the agent (after the gatekeeper admitted the call).
    Request,
    /// From the agent to the caller (a unary result or each streamed event).
    Response,
}

// === impl Direction ===

impl Direction {
    /// `request` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// What a guardrail knows about the call besides the payload.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GuardFacts<'a> {
    /// Which way the payload travels.
    pub direction: Direction,
    /// The agent's name.
    pub agent: &'a str,
    /// The skill the message names (`message.metadata.skill`), if any.
    pub skill: Option<&'a str>,
    /// The caller's organisation, if known.
    pub org: Option<&'a str>,
    /// The caller's subject.
    pub subject: &'a str,
    /// The names of the `by_policy` rules policy switched on for this call
    /// and direction (the gateway asks `apply_guardrail` before running the
    /// chain); empty when none is.
    pub switched_on: &'a [String],
}

/// A guardrail's answer about one payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Pass the payload unchanged.
    Allow,
    /// Refuse it: the caller gets an A2A error naming the guardrail and
    /// `reason`, and the refusal is audited.
    Deny {
        /// A stable upper-case code (`CARD_NUMBER`, `PART_TOO_LARGE`).
        reason: String,
        /// A sentence for people; never echoes the offending content.
        message: String,
    },
    /// Pass this payload instead (e.g. with parts redacted).
    Modify(Value),
}

/// A payload check that runs on the gateway path.
pub trait Guardrail: Send + Sync {
    /// The configured name, shown in errors and audit records.
    fn name(&self) -> &str;

    /// Checks one payload. An `Err` is the guardrail's own failure: the
    /// gateway fails closed (the call is refused and the failure audited).
    /// A sandboxed plugin holds the calling thread until it ends (up to its
    /// deadline): the gateway calls [`Self::check_async`].
    fn check(&self, facts: &GuardFacts<'_>, payload: &Value) -> Result<Verdict, PluginError>;

    /// [`Self::check`] as a future: a sandboxed plugin yields to the
    /// executor while it runs; the default answers `check` at once.
    fn check_async<'a>(
        &'a self,
        facts: &'a GuardFacts<'a>,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>> {
        Box::pin(std::future::ready(self.check(facts, payload)))
    }
}

/// A boxed, sendable future (what [`Guardrail::check_async`] answers).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Calls `visit` with every A2A part in `value`: each object in any array
/// under a `parts` key, at any depth (message, artifact, status message,
/// task history). Returns how many parts there were.
pub fn for_each_part<'a>(value: &'a Value, visit: &mut dyn FnMut(&'a Map<String, Value>)) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if key == "parts" {
                    if let Value::Array(parts) = child {
                        for part in parts {
                            if let Value::Object(part) = part {
                                visit(part);
                            }
                        }
                        continue;
                    }
                }
                for_each_part(child, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_part(item, visit);
            }
        }
        _ => {}
    }
}

/// Like [`for_each_part`], with each part mutable.
pub fn for_each_part_mut(value: &mut Value, visit: &mut dyn FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "parts" {
                    if let Value::Array(parts) = child {
                        for part in parts.iter_mut() {
                            if let Value::Object(part) = part {
                                visit(part);
                            }
                        }
                        continue;
                    }
                }
                for_each_part_mut(child, visit);
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                for_each_part_mut(item, visit);
            }
        }
        _ => {}
    }
}
