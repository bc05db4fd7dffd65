//! API key records as the registry database keeps them (issue 4): the
//! [`ApiKeyStore`] trait over the `api_keys` table of migration 0003,
//! implemented on both backends by `convergio-store` (`ApiKeys`).
//!
//! The store holds rows only; issuing (randomness, hashing) and verifying
//! keys is `convergio-auth`'s job and caching them the gateway's, so this
//! crate stays free of credential logic.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{RegistryError, Result};

/// One stored API key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    /// Public key id (the middle of `cvg_<id>_<secret>`).
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    pub org: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Issue time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix seconds; revoked keys are refused.
    pub revoked_at: Option<i64>,
}

/// Durable storage of API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new key; fails with `Conflict`-kind errors if the id exists.
    async fn insert(&self, row: &ApiKeyRow) -> Result<()>;

    /// Reads one key by id.
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRow>>;

    /// Every key, oldest first.
    async fn list(&self) -> Result<Vec<ApiKeyRow>>;

    /// Marks a key revoked at `at`; returns whether a live key was revoked.
    async fn revoke(&self, id: &str, at: i64) -> Result<bool>;
}

/// The stored form of `scopes`: a JSON array.
pub fn scopes_to_text(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads stored scopes; text that is not a JSON array of strings is corrupt.
pub fn scopes_from_text(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|error| RegistryError::corrupt_because("api key scopes", error))
}
