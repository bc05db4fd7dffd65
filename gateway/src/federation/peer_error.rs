//! [`PeerError`]: why a call to, or a document from, a peer gateway failed.
//!
//! It stays typed, with its cause, until an administrator reads it: a
//! peer's JWKS status, a sync report's problems, a federated listing's
//! `partial` entries and the 502 of a failed sync or refresh. Only there is
//! it written out, as its whole cause chain ([`PeerError::chain`]).

use std::time::Duration;

use convergio_auth::AuthError;
use convergio_registry::RegistryError;

use crate::fetch::{error_chain, FetchError};
use crate::GatewayError;

/// Why talking to a peer gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The URL built for the peer is not one this gateway will call.
    #[error("the peer url is refused")]
    Url(#[source] GatewayError),
    /// Fetching or reading a document failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The peer did not answer within the deadline.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The peer could not be reached.
    #[error("unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// The signed request failed otherwise.
    #[error("request failed")]
    Request(#[source] reqwest::Error),
    /// The peer answered with an error status.
    #[error("answered {0}")]
    Status(u16),
    /// The peer answered 304 to a query this gateway never cached.
    #[error("answered 304 to a query we never cached")]
    UnexpectedNotModified,
    /// The answer is not the JSON document asked for.
    #[error("answered something not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The answer is JSON without the expected member.
    #[error("answered without {0}")]
    Missing(&'static str),
    /// The catalogue has more pages than a sync reads.
    #[error("more than {0} pages")]
    TooManyPages(usize),
    /// The JWKS holds no key this gateway accepts.
    #[error("the jwks")]
    Keys(#[source] AuthError),
    /// The peer's catalogue names an agent no id can be made of.
    #[error("the agent name")]
    Name(#[source] convergio_schemas::AgentIdError),
    /// The local registry refused or failed a synced agent.
    #[error("{step}")]
    Registry {
        /// What the sync was doing.
        step: String,
        /// The registry's error.
        #[source]
        source: RegistryError,
    },
}

// === impl PeerError ===

impl PeerError {
    /// A failure of a signed request sent with a `timeout`.
    pub(crate) fn sending(error: reqwest::Error, timeout: Duration) -> Self {
        if error.is_timeout() {
            Self::Timeout(timeout)
        } else if error.is_connect() {
            Self::Unreachable(error)
        } else {
            Self::Request(error)
        }
    }

    /// A registry failure while `step`.
    pub(crate) fn registry(step: impl Into<String>, source: RegistryError) -> Self {
        Self::Registry {
            step: step.into(),
            source,
        }
    }

    /// The error and its causes on one line, as administrators read it.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_keeps_the_cause() {
        let source = serde_json::from_slice::<serde_json::Value>(b"{").expect_err("cut JSON");
        let text = PeerError::NotJson(source).chain();
        assert!(text.starts_with("answered something not JSON: "), "{text}");
        assert!(text.contains("EOF"), "{text}");
    }

    #[test]
    fn a_timeout_names_its_deadline() {
        let text = PeerError::Timeout(Duration::from_millis(1500)).chain();
        assert_eq!(text, "no answer within 1500 ms");
    }
}
