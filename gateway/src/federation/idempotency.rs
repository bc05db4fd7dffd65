//! Idempotent calls from peer organisations (issue 18). A peer's graph
//! node call carries `metadata["convergio.federation.idempotency_key"]`
//! (the node call's message id: run, node, iteration and attempt, the same
//! when the peer's run is resumed after a crash). After the gatekeeper
//! admitted it, the receiving gateway answers a key it has an outcome for
//! with that outcome, without calling the agent; otherwise the call runs on
//! its own task, so a caller that goes away mid-call (the peer crashed)
//! does not cancel it, and its answer is stored for the peer's repeat.
//!
//! Keys are scoped by the verified peer, the agent and the asserted
//! subject, so no other caller can read an outcome by guessing its key.
//! `SendMessage` answers are stored, and `SendStreamingMessage` streams
//! that reached a final state, folded into the answer a blocking call gives
//! (a repeat of a streamed call gets that answer as a one-event stream).
//! Only answers are stored (a call that failed in the gateway, or a stream
//! that broke, stores nothing, so it can be repeated).
//! Two calls with the same key at once both run (the first stored answer
//! wins); the peer repeats a key only after its own run was interrupted.

use std::sync::Arc;

use convergio_registry::peer_calls::{PeerCallKey, PeerCallStore};
use convergio_schemas::a2a::Method;
use convergio_schemas::AuthMethod;
use serde_json::Value;

use super::{unix_now, Federation};
use crate::{GatewayError, Principal};

/// Metadata key of a call's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "convergio.federation.idempotency_key";
/// Longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 256;

// === impl Federation ===

impl Federation {
    /// The same federation storing idempotent peer calls' outcomes in
    /// `store` (without one, keys are ignored and every call runs).
    pub fn with_call_outcomes(mut self, store: Arc<dyn PeerCallStore>) -> Self {
        self.call_outcomes = Some(store);
        self
    }

    /// The stored-outcome key of a call, when it is idempotent: a verified
    /// peer's `SendMessage` or `SendStreamingMessage` to `target_name`
    /// carrying a key.
    pub fn idempotent_call(
        &self,
        principal: &Principal,
        target_name: &str,
        method: Method,
        params: &Value,
    ) -> Result<Option<PeerCallKey>, GatewayError> {
        if self.call_outcomes.is_none()
            || !matches!(method, Method::SendMessage | Method::SendStreamingMessage)
        {
            return Ok(None);
        }
        let (AuthMethod::Peer, Some(peer)) = (principal.method, &principal.org) else {
            return Ok(None);
        };
        let Some(key) = params
            .pointer("/message/metadata")
            .and_then(|metadata| metadata.get(IDEMPOTENCY_KEY))
        else {
            return Ok(None);
        };
        let key = key
            .as_str()
            .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_BYTES)
            .ok_or_else(|| GatewayError::InvalidParams {
                detail: format!(
                    "metadata {IDEMPOTENCY_KEY} must be a string of 1 to {MAX_KEY_BYTES} bytes"
                ),
            })?;
        Ok(Some(PeerCallKey {
            peer: peer.clone(),
            agent: target_name.to_owned(),
            subject: principal.subject.clone(),
            key: key.to_owned(),
        }))
    }

    /// The stored outcome of `key`, if any.
    pub async fn stored_outcome(&self, key: &PeerCallKey) -> Result<Option<Value>, GatewayError> {
        let Some(store) = &self.call_outcomes else {
            return Ok(None);
        };
        store
            .outcome(key)
            .await
            .map_err(|error| GatewayError::internal("reading a peer call outcome", error))
    }

    /// Stores the outcome of `key` (the first one stored wins). A failure
    /// is logged: the answer still goes to the caller, and a repeat of the
    /// key would run the agent again.
    pub async fn remember_outcome(&self, key: &PeerCallKey, outcome: &Value) {
        let Some(store) = &self.call_outcomes else {
            return;
        };
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        match store.remember_outcome(key, outcome, now).await {
            Ok(first) => {
                tracing::debug!(peer = %key.peer, agent = %key.agent, first, "kept a peer call's outcome")
            }
            Err(error) => {
                tracing::warn!(peer = %key.peer, agent = %key.agent, %error, "storing a peer call outcome failed")
            }
        }
    }
}
