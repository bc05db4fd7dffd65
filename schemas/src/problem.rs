//! RFC 9457 problem documents (`application/problem+json`), the error body of
//! every Convergio REST surface.

use std::borrow::Cow;

use serde::{Deserialize, Serialize, Serializer};

use crate::ErrorKind;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// How many characters of a caller's value an error message quotes.
pub const ECHO_LIMIT: usize = 200;

/// The longest `detail` (and violation message) a problem document carries:
/// room for a few located messages, never a caller's whole document.
pub const DETAIL_LIMIT: usize = 2_000;

/// The longest violation message a problem document carries.
pub const VIOLATION_MESSAGE_LIMIT: usize = 500;

/// How many violations a problem document lists; the rest are counted.
pub const VIOLATIONS_LIMIT: usize = 50;

/// `text` cut to at most `max_chars` characters, with "…" marking a cut.
pub fn clip(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A caller's value as error messages quote it: at most [`ECHO_LIMIT`]
/// characters plus "…". Every message that quotes input goes through this,
/// so an error body stays small whatever the request carried.
pub fn echo(text: &str) -> Cow<'_, str> {
    clip(text, ECHO_LIMIT)
}

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

    /// Attaches the list of violations.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations;
        self
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
    fn clip_cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(echo(&"x".repeat(250)).chars().count(), ECHO_LIMIT + 1);
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
