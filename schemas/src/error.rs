//! The error-kind table: one place that says what every failure looks like to
//! a client, over REST (problem+json), JSON-RPC and HTTP status codes.

use serde::{Deserialize, Serialize};

/// The small, stable classification every crate's error maps onto.
///
/// A kind decides the HTTP status, the problem `type` URI and the JSON-RPC
/// code; the crate error decides the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is well-formed JSON but breaks a schema or a rule.
    InvalidInput,
    /// The body is not parseable JSON (or YAML).
    MalformedBody,
    /// The content type is not one the endpoint accepts.
    UnsupportedMediaType,
    /// No credentials, or credentials that do not verify.
    Unauthenticated,
    /// A verified caller that may not do this.
    Forbidden,
    /// The addressed resource does not exist (or the caller may not know it does).
    NotFound,
    /// The resource exists already, or the write collides with another.
    Conflict,
    /// An `If-Match` precondition did not hold.
    PreconditionFailed,
    /// The body is over the configured limit.
    PayloadTooLarge,
    /// The request headers are over the configured limit.
    HeadersTooLarge,
    /// The request target (path and query) is longer than the server reads.
    UriTooLong,
    /// The client took too long to send its request.
    RequestTimeout,
    /// A quota or rate limit was hit; retry later.
    RateLimited,
    /// The gateway is overloaded or a dependency is down; retry later.
    Unavailable,
    /// An upstream agent answered with something that is not a valid answer.
    BadUpstream,
    /// An upstream agent did not answer in time.
    UpstreamTimeout,
    /// A bug or an unexpected failure on our side; details are only in logs.
    Internal,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// Every kind, in table order (used by docs and tests).
    pub const ALL: [ErrorKind; 17] = [
        Self::InvalidInput,
        Self::MalformedBody,
        Self::UnsupportedMediaType,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::HeadersTooLarge,
        Self::UriTooLong,
        Self::RequestTimeout,
        Self::RateLimited,
        Self::Unavailable,
        Self::BadUpstream,
        Self::UpstreamTimeout,
        Self::Internal,
    ];

    /// The HTTP status a REST surface answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput | Self::MalformedBody => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::PayloadTooLarge => 413,
            Self::UriTooLong => 414,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::HeadersTooLarge => 431,
            Self::Internal => 500,
            Self::BadUpstream => 502,
            Self::Unavailable => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    /// The stable slug used in the problem `type` URI and in logs.
    pub fn slug(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::MalformedBody => "malformed-body",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition-failed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::HeadersTooLarge => "headers-too-large",
            Self::UriTooLong => "uri-too-long",
            Self::RequestTimeout => "request-timeout",
            Self::RateLimited => "rate-limited",
            Self::Unavailable => "unavailable",
            Self::BadUpstream => "bad-upstream",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::Internal => "internal",
        }
    }

    /// The problem+json `type` URI: stable, documented in the README.
    pub fn problem_type(self) -> String {
        format!("https://convergio.dev/problems/{}", self.slug())
    }

    /// A short human title for the problem document.
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid input",
            Self::MalformedBody => "malformed request body",
            Self::UnsupportedMediaType => "unsupported media type",
            Self::Unauthenticated => "authentication required",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not found",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition failed",
            Self::PayloadTooLarge => "payload too large",
            Self::HeadersTooLarge => "request headers too large",
            Self::UriTooLong => "request target too long",
            Self::RequestTimeout => "request timeout",
            Self::RateLimited => "rate limited",
            Self::Unavailable => "service unavailable",
            Self::BadUpstream => "bad upstream response",
            Self::UpstreamTimeout => "upstream timeout",
            Self::Internal => "internal error",
        }
    }

    /// The JSON-RPC error code used when this kind surfaces on an A2A
    /// JSON-RPC binding and no more specific A2A error applies.
    pub fn jsonrpc_code(self) -> i64 {
        match self {
            Self::MalformedBody => crate::a2a::JSONRPC_PARSE_ERROR,
            Self::InvalidInput
            | Self::PayloadTooLarge
            | Self::HeadersTooLarge
            | Self::UriTooLong => crate::a2a::JSONRPC_INVALID_PARAMS,
            Self::UnsupportedMediaType => crate::a2a::A2aError::ContentTypeNotSupported.code(),
            Self::NotFound => crate::a2a::A2aError::TaskNotFound.code(),
            Self::BadUpstream | Self::UpstreamTimeout => {
                crate::a2a::A2aError::InvalidAgentResponse.code()
            }
            // Authentication, authorisation, quota and availability failures
            // have no JSON-RPC code of their own; A2A carries them in the HTTP
            // status, and the JSON-RPC body says internal with a reason.
            _ => crate::a2a::JSONRPC_INTERNAL_ERROR,
        }
    }

    /// Whether a client may retry the same request later and hope for success.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Unavailable | Self::UpstreamTimeout | Self::RequestTimeout
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_slug_and_an_error_status() {
        let mut slugs = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(slugs.insert(kind.slug()), "duplicate slug {kind}");
            assert!(kind.http_status() >= 400);
        }
    }
}
