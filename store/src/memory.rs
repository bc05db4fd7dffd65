//! Memory's tables (migrations 0013, 0014, 0019 and 0020, issue 20) on either backend: the
//! memory crate's [`MemoryStore`] over the process's one [`Db`]. Every
//! statement is written once with `$N` placeholders; the one built at run
//! time (a search's `IN` list) numbers its placeholders per backend.
//!
//! Invariants held here:
//! - a write is one transaction that first touches its namespace's row, so
//!   writes to one namespace are serialised (a row lock on PostgreSQL,
//!   the write lock on SQLite): the item bound and the version check read
//!   what no other write can change before the commit;
//! - an item's chunks are replaced with it, in the same transaction, and
//!   deleted with it; chunk ids come from the database and are never
//!   reused, so the index can tombstone an id for good;
//! - every transaction that adds or removes chunks raises its namespace's
//!   revision (`BUMP_REVISION`) and records each chunk added or removed
//!   under the new revision (`memory_chunk_changes`), so another replica's
//!   index follows by reading the changes after the revision it reflects
//!   (see `BUMP_REVISION` for why those have no gaps);
//! - a namespace's `agent` column is its declaration's scope, written
//!   together; a row where they disagree does not decode (an error);
//! - a vector is stored as its `f32`s, little-endian; one whose length is
//!   not a multiple of four does not decode (an error, never a default).

use async_trait::async_trait;
use convergio_memory::store::{
    ChangeOp, ChunkChange, ChunkRow, ItemRow, MemoryStore, NamespaceRow, PrunedItem, PutItem,
    PutResult, RemovedItem, Revision,
};
use convergio_memory::{MemoryError, NamespaceSpec, Result};
use convergio_schemas::{StorageError, StorageFailure};
use serde_json::Value;

use crate::registry::on_pool;
use crate::{Backend, Db, DbResult};

/// A new namespace starts one revision past the highest its name recorded
/// (an earlier namespace of that name, deleted): that revision has no
/// changes, so a replica still holding the earlier one's index finds a gap
/// and rebuilds instead of applying the new one's changes to it.
const CREATE_NAMESPACE: &str = "INSERT INTO memory_namespaces \
     (name, org, kind, spec, created_at, agent, revision) VALUES ($1, $2, $3, $4, $5, $6, \
     COALESCE((SELECT MAX(revision) FROM memory_chunk_changes WHERE namespace = $1), 0) + 1)";
const GET_NAMESPACE: &str =
    "SELECT name, org, spec, created_at, agent FROM memory_namespaces WHERE name = $1";
const LIST_NAMESPACES: &str =
    "SELECT name, org, spec, created_at, agent FROM memory_namespaces ORDER BY name";
const LIST_ORG_NAMESPACES: &str = "SELECT name, org, spec, created_at, agent \
     FROM memory_namespaces WHERE org = $1 ORDER BY name";
/// By `memory_namespaces_by_agent` (migration 0019).
const LIST_AGENT_NAMESPACES: &str = "SELECT name, org, spec, created_at, agent \
     FROM memory_namespaces WHERE org = $1 AND agent = $2 ORDER BY name";
/// Takes the namespace's row lock (PostgreSQL) or the write lock (SQLite)
/// for the rest of the transaction, and says whether it exists.
const LOCK_NAMESPACE: &str = "UPDATE memory_namespaces SET name = name WHERE name = $1";
const DELETE_NAMESPACE: &str = "DELETE FROM memory_namespaces WHERE name = $1";
const DELETE_NAMESPACE_ITEMS: &str = "DELETE FROM memory_items WHERE namespace = $1";
const NAMESPACE_CHUNK_IDS: &str = "SELECT id FROM memory_chunks WHERE namespace = $1";
const DELETE_NAMESPACE_CHUNKS: &str = "DELETE FROM memory_chunks WHERE namespace = $1";

/// Raises the namespace's revision in a transaction that adds or removes
/// its chunks, and returns the new one. The namespace's row is already
/// locked by `LOCK_NAMESPACE` (PostgreSQL's row lock, SQLite's write lock)
/// and stays locked until the commit, so two transactions of one namespace
/// never overlap: the one that made revision R commits before the one that
/// makes R+1 can read R. Revisions therefore become visible in order, and
/// a reader that saw revision R and later sees S finds every change of
/// R+1..=S committed (no gaps), unless pruned by age.
const BUMP_REVISION: &str =
    "UPDATE memory_namespaces SET revision = revision + 1 WHERE name = $1 RETURNING revision";
/// Records every chunk the item has now as added, or (before they are
/// deleted) as removed, under revision `$3`.
const RECORD_ITEM_CHUNKS: &str = "INSERT INTO memory_chunk_changes \
     (namespace, revision, chunk_id, op, changed_at) \
     SELECT namespace, $3, id, $4, $5 FROM memory_chunks WHERE namespace = $1 AND key = $2";
const VECTOR_REVISIONS: &str = "SELECT name, created_at, revision FROM memory_namespaces \
     WHERE kind = 'vector' ORDER BY name";
const VECTOR_REVISION: &str =
    "SELECT created_at, revision FROM memory_namespaces WHERE name = $1 AND kind = 'vector'";
/// By the primary key (namespace, revision, chunk_id).
const CHANGES_AFTER: &str = "SELECT revision, chunk_id, op FROM memory_chunk_changes \
     WHERE namespace = $1 AND revision > $2 AND revision <= $3 ORDER BY revision, chunk_id";
/// By `memory_chunk_changes_by_age`.
const PRUNE_CHANGES: &str = "DELETE FROM memory_chunk_changes WHERE changed_at < $1";
const OP_ADD: &str = "add";
const OP_REMOVE: &str = "remove";

const ITEM_STATE: &str =
    "SELECT version, expires_at FROM memory_items WHERE namespace = $1 AND key = $2";
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM memory_items \
     WHERE namespace = $1 AND (expires_at IS NULL OR expires_at > $2)";
const INSERT_ITEM: &str = "INSERT INTO memory_items \
     (namespace, key, value, version, updated_at, expires_at) VALUES ($1, $2, $3, 1, $4, $5)";
const UPDATE_ITEM: &str = "UPDATE memory_items SET value = $3, version = $4, updated_at = $5, \
     expires_at = $6 WHERE namespace = $1 AND key = $2 AND version = $7";
const ITEM_CHUNK_IDS: &str =
    "SELECT id FROM memory_chunks WHERE namespace = $1 AND key = $2 ORDER BY id";
const DELETE_ITEM_CHUNKS: &str = "DELETE FROM memory_chunks WHERE namespace = $1 AND key = $2";
const INSERT_CHUNK: &str = "INSERT INTO memory_chunks \
     (namespace, key, seq, text, metadata, vector) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const DELETE_ITEM: &str = "DELETE FROM memory_items WHERE namespace = $1 AND key = $2";

/// Oldest expiry first, by `memory_items_by_expiry` (migration 0014).
const EXPIRED_ITEMS: &str = "SELECT namespace, key FROM memory_items \
     WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2";
/// Deletes the item only if it is still expired: a write that renewed it
/// meanwhile wins.
const DELETE_EXPIRED_ITEM: &str = "DELETE FROM memory_items WHERE namespace = $1 AND key = $2 \
     AND expires_at IS NOT NULL AND expires_at <= $3";

const GET_ITEM: &str = "SELECT namespace, key, value, version, updated_at, expires_at \
     FROM memory_items WHERE namespace = $1 AND key = $2 \
     AND (expires_at IS NULL OR expires_at > $3)";
const LIST_ITEMS: &str = "SELECT namespace, key, value, version, updated_at, expires_at \
     FROM memory_items WHERE namespace = $1 AND (expires_at IS NULL OR expires_at > $2) \
     AND key > $3 ORDER BY key LIMIT $4";
const NAMESPACE_CHUNKS: &str = "SELECT id, namespace, key, seq, text, metadata, vector \
     FROM memory_chunks WHERE namespace = $1 ORDER BY id";
/// Completed by `$3…` placeholders, one per id.
const CHUNKS_BY_ID: &str = "SELECT c.id, c.namespace, c.key, c.seq, c.text, c.metadata, c.vector \
     FROM memory_chunks c JOIN memory_items i ON i.namespace = c.namespace AND i.key = c.key \
     WHERE c.namespace = $1 AND (i.expires_at IS NULL OR i.expires_at > $2) AND c.id IN ";

/// A `memory_namespaces` row as read.
type NamespaceTuple = (String, String, String, i64, Option<String>);
/// A `memory_items` row as read.
type ItemTuple = (String, String, String, i64, i64, Option<i64>);
/// A `memory_chunks` row as read.
type ChunkTuple = (i64, String, String, i64, String, String, Vec<u8>);

/// Memory namespaces, items and chunks in the process's database.
#[derive(Debug, Clone)]
pub struct MemoryTables {
    db: Db,
}

// === impl MemoryTables ===

impl MemoryTables {
    /// The store over `db` (already migrated by [`Db::open`]).
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

/// A vector as stored: its `f32`s, little-endian.
pub fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// A stored vector read back.
pub fn vector_of(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|quad| f32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))
            .collect(),
    )
}

fn corrupt(what: String) -> MemoryError {
    MemoryError::Storage(StorageError::corrupt(what))
}

fn json_text(value: &Value, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|error| MemoryError::invalid(format!("{what}: {error}")))
}

fn decode_namespace(row: NamespaceTuple) -> Result<NamespaceRow> {
    let (name, org, spec, created_at, agent) = row;
    let spec: NamespaceSpec = serde_json::from_str(&spec)
        .map_err(|error| corrupt(format!("stored memory namespace {name}: {error}")))?;
    if spec.scope.agent() != agent.as_deref() {
        return Err(corrupt(format!(
            "stored memory namespace {name}: its agent column and its declaration's scope differ"
        )));
    }
    Ok(NamespaceRow {
        name,
        org,
        spec,
        created_at,
    })
}

fn decode_item(row: ItemTuple) -> Result<ItemRow> {
    let (namespace, key, value, version, updated_at, expires_at) = row;
    let value = serde_json::from_str(&value)
        .map_err(|error| corrupt(format!("stored memory item {namespace}/{key}: {error}")))?;
    Ok(ItemRow {
        namespace,
        key,
        value,
        version,
        updated_at,
        expires_at,
    })
}

fn decode_chunk(row: ChunkTuple) -> Result<ChunkRow> {
    let (id, namespace, key, seq, text, metadata, vector) = row;
    let metadata = serde_json::from_str(&metadata)
        .map_err(|error| corrupt(format!("stored memory chunk {id} metadata: {error}")))?;
    let vector =
        vector_of(&vector).ok_or_else(|| corrupt(format!("stored memory chunk {id} vector")))?;
    let seq = u32::try_from(seq).map_err(|_| corrupt(format!("stored memory chunk {id} seq")))?;
    Ok(ChunkRow {
        id,
        namespace,
        key,
        seq,
        text,
        metadata,
        vector,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn decode_op(namespace: &str, revision: i64, op: &str) -> Result<ChangeOp> {
    match op {
        OP_ADD => Ok(ChangeOp::Add),
        OP_REMOVE => Ok(ChangeOp::Remove),
        other => Err(corrupt(format!(
            "stored memory change of {namespace} at revision {revision}: unknown op {other:?}"
        ))),
    }
}

fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// `CHUNKS_BY_ID` with `count` id placeholders numbered from `$3`.
fn chunks_by_id_sql(backend: Backend, count: usize) -> String {
    let mark = match backend {
        Backend::Postgres => '$',
        Backend::Sqlite => '?',
    };
    let placeholders: Vec<String> = (3..3 + count).map(|n| format!("{mark}{n}")).collect();
    let head = match backend {
        Backend::Postgres => CHUNKS_BY_ID.to_owned(),
        Backend::Sqlite => CHUNKS_BY_ID.replace("$1", "?1").replace("$2", "?2"),
    };
    format!("{head}({})", placeholders.join(", "))
}

#[async_trait]
impl MemoryStore for MemoryTables {
    async fn create_namespace(&self, row: &NamespaceRow) -> Result<()> {
        let spec = serde_json::to_value(&row.spec)
            .map_err(|error| MemoryError::invalid(format!("declaration: {error}")))?;
        let spec = json_text(&spec, "declaration")?;
        let sql = self.db.backend().sql(CREATE_NAMESPACE);
        let created = on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(&row.name)
            .bind(&row.org)
            .bind(row.spec.kind.as_str())
            .bind(&spec)
            .bind(row.created_at)
            .bind(row.spec.scope.agent())
            .execute(pool)
            .await
            .map(|_| ())
            .db("creating a memory namespace"));
        match created {
            Ok(_) => Ok(()),
            Err(error) if error.failure() == StorageFailure::Conflict => {
                Err(MemoryError::NamespaceExists {
                    namespace: row.name.clone(),
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRow>> {
        let sql = self.db.backend().sql(GET_NAMESPACE);
        let row: Option<NamespaceTuple> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a memory namespace")?);
        row.map(decode_namespace).transpose()
    }

    async fn namespaces(&self, org: Option<&str>) -> Result<Vec<NamespaceRow>> {
        let rows: Vec<NamespaceTuple> = match org {
            Some(org) => {
                let sql = self.db.backend().sql(LIST_ORG_NAMESPACES);
                on_pool!(self.db, |pool| sqlx::query_as(&sql)
                    .bind(org)
                    .fetch_all(pool)
                    .await
                    .db("listing memory namespaces")?)
            }
            None => on_pool!(self.db, |pool| sqlx::query_as(LIST_NAMESPACES)
                .fetch_all(pool)
                .await
                .db("listing memory namespaces")?),
        };
        rows.into_iter().map(decode_namespace).collect()
    }

    async fn agent_namespaces(&self, org: &str, agent: &str) -> Result<Vec<NamespaceRow>> {
        let sql = self.db.backend().sql(LIST_AGENT_NAMESPACES);
        let rows: Vec<NamespaceTuple> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(org)
            .bind(agent)
            .fetch_all(pool)
            .await
            .db("listing an agent's memory namespaces")?);
        rows.into_iter().map(decode_namespace).collect()
    }

    async fn delete_namespace(&self, name: &str) -> Result<Option<Vec<i64>>> {
        let backend = self.db.backend();
        let (lock, ids_sql, chunks_sql, items_sql, namespace_sql) = (
            backend.sql(LOCK_NAMESPACE),
            backend.sql(NAMESPACE_CHUNK_IDS),
            backend.sql(DELETE_NAMESPACE_CHUNKS),
            backend.sql(DELETE_NAMESPACE_ITEMS),
            backend.sql(DELETE_NAMESPACE),
        );
        let removed = on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning a namespace deletion")?;
            let found = sqlx::query(&lock)
                .bind(name)
                .execute(&mut *transaction)
                .await
                .db("locking a memory namespace")?
                .rows_affected();
            if found == 0 {
                None
            } else {
                let ids: Vec<i64> = sqlx::query_scalar(&ids_sql)
                    .bind(name)
                    .fetch_all(&mut *transaction)
                    .await
                    .db("listing a namespace's chunks")?;
                for sql in [&chunks_sql, &items_sql, &namespace_sql] {
                    sqlx::query(sql)
                        .bind(name)
                        .execute(&mut *transaction)
                        .await
                        .db("deleting a memory namespace")?;
                }
                transaction
                    .commit()
                    .await
                    .db("committing a namespace deletion")?;
                Some(ids)
            }
        });
        Ok(removed)
    }

    async fn put_item(&self, put: PutItem<'_>) -> Result<PutResult> {
        let value = json_text(put.value, "item")?;
        let chunks = put
            .chunks
            .iter()
            .map(|chunk| {
                Ok((
                    i64::from(chunk.seq),
                    json_text(&chunk.metadata, "metadata")?,
                    vector_bytes(&chunk.vector),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let backend = self.db.backend();
        let lock = backend.sql(LOCK_NAMESPACE);
        let state_sql = backend.sql(ITEM_STATE);
        let count_sql = backend.sql(COUNT_LIVE);
        let insert_sql = backend.sql(INSERT_ITEM);
        let update_sql = backend.sql(UPDATE_ITEM);
        let ids_sql = backend.sql(ITEM_CHUNK_IDS);
        let delete_chunks_sql = backend.sql(DELETE_ITEM_CHUNKS);
        let chunk_sql = backend.sql(INSERT_CHUNK);
        let bump_sql = backend.sql(BUMP_REVISION);
        let record_sql = backend.sql(RECORD_ITEM_CHUNKS);
        on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning an item write")?;
            let found = sqlx::query(&lock)
                .bind(put.namespace)
                .execute(&mut *transaction)
                .await
                .db("locking a memory namespace")?
                .rows_affected();
            if found == 0 {
                return Err(MemoryError::NamespaceNotFound {
                    namespace: put.namespace.to_owned(),
                });
            }
            let state: Option<(i64, Option<i64>)> = sqlx::query_as(&state_sql)
                .bind(put.namespace)
                .bind(put.key)
                .fetch_optional(&mut *transaction)
                .await
                .db("reading an item's version")?;
            let live = state.filter(|(_, expires_at)| is_live(*expires_at, put.at));
            if let Some(expected) = put.expected_version {
                match live {
                    None => {
                        return Err(MemoryError::ItemNotFound {
                            namespace: put.namespace.to_owned(),
                            key: put.key.to_owned(),
                        })
                    }
                    Some((version, _)) if version != expected => {
                        return Err(MemoryError::Stale {
                            key: put.key.to_owned(),
                        })
                    }
                    Some(_) => {}
                }
            }
            if live.is_none() {
                if let Some(max_items) = put.max_items {
                    let count: i64 = sqlx::query_scalar(&count_sql)
                        .bind(put.namespace)
                        .bind(put.at)
                        .fetch_one(&mut *transaction)
                        .await
                        .db("counting a namespace's items")?;
                    if u64::try_from(count).unwrap_or(0) >= max_items {
                        return Err(MemoryError::NamespaceFull {
                            namespace: put.namespace.to_owned(),
                            max_items,
                        });
                    }
                }
            }
            let updated = match state {
                None => None,
                Some((stored, _)) => {
                    // An expired item's key starts again at version 1.
                    let next = if live.is_some() { stored + 1 } else { 1 };
                    let rows = sqlx::query(&update_sql)
                        .bind(put.namespace)
                        .bind(put.key)
                        .bind(&value)
                        .bind(next)
                        .bind(put.at)
                        .bind(put.expires_at)
                        .bind(stored)
                        .execute(&mut *transaction)
                        .await
                        .db("updating an item")?
                        .rows_affected();
                    Some((rows, next))
                }
            };
            let version = match updated {
                Some((rows, next)) if rows > 0 => next,
                Some(_) if live.is_some() => {
                    return Err(MemoryError::Stale {
                        key: put.key.to_owned(),
                    })
                }
                // No row, or an expired one the pruner deleted since we
                // read it: the key starts again.
                _ => {
                    sqlx::query(&insert_sql)
                        .bind(put.namespace)
                        .bind(put.key)
                        .bind(&value)
                        .bind(put.at)
                        .bind(put.expires_at)
                        .execute(&mut *transaction)
                        .await
                        .db("inserting an item")?;
                    1
                }
            };
            let removed_chunk_ids: Vec<i64> = sqlx::query_scalar(&ids_sql)
                .bind(put.namespace)
                .bind(put.key)
                .fetch_all(&mut *transaction)
                .await
                .db("listing an item's chunks")?;
            let revision: Option<i64> = if removed_chunk_ids.is_empty() && chunks.is_empty() {
                None
            } else {
                Some(
                    sqlx::query_scalar(&bump_sql)
                        .bind(put.namespace)
                        .fetch_one(&mut *transaction)
                        .await
                        .db("raising a namespace's revision")?,
                )
            };
            if let (Some(revision), false) = (revision, removed_chunk_ids.is_empty()) {
                sqlx::query(&record_sql)
                    .bind(put.namespace)
                    .bind(put.key)
                    .bind(revision)
                    .bind(OP_REMOVE)
                    .bind(put.at)
                    .execute(&mut *transaction)
                    .await
                    .db("recording an item's removed chunks")?;
                sqlx::query(&delete_chunks_sql)
                    .bind(put.namespace)
                    .bind(put.key)
                    .execute(&mut *transaction)
                    .await
                    .db("deleting an item's chunks")?;
            }
            let mut chunk_ids = Vec::with_capacity(chunks.len());
            for (chunk, (seq, metadata, vector)) in put.chunks.iter().zip(&chunks) {
                let id: i64 = sqlx::query_scalar(&chunk_sql)
                    .bind(put.namespace)
                    .bind(put.key)
                    .bind(*seq)
                    .bind(&chunk.text)
                    .bind(metadata)
                    .bind(vector)
                    .fetch_one(&mut *transaction)
                    .await
                    .db("inserting a chunk")?;
                chunk_ids.push(id);
            }
            if let (Some(revision), false) = (revision, chunk_ids.is_empty()) {
                sqlx::query(&record_sql)
                    .bind(put.namespace)
                    .bind(put.key)
                    .bind(revision)
                    .bind(OP_ADD)
                    .bind(put.at)
                    .execute(&mut *transaction)
                    .await
                    .db("recording an item's added chunks")?;
            }
            transaction.commit().await.db("committing an item write")?;
            Ok(PutResult {
                version,
                created: live.is_none(),
                chunk_ids,
                removed_chunk_ids,
                revision,
            })
        })
    }

    async fn item(&self, namespace: &str, key: &str, now: i64) -> Result<Option<ItemRow>> {
        let sql = self.db.backend().sql(GET_ITEM);
        let row: Option<ItemTuple> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(namespace)
            .bind(key)
            .bind(now)
            .fetch_optional(pool)
            .await
            .db("reading a memory item")?);
        row.map(decode_item).transpose()
    }

    async fn items(
        &self,
        namespace: &str,
        now: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ItemRow>> {
        let sql = self.db.backend().sql(LIST_ITEMS);
        let rows: Vec<ItemTuple> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(namespace)
            .bind(now)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .db("listing memory items")?);
        rows.into_iter().map(decode_item).collect()
    }

    async fn delete_item(
        &self,
        namespace: &str,
        key: &str,
        expected_version: Option<i64>,
    ) -> Result<Option<RemovedItem>> {
        let backend = self.db.backend();
        let lock = backend.sql(LOCK_NAMESPACE);
        let bump_sql = backend.sql(BUMP_REVISION);
        let record_sql = backend.sql(RECORD_ITEM_CHUNKS);
        let state_sql = backend.sql(ITEM_STATE);
        let ids_sql = backend.sql(ITEM_CHUNK_IDS);
        let delete_chunks_sql = backend.sql(DELETE_ITEM_CHUNKS);
        let delete_sql = backend.sql(DELETE_ITEM);
        let now = unix_now();
        on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning an item deletion")?;
            let found = sqlx::query(&lock)
                .bind(namespace)
                .execute(&mut *transaction)
                .await
                .db("locking a memory namespace")?
                .rows_affected();
            if found == 0 {
                return Ok(None);
            }
            let state: Option<(i64, Option<i64>)> = sqlx::query_as(&state_sql)
                .bind(namespace)
                .bind(key)
                .fetch_optional(&mut *transaction)
                .await
                .db("reading an item's version")?;
            let Some((version, expires_at)) = state else {
                return Ok(None);
            };
            if let Some(expected) = expected_version {
                if !is_live(expires_at, now) {
                    return Ok(None);
                }
                if expected != version {
                    return Err(MemoryError::Stale {
                        key: key.to_owned(),
                    });
                }
            }
            let removed: Vec<i64> = sqlx::query_scalar(&ids_sql)
                .bind(namespace)
                .bind(key)
                .fetch_all(&mut *transaction)
                .await
                .db("listing an item's chunks")?;
            let revision: Option<i64> = if removed.is_empty() {
                None
            } else {
                let revision: i64 = sqlx::query_scalar(&bump_sql)
                    .bind(namespace)
                    .fetch_one(&mut *transaction)
                    .await
                    .db("raising a namespace's revision")?;
                sqlx::query(&record_sql)
                    .bind(namespace)
                    .bind(key)
                    .bind(revision)
                    .bind(OP_REMOVE)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await
                    .db("recording an item's removed chunks")?;
                Some(revision)
            };
            for sql in [&delete_chunks_sql, &delete_sql] {
                sqlx::query(sql)
                    .bind(namespace)
                    .bind(key)
                    .execute(&mut *transaction)
                    .await
                    .db("deleting an item")?;
            }
            transaction
                .commit()
                .await
                .db("committing an item deletion")?;
            // An expired item is gone for the caller: deleted, but not found
            // (its chunks leave the index with the other replicas' changes).
            if is_live(expires_at, now) {
                Ok(Some(RemovedItem {
                    chunk_ids: removed,
                    revision,
                }))
            } else {
                Ok(None)
            }
        })
    }

    async fn prune_expired(&self, before: i64, limit: u32) -> Result<Vec<PrunedItem>> {
        let backend = self.db.backend();
        let expired_sql = backend.sql(EXPIRED_ITEMS);
        let delete_sql = backend.sql(DELETE_EXPIRED_ITEM);
        let lock = backend.sql(LOCK_NAMESPACE);
        let ids_sql = backend.sql(ITEM_CHUNK_IDS);
        let chunks_sql = backend.sql(DELETE_ITEM_CHUNKS);
        let bump_sql = backend.sql(BUMP_REVISION);
        let record_sql = backend.sql(RECORD_ITEM_CHUNKS);
        let now = unix_now();
        on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning a memory prune")?;
            let expired: Vec<(String, String)> = sqlx::query_as(&expired_sql)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&mut *transaction)
                .await
                .db("finding expired memory items")?;
            let mut pruned = Vec::with_capacity(expired.len());
            for (namespace, key) in expired {
                // The namespace's row first, as every write takes it: its
                // revision is raised below, and taking it after the item's
                // row would deadlock with a write holding it and waiting
                // for the item.
                sqlx::query(&lock)
                    .bind(&namespace)
                    .execute(&mut *transaction)
                    .await
                    .db("locking a memory namespace")?;
                let deleted = sqlx::query(&delete_sql)
                    .bind(&namespace)
                    .bind(&key)
                    .bind(before)
                    .execute(&mut *transaction)
                    .await
                    .db("deleting an expired memory item")?
                    .rows_affected();
                if deleted == 0 {
                    continue;
                }
                let chunk_ids: Vec<i64> = sqlx::query_scalar(&ids_sql)
                    .bind(&namespace)
                    .bind(&key)
                    .fetch_all(&mut *transaction)
                    .await
                    .db("listing an expired item's chunks")?;
                let revision: Option<i64> = if chunk_ids.is_empty() {
                    None
                } else {
                    let revision: i64 = sqlx::query_scalar(&bump_sql)
                        .bind(&namespace)
                        .fetch_one(&mut *transaction)
                        .await
                        .db("raising a namespace's revision")?;
                    sqlx::query(&record_sql)
                        .bind(&namespace)
                        .bind(&key)
                        .bind(revision)
                        .bind(OP_REMOVE)
                        .bind(now)
                        .execute(&mut *transaction)
                        .await
                        .db("recording an expired item's chunks")?;
                    sqlx::query(&chunks_sql)
                        .bind(&namespace)
                        .bind(&key)
                        .execute(&mut *transaction)
                        .await
                        .db("deleting an expired item's chunks")?;
                    Some(revision)
                };
                pruned.push(PrunedItem {
                    namespace,
                    chunk_ids,
                    revision,
                });
            }
            transaction.commit().await.db("committing a memory prune")?;
            Ok(pruned)
        })
    }

    async fn chunks(&self, namespace: &str) -> Result<Vec<ChunkRow>> {
        let sql = self.db.backend().sql(NAMESPACE_CHUNKS);
        let rows: Vec<ChunkTuple> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(namespace)
            .fetch_all(pool)
            .await
            .db("reading a namespace's chunks")?);
        rows.into_iter().map(decode_chunk).collect()
    }

    async fn chunks_by_id(&self, namespace: &str, ids: &[i64], now: i64) -> Result<Vec<ChunkRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = chunks_by_id_sql(self.db.backend(), ids.len());
        let rows: Vec<ChunkTuple> = on_pool!(self.db, |pool| {
            let mut query = sqlx::query_as(&sql).bind(namespace).bind(now);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await.db("reading chunks by id")?
        });
        rows.into_iter().map(decode_chunk).collect()
    }

    async fn revisions(&self) -> Result<Vec<(String, Revision)>> {
        let rows: Vec<(String, i64, i64)> =
            on_pool!(self.db, |pool| sqlx::query_as(VECTOR_REVISIONS)
                .fetch_all(pool)
                .await
                .db("reading memory namespaces' revisions")?);
        Ok(rows
            .into_iter()
            .map(|(name, created_at, revision)| {
                (
                    name,
                    Revision {
                        created_at,
                        revision,
                    },
                )
            })
            .collect())
    }

    async fn revision(&self, name: &str) -> Result<Option<Revision>> {
        let sql = self.db.backend().sql(VECTOR_REVISION);
        let row: Option<(i64, i64)> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a memory namespace's revision")?);
        Ok(row.map(|(created_at, revision)| Revision {
            created_at,
            revision,
        }))
    }

    async fn changes(&self, namespace: &str, after: i64, upto: i64) -> Result<Vec<ChunkChange>> {
        let sql = self.db.backend().sql(CHANGES_AFTER);
        let rows: Vec<(i64, i64, String)> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(namespace)
            .bind(after)
            .bind(upto)
            .fetch_all(pool)
            .await
            .db("reading a namespace's chunk changes")?);
        rows.into_iter()
            .map(|(revision, chunk_id, op)| {
                Ok(ChunkChange {
                    revision,
                    chunk_id,
                    op: decode_op(namespace, revision, &op)?,
                })
            })
            .collect()
    }

    async fn prune_changes(&self, before: i64) -> Result<u64> {
        let sql = self.db.backend().sql(PRUNE_CHANGES);
        let pruned = on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(before)
            .execute(pool)
            .await
            .db("pruning memory chunk changes")?
            .rows_affected());
        Ok(pruned)
    }
}
