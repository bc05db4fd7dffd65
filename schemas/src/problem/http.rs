//! The one error path of every REST surface (issue #16): a failure becomes
//! a problem+json response here, and only here, whether the registry API,
//! the policy API, the graph and run API or the gateway's `Rescue` layer
//! renders it. An internal failure says [`INTERNAL_DETAIL`](super::INTERNAL_DETAIL) to the client
//! and is logged once, at error level, with its whole `source()` chain
//! ([`ErrorChain`]); any other failure says its own message.
//!
//! It lives in `convergio-schemas` because that is the crate every REST
//! crate (registry, policy, gateway) already depends on and which depends
//! on none of them, so the one renderer adds no dependency edge and no
//! circle. It sits behind the `http` feature, so crates that serve no HTTP
//! (the orchestrator, auth) compile none of axum or tracing through it.

use std::error::Error;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ErrorChain, Problem, PROBLEM_JSON};
use crate::ErrorKind;

/// Logs a failed request once: at error level with the whole cause chain
/// when `internal` (the detail is for the server log only), at debug level
/// otherwise (the client was told why). `request_id` ties the line to the
/// problem the client quotes.
pub fn log_failure(
    error: &(dyn Error + 'static),
    kind: ErrorKind,
    internal: bool,
    request_id: Option<&str>,
) {
    let request_id = request_id.unwrap_or("-");
    if internal {
        tracing::error!(request_id, kind = %kind, error = %ErrorChain(error), "request failed");
    } else {
        tracing::debug!(request_id, kind = %kind, error = %error, "request refused");
    }
}

/// The problem for a failed request of `kind`, the failure logged once
/// ([`log_failure`]): the client reads the error's message, or
/// [`INTERNAL_DETAIL`](super::INTERNAL_DETAIL) for an internal failure.
pub fn problem_for(error: &(dyn Error + 'static), kind: ErrorKind) -> Problem {
    log_failure(error, kind, kind == ErrorKind::Internal, None);
    Problem::public(kind, error)
}

/// `problem` as a response: its status, `Content-Type:
/// application/problem+json`, the bounded document as the body, plus
/// `headers` (an `ETag`, a `Retry-After`; a content type among them is
/// ignored).
pub fn respond(problem: &Problem, headers: HeaderMap) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // A problem always serializes (strings, numbers and a list of them);
    // an empty body would still carry the status and the media type.
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().extend(headers);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        respond(&self, HeaderMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::INTERNAL_DETAIL;

    #[derive(Debug, thiserror::Error)]
    #[error("reading stored graph g1")]
    struct Failure(#[source] std::io::Error);

    #[tokio::test]
    async fn an_internal_failure_renders_the_one_shape_without_its_cause() {
        let error = Failure(std::io::Error::other("/var/lib/secret.db is locked"));
        let response = problem_for(&error, ErrorKind::Internal).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(PROBLEM_JSON))
        );
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a small body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret") && !text.contains("g1"), "{text}");
        let problem: Problem = serde_json::from_slice(&body).expect("a problem document");
        assert_eq!(problem, Problem::new(ErrorKind::Internal, INTERNAL_DETAIL));
        assert_eq!(
            problem.problem_type,
            "https://convergio.dev/problems/internal"
        );
    }

    #[test]
    fn other_failures_say_their_message_and_keep_extra_headers() {
        let error = Failure(std::io::Error::other("gone"));
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let response = respond(&problem_for(&error, ErrorKind::Unavailable), headers);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            Problem::public(ErrorKind::Unavailable, &error).detail,
            "reading stored graph g1"
        );
    }
}
