//! [`Memory`]: the service behind `/v1/memory`. It checks items against
//! their namespace (a structured record against its JSON Schema, a vector
//! document's size and shape), chunks and embeds documents **before**
//! anything is written (so a failing provider writes no row), writes
//! through the [`MemoryStore`] in one transaction, and then tells the
//! [`VectorIndex`]. Policy is decided by the caller (the gateway) before
//! any method here runs; this service never sees a principal.
//!
//! Other processes writing to the same database (replicas on one
//! PostgreSQL, or two on one SQLite file) are followed by
//! [`Memory::follow_changes`], run every `memory.follow_interval_ms` by
//! [`Memory::follow`]: each loaded namespace whose stored revision moved
//! gets the chunk changes after the revision its index reflects, or is
//! rebuilt from the rows when those changes are no longer all retained.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chunk::chunk;
use crate::embed::Embedders;
use crate::index::{MetadataFilter, VectorIndex};
use crate::namespace::{check_name, EmbeddingSpec, NamespaceKind, NamespaceSpec};
use crate::store::{
    ChangeOp, ItemRow, MemoryStore, NamespaceRow, NewChunk, PutItem, PutResult, Revision,
};
use crate::{MemoryError, Result};

/// How long the store keeps a chunk change record: a replica that has not
/// caught up for longer rebuilds the namespaces that changed meanwhile.
pub const CHANGE_RETENTION: Duration = Duration::from_secs(3_600);
/// How often [`Memory::follow`] prunes change records past
/// [`CHANGE_RETENTION`].
const CHANGE_PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Added chunks read back per query while following (one placeholder each).
const FOLLOW_BATCH: usize = 500;

/// The most hits one search returns.
pub const MAX_TOP_K: usize = 100;
/// The most items one listing returns.
pub const MAX_PAGE: u32 = 500;

/// A `:search` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The text to search for.
    pub query: String,
    /// Hits wanted (1–100, default 10).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Metadata fields every hit must have with these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<MetadataFilter>,
}

fn default_top_k() -> usize {
    10
}

/// One search hit: a chunk of a document, with its similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The document's key.
    pub key: String,
    /// The chunk's place in the document.
    pub seq: u32,
    /// Cosine similarity to the query (1 is the same direction).
    pub score: f32,
    /// The chunk's text.
    pub text: String,
    /// The document's metadata.
    pub metadata: Value,
}

/// What one [`Memory::follow_changes`] did, by namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// Namespaces brought up to date by applying their changes.
    pub followed: usize,
    /// Namespaces rebuilt from the rows (changes no longer all retained,
    /// a namespace recreated under the same name, or an index made by a
    /// write before any load).
    pub rebuilt: usize,
    /// Namespaces deleted elsewhere, whose indexes were dropped.
    pub dropped: usize,
    /// Namespaces that failed (logged; tried again next time).
    pub failed: usize,
}

/// Memory namespaces, their items and their index.
pub struct Memory {
    store: Arc<dyn MemoryStore>,
    embedders: Arc<dyn Embedders>,
    index: Arc<VectorIndex>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A vector document's parts: its text and its metadata object.
fn document_parts(value: &Value) -> Result<(&str, Value)> {
    let Some(object) = value.as_object() else {
        return Err(MemoryError::invalid(
            "a vector document is an object {\"text\": …, \"metadata\": {…}}",
        ));
    };
    if let Some(field) = object
        .keys()
        .find(|field| !matches!(field.as_str(), "text" | "metadata"))
    {
        return Err(MemoryError::invalid(format!(
            "a vector document has only text and metadata, not {field:?}"
        )));
    }
    let text = object
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| MemoryError::invalid("a vector document needs text (a string)"))?;
    if text.trim().is_empty() {
        return Err(MemoryError::invalid("a vector document's text is blank"));
    }
    let metadata = match object.get("metadata") {
        None => Value::Object(Map::new()),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => return Err(MemoryError::invalid("metadata must be an object")),
    };
    Ok((text, metadata))
}

// === impl Memory ===

impl Memory {
    /// The service over `store`, embedding with `embedders`.
    pub fn new(store: Arc<dyn MemoryStore>, embedders: Arc<dyn Embedders>) -> Self {
        Self {
            store,
            embedders,
            index: Arc::new(VectorIndex::new()),
        }
    }

    /// The index (benches and tests look at it).
    pub fn index(&self) -> &Arc<VectorIndex> {
        &self.index
    }

    /// Builds every vector namespace's index from the stored chunks (at
    /// start); the number of chunks loaded.
    pub async fn load_indexes(&self) -> Result<usize> {
        let mut loaded = 0;
        for row in self.store.namespaces(None).await? {
            if row.spec.kind == NamespaceKind::Vector {
                loaded += self.load_index(&row).await?;
            }
        }
        Ok(loaded)
    }

    async fn load_index(&self, row: &NamespaceRow) -> Result<usize> {
        // The revision before the chunks: whatever commits in between is
        // both in the chunks and in the changes after it, and applying a
        // change twice is harmless.
        let at = self.store.revision(&row.name).await?;
        let chunks = self.store.chunks(&row.name).await?;
        let count = chunks.len();
        // A local model's dimensions are its own: every stored chunk has
        // them. An empty namespace of one gets its index from its first
        // write, which knows them.
        let Some(dimensions) = row
            .spec
            .embedding
            .as_ref()
            .and_then(EmbeddingSpec::dimensions)
            .or_else(|| chunks.first().map(|chunk| chunk.vector.len()))
        else {
            self.index.drop_namespace(&row.name);
            return Ok(0);
        };
        let points = chunks
            .into_iter()
            .map(|chunk| (chunk.id, chunk.vector, chunk.metadata))
            .collect();
        let index = self.index.clone();
        let name = row.name.clone();
        tokio::task::spawn_blocking(move || index.load(&name, dimensions, at, points))
            .await
            .map_err(|source| MemoryError::IndexTask {
                what: "building the index",
                source,
            })?;
        Ok(count)
    }

    /// Creates `org`'s namespace `name`.
    pub async fn create_namespace(
        &self,
        org: &str,
        name: &str,
        spec: NamespaceSpec,
    ) -> Result<NamespaceRow> {
        check_name("a namespace name", name)?;
        spec.check()?;
        if let Some(embedding) = &spec.embedding {
            self.embedders.check(embedding).await?;
        }
        let row = NamespaceRow {
            name: name.to_owned(),
            org: org.to_owned(),
            spec,
            created_at: now(),
        };
        self.store.create_namespace(&row).await?;
        tracing::info!(org = %org, namespace = %name, kind = row.spec.kind.as_str(), agent = row.spec.scope.agent().unwrap_or_default(), "memory namespace created");
        Ok(row)
    }

    /// The namespace `name` (whoever owns it: the caller decides).
    pub async fn namespace(&self, name: &str) -> Result<NamespaceRow> {
        self.store
            .namespace(name)
            .await?
            .ok_or_else(|| MemoryError::NamespaceNotFound {
                namespace: name.to_owned(),
            })
    }

    /// `org`'s namespaces.
    pub async fn namespaces(&self, org: &str) -> Result<Vec<NamespaceRow>> {
        self.store.namespaces(Some(org)).await
    }

    /// The namespaces of `org` scoped to its agent `agent`, by name.
    pub async fn agent_namespaces(&self, org: &str, agent: &str) -> Result<Vec<NamespaceRow>> {
        self.store.agent_namespaces(org, agent).await
    }

    /// Deletes a namespace and everything in it.
    pub async fn delete_namespace(&self, namespace: &NamespaceRow) -> Result<()> {
        if self
            .store
            .delete_namespace(&namespace.name)
            .await?
            .is_none()
        {
            return Err(MemoryError::NamespaceNotFound {
                namespace: namespace.name.clone(),
            });
        }
        self.index.drop_namespace(&namespace.name);
        tracing::info!(org = %namespace.org, namespace = %namespace.name, "memory namespace deleted");
        Ok(())
    }

    /// Writes item `key`: a record checked against the schema, or a
    /// document chunked and embedded before anything is stored.
    pub async fn put(
        &self,
        namespace: &NamespaceRow,
        key: &str,
        value: Value,
        expected_version: Option<i64>,
    ) -> Result<PutResult> {
        check_name("an item key", key)?;
        let size = serde_json::to_vec(&value)
            .map(|bytes| bytes.len())
            .unwrap_or(usize::MAX);
        let limit = namespace.spec.max_item_bytes();
        if size > limit {
            return Err(MemoryError::TooLarge { size, limit });
        }
        let spec = &namespace.spec;
        let chunks = match spec.kind {
            NamespaceKind::Structured => {
                if let Some(schema) = &spec.schema {
                    let validator = jsonschema::validator_for(schema).map_err(|error| {
                        MemoryError::invalid(format!(
                            "the namespace's schema does not compile: {error}"
                        ))
                    })?;
                    let violations: Vec<String> = validator
                        .iter_errors(&value)
                        .map(|error| format!("{}: {error}", error.instance_path()))
                        .collect();
                    if !violations.is_empty() {
                        return Err(MemoryError::SchemaViolation { violations });
                    }
                }
                Vec::new()
            }
            NamespaceKind::Vector => self.embed_document(namespace, &value).await?,
        };
        let at = now();
        let expires_at = spec
            .retention
            .ttl_seconds
            .and_then(|ttl| i64::try_from(ttl).ok())
            .map(|ttl| at.saturating_add(ttl));
        let result = self
            .store
            .put_item(PutItem {
                namespace: &namespace.name,
                key,
                value: &value,
                expected_version,
                at,
                expires_at,
                max_items: spec.retention.max_items,
                chunks: &chunks,
            })
            .await?;
        if spec.kind == NamespaceKind::Vector {
            let added: Vec<(i64, &[f32], &Value)> = result
                .chunk_ids
                .iter()
                .zip(&chunks)
                .map(|(id, chunk)| (*id, chunk.vector.as_slice(), &chunk.metadata))
                .collect();
            self.ensure_index(namespace).await?;
            self.index.apply(
                &namespace.name,
                chunks.first().map_or(0, |chunk| chunk.vector.len()),
                &added,
                &result.removed_chunk_ids,
                result.revision,
            );
        }
        Ok(result)
    }

    async fn embed_document(
        &self,
        namespace: &NamespaceRow,
        value: &Value,
    ) -> Result<Vec<NewChunk>> {
        let (text, metadata) = document_parts(value)?;
        let texts = chunk(text, namespace.spec.chunking());
        let embedding = namespace.spec.embedding.as_ref().ok_or_else(|| {
            MemoryError::invalid("the vector namespace has no embedding provider")
        })?;
        let embedder = self.embedders.embedder(&namespace.org, embedding).await?;
        let vectors = embedder.embed(&texts).await?;
        if vectors.len() != texts.len() {
            return Err(MemoryError::Embedding {
                detail: format!("{} vectors for {} texts", vectors.len(), texts.len()),
                unavailable: false,
            });
        }
        Ok(texts
            .into_iter()
            .zip(vectors)
            .zip(0_u32..)
            .map(|((text, vector), seq)| NewChunk {
                seq,
                text,
                metadata: metadata.clone(),
                vector,
            })
            .collect())
    }

    /// Loads a vector namespace's index the first time this process needs
    /// it (a namespace created by another replica, or before any write).
    async fn ensure_index(&self, namespace: &NamespaceRow) -> Result<()> {
        if !self.index.contains(&namespace.name) {
            self.load_index(namespace).await?;
        }
        Ok(())
    }

    /// Item `key`, unless missing or expired.
    pub async fn get(&self, namespace: &NamespaceRow, key: &str) -> Result<ItemRow> {
        self.store
            .item(&namespace.name, key, now())
            .await?
            .ok_or_else(|| MemoryError::ItemNotFound {
                namespace: namespace.name.clone(),
                key: key.to_owned(),
            })
    }

    /// Up to `limit` live items after `after`, by key.
    pub async fn list(
        &self,
        namespace: &NamespaceRow,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ItemRow>> {
        self.store
            .items(&namespace.name, now(), after, limit.clamp(1, MAX_PAGE))
            .await
    }

    /// Deletes item `key` (checking `expected_version` when given).
    pub async fn delete(
        &self,
        namespace: &NamespaceRow,
        key: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let Some(removed) = self
            .store
            .delete_item(&namespace.name, key, expected_version)
            .await?
        else {
            return Err(MemoryError::ItemNotFound {
                namespace: namespace.name.clone(),
                key: key.to_owned(),
            });
        };
        if !removed.chunk_ids.is_empty() {
            self.index.apply(
                &namespace.name,
                0,
                &[],
                &removed.chunk_ids,
                removed.revision,
            );
        }
        Ok(())
    }

    /// Deletes up to `limit` items that expired at or before `before`
    /// (Unix seconds) with their chunks, and drops the chunks from the
    /// index; how many items went. The retention pruner calls it.
    pub async fn prune_expired(&self, before: i64, limit: u32) -> Result<u64> {
        let pruned = self.store.prune_expired(before, limit).await?;
        for item in &pruned {
            // An index this process never loaded is built from the rows,
            // which no longer hold these chunks (`apply` makes no index
            // for removals alone).
            if !item.chunk_ids.is_empty() {
                self.index
                    .apply(&item.namespace, 0, &[], &item.chunk_ids, item.revision);
            }
        }
        Ok(pruned.len() as u64)
    }

    /// Brings every namespace index of this process up to the stored
    /// revisions: the writes other processes committed since are applied
    /// (or the namespace is rebuilt from the rows), and a namespace
    /// deleted elsewhere is dropped. One query when nothing moved.
    pub async fn follow_changes(&self) -> Result<FollowReport> {
        let mut report = FollowReport::default();
        // Ours before the store's: a stored revision read after ours is
        // never behind it (revisions only grow), except for a namespace
        // recreated, which is rebuilt.
        let ours = self.index.revisions();
        if ours.is_empty() {
            return Ok(report);
        }
        let stored: HashMap<String, Revision> = self.store.revisions().await?.into_iter().collect();
        for (name, at) in ours {
            let Some(now) = stored.get(&name).copied() else {
                self.index.drop_namespace(&name);
                report.dropped += 1;
                continue;
            };
            let outcome = match at {
                Some(at) if at == now => continue,
                Some(at) if at.created_at == now.created_at && at.revision < now.revision => {
                    match self.apply_changes(&name, at.revision, now.revision).await {
                        Ok(true) => Ok(&mut report.followed),
                        Ok(false) => self.rebuild(&name).await.map(|()| &mut report.rebuilt),
                        Err(error) => Err(error),
                    }
                }
                _ => self.rebuild(&name).await.map(|()| &mut report.rebuilt),
            };
            match outcome {
                Ok(counter) => *counter += 1,
                Err(error) => {
                    tracing::warn!(namespace = %name, %error, "following a memory namespace failed");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Applies `namespace`'s changes `after+1..=upto` to its index; false
    /// when they are not all retained (a revision without changes) or do
    /// not fit the index, so it must be rebuilt.
    async fn apply_changes(&self, namespace: &str, after: i64, upto: i64) -> Result<bool> {
        let changes = self.store.changes(namespace, after, upto).await?;
        // Every revision of the range has at least one change (a
        // transaction that changes no chunk raises none), so a missing
        // one was pruned.
        let mut last = after;
        for change in &changes {
            if change.revision == last + 1 {
                last += 1;
            } else if change.revision != last {
                return Ok(false);
            }
        }
        if last != upto {
            return Ok(false);
        }
        let Some(dimensions) = self.index.dimensions(namespace) else {
            return Ok(true);
        };
        let ids = |op: ChangeOp| -> Vec<i64> {
            changes
                .iter()
                .filter(|change| change.op == op)
                .map(|change| change.chunk_id)
                .collect()
        };
        let (added_ids, removed) = (ids(ChangeOp::Add), ids(ChangeOp::Remove));
        let mut rows = Vec::with_capacity(added_ids.len());
        for batch in added_ids.chunks(FOLLOW_BATCH) {
            // Expired or not, as a build reads them; a chunk removed since
            // is not there, and its remove is among the changes.
            rows.extend(self.store.chunks_by_id(namespace, batch, i64::MIN).await?);
        }
        if rows.iter().any(|row| row.vector.len() != dimensions) {
            return Ok(false);
        }
        // Coding and inserting vectors is CPU work: off the async threads.
        let index = self.index.clone();
        let name = namespace.to_owned();
        tokio::task::spawn_blocking(move || {
            let added: Vec<(i64, &[f32], &Value)> = rows
                .iter()
                .map(|row| (row.id, row.vector.as_slice(), &row.metadata))
                .collect();
            index.follow(&name, &added, &removed, upto);
        })
        .await
        .map_err(|source| MemoryError::IndexTask {
            what: "following the index",
            source,
        })?;
        Ok(true)
    }

    /// Rebuilds `namespace`'s index from the rows (dropped if the
    /// namespace is gone).
    async fn rebuild(&self, namespace: &str) -> Result<()> {
        match self.store.namespace(namespace).await? {
            Some(row) if row.spec.kind == NamespaceKind::Vector => {
                self.load_index(&row).await?;
            }
            _ => self.index.drop_namespace(namespace),
        }
        Ok(())
    }

    /// Deletes chunk change records older than `before` (Unix seconds);
    /// how many went.
    pub async fn prune_changes(&self, before: i64) -> Result<u64> {
        self.store.prune_changes(before).await
    }

    /// Follows other processes' writes every `interval` (`None`: never),
    /// and prunes change records older than [`CHANGE_RETENTION`] every
    /// minute either way; the task runs until it is aborted or the runtime
    /// ends. A failing pass is logged and tried again at the next tick.
    pub fn follow(self: Arc<Self>, interval: Option<Duration>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.unwrap_or(CHANGE_PRUNE_EVERY));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut pruned_at: Option<Instant> = None;
            loop {
                ticker.tick().await;
                if interval.is_some() {
                    match self.follow_changes().await {
                        Ok(report) if report == FollowReport::default() => {}
                        Ok(report) => tracing::debug!(
                            followed = report.followed,
                            rebuilt = report.rebuilt,
                            dropped = report.dropped,
                            failed = report.failed,
                            "memory index followed other replicas' writes"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "following memory changes failed");
                        }
                    }
                }
                if pruned_at.is_none_or(|at| at.elapsed() >= CHANGE_PRUNE_EVERY) {
                    pruned_at = Some(Instant::now());
                    let retention = i64::try_from(CHANGE_RETENTION.as_secs()).unwrap_or(i64::MAX);
                    if let Err(error) = self.prune_changes(now().saturating_sub(retention)).await {
                        tracing::warn!(%error, "pruning memory change records failed");
                    }
                }
            }
        })
    }

    /// The `top_k` chunks nearest the query, filtered by metadata.
    pub async fn search(
        &self,
        namespace: &NamespaceRow,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        let Some(embedding) = namespace.spec.embedding.as_ref() else {
            return Err(MemoryError::WrongKind {
                namespace: namespace.name.clone(),
                kind: namespace.spec.kind.as_str(),
                detail: "only vector namespaces are searched".to_owned(),
            });
        };
        if request.top_k == 0 || request.top_k > MAX_TOP_K {
            return Err(MemoryError::invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}"
            )));
        }
        if request.query.trim().is_empty() {
            return Err(MemoryError::invalid("the query is blank"));
        }
        let embedder = self.embedders.embedder(&namespace.org, embedding).await?;
        let mut vectors = embedder.embed(std::slice::from_ref(&request.query)).await?;
        let query = vectors.pop().ok_or_else(|| MemoryError::Embedding {
            detail: "no vector for the query".to_owned(),
            unavailable: false,
        })?;
        self.ensure_index(namespace).await?;
        // A scan of every code is milliseconds of CPU at 1,000,000 points
        // (see `index.rs`): off the async threads, like loads and follows.
        let index = self.index.clone();
        let name = namespace.name.clone();
        let top_k = request.top_k;
        let filter = request.filter.clone();
        let neighbours = tokio::task::spawn_blocking(move || {
            index.search(&name, &query, top_k, top_k * 4, filter.as_ref())
        })
        .await
        .map_err(|source| MemoryError::IndexTask {
            what: "searching the index",
            source,
        })?;
        let ids: Vec<i64> = neighbours.iter().map(|neighbour| neighbour.id).collect();
        let rows = self
            .store
            .chunks_by_id(&namespace.name, &ids, now())
            .await?;
        // Answer in the index's order, only what the rows still hold.
        Ok(neighbours
            .iter()
            .filter_map(|neighbour| {
                let row = rows.iter().find(|row| row.id == neighbour.id)?;
                Some(SearchHit {
                    key: row.key.clone(),
                    seq: row.seq,
                    score: neighbour.score,
                    text: row.text.clone(),
                    metadata: row.metadata.clone(),
                })
            })
            .collect())
    }
}
