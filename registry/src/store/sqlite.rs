//! The embedded SQLite backend: WAL journal, a busy timeout, foreign keys,
//! and an in-memory ranked index for free-text discovery ([`TextIndex`],
//! built from the rows at open and updated after every committed write).
//!
//! Every write opens `BEGIN IMMEDIATE`, taking SQLite's single write lock
//! before its first read, so a read-check-write sequence cannot be overtaken
//! by another writer (and never fails on a lock upgrade).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use convergio_schemas::{AgentId, AgentRole};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::text_index::{After, IndexedAgent, TextIndex};
use super::{
    check_version, cursor_pk, make_page, parse_id, parse_json, parse_role, parse_trust, to_json,
    Cursor, DiscoveryQuery, IndexTerms, Page, SideFilter, Store,
};
use crate::model::{Actor, AgentRecord, TaskRoute, TrustChange};
use crate::{RegistryError, Result};

/// The columns of an agent row, in the order [`record_from_row`] reads them.
const AGENT_COLUMNS: &str =
    "id, name, org, role, trust, version, card, upstreams, created_at, updated_at, deleted_at";
/// The same columns qualified with the `a` alias.
const AGENT_COLUMNS_A: &str = "a.id, a.name, a.org, a.role, a.trust, a.version, a.card, \
     a.upstreams, a.created_at, a.updated_at, a.deleted_at";
/// Page cache per connection, in KiB.
const CACHE_KIB: u32 = 32 * 1024;
/// How much of the database file reads may map into memory.
const MMAP_BYTES: u64 = 1 << 30;
/// Rows per multi-row INSERT, well under SQLite's 32766 bound parameters.
const BULK_CHUNK: usize = 1000;
/// Bound values per round trip of a [`Batch`], which bounds its SQL text and
/// argument buffer (SQLite's own limit of 32766 is per statement).
const MAX_PARAMS: usize = 30_000;

/// Agents read per round trip while the text index is built at open.
const LOAD_CHUNK: i64 = 2000;

/// One chunk of agents for the text index, as a JSON array of
/// [`StoredAgent`] arrays; empty (`[]`) past the last row.
const LOAD_CHUNK_SQL: &str = "SELECT json_group_array(json_array(\
     a.pk, a.org, a.role, a.trust_rank, a.version, a.deleted_at IS NOT NULL, \
     a.search_name, a.search_description, a.search_skills, \
     json((SELECT json_group_array(skill) FROM agent_skills WHERE agent_pk = a.pk)), \
     json((SELECT json_group_array(tag) FROM agent_tags WHERE agent_pk = a.pk)), \
     json((SELECT json_group_array(mode) FROM agent_modes \
           WHERE direction = 'in' AND agent_pk = a.pk)), \
     json((SELECT json_group_array(mode) FROM agent_modes \
           WHERE direction = 'out' AND agent_pk = a.pk)))) \
     FROM (SELECT * FROM agents WHERE pk > ? ORDER BY pk LIMIT ?) a";

/// One agent as [`LOAD_CHUNK_SQL`] reads it: pk, org, role, trust rank,
/// version, deleted (0 or 1), the three search texts, then skills, tags,
/// input and output modes.
#[derive(serde::Deserialize)]
struct StoredAgent(
    i64,
    String,
    String,
    i16,
    i64,
    i64,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

/// A [`StoredAgent`] read: what the text index keeps of it.
struct LoadedAgent {
    pk: i64,
    org: String,
    role: AgentRole,
    trust_rank: i16,
    version: i64,
    deleted: bool,
    terms: IndexTerms,
}

// === impl StoredAgent ===

impl StoredAgent {
    fn read(self) -> Result<LoadedAgent> {
        Ok(LoadedAgent {
            pk: self.0,
            org: self.1,
            role: parse_role(&self.2)?,
            trust_rank: self.3,
            version: self.4,
            deleted: self.5 != 0,
            terms: IndexTerms {
                search_name: self.6,
                search_description: self.7,
                search_skills: self.8,
                skills: self.9.into_iter().collect(),
                tags: self.10.into_iter().collect(),
                input_modes: self.11.into_iter().collect(),
                output_modes: self.12.into_iter().collect(),
            },
        })
    }
}

// === impl LoadedAgent ===

impl LoadedAgent {
    fn indexed(&self) -> IndexedAgent<'_> {
        IndexedAgent {
            pk: self.pk,
            version: self.version,
            deleted: self.deleted,
            role: self.role,
            trust_rank: self.trust_rank,
            org: &self.org,
            terms: &self.terms,
        }
    }
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Ranked free-text discovery; derived from the rows (see
    /// `text_index.rs` for its invariants).
    text: Arc<TextIndex>,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating with `mode=rwc`) the database at `url` and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(RegistryError::Storage)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Only takes effect on a new file (before its first table): lets
            // retention give pruned pages back (`store/retention_sqlite.rs`).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            // A negative cache size is in KiB: the default 2 MiB holds a few
            // percent of a 100k-agent registry's indexes, so every discovery
            // and registration read paged in from the OS. Pages are allocated
            // only as they are used.
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            // Reads map the file instead of copying each page into the cache.
            .pragma("mmap_size", MMAP_BYTES.to_string())
            // Sorts of ranked matches stay in memory.
            .pragma("temp_store", "memory");
        // An in-memory database exists once per connection: keep exactly one.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        // A connection to a local file cannot go stale: skip the ping sqlx
        // sends on every acquire, a round trip to the connection's worker
        // thread that every query and registration paid.
        let pool = pool_options
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let store = Self {
            pool,
            text: Arc::default(),
        };
        store.load_text_index().await?;
        Ok(store)
    }

    /// Builds the text index from every row, in row order and in chunks so
    /// memory stays bounded however large the registry. It reads the text
    /// columns and side-table rows each write stores from the card's
    /// [`IndexTerms`], not the cards themselves, which would all be parsed.
    /// SQLite hands over each chunk as one JSON document: sqlx passes every
    /// result row through a channel from its worker thread, which costs
    /// more than the row itself, and an agent has a dozen side-table rows.
    async fn load_text_index(&self) -> Result<()> {
        let started = Instant::now();
        let mut after = 0i64;
        let mut loaded = 0usize;
        loop {
            let chunk: String = sqlx::query_scalar(LOAD_CHUNK_SQL)
                .bind(after)
                .bind(LOAD_CHUNK)
                .fetch_one(&self.pool)
                .await
                .map_err(storage)?;
            let stored: Vec<StoredAgent> = serde_json::from_str(&chunk).map_err(|error| {
                RegistryError::corrupt(format!("text index rows after {after}: {error}"))
            })?;
            let Some(last) = stored.iter().map(|agent| agent.0).max() else {
                break;
            };
            let agents = stored
                .into_iter()
                .map(StoredAgent::read)
                .collect::<Result<Vec<_>>>()?;
            self.text
                .apply_all(agents.iter().map(LoadedAgent::indexed))?;
            loaded += agents.len();
            after = last;
        }
        self.text.shrink();
        tracing::info!(
            agents = loaded,
            millis = started.elapsed().as_millis() as u64,
            megabytes = self.text_index_bytes() / (1 << 20),
            "free-text index built"
        );
        Ok(())
    }

    /// The memory the free-text index holds, in bytes.
    pub fn text_index_bytes(&self) -> usize {
        self.text.heap_bytes()
    }

    /// A ranked (free-text) page: ranked in memory by the text index, then
    /// only the page's rows are read, in one query.
    async fn discover_ranked(
        &self,
        query: &DiscoveryQuery,
        terms: &[String],
        cursor: Option<&Cursor>,
        page_size: u32,
    ) -> Result<Page<AgentRecord>> {
        let after = cursor
            .map(|cursor| {
                Ok::<_, RegistryError>(After {
                    rank: cursor.rank.unwrap_or_default(),
                    pk: cursor_pk(cursor)?,
                })
            })
            .transpose()?;
        let ranked = self
            .text
            .search(query, terms, after, page_size as usize + 1);
        if ranked.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut builder = QueryBuilder::<Sqlite>::new(format!(
            "SELECT pk, {AGENT_COLUMNS} FROM agents WHERE pk IN ("
        ));
        let mut separated = builder.separated(", ");
        for hit in &ranked {
            separated.push_bind(hit.pk);
        }
        builder.push(")");
        let rows = builder
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        let mut by_pk = HashMap::with_capacity(rows.len());
        for row in &rows {
            let pk: i64 = row.try_get("pk").map_err(storage)?;
            by_pk.insert(pk, record_from_row(row)?);
        }
        // A row the index named is always there (rows are never removed);
        // a write since the ranking may have changed it, which the page
        // then shows as it is now.
        let items: Vec<(AgentRecord, f64, i64)> = ranked
            .iter()
            .filter_map(|hit| {
                by_pk
                    .remove(&hit.pk)
                    .map(|record| (record, hit.rank, hit.pk))
            })
            .collect();
        // Ties are in row order, so the row number is the ranked key.
        let page = make_page(items, page_size, |(_, rank, pk)| Cursor {
            rank: Some(*rank),
            key: pk.to_string(),
        });
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(record, _, _)| record)
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// The connection pool, for tests and maintenance.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(RegistryError::Storage)
    }
}

/// Translates a sqlx error: a unique violation means the id is taken.
fn translate(error: sqlx::Error, agent_id: &str) -> RegistryError {
    if is_unique_violation(&error) {
        return RegistryError::AgentExists {
            agent_id: agent_id.to_owned(),
        };
    }
    RegistryError::Storage(error)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

fn storage(error: sqlx::Error) -> RegistryError {
    RegistryError::Storage(error)
}

fn ts(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| RegistryError::corrupt(format!("stored timestamp {text:?}: {error}")))
}

fn record_from_row(row: &SqliteRow) -> Result<AgentRecord> {
    let text = |column: &str| -> Result<String> { row.try_get(column).map_err(storage) };
    let deleted_at: Option<String> = row.try_get("deleted_at").map_err(storage)?;
    Ok(AgentRecord {
        id: parse_id(&text("id")?)?,
        name: text("name")?,
        org: text("org")?,
        role: parse_role(&text("role")?)?,
        card: parse_json("card", &text("card")?)?,
        upstreams: parse_json("upstreams", &text("upstreams")?)?,
        trust: parse_trust(&text("trust")?)?,
        version: row.try_get("version").map_err(storage)?,
        created_at: parse_ts(&text("created_at")?)?,
        updated_at: parse_ts(&text("updated_at")?)?,
        deleted_at: deleted_at.as_deref().map(parse_ts).transpose()?,
    })
}

fn route_from_row(row: &SqliteRow) -> Result<TaskRoute> {
    let text = |column: &str| -> Result<String> { row.try_get(column).map_err(storage) };
    Ok(TaskRoute {
        task_id: text("task_id")?,
        context_id: row.try_get("context_id").map_err(storage)?,
        agent_id: parse_id(&text("agent_id")?)?,
        owner: text("owner")?,
        created_at: parse_ts(&text("created_at")?)?,
        updated_at: parse_ts(&text("updated_at")?)?,
    })
}

/// The live row's key facts, read inside a write transaction.
struct Current {
    pk: i64,
    version: i64,
    trust: String,
    deleted: bool,
}

async fn current(tx: &mut Transaction<'static, Sqlite>, id: &str) -> Result<Option<Current>> {
    let row = sqlx::query("SELECT pk, version, trust, deleted_at FROM agents WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(storage)?;
    row.map(|row| {
        let deleted_at: Option<String> = row.try_get("deleted_at").map_err(storage)?;
        Ok(Current {
            pk: row.try_get("pk").map_err(storage)?,
            version: row.try_get("version").map_err(storage)?,
            trust: row.try_get("trust").map_err(storage)?,
            deleted: deleted_at.is_some(),
        })
    })
    .transpose()
}

/// The live row, checked against the expected version.
async fn live_at(
    tx: &mut Transaction<'static, Sqlite>,
    id: &AgentId,
    expected_version: Option<i64>,
) -> Result<Current> {
    let current = current(tx, &id.to_string())
        .await?
        .filter(|current| !current.deleted)
        .ok_or_else(|| RegistryError::not_found(id))?;
    check_version(id, expected_version, current.version)?;
    Ok(current)
}

async fn copy_to_history(tx: &mut Transaction<'static, Sqlite>, pk: i64) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO agent_versions ({AGENT_COLUMNS}) SELECT {AGENT_COLUMNS} FROM agents WHERE pk = ?"
    ))
    .bind(pk)
    .execute(&mut **tx)
    .await
    .map_err(storage)?;
    Ok(())
}

async fn read_row(tx: &mut Transaction<'static, Sqlite>, pk: i64) -> Result<AgentRecord> {
    let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE pk = ?"))
        .bind(pk)
        .fetch_one(&mut **tx)
        .await
        .map_err(storage)?;
    record_from_row(&row)
}

/// Statements that go to SQLite together, in one round trip to the
/// connection's worker thread: a registration's side-table writes are a
/// handful of tiny statements, and each round trip costs more than running
/// one. Sent early before the bound values would pass SQLite's limit.
struct Batch<'args> {
    builder: QueryBuilder<'args, Sqlite>,
    params: usize,
    statements: usize,
}

// === impl Batch ===

impl<'args> Batch<'args> {
    fn new() -> Self {
        Self {
            builder: QueryBuilder::new(""),
            params: 0,
            statements: 0,
        }
    }

    /// Starts a statement of `sql` that binds `params` values, sending what
    /// is queued first if the batch would grow too large.
    async fn start(
        &mut self,
        tx: &mut Transaction<'static, Sqlite>,
        sql: &str,
        params: usize,
    ) -> Result<&mut QueryBuilder<'args, Sqlite>> {
        if self.params + params > MAX_PARAMS {
            self.send(tx).await?;
        }
        if self.statements > 0 {
            self.builder.push("; ");
        }
        self.builder.push(sql);
        self.params += params;
        self.statements += 1;
        Ok(&mut self.builder)
    }

    /// Runs every queued statement, in order.
    async fn send(&mut self, tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        if self.statements == 0 {
            return Ok(());
        }
        let mut builder = std::mem::replace(&mut self.builder, QueryBuilder::new(""));
        self.params = 0;
        self.statements = 0;
        // Not kept in the statement cache: the text differs with every
        // batch's row counts, and bulk statements are large.
        builder
            .build()
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(storage)?;
        Ok(())
    }
}

/// Replaces the discovery side-table rows of the agents in `terms`.
///
/// Rows are written in primary-key order (term, then agent), so a bulk load
/// fills each index page once instead of revisiting pages at random.
async fn write_terms<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    terms: &'a [(i64, IndexTerms)],
    replace: bool,
) -> Result<()> {
    let mut batch = Batch::<'a>::new();
    if replace {
        for (pk, _) in terms {
            for table in ["agent_skills", "agent_tags", "agent_modes"] {
                batch
                    .start(tx, &format!("DELETE FROM {table} WHERE agent_pk = "), 1)
                    .await?
                    .push_bind(*pk);
            }
        }
    }
    let mut skills: Vec<(&str, i64)> = terms
        .iter()
        .flat_map(|(pk, t)| t.skills.iter().map(move |s| (s.as_str(), *pk)))
        .collect();
    skills.sort_unstable();
    for chunk in skills.chunks(BULK_CHUNK) {
        batch
            .start(
                tx,
                "INSERT INTO agent_skills (skill, agent_pk) ",
                chunk.len() * 2,
            )
            .await?
            .push_values(chunk, |mut row, (skill, pk)| {
                row.push_bind(*skill).push_bind(*pk);
            });
    }
    let mut tags: Vec<(&str, i64)> = terms
        .iter()
        .flat_map(|(pk, t)| t.tags.iter().map(move |s| (s.as_str(), *pk)))
        .collect();
    tags.sort_unstable();
    for chunk in tags.chunks(BULK_CHUNK) {
        batch
            .start(
                tx,
                "INSERT INTO agent_tags (tag, agent_pk) ",
                chunk.len() * 2,
            )
            .await?
            .push_values(chunk, |mut row, (tag, pk)| {
                row.push_bind(*tag).push_bind(*pk);
            });
    }
    let mut modes: Vec<(&str, &str, i64)> = terms
        .iter()
        .flat_map(|(pk, t)| {
            t.input_modes
                .iter()
                .map(move |m| ("in", m.as_str(), *pk))
                .chain(t.output_modes.iter().map(move |m| ("out", m.as_str(), *pk)))
        })
        .collect();
    modes.sort_unstable();
    for chunk in modes.chunks(BULK_CHUNK) {
        batch
            .start(
                tx,
                "INSERT INTO agent_modes (direction, mode, agent_pk) ",
                chunk.len() * 3,
            )
            .await?
            .push_values(chunk, |mut row, (direction, mode, pk)| {
                row.push_bind(*direction).push_bind(*mode).push_bind(*pk);
            });
    }
    batch.send(tx).await
}

/// The bound values of one agent row, serialised once.
struct RowValues {
    id: String,
    card: String,
    upstreams: String,
    terms: IndexTerms,
}

fn row_values(record: &AgentRecord) -> Result<RowValues> {
    Ok(RowValues {
        id: record.id.to_string(),
        card: to_json(&record.card)?,
        upstreams: to_json(&record.upstreams)?,
        terms: IndexTerms::of(record),
    })
}

/// Appends the filters on the agent row itself.
fn push_row_filters(builder: &mut QueryBuilder<'_, Sqlite>, query: &DiscoveryQuery) {
    if !query.include_deleted {
        builder.push(" AND a.deleted_at IS NULL");
    }
    if let Some(role) = query.role {
        builder.push(" AND a.role = ").push_bind(role.as_str());
    }
    if let Some(org) = query.org_key() {
        builder.push(" AND a.org = ").push_bind(org);
    }
    if let Some(min_trust) = query.min_trust {
        builder
            .push(" AND a.trust_rank >= ")
            .push_bind(i64::from(min_trust.rank()));
    }
}

/// Appends side-table filters checked per agent.
fn push_side_checks(builder: &mut QueryBuilder<'_, Sqlite>, filters: &[SideFilter]) {
    for filter in filters {
        builder
            .push(format!(
                " AND EXISTS (SELECT 1 FROM {} s WHERE s.agent_pk = a.pk AND s.{}",
                filter.table, filter.condition
            ))
            .push_bind(filter.value.clone())
            .push(")");
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, record: &AgentRecord) -> Result<AgentRecord> {
        let values = row_values(record)?;
        let mut tx = self.begin_write().await?;
        // A new id is the common case: insert straight away and read the
        // stored row back from RETURNING (three round trips in all with the
        // side tables); only a taken id looks at what holds it.
        let inserted = sqlx::query(&format!(
            "INSERT INTO agents (id, name, org, role, trust, trust_rank, version, card, \
             upstreams, created_at, updated_at, deleted_at, search_name, \
             search_description, search_skills) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?) RETURNING pk, {AGENT_COLUMNS}"
        ))
        .bind(&values.id)
        .bind(&record.name)
        .bind(&record.org)
        .bind(record.role.as_str())
        .bind(record.trust.as_str())
        .bind(i64::from(record.trust.rank()))
        .bind(record.version)
        .bind(&values.card)
        .bind(&values.upstreams)
        .bind(ts(&record.created_at))
        .bind(ts(&record.updated_at))
        .bind(&values.terms.search_name)
        .bind(&values.terms.search_description)
        .bind(&values.terms.search_skills)
        .fetch_one(&mut *tx)
        .await;
        // The terms written to the side tables also go to the text index.
        let (written, stored) = match inserted {
            Ok(row) => {
                let pk: i64 = row.try_get("pk").map_err(storage)?;
                let written = [(pk, values.terms)];
                write_terms(&mut tx, &written, false).await?;
                (written, record_from_row(&row)?)
            }
            Err(error) if is_unique_violation(&error) => {
                // The failed statement was rolled back; the transaction (and
                // its write lock) is still ours.
                let tombstone = match current(&mut tx, &values.id).await? {
                    Some(existing) if existing.deleted => existing,
                    _ => {
                        return Err(RegistryError::AgentExists {
                            agent_id: values.id,
                        })
                    }
                };
                // Registered again after deregistration: the tombstone goes to
                // history and the registration continues the version sequence.
                copy_to_history(&mut tx, tombstone.pk).await?;
                sqlx::query(
                    "UPDATE agents SET name = ?, org = ?, role = ?, trust = ?, trust_rank = ?, \
                     version = ?, card = ?, upstreams = ?, created_at = ?, updated_at = ?, \
                     deleted_at = NULL, search_name = ?, search_description = ?, search_skills = ? \
                     WHERE pk = ?",
                )
                .bind(&record.name)
                .bind(&record.org)
                .bind(record.role.as_str())
                .bind(record.trust.as_str())
                .bind(i64::from(record.trust.rank()))
                .bind(tombstone.version + 1)
                .bind(&values.card)
                .bind(&values.upstreams)
                .bind(ts(&record.created_at))
                .bind(ts(&record.updated_at))
                .bind(&values.terms.search_name)
                .bind(&values.terms.search_description)
                .bind(&values.terms.search_skills)
                .bind(tombstone.pk)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
                let written = [(tombstone.pk, values.terms)];
                write_terms(&mut tx, &written, true).await?;
                (written, read_row(&mut tx, tombstone.pk).await?)
            }
            Err(error) => return Err(storage(error)),
        };
        tx.commit().await.map_err(storage)?;
        let [(pk, terms)] = &written;
        self.text
            .apply_all([IndexedAgent::of(*pk, &stored, terms)])?;
        Ok(stored)
    }

    async fn get(&self, id: &AgentId, version: Option<i64>) -> Result<AgentRecord> {
        let id_text = id.to_string();
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?"))
            .bind(&id_text)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?
            .ok_or_else(|| RegistryError::not_found(id))?;
        let record = record_from_row(&row)?;
        match version {
            None => Ok(record),
            Some(version) if version == record.version => Ok(record),
            Some(version) => {
                let row = sqlx::query(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agent_versions WHERE id = ? AND version = ?"
                ))
                .bind(&id_text)
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?
                .ok_or_else(|| RegistryError::AgentNotFound {
                    agent_id: format!("{id} version {version}"),
                })?;
                record_from_row(&row)
            }
        }
    }

    async fn update(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord> {
        let values = row_values(record)?;
        let mut tx = self.begin_write().await?;
        let live = live_at(&mut tx, id, Some(expected_version)).await?;
        copy_to_history(&mut tx, live.pk).await?;
        sqlx::query(
            "UPDATE agents SET role = ?, card = ?, upstreams = ?, version = ?, updated_at = ?, \
             search_name = ?, search_description = ?, search_skills = ? WHERE pk = ?",
        )
        .bind(record.role.as_str())
        .bind(&values.card)
        .bind(&values.upstreams)
        .bind(expected_version + 1)
        .bind(ts(&record.updated_at))
        .bind(&values.terms.search_name)
        .bind(&values.terms.search_description)
        .bind(&values.terms.search_skills)
        .bind(live.pk)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let written = [(live.pk, values.terms)];
        write_terms(&mut tx, &written, true).await?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
        // The card's terms were just computed for the side tables.
        self.text
            .apply_all([IndexedAgent::of(live.pk, &stored, &written[0].1)])?;
        Ok(stored)
    }

    async fn refresh_upstreams(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord> {
        let values = row_values(record)?;
        let mut tx = self.begin_write().await?;
        let live = live_at(&mut tx, id, Some(expected_version)).await?;
        // No history row and no new version: the address is not part of the
        // agent's identity (see the trait). The discovery terms do not
        // depend on it, so the side tables and the text index stay as they are.
        sqlx::query("UPDATE agents SET card = ?, upstreams = ? WHERE pk = ?")
            .bind(&values.card)
            .bind(&values.upstreams)
            .bind(live.pk)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
        Ok(stored)
    }

    async fn delete(
        &self,
        id: &AgentId,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<AgentRecord> {
        let mut tx = self.begin_write().await?;
        let live = live_at(&mut tx, id, expected_version).await?;
        copy_to_history(&mut tx, live.pk).await?;
        sqlx::query(
            "UPDATE agents SET deleted_at = ?, updated_at = ?, version = version + 1 WHERE pk = ?",
        )
        .bind(ts(&at))
        .bind(ts(&at))
        .bind(live.pk)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
        self.text.apply(live.pk, &stored)?;
        Ok(stored)
    }

    async fn list_versions(&self, id: &AgentId) -> Result<Vec<AgentRecord>> {
        let id_text = id.to_string();
        let current = self.get(id, None).await?;
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agent_versions WHERE id = ? ORDER BY version"
        ))
        .bind(&id_text)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let mut versions = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>>>()?;
        // History rows are always older than the live row; a concurrent write
        // between the two reads can only add a version we already hold.
        versions.retain(|version| version.version < current.version);
        versions.push(current);
        Ok(versions)
    }

    async fn set_trust(
        &self,
        id: &AgentId,
        expected_version: Option<i64>,
        change: &TrustChange,
    ) -> Result<AgentRecord> {
        let mut tx = self.begin_write().await?;
        let live = live_at(&mut tx, id, expected_version).await?;
        copy_to_history(&mut tx, live.pk).await?;
        sqlx::query(
            "UPDATE agents SET trust = ?, trust_rank = ?, updated_at = ?, version = version + 1 \
             WHERE pk = ?",
        )
        .bind(change.to.as_str())
        .bind(i64::from(change.to.rank()))
        .bind(ts(&change.at))
        .bind(live.pk)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        sqlx::query(
            "INSERT INTO trust_changes (agent_id, from_level, to_level, actor, is_admin, reason, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&live.trust)
        .bind(change.to.as_str())
        .bind(&change.actor.subject)
        .bind(change.actor.is_admin)
        .bind(&change.reason)
        .bind(ts(&change.at))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
        self.text.apply(live.pk, &stored)?;
        Ok(stored)
    }

    async fn trust_history(&self, id: &AgentId) -> Result<Vec<TrustChange>> {
        // Unknown ids are an error, not an empty history.
        self.get(id, None).await?;
        let rows = sqlx::query(
            "SELECT from_level, to_level, actor, is_admin, reason, at FROM trust_changes \
             WHERE agent_id = ? ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let text =
                    |column: &str| -> Result<String> { row.try_get(column).map_err(storage) };
                Ok(TrustChange {
                    agent_id: id.clone(),
                    from: parse_trust(&text("from_level")?)?,
                    to: parse_trust(&text("to_level")?)?,
                    actor: Actor {
                        subject: text("actor")?,
                        is_admin: row.try_get("is_admin").map_err(storage)?,
                    },
                    reason: text("reason")?,
                    at: parse_ts(&text("at")?)?,
                })
            })
            .collect()
    }

    async fn discover(&self, query: &DiscoveryQuery) -> Result<Page<AgentRecord>> {
        let page_size = query.checked_page_size()?;
        let cursor = query.cursor()?;
        let terms = query.text_terms();
        if !terms.is_empty() {
            return self
                .discover_ranked(query, &terms, cursor.as_ref(), page_size)
                .await;
        }
        // Unranked listings are in registration order (the row number): rows
        // inserted while a client pages land after its cursor.
        let mut builder = QueryBuilder::<Sqlite>::new("");
        let side_filters = query.side_filters();
        let order = match side_filters.split_first() {
            Some((driver, others)) => {
                builder.push(format!(
                    "SELECT {AGENT_COLUMNS_A}, a.pk AS pk FROM {} d \
                     CROSS JOIN agents a ON a.pk = d.agent_pk WHERE d.{}",
                    driver.table, driver.condition
                ));
                builder.push_bind(driver.value.clone());
                push_side_checks(&mut builder, others);
                "d.agent_pk"
            }
            None => {
                builder.push(format!(
                    "SELECT {AGENT_COLUMNS_A}, a.pk AS pk FROM agents a WHERE 1 = 1"
                ));
                "a.pk"
            }
        };
        push_row_filters(&mut builder, query);
        if let Some(cursor) = &cursor {
            builder
                .push(format!(" AND {order} > "))
                .push_bind(cursor_pk(cursor)?);
        }
        builder
            .push(format!(" ORDER BY {order} LIMIT "))
            .push_bind(i64::from(page_size) + 1);
        let rows = builder
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        let mut listed = Vec::with_capacity(rows.len());
        for row in &rows {
            let pk: i64 = row.try_get("pk").map_err(storage)?;
            listed.push((record_from_row(row)?, pk));
        }
        let page = make_page(listed, page_size, |(_, pk)| Cursor {
            rank: None,
            key: pk.to_string(),
        });
        Ok(Page {
            items: page.items.into_iter().map(|(record, _)| record).collect(),
            next_page_token: page.next_page_token,
        })
    }

    async fn put_task_route(&self, route: &TaskRoute) -> Result<()> {
        sqlx::query(
            "INSERT INTO task_routes (task_id, context_id, agent_id, owner, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET \
             context_id = excluded.context_id, agent_id = excluded.agent_id, \
             owner = excluded.owner, updated_at = excluded.updated_at",
        )
        .bind(&route.task_id)
        .bind(&route.context_id)
        .bind(route.agent_id.to_string())
        .bind(&route.owner)
        .bind(ts(&route.created_at))
        .bind(ts(&route.updated_at))
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn get_task_route(&self, task_id: &str) -> Result<Option<TaskRoute>> {
        let row = sqlx::query(
            "SELECT task_id, context_id, agent_id, owner, created_at, updated_at \
             FROM task_routes WHERE task_id = ?",
        )
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(route_from_row).transpose()
    }

    async fn list_task_routes(
        &self,
        owner: &str,
        agent: Option<&AgentId>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<TaskRoute>> {
        let page_size = super::check_page_size(Some(page_size))?;
        let cursor = page_token
            .filter(|token| !token.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        let mut builder = QueryBuilder::<Sqlite>::new(
            "SELECT task_id, context_id, agent_id, owner, created_at, updated_at \
             FROM task_routes WHERE owner = ",
        );
        builder.push_bind(owner.to_owned());
        if let Some(agent) = agent {
            builder
                .push(" AND agent_id = ")
                .push_bind(agent.to_string());
        }
        if let Some(cursor) = cursor {
            builder.push(" AND task_id > ").push_bind(cursor.key);
        }
        builder
            .push(" ORDER BY task_id LIMIT ")
            .push_bind(i64::from(page_size) + 1);
        let rows = builder
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        let routes = rows
            .iter()
            .map(route_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(make_page(routes, page_size, |route| Cursor {
            rank: None,
            key: route.task_id.clone(),
        }))
    }

    async fn owned_task_ids(
        &self,
        owner: &str,
        agent: &AgentId,
        task_ids: &[String],
    ) -> Result<Vec<String>> {
        let mut owned = Vec::new();
        for chunk in task_ids.chunks(super::TASK_ID_CHUNK) {
            let mut builder =
                QueryBuilder::<Sqlite>::new("SELECT task_id FROM task_routes WHERE owner = ");
            builder
                .push_bind(owner.to_owned())
                .push(" AND agent_id = ")
                .push_bind(agent.to_string())
                .push(" AND task_id IN (");
            let mut ids = builder.separated(", ");
            for task_id in chunk {
                ids.push_bind(task_id.clone());
            }
            ids.push_unseparated(")");
            let rows = builder
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
            for row in rows {
                owned.push(row.try_get::<String, _>("task_id").map_err(storage)?);
            }
        }
        Ok(owned)
    }

    async fn count_task_routes(&self, owner: &str, agent: &AgentId) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM task_routes WHERE owner = ? AND agent_id = ?")
                .bind(owner)
                .bind(agent.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(storage)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn claim_context(
        &self,
        agent: &AgentId,
        context_id: &str,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<String> {
        let agent_id = agent.to_string();
        let read = || {
            sqlx::query_scalar::<Sqlite, String>(
                "SELECT owner FROM context_routes WHERE agent_id = ? AND context_id = ?",
            )
            .bind(agent_id.clone())
            .bind(context_id.to_owned())
        };
        // Most calls name a context already held: one read answers them.
        if let Some(holder) = read().fetch_optional(&self.pool).await.map_err(storage)? {
            return Ok(holder);
        }
        sqlx::query(
            "INSERT INTO context_routes (agent_id, context_id, owner, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, context_id) DO NOTHING",
        )
        .bind(agent_id.clone())
        .bind(context_id)
        .bind(owner)
        .bind(ts(&at))
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        // Whoever inserted first holds it, this claim or a racing one.
        read().fetch_one(&self.pool).await.map_err(storage)
    }

    async fn bulk_insert(&self, records: &[AgentRecord]) -> Result<u64> {
        let values = records.iter().map(row_values).collect::<Result<Vec<_>>>()?;
        let mut tx = self.begin_write().await?;
        let mut terms = Vec::with_capacity(records.len());
        for (chunk_records, chunk_values) in records
            .chunks(BULK_CHUNK / 2)
            .zip(values.chunks(BULK_CHUNK / 2))
        {
            let mut builder = QueryBuilder::<Sqlite>::new(
                "INSERT INTO agents (id, name, org, role, trust, trust_rank, version, card, \
                 upstreams, created_at, updated_at, search_name, search_description, \
                 search_skills) ",
            );
            builder.push_values(
                chunk_records.iter().zip(chunk_values),
                |mut row, (record, values)| {
                    row.push_bind(values.id.as_str())
                        .push_bind(record.name.as_str())
                        .push_bind(record.org.as_str())
                        .push_bind(record.role.as_str())
                        .push_bind(record.trust.as_str())
                        .push_bind(i64::from(record.trust.rank()))
                        .push_bind(record.version)
                        .push_bind(values.card.as_str())
                        .push_bind(values.upstreams.as_str())
                        .push_bind(ts(&record.created_at))
                        .push_bind(ts(&record.updated_at))
                        .push_bind(values.terms.search_name.as_str())
                        .push_bind(values.terms.search_description.as_str())
                        .push_bind(values.terms.search_skills.as_str());
                },
            );
            builder.push(" RETURNING pk, id");
            let rows = builder
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(|error| translate(error, "one of the bulk records"))?;
            let mut pk_by_id = HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get("id").map_err(storage)?;
                let pk: i64 = row.try_get("pk").map_err(storage)?;
                pk_by_id.insert(id, pk);
            }
            for values in chunk_values {
                let pk = pk_by_id.get(&values.id).copied().ok_or_else(|| {
                    RegistryError::corrupt(format!("no row id returned for {}", values.id))
                })?;
                terms.push((pk, values.terms.clone()));
            }
        }
        write_terms(&mut tx, &terms, false).await?;
        tx.commit().await.map_err(storage)?;
        // `terms` holds each record's row number and index terms, in the
        // records' order.
        self.text.apply_all(
            terms
                .iter()
                .zip(records)
                .map(|((pk, terms), record)| IndexedAgent::of(*pk, record, terms)),
        )?;
        Ok(records.len() as u64)
    }

    async fn analyze(&self) -> Result<()> {
        sqlx::query("ANALYZE")
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }
}
