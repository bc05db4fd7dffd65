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
//!
//! Replicas sharing one registry each serve every model agent on a socket
//! of their own, while the registry keeps one card (the last replica to
//! start wrote its socket there). So a replica routes a model agent it
//! serves to its own slot ([`ModelSlots::local_url`]), whatever the card
//! says: another replica's loopback socket is not reachable from here, nor
//! would it take this replica's token.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::HeaderValue;
use convergio_auth::SecretValue;
use serde_json::Value;

use crate::GatewayError;

/// Message metadata key holding the verified caller's organisation.
pub use convergio_schemas::a2a::CALLER_ORG_METADATA as CALLER_ORG_KEY;

/// The model agents' loopback sockets, the token they require and which
/// agent runs on which (kept by the model fleet; clones share it).
#[derive(Debug, Clone)]
pub struct ModelSlots {
    token: SecretValue,
    sockets: HashSet<SocketAddr>,
    serving: Arc<RwLock<HashMap<String, SocketAddr>>>,
}

// === impl ModelSlots ===

impl ModelSlots {
    /// Slots at `sockets`, gated by `token`, none serving yet.
    pub fn new(token: SecretValue, sockets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            token,
            sockets: sockets.into_iter().collect(),
            serving: Arc::default(),
        }
    }

    /// Records that `agent` now runs on `socket` (one of the slots).
    pub fn serve(&self, agent: &str, socket: SocketAddr) {
        self.serving
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), socket);
    }

    /// Records that `agent` no longer runs here.
    pub fn unserve(&self, agent: &str) {
        self.serving
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(agent);
    }

    /// `url` (an interface of `agent`'s card) moved to this replica's own
    /// slot when `agent` runs here; `None` when it does not.
    pub(crate) fn local_url(&self, agent: &str, url: &str) -> Option<String> {
        let socket = *self
            .serving
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)?;
        let rest = url.strip_prefix("http://")?;
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        Some(format!("http://{socket}{path}"))
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

impl PartialEq for ModelSlots {
    /// Same token and sockets, and the same table of who serves where.
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
            && self.sockets == other.sockets
            && Arc::ptr_eq(&self.serving, &other.serving)
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
    fn an_agent_served_here_is_routed_to_its_own_slot_whatever_the_card_says() {
        let slots = ModelSlots::new(
            SecretValue::new("t"),
            ["127.0.0.1:4100".parse().expect("socket")],
        );
        let card = "http://127.0.0.1:5200/rest";
        assert_eq!(slots.local_url("notes", card), None);
        slots
            .clone()
            .serve("notes", "127.0.0.1:4100".parse().expect("socket"));
        let local = slots.local_url("notes", card).expect("served here");
        assert_eq!(local, "http://127.0.0.1:4100/rest");
        assert!(slots.serves(&local));
        assert_eq!(
            slots.local_url("notes", "http://127.0.0.1:5200").as_deref(),
            Some("http://127.0.0.1:4100")
        );
        assert_eq!(slots.local_url("other", card), None);
        slots.unserve("notes");
        assert_eq!(slots.local_url("notes", card), None);
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
