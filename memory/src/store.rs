//! The storage trait memory needs ([`MemoryStore`]), implemented by
//! `convergio-store` on SQLite and PostgreSQL, and the rows it reads and
//! writes. Vectors cross this boundary as `f32`s; the store keeps them as
//! little-endian bytes (`BLOB`/`bytea`).
//!
//! **Invariant:** [`MemoryStore::put_item`] is one transaction: the item,
//! its version check, its item bound and all its chunks are written
//! together or not at all.
//!
//! **Invariant:** every transaction that adds or removes chunks of a
//! namespace (a write, a deletion, a prune) also raises the namespace's
//! revision by one and records each chunk added or removed under the new
//! revision ([`ChunkChange`]); the namespace's row is locked from the
//! transaction's first statement to its commit, so one namespace's
//! revisions commit in order and the changes after any revision a reader
//! saw have no gaps — until old ones are pruned, which a reader notices
//! (a revision without changes) and answers by rebuilding from the rows.

use async_trait::async_trait;
use serde_json::Value;

use crate::namespace::NamespaceSpec;
use crate::Result;

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    /// The namespace's name, unique in the deployment.
    pub name: String,
    /// The owning organisation.
    pub org: String,
    /// Its declaration.
    pub spec: NamespaceSpec,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// An item as stored: a structured record, or a vector document
/// (`{"text": …, "metadata": {…}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// The namespace.
    pub namespace: String,
    /// The item's key.
    pub key: String,
    /// The record or document.
    pub value: Value,
    /// 1 on creation, one more on every write.
    pub version: i64,
    /// Last write, Unix seconds.
    pub updated_at: i64,
    /// When it expires, Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
}

/// A chunk to store with its item.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// Its place in the document, from 0.
    pub seq: u32,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata, copied to every chunk (the filter reads it).
    pub metadata: Value,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// A chunk as stored, with the id the index knows it by.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    /// Row id: unique in the deployment, never reused.
    pub id: i64,
    /// The namespace.
    pub namespace: String,
    /// The owning item's key.
    pub key: String,
    /// Its place in the document.
    pub seq: u32,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata.
    pub metadata: Value,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// One item write.
#[derive(Debug, Clone)]
pub struct PutItem<'a> {
    /// The namespace (must exist).
    pub namespace: &'a str,
    /// The item's key.
    pub key: &'a str,
    /// The record or document.
    pub value: &'a Value,
    /// `Some(v)`: write only if the stored version is `v` (`If-Match`);
    /// `None`: create or replace.
    pub expected_version: Option<i64>,
    /// Now, Unix seconds.
    pub at: i64,
    /// When it expires, Unix seconds.
    pub expires_at: Option<i64>,
    /// The namespace's item bound: a new key past it is refused.
    pub max_items: Option<u64>,
    /// The item's chunks (vector namespaces), replacing any it had.
    pub chunks: &'a [NewChunk],
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The item's version now.
    pub version: i64,
    /// Whether the key was new (or had expired).
    pub created: bool,
    /// The ids of the chunks written, in `seq` order.
    pub chunk_ids: Vec<i64>,
    /// The ids of the chunks the write replaced.
    pub removed_chunk_ids: Vec<i64>,
    /// The namespace's revision the write made, when it added or removed
    /// chunks (`None`: a structured record, nothing for the index).
    pub revision: Option<i64>,
}

/// What deleting an item removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedItem {
    /// The ids of the item's chunks.
    pub chunk_ids: Vec<i64>,
    /// The namespace's revision the deletion made, when it removed chunks.
    pub revision: Option<i64>,
}

/// What pruning removed of one expired item: its namespace and the ids of
/// its chunks (the index drops them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedItem {
    /// The item's namespace.
    pub namespace: String,
    /// The ids of the chunks deleted with it.
    pub chunk_ids: Vec<i64>,
    /// The namespace's revision the deletion made, when it removed chunks.
    pub revision: Option<i64>,
}

/// A vector namespace's place in its history: which namespace of that name
/// (its creation) and how many chunk-changing transactions it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    /// The namespace's creation, Unix seconds.
    pub created_at: i64,
    /// Raised by one by every transaction that adds or removes its chunks.
    pub revision: i64,
}

/// What a change did to a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// The chunk was stored.
    Add,
    /// The chunk was deleted.
    Remove,
}

/// One chunk added or removed by the transaction that made `revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkChange {
    /// The namespace's revision the transaction made.
    pub revision: i64,
    /// The chunk's row id.
    pub chunk_id: i64,
    /// Added or removed.
    pub op: ChangeOp,
}

/// Memory's tables.
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Stores a new namespace; `NamespaceExists` when the name is taken.
    async fn create_namespace(&self, row: &NamespaceRow) -> Result<()>;
    /// The namespace `name`.
    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRow>>;
    /// The namespaces of `org`, or of every organisation, by name.
    async fn namespaces(&self, org: Option<&str>) -> Result<Vec<NamespaceRow>>;
    /// The namespaces of `org` scoped to the agent `agent`, by name.
    async fn agent_namespaces(&self, org: &str, agent: &str) -> Result<Vec<NamespaceRow>>;
    /// Deletes a namespace with all its items and chunks; the removed
    /// chunk ids, or `None` when there was no such namespace.
    async fn delete_namespace(&self, name: &str) -> Result<Option<Vec<i64>>>;
    /// Writes one item with its chunks (one transaction). `Stale` when
    /// `expected_version` does not match, `ItemNotFound` when it names a
    /// version of a key that does not exist, `NamespaceFull` past the
    /// item bound.
    async fn put_item(&self, put: PutItem<'_>) -> Result<PutResult>;
    /// The item, unless missing or expired at `now`.
    async fn item(&self, namespace: &str, key: &str, now: i64) -> Result<Option<ItemRow>>;
    /// Up to `limit` live items with keys after `after`, by key.
    async fn items(
        &self,
        namespace: &str,
        now: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ItemRow>>;
    /// Deletes an item (checking `expected_version` when given); what it
    /// removed, or `None` when there was no such item.
    async fn delete_item(
        &self,
        namespace: &str,
        key: &str,
        expected_version: Option<i64>,
    ) -> Result<Option<RemovedItem>>;
    /// Deletes up to `limit` items that expired at or before `before`
    /// (Unix seconds), oldest expiry first, each with its chunks, in one
    /// transaction; an item rewritten meanwhile (live again) stays.
    async fn prune_expired(&self, before: i64, limit: u32) -> Result<Vec<PrunedItem>>;
    /// Every chunk of `namespace` (the index is built from them).
    async fn chunks(&self, namespace: &str) -> Result<Vec<ChunkRow>>;
    /// The chunks among `ids` that are still stored and whose item is live
    /// at `now` (a search's answers, read back from the truth; `i64::MIN`:
    /// every stored chunk among them, as an index build reads them).
    async fn chunks_by_id(&self, namespace: &str, ids: &[i64], now: i64) -> Result<Vec<ChunkRow>>;
    /// Every vector namespace's revision, by name (one query: a replica
    /// following the others asks it every interval).
    async fn revisions(&self) -> Result<Vec<(String, Revision)>>;
    /// The vector namespace `name`'s revision, if it exists.
    async fn revision(&self, name: &str) -> Result<Option<Revision>>;
    /// The chunk changes of `namespace` with revisions in `after+1..=upto`,
    /// by revision (those still retained: see [`MemoryStore::prune_changes`]).
    async fn changes(&self, namespace: &str, after: i64, upto: i64) -> Result<Vec<ChunkChange>>;
    /// Deletes change records made before `before` (Unix seconds); how
    /// many went.
    async fn prune_changes(&self, before: i64) -> Result<u64>;
}
