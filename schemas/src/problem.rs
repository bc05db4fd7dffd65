//! RFC 9457 problem documents (`application/problem+json`), the error body of
//! every Convergio REST surface.

use serde::{Deserialize, Serialize};

use crate::ErrorKind;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One rule a request broke, located by a JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending value; `""` is the whole body.
    pub pointer: String,
    /// What is wrong there, in plain words.
    pub message: String,
}

/// A problem document. `type` is stable per [`ErrorKind`]; `detail` says what
/// happened to this request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong for this request.
    pub detail: String,
    /// The error-kind slug, for clients that switch on it.
    pub kind: ErrorKind,
    /// Every violation found, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// The request id, to quote when asking for help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

// === impl Problem ===

impl Problem {
    /// A problem of `kind` with a detail message.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            problem_type: kind.problem_type(),
            title: kind.title().to_owned(),
            status: kind.http_status(),
            detail: detail.into(),
            kind,
            violations: Vec::new(),
            request_id: None,
        }
    }

    /// Attaches the list of violations.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations;
        self
    }
}
