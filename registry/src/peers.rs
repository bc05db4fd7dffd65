//! Federation peers as the registry database keeps them (issue 6): the
//! [`PeerStore`] trait over the `peers` and `peer_nonces` tables of
//! migration 0004, implemented on both backends by `convergio-store`
//! (`Peers`).
//!
//! The store holds rows only: which keys are approved, verifying signatures
//! and caching are the gateway's and `convergio-auth`'s. Nonces live here
//! because replay protection must hold across replicas: inserting a nonce
//! is insert-or-fail on the primary key, so exactly one replica accepts it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{RegistryError, Result};

/// Whether a peer key may verify calls yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKeyState {
    /// An administrator pinned or approved it: calls signed with it verify.
    Approved,
    /// Fetched from the peer's JWKS URL, waiting for an administrator.
    Pending,
}

/// One key of a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerKeyRow {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// The public JWK.
    pub jwk: Value,
    /// Approved or pending.
    pub state: PeerKeyState,
}

/// One stored peer organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    /// The peer's organisation domain (the `iss` of its calls, the `aud` of ours).
    pub domain: String,
    /// Base URL of the peer's gateway.
    pub base_url: String,
    /// Where the peer publishes its JWKS, if keys are fetched.
    pub jwks_url: Option<String>,
    /// Its keys, pinned or fetched.
    pub keys: Vec<PeerKeyRow>,
    /// The trust level (`TrustLevel` spelling) its agents get here.
    pub trust: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Durable storage of peers and accepted nonces.
#[async_trait]
pub trait PeerStore: Send + Sync + 'static {
    /// Stores a new peer; `Ok(false)` when the domain exists already.
    async fn insert(&self, row: &PeerRow) -> Result<bool>;

    /// Stores a peer, replacing any with the same domain.
    async fn put(&self, row: &PeerRow) -> Result<()>;

    /// One peer by domain.
    async fn get(&self, domain: &str) -> Result<Option<PeerRow>>;

    /// Every peer, by domain.
    async fn list(&self) -> Result<Vec<PeerRow>>;

    /// Removes a peer; returns whether one was removed.
    async fn delete(&self, domain: &str) -> Result<bool>;

    /// Remembers a nonce of `peer` until `expires_at`; `Ok(false)` when it
    /// is already remembered (a replay).
    async fn remember_nonce(&self, peer: &str, nonce: &str, expires_at: i64) -> Result<bool>;

    /// Forgets nonces that expired before `now`; returns how many.
    async fn purge_nonces(&self, now: i64) -> Result<u64>;
}

/// The stored form of a peer's keys: a JSON array.
pub fn keys_to_text(keys: &[PeerKeyRow]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads a peer's stored keys; text that does not decode is corrupt.
pub fn keys_from_text(text: &str) -> Result<Vec<PeerKeyRow>> {
    serde_json::from_str(text).map_err(|error| RegistryError::corrupt_because("peer keys", error))
}
