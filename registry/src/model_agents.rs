//! Model agents' stored state (issue 17): the storage traits over the
//! tables of migration 0010, implemented on both backends by
//! `convergio-store` (`store/src/models.rs`).
//!
//! They live here because a model agent is an agent of the registry (its
//! declaration is what its card is generated from, its name is one of the
//! registry's names) and because this is the domain crate both the store
//! (which implements them) and the gateway (whose REST surface and serving
//! glue consume them) already depend on: no new dependency edge. The
//! traits hold rows only. Declarations are checked by
//! `convergio_schemas::ModelAgentSpec` before they reach a store; secrets
//! reach a store already sealed (`convergio_auth::secret_box`), so no row
//! type here ever holds a secret in clear.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// One stored model agent declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAgentRow {
    /// The declaring organisation.
    pub org: String,
    /// The agent's name (unique across organisations: it is `/agents/{name}`).
    pub name: String,
    /// The checked declaration (`ModelAgentSpec::to_value`).
    pub spec: Value,
    /// 1 on creation, one more on every update.
    pub version: i64,
    /// Last write, Unix seconds.
    pub updated_at: i64,
}

/// Durable model agent declarations.
#[async_trait]
pub trait ModelAgentStore: Send + Sync + 'static {
    /// Creates `name` for `org` or updates it (version + 1). A name another
    /// organisation declared is `AgentExists`.
    async fn put(&self, org: &str, name: &str, spec: &Value, at: i64) -> Result<ModelAgentRow>;

    /// One declaration by name, whoever declared it.
    async fn get(&self, name: &str) -> Result<Option<ModelAgentRow>>;

    /// The declarations of `org`, or every declaration for `None`, by name.
    async fn list(&self, org: Option<&str>) -> Result<Vec<ModelAgentRow>>;

    /// Deletes `org`'s declaration `name`; whether one was deleted.
    async fn delete(&self, org: &str, name: &str) -> Result<bool>;
}

/// One sealed secret as stored: the AEAD nonce and ciphertext (with tag).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecretRow {
    /// The owning organisation.
    pub org: String,
    /// The secret's name.
    pub name: String,
    /// The AEAD nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext with its tag.
    pub ciphertext: Vec<u8>,
    /// Last write, Unix seconds.
    pub updated_at: i64,
}

impl std::fmt::Debug for SealedSecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even sealed bytes stay out of logs: they are of no use there.
        f.debug_struct("SealedSecretRow")
            .field("org", &self.org)
            .field("name", &self.name)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// What listing secrets shows: never a value, sealed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
    /// Last write, Unix seconds.
    pub updated_at: i64,
}

/// Durable, sealed secrets of each organisation.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Creates or replaces a secret.
    async fn put(&self, row: &SealedSecretRow) -> Result<()>;

    /// One sealed secret.
    async fn get(&self, org: &str, name: &str) -> Result<Option<SealedSecretRow>>;

    /// `org`'s secrets, by name.
    async fn list(&self, org: &str) -> Result<Vec<SecretInfo>>;

    /// Deletes one; whether it existed.
    async fn delete(&self, org: &str, name: &str) -> Result<bool>;
}

/// Where a conversation is kept: one context of one model agent of one
/// organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationKey<'a> {
    /// The organisation that owns the agent.
    pub org: &'a str,
    /// The model agent.
    pub agent: &'a str,
    /// The A2A `contextId`.
    pub context_id: &'a str,
}

/// Conversations of model agents, by `contextId`, in the shared database so
/// any replica continues them.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The context's messages, oldest first (at most the newest `limit`).
    async fn load(&self, key: ConversationKey<'_>, limit: u32) -> Result<Vec<Value>>;

    /// Appends messages after the context's last one, in one transaction.
    async fn append(&self, key: ConversationKey<'_>, messages: &[Value]) -> Result<()>;
}

/// One organisation's model usage on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Input (prompt) tokens, as the providers reported them.
    pub tokens_in: u64,
    /// Output (completion) tokens.
    pub tokens_out: u64,
    /// Cost in millionths of the price table's currency unit.
    pub cost_micros: u64,
}

/// The per-organisation, per-day usage ledger behind daily budgets.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Adds `usage` to `org`'s total of `day` (`YYYY-MM-DD`, UTC).
    async fn add(&self, org: &str, day: &str, usage: UsageTotals) -> Result<()>;

    /// `org`'s total of `day` (zero when nothing was recorded).
    async fn day(&self, org: &str, day: &str) -> Result<UsageTotals>;

    /// Every organisation's total of `day`, by organisation (for `/metrics`).
    async fn all_on(&self, day: &str) -> Result<Vec<(String, UsageTotals)>>;
}
