//! RFC 9457 problem documents (`application/problem+json`), the error body of
//! every Convergio REST surface, and what a client may learn from a failure:
//! its message, or for an internal one only [`INTERNAL_DETAIL`]. With the
//! `http` feature, [`http`] turns a failure into a response (the one REST
//! error path).

use serde::{Deserialize, Serialize, Serializer};

pub use crate::bounds::{clip, echo, DETAIL_LIMIT, ECHO_LIMIT};
use crate::ErrorKind;

#[cfg(feature = "http")]
pub mod http;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What every surface says about an internal failure (a bug, a broken
/// database, corrupt stored data): the one wording, never the cause, which
/// is in the server log under the request id.
pub const INTERNAL_DETAIL: &str = "internal error; see the server log";

/// The longest violation message a problem document carries.
pub const VIOLATION_MESSAGE_LIMIT: usize = 500;

/// How many violations a problem document lists; the rest are counted.
pub const VIOLATIONS_LIMIT: usize = 50;

/// One rule a request broke, located by a JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending value; `""` is the whole body.
    pub pointer: String,
    /// What is wrong there, in plain words.
    pub message: String,
}

/// A problem document. `type` is stable per [`ErrorKind`]; `detail` says what
/// happened to this request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong for this request (at most [`DETAIL_LIMIT`]
    /// characters on the wire).
    #[serde(serialize_with = "serialize_detail")]
    pub detail: String,
    /// The error-kind slug, for clients that switch on it.
    pub kind: ErrorKind,
    /// Every violation found, for validation failures (at most
    /// [`VIOLATIONS_LIMIT`] on the wire, then one counting the rest).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_violations"
    )]
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

    /// The problem a client sees for a failure of `kind`: the failure's own
    /// message, or [`INTERNAL_DETAIL`] when the kind is internal (the
    /// message may name files, queries or addresses). Logs nothing; see
    /// [`http::problem_for`] for the logged path.
    pub fn public(kind: ErrorKind, error: &dyn std::fmt::Display) -> Self {
        match kind {
            ErrorKind::Internal => Self::new(kind, INTERNAL_DETAIL),
            _ => Self::new(kind, error.to_string()),
        }
    }

    /// Attaches the list of violations.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations;
        self
    }
}

/// An error with its whole `source()` chain, `outer: cause: root cause`:
/// how a failure is logged, so the cause a `#[source]` keeps is never lost
/// between the error and the log line.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

// Bounds are applied when a problem is written, not when it is built, so
// every surface that renders a `Problem` is bounded whichever way it filled
// the fields.
fn serialize_detail<S: Serializer>(detail: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&clip(detail, DETAIL_LIMIT))
}

fn serialize_violations<S: Serializer>(
    violations: &[Violation],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut bounded: Vec<Violation> = violations
        .iter()
        .take(VIOLATIONS_LIMIT)
        .map(|violation| Violation {
            pointer: echo(&violation.pointer).into_owned(),
            message: clip(&violation.message, VIOLATION_MESSAGE_LIMIT).into_owned(),
        })
        .collect();
    if violations.len() > VIOLATIONS_LIMIT {
        bounded.push(Violation {
            pointer: String::new(),
            message: format!(
                "{} more violations not listed",
                violations.len() - VIOLATIONS_LIMIT
            ),
        });
    }
    bounded.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_names_every_cause_and_internal_problems_none() {
        #[derive(Debug, thiserror::Error)]
        #[error("loading the run index")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("disk /var/secret unreadable"));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "loading the run index: disk /var/secret unreadable"
        );
        let problem = Problem::public(ErrorKind::Internal, &error);
        assert_eq!(problem.detail, INTERNAL_DETAIL);
        assert_eq!(
            Problem::public(ErrorKind::NotFound, &error).detail,
            "loading the run index"
        );
    }

    // Regression: issue #15, defect 12
    #[test]
    fn serialized_problem_is_bounded_whatever_its_fields_hold() {
        let huge = "v".repeat(250_000);
        let violations = (0..1_000)
            .map(|index| Violation {
                pointer: format!("/{index}/{huge}"),
                message: huge.clone(),
            })
            .collect();
        let problem =
            Problem::new(ErrorKind::InvalidInput, huge.clone()).with_violations(violations);
        let body = serde_json::to_string(&problem).expect("serializes");
        assert!(body.len() < 64 * 1024, "{} bytes", body.len());
        assert!(body.contains("950 more violations not listed"));
    }
}
