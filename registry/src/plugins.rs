//! Stored plugins (issue 21): WebAssembly modules uploaded by an
//! organisation, versioned, each version stored with its SHA-256 and, when
//! signed, the signature and the key that verified it, and the
//! capabilities it was granted. The storage trait over the tables of
//! migrations 0018 and 0021, implemented on both backends by
//! `convergio-store` (`store/src/plugins.rs`).
//!
//! It lives here for the reason the model agents' traits do: a plugin is
//! an object of the registry (owned by an organisation, named uniquely
//! across organisations, a plugin agent's card is generated from it) and
//! both the store and the gateway already depend on this crate, so no new
//! dependency edge. The trait holds rows only; a module reaches a store
//! already compiled and checked by the gateway, and its signature already
//! verified.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// What a plugin is for; fixed by its first version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Served as an A2A agent at `/agents/{name}`.
    Agent,
    /// A payload guardrail a `guardrails.rules[].check.plugin` names.
    Guardrail,
}

// === impl PluginKind ===

impl PluginKind {
    /// `agent` or `guardrail`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Guardrail => "guardrail",
        }
    }

    /// The kind `text` names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "agent" => Some(Self::Agent),
            "guardrail" => Some(Self::Guardrail),
            _ => None,
        }
    }
}

/// One stored version, without its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginVersionRow {
    /// 1, 2, … per plugin (a plugin deleted and uploaded again starts at 1).
    pub version: i64,
    /// The module's SHA-256, lowercase hex.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: i64,
    /// The detached JWS over the module's SHA-256, when it was signed.
    pub signature: Option<String>,
    /// The `kid` of the organisation key that verified the signature.
    pub signed_by: Option<String>,
    /// A plugin agent's declaration (its card's name, description,
    /// skills); `None` for guardrails.
    pub declaration: Option<Value>,
    /// The capabilities it was uploaded with (`clock`, `random`, `env`;
    /// migration 0021), as declared: a replica runs it only if its config
    /// allows every one. Versions stored before grants existed have none.
    #[serde(default)]
    pub grants: Vec<String>,
    /// The subject of the principal that uploaded it.
    pub uploaded_by: String,
    /// When, Unix seconds.
    pub uploaded_at: i64,
}

/// One stored plugin with every version, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRow {
    /// The owning organisation.
    pub org: String,
    /// The plugin's name (unique across organisations).
    pub name: String,
    /// What it is for.
    pub kind: PluginKind,
    /// Its versions, oldest first.
    pub versions: Vec<PluginVersionRow>,
}

// === impl PluginRow ===

impl PluginRow {
    /// The newest version.
    pub fn latest(&self) -> Option<&PluginVersionRow> {
        self.versions.last()
    }
}

/// A version to store.
#[derive(Debug, Clone, Copy)]
pub struct NewPluginVersion<'a> {
    /// The owning organisation.
    pub org: &'a str,
    /// The plugin's name.
    pub name: &'a str,
    /// Its kind (must be the stored one's when the plugin exists).
    pub kind: PluginKind,
    /// The module's bytes.
    pub module: &'a [u8],
    /// Their SHA-256, lowercase hex.
    pub sha256: &'a str,
    /// The detached JWS, when signed.
    pub signature: Option<&'a str>,
    /// The key that verified it.
    pub signed_by: Option<&'a str>,
    /// A plugin agent's declaration.
    pub declaration: Option<&'a Value>,
    /// The capabilities it is granted, already checked against the
    /// gateway's config.
    pub grants: &'a [String],
    /// Who uploads it.
    pub uploaded_by: &'a str,
    /// When, Unix seconds.
    pub at: i64,
}

/// The newest version of a plugin, as the hot-replacement watchers poll it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestPlugin {
    /// Its kind.
    pub kind: PluginKind,
    /// The newest version's number.
    pub version: i64,
    /// The newest version's SHA-256.
    pub sha256: String,
}

/// Durable, versioned plugins.
#[async_trait]
pub trait PluginStore: Send + Sync + 'static {
    /// Stores a new version (1 when the plugin is new, else the newest + 1)
    /// in one transaction. A name another organisation owns is
    /// `AgentExists`; another kind than the stored one is `InvalidInput`.
    async fn put_version(&self, new: &NewPluginVersion<'_>) -> Result<PluginVersionRow>;

    /// One plugin with its versions, whoever owns it.
    async fn get(&self, name: &str) -> Result<Option<PluginRow>>;

    /// The plugins of `org` (every one for `None`), by name.
    async fn list(&self, org: Option<&str>) -> Result<Vec<PluginRow>>;

    /// The bytes of one version.
    async fn module(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>>;

    /// The newest version's number and hash: one indexed row, cheap
    /// enough to poll every second on every replica.
    async fn latest(&self, name: &str) -> Result<Option<LatestPlugin>>;

    /// Deletes `org`'s plugin `name` with every version; whether it existed.
    async fn delete(&self, org: &str, name: &str) -> Result<bool>;
}
