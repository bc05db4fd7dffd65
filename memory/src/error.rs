//! [`MemoryError`]: every way a memory call fails, each with the
//! [`ErrorKind`] a client sees. A namespace the caller may not see is
//! answered exactly as a missing one (`NamespaceNotFound`) by the gateway.
//!
//! **Invariant:** no error holds an embedding provider's key; provider
//! failures quote at most a bounded piece of the provider's own answer.

use std::path::PathBuf;

use convergio_schemas::{ErrorKind, StorageError};

/// Why a memory call failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// No such namespace (or one the caller may not see).
    #[error("memory namespace {namespace} not found")]
    NamespaceNotFound {
        /// The namespace asked for.
        namespace: String,
    },
    /// The name is taken (namespace names are unique in the deployment).
    #[error("memory namespace {namespace} already exists")]
    NamespaceExists {
        /// The namespace asked for.
        namespace: String,
    },
    /// No such item in the namespace (or it expired).
    #[error("item {key} not found in memory namespace {namespace}")]
    ItemNotFound {
        /// The namespace.
        namespace: String,
        /// The item's key.
        key: String,
    },
    /// The request or declaration is not acceptable.
    #[error("{detail}")]
    Invalid {
        /// What is wrong, for the caller.
        detail: String,
    },
    /// A structured record breaks the namespace's JSON Schema.
    #[error("the record breaks the namespace's schema: {}", violations.join("; "))]
    SchemaViolation {
        /// Each violation, with its JSON pointer.
        violations: Vec<String>,
    },
    /// A document or record is larger than the namespace allows.
    #[error("the item is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The item's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The namespace holds as many items as its retention allows.
    #[error("memory namespace {namespace} is full ({max_items} items)")]
    NamespaceFull {
        /// The namespace.
        namespace: String,
        /// Its bound.
        max_items: u64,
    },
    /// `If-Match` named another version than the stored one.
    #[error("item {key} changed: the stored version is not the one named")]
    Stale {
        /// The item's key.
        key: String,
    },
    /// The operation does not apply to this kind of namespace.
    #[error("memory namespace {namespace} is {kind}: {detail}")]
    WrongKind {
        /// The namespace.
        namespace: String,
        /// Its kind.
        kind: &'static str,
        /// What was asked.
        detail: String,
    },
    /// A graph node used a namespace scoped to an agent it does not call.
    #[error(
        "memory namespace {namespace} is the memory of agent {agent}; node {node} calls {node_agent}, so it may not use it"
    )]
    OtherAgentsMemory {
        /// The namespace.
        namespace: String,
        /// The agent whose memory it is.
        agent: String,
        /// The node.
        node: String,
        /// The agent the node calls (or what stands for it).
        node_agent: String,
    },
    /// The embedding provider failed or answered something unusable.
    #[error("the embedding provider failed: {detail}")]
    Embedding {
        /// What went wrong, bounded, never a key.
        detail: String,
        /// Whether the provider could not be reached or timed out (502/504
        /// rather than an unusable answer).
        unavailable: bool,
    },
    /// The embedding key cannot be had (a missing secret).
    #[error("the embedding key {reference} is not available")]
    KeyUnavailable {
        /// The key's reference (`secret:NAME`), never a value.
        reference: String,
    },
    /// A namespace names a local embedding model the deployment does not
    /// configure (`memory.local_models`).
    #[error("no local embedding model {model:?} is configured (memory.local_models)")]
    UnknownLocalModel {
        /// The name asked for.
        model: String,
    },
    /// A configured local embedding model could not be loaded or run (a
    /// deployment problem: the client sees a 500, the log the cause).
    #[error("the local embedding model {model:?} failed")]
    LocalModel {
        /// The model's configured name.
        model: String,
        /// Why.
        #[source]
        source: LocalModelError,
    },
    /// A task on the blocking pool (building, following or searching a
    /// vector index) panicked or was cancelled.
    #[error("{what} failed")]
    IndexTask {
        /// What the task was doing, e.g. "searching the index".
        what: &'static str,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The crate's result.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

// === impl MemoryError ===

impl MemoryError {
    /// An invalid request with `detail`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid {
            detail: detail.into(),
        }
    }

    /// How a client sees this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NamespaceNotFound { .. } | Self::ItemNotFound { .. } => ErrorKind::NotFound,
            Self::NamespaceExists { .. } | Self::NamespaceFull { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } | Self::SchemaViolation { .. } | Self::WrongKind { .. } => {
                ErrorKind::InvalidInput
            }
            Self::TooLarge { .. } => ErrorKind::PayloadTooLarge,
            Self::OtherAgentsMemory { .. } => ErrorKind::Forbidden,
            Self::Stale { .. } => ErrorKind::PreconditionFailed,
            Self::Embedding { unavailable, .. } => {
                if *unavailable {
                    ErrorKind::UpstreamTimeout
                } else {
                    ErrorKind::BadUpstream
                }
            }
            Self::KeyUnavailable { .. } | Self::UnknownLocalModel { .. } => ErrorKind::InvalidInput,
            Self::LocalModel { .. } | Self::IndexTask { .. } => ErrorKind::Internal,
            Self::Storage(error) => error.kind(),
        }
    }
}

/// Why a local model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum LocalModelError {
    /// The configured directory does not exist.
    #[error("model directory {path} does not exist")]
    MissingDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A file the model needs is not in its directory.
    #[error("model file {path} is missing")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not describe what the model needs.
    #[error("{path} is not a usable model description")]
    Description {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The model is not of a kind this runtime runs.
    #[error("{path}: {detail}")]
    Unsupported {
        /// The file that says so.
        path: PathBuf,
        /// What is not supported.
        detail: String,
    },
    /// `tokenizer.json` could not be loaded or a text not tokenized.
    #[error("tokenizer: {detail}")]
    Tokenizer {
        /// The tokenizer's own message.
        detail: String,
    },
    /// The weights do not fit the declared shape, or inference failed.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The blocking task loading or running the model panicked or was
    /// cancelled.
    #[error("the model's task failed: {detail}")]
    Task {
        /// The join error.
        detail: String,
    },
}
