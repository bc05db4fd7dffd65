//! Memory for agents (issue 20, first slice): namespaces owned by an
//! organisation, of kind `structured` (records checked against the
//! namespace's JSON Schema, optimistic concurrency by version) or `vector`
//! (documents chunked, embedded and searched by similarity with a metadata
//! filter), each with a retention (TTL and an item bound), and a scope:
//! the organisation's shared knowledge or one agent's own memory.
//!
//! The crate does no SQL and serves no HTTP: it defines the storage trait
//! ([`MemoryStore`], implemented by `convergio-store`), the embedding
//! providers ([`embed`]) and the in-memory ANN index ([`index`]), and the
//! [`Memory`] service that ties them together. The gateway serves it under
//! `/v1/memory` and decides every call by policy before it gets here.
//!
//! **Invariant:** the rows are the truth, the index is derived: it is built
//! from the stored chunks at start (or first use) and follows every write —
//! this process's after its commit, other processes' on the same database
//! (replicas on one PostgreSQL, two on one SQLite file) through
//! [`Memory::follow_changes`], by each namespace's revision and the chunk
//! change records every write leaves (see [`store`]), rebuilding from the
//! rows when those are no longer all retained; a search reads the rows it
//! returns back from the store, so a chunk the index still names but the
//! store no longer holds is never answered.

pub mod chunk;
pub mod embed;
pub mod error;
pub mod index;
pub mod local;
pub mod namespace;
pub mod service;
pub mod store;

pub use error::{MemoryError, Result};
pub use namespace::{
    Chunking, EmbeddingSpec, NamespaceKind, NamespaceScope, NamespaceSpec, Retention,
};
pub use service::{FollowReport, Memory, SearchHit, SearchRequest, CHANGE_RETENTION};
pub use store::{
    ChangeOp, ChunkChange, ChunkRow, ItemRow, MemoryStore, NamespaceRow, NewChunk, PrunedItem,
    PutItem, RemovedItem, Revision,
};
