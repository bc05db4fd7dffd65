//! API key records as the registry database keeps them (issue 4): the
//! [`ApiKeyStore`] trait with a SQLite and a PostgreSQL implementation
//! (`store/keys_sqlite.rs`, `store/keys_postgres.rs`) over the `api_keys`
//! table of migration 0003, and [`connect_api_keys`], which opens one by URL.
//!
//! The store holds rows only; issuing (randomness, hashing) and verifying
//! keys is `convergio-auth`'s job and caching them the gateway's, so this
//! crate stays free of credential logic.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::keys_postgres::PostgresApiKeys;
use crate::store::keys_sqlite::SqliteApiKeys;
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

/// Opens the key store of the database `url` names. The registry's
/// [`connect`](crate::connect) must have run first: it applies migration
/// 0003. A separate pool, so the agent store's code stays untouched; an
/// in-memory SQLite URL would be a different database, so use a file.
pub async fn connect_api_keys(url: &str) -> Result<Arc<dyn ApiKeyStore>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteApiKeys::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresApiKeys::connect(url).await?))
    } else {
        Err(RegistryError::UnsupportedUrl {
            url: url.split('@').next_back().unwrap_or_default().to_owned(),
        })
    }
}

pub(crate) fn scopes_to_text(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|error| RegistryError::Corrupt {
        message: format!("api key scopes: {error}"),
    })
}
