//! [`AgentStore`]: the registry's [`Store`] on either backend.
//!
//! The statements are written once in the `backend!` macro below and
//! instantiated per backend (a transaction's type differs, so helpers that
//! take one cannot be shared otherwise). What differs, and why:
//! - **Write locks.** SQLite writes open `BEGIN IMMEDIATE`, taking the
//!   file's single write lock before their first read, so a
//!   read-check-write sequence cannot be overtaken (and never fails on a lock
//!   upgrade). PostgreSQL writes lock the agent row with `SELECT … FOR
//!   UPDATE` before checking its version, so two writers of one agent
//!   serialise and the loser sees the winner's version (412), never a lost
//!   update.
//! - **Ranked discovery.** SQLite ranks free text in memory
//!   ([`TextIndex`], built from the rows at open and updated after every
//!   committed write) and then reads only the page's rows; PostgreSQL ranks
//!   with `ts_rank` over a generated `tsvector` with a GIN index. Both ranks
//!   depend only on the row, so ranked page tokens stay valid while other
//!   rows are inserted.
//! - **Round trips.** SQLite runs a registration's side-table statements as
//!   one multi-statement query (one trip to its worker thread); PostgreSQL's
//!   extended protocol takes one statement per query.
//! - **Join order.** SQLite's `CROSS JOIN` keeps the driving side table as
//!   the outer loop of an unranked filter; PostgreSQL plans its own (and
//!   refuses `CROSS JOIN … ON`).
//!
//! The invariants every backend keeps are the registry's (see
//! `convergio_registry::store`); the conformance suite checks them on both.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_registry::model::{Actor, AgentRecord, TaskRoute, TrustChange};
use convergio_registry::store::{
    check_page_size, make_page, Cursor, DiscoveryQuery, IndexTerms, Page, Store,
};
use convergio_registry::{RegistryError, Result};
use convergio_schemas::{AgentId, AgentRole, StorageFailure};
use sqlx::{QueryBuilder, Row};

use super::text_index::{After, IndexedAgent, TextIndex};
use super::{count, parse_id, parse_json, parse_role, parse_trust, to_json, Stamps};
use crate::{Backend, Db, DbResult, Pool};

/// The columns of an agent row, in the order `record_from_row` reads them.
macro_rules! agent_columns {
    () => {
        "id, name, org, role, trust, version, card, upstreams, created_at, updated_at, deleted_at"
    };
}

/// The same columns qualified with the `a` alias.
macro_rules! agent_columns_a {
    () => {
        "a.id, a.name, a.org, a.role, a.trust, a.version, a.card, a.upstreams, a.created_at, \
         a.updated_at, a.deleted_at"
    };
}

/// Rows per multi-row INSERT, well under SQLite's 32766 and PostgreSQL's
/// 65535 bound parameters.
const BULK_CHUNK: usize = 1000;
/// Bound values per round trip of a [`Batch`], which bounds its SQL text and
/// argument buffer (SQLite's own limit of 32766 is per statement).
const MAX_PARAMS: usize = 30_000;
/// Task ids looked up per statement by [`Store::owned_task_ids`], well under
/// both backends' bind-parameter limits.
const TASK_ID_CHUNK: usize = 500;
/// Agents read per round trip while SQLite's text index is built at open.
const LOAD_CHUNK: i64 = 2000;

/// One chunk of agents for SQLite's text index, as a JSON array of
/// [`StoredAgent`] arrays; empty (`[]`) past the last row. SQLite only: the
/// text index exists there alone, and `json_group_array` is SQLite's.
const LOAD_CHUNK_SQL: &str = "SELECT json_group_array(json_array(\
     a.pk, a.org, a.role, a.trust_rank, a.version, a.deleted_at IS NOT NULL, \
     a.search_name, a.search_description, a.search_skills, \
     json((SELECT json_group_array(skill) FROM agent_skills WHERE agent_pk = a.pk)), \
     json((SELECT json_group_array(tag) FROM agent_tags WHERE agent_pk = a.pk)), \
     json((SELECT json_group_array(mode) FROM agent_modes \
           WHERE direction = 'in' AND agent_pk = a.pk)), \
     json((SELECT json_group_array(mode) FROM agent_modes \
           WHERE direction = 'out' AND agent_pk = a.pk)))) \
     FROM (SELECT * FROM agents WHERE pk > $1 ORDER BY pk LIMIT $2) a";

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

/// The agent store over the process's database.
#[derive(Debug, Clone)]
pub struct AgentStore {
    engine: Engine,
}

/// The pool of an [`AgentStore`] and what ranks free text on it.
#[derive(Debug, Clone)]
enum Engine {
    Sqlite {
        pool: sqlx::SqlitePool,
        /// Ranked free-text discovery, derived from the rows (see
        /// `text_index.rs` for its invariants).
        text: Arc<TextIndex>,
    },
    /// Ranks with `ts_rank` in SQL.
    Postgres { pool: sqlx::PgPool },
}

/// What a write stored: the record as read back, its row number and, when
/// the write computed them, the card's index terms.
struct Written {
    stored: AgentRecord,
    pk: i64,
    terms: Option<IndexTerms>,
}

/// The live row's key facts, read inside a write transaction.
struct Current {
    pk: i64,
    version: i64,
    trust: String,
    deleted: bool,
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

/// The compare-and-swap rule of every versioned write: a write that names a
/// version must name the current one.
fn check_version(id: &AgentId, expected: Option<i64>, current: i64) -> Result<()> {
    match expected {
        Some(expected) if expected != current => Err(RegistryError::StaleVersion {
            agent_id: id.to_string(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// The row key an unranked (or SQLite ranked) page token carries.
fn cursor_pk(cursor: &Cursor) -> Result<i64> {
    cursor
        .key
        .parse()
        .map_err(|_| RegistryError::invalid("page_token belongs to a different query"))
}

/// A failed insert of `agent_id`: a unique violation means the id is taken.
fn insert_failed(error: sqlx::Error, agent_id: &str) -> RegistryError {
    let error = crate::typed("inserting agents", error);
    if error.failure() == StorageFailure::Conflict {
        return RegistryError::AgentExists {
            agent_id: agent_id.to_owned(),
        };
    }
    RegistryError::Storage(error)
}

/// One discovery filter answered by a side table: `table` rows where
/// `condition` (SQL ending in `= `) holds for the bound `value`.
struct SideFilter {
    table: &'static str,
    condition: &'static str,
    value: String,
}

/// The side-table filters of `query`, most selective first: the first one
/// drives an unranked query (its index is walked in agent order, so a page
/// stops after `page_size + 1` matches); the others are checked per agent.
fn side_filters(query: &DiscoveryQuery) -> Vec<SideFilter> {
    let mut filters = Vec::new();
    if let Some(skill) = query.skill_key() {
        filters.push(SideFilter {
            table: "agent_skills",
            condition: "skill = ",
            value: skill,
        });
    }
    if let Some(tag) = query.tag_key() {
        filters.push(SideFilter {
            table: "agent_tags",
            condition: "tag = ",
            value: tag,
        });
    }
    if let Some(mode) = &query.input_mode {
        filters.push(SideFilter {
            table: "agent_modes",
            condition: "direction = 'in' AND mode = ",
            value: mode.clone(),
        });
    }
    if let Some(mode) = &query.output_mode {
        filters.push(SideFilter {
            table: "agent_modes",
            condition: "direction = 'out' AND mode = ",
            value: mode.clone(),
        });
    }
    filters
}

/// Strips the ranks and row numbers off a page of results.
fn records<K>(page: Page<(AgentRecord, K)>) -> Page<AgentRecord> {
    Page {
        items: page.items.into_iter().map(|(record, _)| record).collect(),
        next_page_token: page.next_page_token,
    }
}

/// The statements of the agent store for one backend: `$db` the sqlx
/// database, `$begin` how a write transaction starts, `$lock` the clause
/// that locks the row a write reads, `$join` how the driving side table is
/// joined, `$one_per_trip` whether a query carries one statement only.
macro_rules! backend {
    ($module:ident, $db:ty, $backend:expr, $begin:literal, $lock:literal, $join:literal, $one_per_trip:expr) => {
        pub(super) mod $module {
            use super::*;

            /// Whether each statement goes to the database alone.
            const ONE_PER_TRIP: bool = $one_per_trip;

            type Tx = sqlx::Transaction<'static, $db>;
            type DbRow = <$db as sqlx::Database>::Row;
            type DbPool = sqlx::Pool<$db>;

            fn sql(text: &'static str) -> Cow<'static, str> {
                $backend.sql(text)
            }

            fn stamp(at: &DateTime<Utc>) -> <$db as Stamps>::Stamp {
                <$db as Stamps>::stamp(at)
            }

            pub(super) fn record_from_row(row: &DbRow) -> Result<AgentRecord> {
                let text = |column: &str| -> Result<String> {
                    Ok(row.try_get(column).db("reading an agent row")?)
                };
                Ok(AgentRecord {
                    id: parse_id(&text("id")?)?,
                    name: text("name")?,
                    org: text("org")?,
                    role: parse_role(&text("role")?)?,
                    card: parse_json("card", &text("card")?)?,
                    upstreams: parse_json("upstreams", &text("upstreams")?)?,
                    trust: parse_trust(&text("trust")?)?,
                    version: row.try_get("version").db("reading an agent row")?,
                    created_at: <$db as Stamps>::read_stamp(row, "created_at")?,
                    updated_at: <$db as Stamps>::read_stamp(row, "updated_at")?,
                    deleted_at: <$db as Stamps>::read_optional_stamp(row, "deleted_at")?,
                })
            }

            fn route_from_row(row: &DbRow) -> Result<TaskRoute> {
                let text = |column: &str| -> Result<String> {
                    Ok(row.try_get(column).db("reading a task route")?)
                };
                Ok(TaskRoute {
                    task_id: text("task_id")?,
                    context_id: row.try_get("context_id").db("reading a task route")?,
                    agent_id: parse_id(&text("agent_id")?)?,
                    owner: text("owner")?,
                    created_at: <$db as Stamps>::read_stamp(row, "created_at")?,
                    updated_at: <$db as Stamps>::read_stamp(row, "updated_at")?,
                })
            }

            async fn begin_write(pool: &DbPool) -> Result<Tx> {
                Ok(pool.begin_with($begin).await.db("starting a write")?)
            }

            async fn commit(tx: Tx) -> Result<()> {
                Ok(tx.commit().await.db("committing a write")?)
            }

            async fn current(tx: &mut Tx, id: &str) -> Result<Option<Current>> {
                let row = sqlx::query(&sql(concat!(
                    "SELECT pk, version, trust, deleted_at IS NOT NULL AS deleted FROM agents \
                     WHERE id = $1",
                    $lock
                )))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .db("reading the agent written to")?;
                row.map(|row| {
                    let read = "reading the agent written to";
                    Ok(Current {
                        pk: row.try_get("pk").db(read)?,
                        version: row.try_get("version").db(read)?,
                        trust: row.try_get("trust").db(read)?,
                        deleted: row.try_get("deleted").db(read)?,
                    })
                })
                .transpose()
            }

            /// The live row, checked against the expected version.
            async fn live_at(
                tx: &mut Tx,
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

            async fn copy_to_history(tx: &mut Tx, pk: i64) -> Result<()> {
                sqlx::query(&sql(concat!(
                    "INSERT INTO agent_versions (",
                    agent_columns!(),
                    ") SELECT ",
                    agent_columns!(),
                    " FROM agents WHERE pk = $1"
                )))
                .bind(pk)
                .execute(&mut **tx)
                .await
                .db("copying an agent to its history")?;
                Ok(())
            }

            async fn read_row(tx: &mut Tx, pk: i64) -> Result<AgentRecord> {
                let row = sqlx::query(&sql(concat!(
                    "SELECT ",
                    agent_columns!(),
                    " FROM agents WHERE pk = $1"
                )))
                .bind(pk)
                .fetch_one(&mut **tx)
                .await
                .db("reading the agent written")?;
                record_from_row(&row)
            }

            /// Statements that go to the database together. On SQLite one
            /// query carries many (a registration's side-table writes are a
            /// handful of tiny statements, and each round trip to the
            /// connection's worker thread costs more than running one); on
            /// PostgreSQL each goes alone ([`ONE_PER_TRIP`]). Sent early
            /// before the bound values would pass the limit.
            struct Batch<'args> {
                builder: QueryBuilder<'args, $db>,
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

                /// Starts a statement of `sql` that binds `params` values,
                /// sending what is queued first if the batch is full.
                async fn start(
                    &mut self,
                    tx: &mut Tx,
                    sql: &str,
                    params: usize,
                ) -> Result<&mut QueryBuilder<'args, $db>> {
                    if self.params + params > MAX_PARAMS || (ONE_PER_TRIP && self.statements > 0)
                    {
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

                /// Queues `(term, agent_pk)` rows for the side table `insert`
                /// names, sorted and in multi-row chunks.
                async fn insert_terms(
                    &mut self,
                    tx: &mut Tx,
                    insert: &str,
                    mut rows: Vec<(&'args str, i64)>,
                ) -> Result<()> {
                    rows.sort_unstable();
                    for chunk in rows.chunks(BULK_CHUNK) {
                        self.start(tx, insert, chunk.len() * 2)
                            .await?
                            .push_values(chunk, |mut row, (term, pk)| {
                                row.push_bind(*term).push_bind(*pk);
                            });
                    }
                    Ok(())
                }

                /// Runs every queued statement, in order.
                async fn send(&mut self, tx: &mut Tx) -> Result<()> {
                    if self.statements == 0 {
                        return Ok(());
                    }
                    let mut builder = std::mem::replace(&mut self.builder, QueryBuilder::new(""));
                    self.params = 0;
                    self.statements = 0;
                    // A multi-statement text differs with every batch's row
                    // counts: not worth a place in the statement cache.
                    builder
                        .build()
                        .persistent(ONE_PER_TRIP)
                        .execute(&mut **tx)
                        .await
                        .db("writing the discovery side tables")?;
                    Ok(())
                }
            }

            /// Replaces the discovery side-table rows of the agents in
            /// `terms`. Rows are written in primary-key order (term, then
            /// agent), so a bulk load fills each index page once instead of
            /// revisiting pages at random.
            async fn write_terms<'a>(
                tx: &mut Tx,
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
                let skills = terms
                    .iter()
                    .flat_map(|(pk, t)| t.skills.iter().map(move |s| (s.as_str(), *pk)))
                    .collect();
                batch
                    .insert_terms(tx, "INSERT INTO agent_skills (skill, agent_pk) ", skills)
                    .await?;
                let tags = terms
                    .iter()
                    .flat_map(|(pk, t)| t.tags.iter().map(move |s| (s.as_str(), *pk)))
                    .collect();
                batch
                    .insert_terms(tx, "INSERT INTO agent_tags (tag, agent_pk) ", tags)
                    .await?;
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

            /// Appends the filters on the agent row itself.
            pub(super) fn push_row_filters(
                builder: &mut QueryBuilder<'_, $db>,
                query: &DiscoveryQuery,
            ) {
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
                        .push_bind(min_trust.rank());
                }
            }

            /// Appends side-table filters checked per agent.
            pub(super) fn push_side_checks(
                builder: &mut QueryBuilder<'_, $db>,
                filters: &[SideFilter],
            ) {
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

            pub(super) async fn insert(
                pool: &DbPool,
                record: &AgentRecord,
                trust_change: Option<&TrustChange>,
            ) -> Result<Written> {
                let values = row_values(record)?;
                let mut tx = begin_write(pool).await?;
                // A new id is the common case: insert straight away and read
                // the stored row back from RETURNING; only a taken id looks
                // at what holds it. DO NOTHING keeps the transaction usable
                // on PostgreSQL, where a failed statement would abort it.
                let inserted = sqlx::query(&sql(concat!(
                    "INSERT INTO agents (id, name, org, role, trust, trust_rank, version, card, \
                     upstreams, created_at, updated_at, deleted_at, search_name, \
                     search_description, search_skills) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14) \
                     ON CONFLICT (id) DO NOTHING RETURNING pk, ",
                    agent_columns!()
                )))
                .bind(&values.id)
                .bind(&record.name)
                .bind(&record.org)
                .bind(record.role.as_str())
                .bind(record.trust.as_str())
                .bind(record.trust.rank())
                .bind(record.version)
                .bind(&values.card)
                .bind(&values.upstreams)
                .bind(stamp(&record.created_at))
                .bind(stamp(&record.updated_at))
                .bind(&values.terms.search_name)
                .bind(&values.terms.search_description)
                .bind(&values.terms.search_skills)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|error| insert_failed(error, &values.id))?;
                let (written, stored) = match inserted {
                    Some(row) => {
                        let pk: i64 = row.try_get("pk").db("reading the inserted agent")?;
                        let written = [(pk, values.terms)];
                        write_terms(&mut tx, &written, false).await?;
                        (written, record_from_row(&row)?)
                    }
                    None => {
                        let tombstone = match current(&mut tx, &values.id).await? {
                            Some(existing) if existing.deleted => existing,
                            _ => {
                                return Err(RegistryError::AgentExists {
                                    agent_id: values.id,
                                })
                            }
                        };
                        // Registered again after deregistration: the
                        // tombstone goes to history and the registration
                        // continues the version sequence.
                        copy_to_history(&mut tx, tombstone.pk).await?;
                        sqlx::query(&sql(
                            "UPDATE agents SET name = $1, org = $2, role = $3, trust = $4, \
                             trust_rank = $5, version = $6, card = $7, upstreams = $8, \
                             created_at = $9, updated_at = $10, deleted_at = NULL, \
                             search_name = $11, search_description = $12, search_skills = $13 \
                             WHERE pk = $14",
                        ))
                        .bind(&record.name)
                        .bind(&record.org)
                        .bind(record.role.as_str())
                        .bind(record.trust.as_str())
                        .bind(record.trust.rank())
                        .bind(tombstone.version + 1)
                        .bind(&values.card)
                        .bind(&values.upstreams)
                        .bind(stamp(&record.created_at))
                        .bind(stamp(&record.updated_at))
                        .bind(&values.terms.search_name)
                        .bind(&values.terms.search_description)
                        .bind(&values.terms.search_skills)
                        .bind(tombstone.pk)
                        .execute(&mut *tx)
                        .await
                        .db("registering a deregistered agent again")?;
                        let written = [(tombstone.pk, values.terms)];
                        write_terms(&mut tx, &written, true).await?;
                        (written, read_row(&mut tx, tombstone.pk).await?)
                    }
                };
                if let Some(change) = trust_change {
                    record_trust_change(&mut tx, change, change.from.as_str()).await?;
                }
                commit(tx).await?;
                let [(pk, terms)] = written;
                Ok(Written {
                    stored,
                    pk,
                    terms: Some(terms),
                })
            }

            pub(super) async fn get(
                pool: &DbPool,
                id: &AgentId,
                version: Option<i64>,
            ) -> Result<AgentRecord> {
                let id_text = id.to_string();
                let row = sqlx::query(&sql(concat!(
                    "SELECT ",
                    agent_columns!(),
                    " FROM agents WHERE id = $1"
                )))
                .bind(&id_text)
                .fetch_optional(pool)
                .await
                .db("reading an agent")?
                .ok_or_else(|| RegistryError::not_found(id))?;
                let record = record_from_row(&row)?;
                match version {
                    None => Ok(record),
                    Some(version) if version == record.version => Ok(record),
                    Some(version) => {
                        let row = sqlx::query(&sql(concat!(
                            "SELECT ",
                            agent_columns!(),
                            " FROM agent_versions WHERE id = $1 AND version = $2"
                        )))
                        .bind(&id_text)
                        .bind(version)
                        .fetch_optional(pool)
                        .await
                        .db("reading an agent's version")?
                        .ok_or_else(|| RegistryError::AgentNotFound {
                            agent_id: format!("{id} version {version}"),
                        })?;
                        record_from_row(&row)
                    }
                }
            }

            pub(super) async fn update(
                pool: &DbPool,
                id: &AgentId,
                expected_version: i64,
                record: &AgentRecord,
            ) -> Result<Written> {
                let values = row_values(record)?;
                let mut tx = begin_write(pool).await?;
                let live = live_at(&mut tx, id, Some(expected_version)).await?;
                copy_to_history(&mut tx, live.pk).await?;
                sqlx::query(&sql(
                    "UPDATE agents SET role = $1, card = $2, upstreams = $3, version = $4, \
                     updated_at = $5, search_name = $6, search_description = $7, \
                     search_skills = $8 WHERE pk = $9",
                ))
                .bind(record.role.as_str())
                .bind(&values.card)
                .bind(&values.upstreams)
                .bind(expected_version + 1)
                .bind(stamp(&record.updated_at))
                .bind(&values.terms.search_name)
                .bind(&values.terms.search_description)
                .bind(&values.terms.search_skills)
                .bind(live.pk)
                .execute(&mut *tx)
                .await
                .db("updating an agent")?;
                let written = [(live.pk, values.terms)];
                write_terms(&mut tx, &written, true).await?;
                let stored = read_row(&mut tx, live.pk).await?;
                commit(tx).await?;
                let [(pk, terms)] = written;
                Ok(Written {
                    stored,
                    pk,
                    terms: Some(terms),
                })
            }

            pub(super) async fn refresh_upstreams(
                pool: &DbPool,
                id: &AgentId,
                expected_version: i64,
                record: &AgentRecord,
            ) -> Result<AgentRecord> {
                let values = row_values(record)?;
                let mut tx = begin_write(pool).await?;
                let live = live_at(&mut tx, id, Some(expected_version)).await?;
                // No history row and no new version: the address is not part
                // of the agent's identity (see the trait). The discovery
                // terms do not depend on it, so the side tables and the text
                // index stay as they are.
                sqlx::query(&sql("UPDATE agents SET card = $1, upstreams = $2 WHERE pk = $3"))
                    .bind(&values.card)
                    .bind(&values.upstreams)
                    .bind(live.pk)
                    .execute(&mut *tx)
                    .await
                    .db("refreshing an agent's upstreams")?;
                let stored = read_row(&mut tx, live.pk).await?;
                commit(tx).await?;
                Ok(stored)
            }

            pub(super) async fn delete(
                pool: &DbPool,
                id: &AgentId,
                expected_version: Option<i64>,
                at: DateTime<Utc>,
            ) -> Result<Written> {
                let mut tx = begin_write(pool).await?;
                let live = live_at(&mut tx, id, expected_version).await?;
                copy_to_history(&mut tx, live.pk).await?;
                sqlx::query(&sql(
                    "UPDATE agents SET deleted_at = $1, updated_at = $2, version = version + 1 \
                     WHERE pk = $3",
                ))
                .bind(stamp(&at))
                .bind(stamp(&at))
                .bind(live.pk)
                .execute(&mut *tx)
                .await
                .db("deregistering an agent")?;
                let stored = read_row(&mut tx, live.pk).await?;
                commit(tx).await?;
                Ok(Written {
                    stored,
                    pk: live.pk,
                    terms: None,
                })
            }

            pub(super) async fn history(
                pool: &DbPool,
                id: &AgentId,
            ) -> Result<Vec<AgentRecord>> {
                let rows = sqlx::query(&sql(concat!(
                    "SELECT ",
                    agent_columns!(),
                    " FROM agent_versions WHERE id = $1 ORDER BY version"
                )))
                .bind(id.to_string())
                .fetch_all(pool)
                .await
                .db("reading an agent's history")?;
                rows.iter().map(record_from_row).collect()
            }

            pub(super) async fn set_trust(
                pool: &DbPool,
                id: &AgentId,
                expected_version: Option<i64>,
                change: &TrustChange,
            ) -> Result<Written> {
                let mut tx = begin_write(pool).await?;
                let live = live_at(&mut tx, id, expected_version).await?;
                copy_to_history(&mut tx, live.pk).await?;
                sqlx::query(&sql(
                    "UPDATE agents SET trust = $1, trust_rank = $2, updated_at = $3, \
                     version = version + 1 WHERE pk = $4",
                ))
                .bind(change.to.as_str())
                .bind(change.to.rank())
                .bind(stamp(&change.at))
                .bind(live.pk)
                .execute(&mut *tx)
                .await
                .db("changing an agent's trust")?;
                // The level the row held is the change's `from`, whatever the
                // caller read before.
                record_trust_change(&mut tx, change, &live.trust).await?;
                let stored = read_row(&mut tx, live.pk).await?;
                commit(tx).await?;
                Ok(Written {
                    stored,
                    pk: live.pk,
                    terms: None,
                })
            }

            async fn record_trust_change(
                tx: &mut Tx,
                change: &TrustChange,
                from: &str,
            ) -> Result<()> {
                sqlx::query(&sql(
                    "INSERT INTO trust_changes (agent_id, from_level, to_level, actor, is_admin, \
                     reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ))
                .bind(change.agent_id.to_string())
                .bind(from)
                .bind(change.to.as_str())
                .bind(&change.actor.subject)
                .bind(change.actor.is_admin)
                .bind(&change.reason)
                .bind(stamp(&change.at))
                .execute(&mut **tx)
                .await
                .db("recording a trust change")?;
                Ok(())
            }

            pub(super) async fn trust_history(
                pool: &DbPool,
                id: &AgentId,
            ) -> Result<Vec<TrustChange>> {
                let rows = sqlx::query(&sql(
                    "SELECT from_level, to_level, actor, is_admin, reason, at FROM trust_changes \
                     WHERE agent_id = $1 ORDER BY seq",
                ))
                .bind(id.to_string())
                .fetch_all(pool)
                .await
                .db("reading trust changes")?;
                rows.iter()
                    .map(|row| {
                        let read = "reading a trust change";
                        let text =
                            |column: &str| -> Result<String> { Ok(row.try_get(column).db(read)?) };
                        Ok(TrustChange {
                            agent_id: id.clone(),
                            from: parse_trust(&text("from_level")?)?,
                            to: parse_trust(&text("to_level")?)?,
                            actor: Actor {
                                subject: text("actor")?,
                                is_admin: row.try_get("is_admin").db(read)?,
                            },
                            reason: text("reason")?,
                            at: <$db as Stamps>::read_stamp(row, "at")?,
                        })
                    })
                    .collect()
            }

            /// An unranked page, in registration order (the row number):
            /// rows inserted while a client pages land after its cursor.
            pub(super) async fn discover_listed(
                pool: &DbPool,
                query: &DiscoveryQuery,
                cursor: Option<&Cursor>,
                page_size: u32,
            ) -> Result<Page<AgentRecord>> {
                let mut builder = QueryBuilder::<$db>::new("");
                let side_filters = side_filters(query);
                let order = match side_filters.split_first() {
                    Some((driver, others)) => {
                        builder.push(format!(
                            concat!(
                                "SELECT ",
                                agent_columns_a!(),
                                ", a.pk AS pk FROM {} d ",
                                $join,
                                " agents a ON a.pk = d.agent_pk WHERE d.{}"
                            ),
                            driver.table, driver.condition
                        ));
                        builder.push_bind(driver.value.clone());
                        push_side_checks(&mut builder, others);
                        "d.agent_pk"
                    }
                    None => {
                        builder.push(concat!(
                            "SELECT ",
                            agent_columns_a!(),
                            ", a.pk AS pk FROM agents a WHERE 1 = 1"
                        ));
                        "a.pk"
                    }
                };
                push_row_filters(&mut builder, query);
                if let Some(cursor) = cursor {
                    builder
                        .push(format!(" AND {order} > "))
                        .push_bind(cursor_pk(cursor)?);
                }
                builder
                    .push(format!(" ORDER BY {order} LIMIT "))
                    .push_bind(i64::from(page_size) + 1);
                let rows = builder
                    .build()
                    .fetch_all(pool)
                    .await
                    .db("listing agents")?;
                let mut listed = Vec::with_capacity(rows.len());
                for row in &rows {
                    let pk: i64 = row.try_get("pk").db("listing agents")?;
                    listed.push((record_from_row(row)?, pk));
                }
                Ok(records(make_page(listed, page_size, |(_, pk)| Cursor {
                    rank: None,
                    key: pk.to_string(),
                })))
            }

            pub(super) async fn put_task_route(
                pool: &DbPool,
                route: &TaskRoute,
            ) -> Result<()> {
                sqlx::query(&sql(
                    "INSERT INTO task_routes (task_id, context_id, agent_id, owner, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO UPDATE \
                     SET context_id = excluded.context_id, agent_id = excluded.agent_id, \
                     owner = excluded.owner, updated_at = excluded.updated_at",
                ))
                .bind(&route.task_id)
                .bind(&route.context_id)
                .bind(route.agent_id.to_string())
                .bind(&route.owner)
                .bind(stamp(&route.created_at))
                .bind(stamp(&route.updated_at))
                .execute(pool)
                .await
                .db("storing a task route")?;
                Ok(())
            }

            pub(super) async fn get_task_route(
                pool: &DbPool,
                task_id: &str,
            ) -> Result<Option<TaskRoute>> {
                let row = sqlx::query(&sql(
                    "SELECT task_id, context_id, agent_id, owner, created_at, updated_at \
                     FROM task_routes WHERE task_id = $1",
                ))
                .bind(task_id)
                .fetch_optional(pool)
                .await
                .db("reading a task route")?;
                row.as_ref().map(route_from_row).transpose()
            }

            pub(super) async fn list_task_routes(
                pool: &DbPool,
                owner: &str,
                agent: Option<&AgentId>,
                page_size: u32,
                cursor: Option<Cursor>,
            ) -> Result<Page<TaskRoute>> {
                let mut builder = QueryBuilder::<$db>::new(
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
                    .fetch_all(pool)
                    .await
                    .db("listing task routes")?;
                let routes = rows
                    .iter()
                    .map(route_from_row)
                    .collect::<Result<Vec<_>>>()?;
                Ok(make_page(routes, page_size, |route| Cursor {
                    rank: None,
                    key: route.task_id.clone(),
                }))
            }

            pub(super) async fn owned_task_ids(
                pool: &DbPool,
                owner: &str,
                agent: &AgentId,
                task_ids: &[String],
            ) -> Result<Vec<String>> {
                let mut owned = Vec::new();
                for chunk in task_ids.chunks(TASK_ID_CHUNK) {
                    let mut builder =
                        QueryBuilder::<$db>::new("SELECT task_id FROM task_routes WHERE owner = ");
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
                        .fetch_all(pool)
                        .await
                        .db("reading owned task ids")?;
                    for row in rows {
                        owned.push(row.try_get::<String, _>("task_id").db("reading owned task ids")?);
                    }
                }
                Ok(owned)
            }

            pub(super) async fn count_task_routes(
                pool: &DbPool,
                owner: &str,
                agent: &AgentId,
            ) -> Result<u64> {
                let routes: i64 = sqlx::query_scalar(&sql(
                    "SELECT COUNT(*) FROM task_routes WHERE owner = $1 AND agent_id = $2",
                ))
                .bind(owner)
                .bind(agent.to_string())
                .fetch_one(pool)
                .await
                .db("counting task routes")?;
                Ok(count(routes))
            }

            pub(super) async fn claim_context(
                pool: &DbPool,
                agent: &AgentId,
                context_id: &str,
                owner: &str,
                at: DateTime<Utc>,
            ) -> Result<String> {
                let agent_id = agent.to_string();
                let holder =
                    sql("SELECT owner FROM context_routes WHERE agent_id = $1 AND context_id = $2");
                let read = || {
                    sqlx::query_scalar::<$db, String>(&holder)
                    .bind(agent_id.clone())
                    .bind(context_id.to_owned())
                };
                // Most calls name a context already held: one read answers them.
                if let Some(holder) = read().fetch_optional(pool).await.db("reading a context")? {
                    return Ok(holder);
                }
                sqlx::query(&sql(
                    "INSERT INTO context_routes (agent_id, context_id, owner, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, context_id) DO NOTHING",
                ))
                .bind(agent_id.clone())
                .bind(context_id)
                .bind(owner)
                .bind(stamp(&at))
                .execute(pool)
                .await
                .db("claiming a context")?;
                // Whoever inserted first holds it, this claim or a racing one.
                Ok(read().fetch_one(pool).await.db("reading a context")?)
            }

            /// Inserts `records` in one transaction; returns each one's row
            /// number and index terms, in the records' order.
            pub(super) async fn bulk_insert(
                pool: &DbPool,
                records: &[AgentRecord],
            ) -> Result<Vec<(i64, IndexTerms)>> {
                let values = records.iter().map(row_values).collect::<Result<Vec<_>>>()?;
                let mut tx = begin_write(pool).await?;
                let mut terms = Vec::with_capacity(records.len());
                for (chunk_records, chunk_values) in records
                    .chunks(BULK_CHUNK / 2)
                    .zip(values.chunks(BULK_CHUNK / 2))
                {
                    let mut builder = QueryBuilder::<$db>::new(
                        "INSERT INTO agents (id, name, org, role, trust, trust_rank, version, \
                         card, upstreams, created_at, updated_at, search_name, \
                         search_description, search_skills) ",
                    );
                    builder.push_values(
                        chunk_records.iter().zip(chunk_values),
                        |mut row, (record, values)| {
                            row.push_bind(values.id.as_str())
                                .push_bind(record.name.as_str())
                                .push_bind(record.org.as_str())
                                .push_bind(record.role.as_str())
                                .push_bind(record.trust.as_str())
                                .push_bind(record.trust.rank())
                                .push_bind(record.version)
                                .push_bind(values.card.as_str())
                                .push_bind(values.upstreams.as_str())
                                .push_bind(stamp(&record.created_at))
                                .push_bind(stamp(&record.updated_at))
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
                        .map_err(|error| insert_failed(error, "one of the bulk records"))?;
                    let mut pk_by_id = HashMap::with_capacity(rows.len());
                    for row in &rows {
                        let id: String = row.try_get("id").db("reading inserted agents")?;
                        let pk: i64 = row.try_get("pk").db("reading inserted agents")?;
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
                commit(tx).await?;
                Ok(terms)
            }

            pub(super) async fn analyze(pool: &DbPool) -> Result<()> {
                sqlx::query("ANALYZE")
                    .execute(pool)
                    .await
                    .db("refreshing planner statistics")?;
                Ok(())
            }
        }
    };
}

backend!(
    sqlite,
    sqlx::Sqlite,
    Backend::Sqlite,
    "BEGIN IMMEDIATE",
    "",
    "CROSS JOIN",
    false
);
backend!(
    postgres,
    sqlx::Postgres,
    Backend::Postgres,
    "BEGIN",
    " FOR UPDATE",
    "JOIN",
    true
);

/// Calls the backend's instance of a statement function with the pool.
macro_rules! each {
    ($self:ident.$function:ident($($argument:expr),*)) => {
        match &$self.engine {
            Engine::Sqlite { pool, .. } => sqlite::$function(pool, $($argument),*).await,
            Engine::Postgres { pool } => postgres::$function(pool, $($argument),*).await,
        }
    };
}

// === impl AgentStore ===

impl AgentStore {
    /// The agent store of `db`. On SQLite this builds the text index from
    /// every row (logged with its size and the time it took).
    pub async fn open(db: &Db) -> Result<Self> {
        let engine = match db.pool() {
            Pool::Sqlite(pool) => Engine::Sqlite {
                text: Arc::new(load_text_index(pool).await?),
                pool: pool.clone(),
            },
            Pool::Postgres(pool) => Engine::Postgres { pool: pool.clone() },
        };
        Ok(Self { engine })
    }

    /// The memory SQLite's free-text index holds, in bytes (0 on PostgreSQL).
    pub fn text_index_bytes(&self) -> usize {
        self.text().map_or(0, TextIndex::heap_bytes)
    }

    fn text(&self) -> Option<&TextIndex> {
        match &self.engine {
            Engine::Sqlite { text, .. } => Some(text),
            Engine::Postgres { .. } => None,
        }
    }

    /// Hands a committed write's record to the text index, if there is one.
    fn index(&self, written: Written) -> Result<AgentRecord> {
        if let Some(text) = self.text() {
            match &written.terms {
                // The card's terms were just computed for the side tables.
                Some(terms) => {
                    text.apply_all([IndexedAgent::of(written.pk, &written.stored, terms)])?
                }
                None => text.apply(written.pk, &written.stored)?,
            }
        }
        Ok(written.stored)
    }
}

/// Builds SQLite's text index from every row, in row order and in chunks so
/// memory stays bounded however large the registry. It reads the text
/// columns and side-table rows each write stores from the card's
/// [`IndexTerms`], not the cards themselves, which would all be parsed.
/// SQLite hands over each chunk as one JSON document: sqlx passes every
/// result row through a channel from its worker thread, which costs more
/// than the row itself, and an agent has a dozen side-table rows.
async fn load_text_index(pool: &sqlx::SqlitePool) -> Result<TextIndex> {
    let started = Instant::now();
    let text = TextIndex::default();
    let statement = Backend::Sqlite.sql(LOAD_CHUNK_SQL);
    let mut after = 0i64;
    let mut loaded = 0usize;
    loop {
        let chunk: String = sqlx::query_scalar(&statement)
            .bind(after)
            .bind(LOAD_CHUNK)
            .fetch_one(pool)
            .await
            .db("loading the text index")?;
        let stored: Vec<StoredAgent> = serde_json::from_str(&chunk).map_err(|error| {
            RegistryError::corrupt_because(format!("text index rows after {after}"), error)
        })?;
        let Some(last) = stored.iter().map(|agent| agent.0).max() else {
            break;
        };
        let agents = stored
            .into_iter()
            .map(StoredAgent::read)
            .collect::<Result<Vec<_>>>()?;
        text.apply_all(agents.iter().map(LoadedAgent::indexed))?;
        loaded += agents.len();
        after = last;
    }
    text.shrink();
    tracing::info!(
        agents = loaded,
        millis = started.elapsed().as_millis() as u64,
        megabytes = text.heap_bytes() / (1 << 20),
        "free-text index built"
    );
    Ok(text)
}

/// A ranked (free-text) page on SQLite: ranked in memory by the text index,
/// then only the page's rows are read, in one query.
async fn discover_ranked_sqlite(
    pool: &sqlx::SqlitePool,
    text: &TextIndex,
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
    let ranked = text.search(query, terms, after, page_size as usize + 1);
    if ranked.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            next_page_token: None,
        });
    }
    let mut builder = QueryBuilder::<sqlx::Sqlite>::new(concat!(
        "SELECT pk, ",
        agent_columns!(),
        " FROM agents WHERE pk IN ("
    ));
    let mut separated = builder.separated(", ");
    for hit in &ranked {
        separated.push_bind(hit.pk);
    }
    builder.push(")");
    let rows = builder
        .build()
        .fetch_all(pool)
        .await
        .db("reading a ranked page")?;
    let mut by_pk = HashMap::with_capacity(rows.len());
    for row in &rows {
        let pk: i64 = row.try_get("pk").db("reading a ranked page")?;
        by_pk.insert(pk, sqlite::record_from_row(row)?);
    }
    // A row the index named is always there (rows are never removed); a
    // write since the ranking may have changed it, which the page then shows
    // as it is now.
    let items: Vec<(AgentRecord, (f64, i64))> = ranked
        .iter()
        .filter_map(|hit| {
            by_pk
                .remove(&hit.pk)
                .map(|record| (record, (hit.rank, hit.pk)))
        })
        .collect();
    // Ties are in row order, so the row number is the ranked key.
    Ok(records(make_page(items, page_size, |(_, (rank, pk))| {
        Cursor {
            rank: Some(*rank),
            key: pk.to_string(),
        }
    })))
}

/// A ranked (free-text) page on PostgreSQL, by `ts_rank` over the generated
/// `search` vector.
async fn discover_ranked_postgres(
    pool: &sqlx::PgPool,
    query: &DiscoveryQuery,
    terms: &[String],
    cursor: Option<&Cursor>,
    page_size: u32,
) -> Result<Page<AgentRecord>> {
    // Terms are letters and digits only, so joining them with `&` makes a
    // safe tsquery: all terms must occur.
    let ts_query = terms.join(" & ");
    // Rank and page on narrow rows first; only the page's rows are then
    // joined back for their (large) card columns.
    let mut builder = QueryBuilder::<sqlx::Postgres>::new(concat!(
        "SELECT ",
        agent_columns_a!(),
        ", top.rank AS rank FROM (SELECT pk, id, rank FROM (SELECT a.pk AS pk, a.id AS id, \
         ts_rank(a.search, to_tsquery('simple', "
    ));
    builder.push_bind(ts_query.clone());
    builder.push(")) AS rank FROM agents a WHERE a.search @@ to_tsquery('simple', ");
    builder.push_bind(ts_query);
    builder.push(")");
    postgres::push_side_checks(&mut builder, &side_filters(query));
    postgres::push_row_filters(&mut builder, query);
    builder.push(") ranked WHERE 1 = 1");
    if let Some(cursor) = cursor {
        // The token carries the f32 rank widened to f64: narrowing it back
        // is exact, so the comparison matches the stored order.
        let rank = cursor.rank.unwrap_or_default() as f32;
        builder
            .push(" AND (rank < ")
            .push_bind(rank)
            .push(" OR (rank = ")
            .push_bind(rank)
            .push(" AND id > ")
            .push_bind(cursor.key.clone())
            .push("))");
    }
    // ts_rank is higher for better matches.
    builder
        .push(" ORDER BY rank DESC, id LIMIT ")
        .push_bind(i64::from(page_size) + 1)
        .push(") top JOIN agents a ON a.pk = top.pk ORDER BY top.rank DESC, top.id");
    let rows = builder.build().fetch_all(pool).await.db("ranking agents")?;
    let mut ranked = Vec::with_capacity(rows.len());
    for row in &rows {
        let rank: f32 = row.try_get("rank").db("ranking agents")?;
        ranked.push((postgres::record_from_row(row)?, rank));
    }
    // Ties are in id order, so the id is the ranked key.
    Ok(records(make_page(ranked, page_size, |(record, rank)| {
        Cursor {
            rank: Some(f64::from(*rank)),
            key: record.id.to_string(),
        }
    })))
}

#[async_trait]
impl Store for AgentStore {
    fn backend(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite { .. } => Backend::Sqlite.name(),
            Engine::Postgres { .. } => Backend::Postgres.name(),
        }
    }

    async fn insert_with_trust_change(
        &self,
        record: &AgentRecord,
        trust_change: Option<&TrustChange>,
    ) -> Result<AgentRecord> {
        let written = each!(self.insert(record, trust_change))?;
        self.index(written)
    }

    async fn get(&self, id: &AgentId, version: Option<i64>) -> Result<AgentRecord> {
        each!(self.get(id, version))
    }

    async fn update(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord> {
        let written = each!(self.update(id, expected_version, record))?;
        self.index(written)
    }

    async fn refresh_upstreams(
        &self,
        id: &AgentId,
        expected_version: i64,
        record: &AgentRecord,
    ) -> Result<AgentRecord> {
        each!(self.refresh_upstreams(id, expected_version, record))
    }

    async fn delete(
        &self,
        id: &AgentId,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<AgentRecord> {
        let written = each!(self.delete(id, expected_version, at))?;
        self.index(written)
    }

    async fn list_versions(&self, id: &AgentId) -> Result<Vec<AgentRecord>> {
        let current = self.get(id, None).await?;
        let mut versions = each!(self.history(id))?;
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
        let written = each!(self.set_trust(id, expected_version, change))?;
        self.index(written)
    }

    async fn trust_history(&self, id: &AgentId) -> Result<Vec<TrustChange>> {
        // Unknown ids are an error, not an empty history.
        self.get(id, None).await?;
        each!(self.trust_history(id))
    }

    async fn discover(&self, query: &DiscoveryQuery) -> Result<Page<AgentRecord>> {
        let page_size = query.checked_page_size()?;
        let cursor = query.cursor()?;
        let terms = query.text_terms();
        if terms.is_empty() {
            return each!(self.discover_listed(query, cursor.as_ref(), page_size));
        }
        match &self.engine {
            Engine::Sqlite { pool, text } => {
                discover_ranked_sqlite(pool, text, query, &terms, cursor.as_ref(), page_size).await
            }
            Engine::Postgres { pool } => {
                discover_ranked_postgres(pool, query, &terms, cursor.as_ref(), page_size).await
            }
        }
    }

    async fn put_task_route(&self, route: &TaskRoute) -> Result<()> {
        each!(self.put_task_route(route))
    }

    async fn get_task_route(&self, task_id: &str) -> Result<Option<TaskRoute>> {
        each!(self.get_task_route(task_id))
    }

    async fn list_task_routes(
        &self,
        owner: &str,
        agent: Option<&AgentId>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<TaskRoute>> {
        let page_size = check_page_size(Some(page_size))?;
        let cursor = page_token
            .filter(|token| !token.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        each!(self.list_task_routes(owner, agent, page_size, cursor))
    }

    async fn owned_task_ids(
        &self,
        owner: &str,
        agent: &AgentId,
        task_ids: &[String],
    ) -> Result<Vec<String>> {
        each!(self.owned_task_ids(owner, agent, task_ids))
    }

    async fn count_task_routes(&self, owner: &str, agent: &AgentId) -> Result<u64> {
        each!(self.count_task_routes(owner, agent))
    }

    async fn claim_context(
        &self,
        agent: &AgentId,
        context_id: &str,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<String> {
        each!(self.claim_context(agent, context_id, owner, at))
    }

    async fn bulk_insert(&self, records: &[AgentRecord]) -> Result<u64> {
        let terms = each!(self.bulk_insert(records))?;
        if let Some(text) = self.text() {
            text.apply_all(
                terms
                    .iter()
                    .zip(records)
                    .map(|((pk, terms), record)| IndexedAgent::of(*pk, record, terms)),
            )?;
        }
        Ok(records.len() as u64)
    }

    async fn analyze(&self) -> Result<()> {
        each!(self.analyze())
    }
}
