//! The gateway's side of the model agents' loopback servers (issue 17).
//! `convergio serve` runs each model agent on one of a pool of loopback
//! sockets bound at start; those servers answer only a bearer token this
//! process generated, so nothing on the machine reaches a model agent — and
//! spends its organisation's provider key — except through the gateway's
//! policy, budgets and audit. Forwarding to one of those sockets presents
//! the token and stamps the verified caller's organisation into the
//! message's metadata ([`CALLER_ORG_KEY`], replacing whatever the client
//! put there), which is how an `api_key: caller` agent knows whose key and
//! budget to use.

use std::collections::HashSet;
use std::net::SocketAddr;

use axum::http::HeaderValue;
use convergio_auth::SecretValue;
use serde_json::Value;

use crate::GatewayError;

/// Message metadata key holding the verified caller's organisation.
pub use convergio_schemas::a2a::CALLER_ORG_METADATA as CALLER_ORG_KEY;

/// The model agents' loopback sockets and the token they require.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSlots {
    token: SecretValue,
    sockets: HashSet<SocketAddr>,
}

// === impl ModelSlots ===

impl ModelSlots {
    /// Slots at `sockets`, gated by `token`.
    pub fn new(token: SecretValue, sockets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            token,
            sockets: sockets.into_iter().collect(),
        }
    }

    /// Whether `url` (an upstream interface) is one of the slots.
    pub(crate) fn serves(&self, url: &str) -> bool {
        url.strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse::<SocketAddr>().ok())
            .is_some_and(|socket| self.sockets.contains(&socket))
    }

    /// The `Authorization` header the slots require (marked sensitive).
    pub(crate) fn authorization(&self) -> Result<HeaderValue, GatewayError> {
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", self.token.expose())).map_err(|error| {
                GatewayError::internal("putting the model slots' token in a header", error)
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Sets (or, for a caller of no organisation, removes) the caller's
/// organisation in the metadata of `params.message`.
pub(crate) fn stamp_caller(params: &mut Value, org: Option<&str>) {
    let Some(message) = params.get_mut("message").and_then(Value::as_object_mut) else {
        return;
    };
    let metadata = message
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !metadata.is_object() {
        *metadata = Value::Object(Default::default());
    }
    if let Some(metadata) = metadata.as_object_mut() {
        match org {
            Some(org) => metadata.insert(CALLER_ORG_KEY.to_owned(), Value::from(org)),
            None => metadata.remove(CALLER_ORG_KEY),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_pools_sockets_are_slots() {
        let slots = ModelSlots::new(
            SecretValue::new("t"),
            ["127.0.0.1:4100".parse().expect("socket")],
        );
        assert!(slots.serves("http://127.0.0.1:4100"));
        assert!(slots.serves("http://127.0.0.1:4100/rest"));
        assert!(!slots.serves("http://127.0.0.1:4101"));
        assert!(!slots.serves("https://127.0.0.1:4100"));
        assert!(!slots.serves("http://localhost:4100"));
    }

    #[test]
    fn the_stamp_replaces_what_the_client_claimed() {
        let mut params = json!({"message": {"parts": [], "metadata": {CALLER_ORG_KEY: "forged.example", "kept": 1}}});
        stamp_caller(&mut params, Some("a.example"));
        assert_eq!(params["message"]["metadata"][CALLER_ORG_KEY], "a.example");
        assert_eq!(params["message"]["metadata"]["kept"], 1);
        stamp_caller(&mut params, None);
        assert!(params["message"]["metadata"].get(CALLER_ORG_KEY).is_none());
        let mut bare = json!({"message": {"parts": [], "metadata": "not an object"}});
        stamp_caller(&mut bare, Some("b.example"));
        assert_eq!(bare["message"]["metadata"][CALLER_ORG_KEY], "b.example");
    }
}
