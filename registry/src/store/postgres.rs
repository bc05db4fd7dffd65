//! The PostgreSQL backend for shared deployments: several gateway replicas
//! point at one database. Free text uses a generated `tsvector` column with a
//! GIN index, ranked by `ts_rank` (which depends only on the row, so ranked
//! page tokens stay valid while other rows are inserted).
//!
//! Every write transaction locks the agent row with `SELECT … FOR UPDATE`
//! before checking its version, so two writers on one agent serialise and the
//! loser sees the winner's version (412), never a lost update.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_schemas::AgentId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};

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
/// Rows per multi-row INSERT, well under PostgreSQL's 65535 bound parameters.
const BULK_CHUNK: usize = 1000;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects to the database at `url` and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(RegistryError::Storage)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests and maintenance.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(RegistryError::Storage)
    }
}

/// Translates a sqlx error: a unique violation means the id is taken.
fn translate(error: sqlx::Error, agent_id: &str) -> RegistryError {
    if let sqlx::Error::Database(database) = &error {
        if database.is_unique_violation() {
            return RegistryError::AgentExists {
                agent_id: agent_id.to_owned(),
            };
        }
    }
    RegistryError::Storage(error)
}

fn storage(error: sqlx::Error) -> RegistryError {
    RegistryError::Storage(error)
}

fn ts(at: &DateTime<Utc>) -> DateTime<Utc> {
    *at
}

fn record_from_row(row: &PgRow) -> Result<AgentRecord> {
    let text = |column: &str| -> Result<String> { row.try_get(column).map_err(storage) };
    let at = |column: &str| -> Result<DateTime<Utc>> { row.try_get(column).map_err(storage) };
    Ok(AgentRecord {
        id: parse_id(&text("id")?)?,
        name: text("name")?,
        org: text("org")?,
        role: parse_role(&text("role")?)?,
        card: parse_json("card", &text("card")?)?,
        upstreams: parse_json("upstreams", &text("upstreams")?)?,
        trust: parse_trust(&text("trust")?)?,
        version: row.try_get("version").map_err(storage)?,
        created_at: at("created_at")?,
        updated_at: at("updated_at")?,
        deleted_at: row.try_get("deleted_at").map_err(storage)?,
    })
}

fn route_from_row(row: &PgRow) -> Result<TaskRoute> {
    let text = |column: &str| -> Result<String> { row.try_get(column).map_err(storage) };
    Ok(TaskRoute {
        task_id: text("task_id")?,
        context_id: row.try_get("context_id").map_err(storage)?,
        agent_id: parse_id(&text("agent_id")?)?,
        owner: text("owner")?,
        created_at: row.try_get("created_at").map_err(storage)?,
        updated_at: row.try_get("updated_at").map_err(storage)?,
    })
}

/// The live row's key facts, read inside a write transaction.
struct Current {
    pk: i64,
    version: i64,
    trust: String,
    deleted: bool,
}

async fn current(tx: &mut Transaction<'static, Postgres>, id: &str) -> Result<Option<Current>> {
    let row = sqlx::query(
        "SELECT pk, version, trust, deleted_at IS NOT NULL AS deleted FROM agents WHERE id = $1 \
         FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(storage)?;
    row.map(|row| {
        Ok(Current {
            pk: row.try_get("pk").map_err(storage)?,
            version: row.try_get("version").map_err(storage)?,
            trust: row.try_get("trust").map_err(storage)?,
            deleted: row.try_get("deleted").map_err(storage)?,
        })
    })
    .transpose()
}

/// The live row, checked against the expected version.
async fn live_at(
    tx: &mut Transaction<'static, Postgres>,
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

async fn copy_to_history(tx: &mut Transaction<'static, Postgres>, pk: i64) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO agent_versions ({AGENT_COLUMNS}) SELECT {AGENT_COLUMNS} FROM agents WHERE pk = $1"
    ))
    .bind(pk)
    .execute(&mut **tx)
    .await
    .map_err(storage)?;
    Ok(())
}

async fn read_row(tx: &mut Transaction<'static, Postgres>, pk: i64) -> Result<AgentRecord> {
    let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE pk = $1"))
        .bind(pk)
        .fetch_one(&mut **tx)
        .await
        .map_err(storage)?;
    record_from_row(&row)
}

/// Replaces the discovery side-table rows of the agents in `terms`.
async fn write_terms(
    tx: &mut Transaction<'static, Postgres>,
    terms: &[(i64, IndexTerms)],
    replace: bool,
) -> Result<()> {
    if replace {
        for (pk, _) in terms {
            for table in ["agent_skills", "agent_tags", "agent_modes"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE agent_pk = $1"))
                    .bind(pk)
                    .execute(&mut **tx)
                    .await
                    .map_err(storage)?;
            }
        }
    }
    let skills: Vec<(i64, &str)> = terms
        .iter()
        .flat_map(|(pk, t)| t.skills.iter().map(move |s| (*pk, s.as_str())))
        .collect();
    for chunk in skills.chunks(BULK_CHUNK) {
        let mut builder =
            QueryBuilder::<Postgres>::new("INSERT INTO agent_skills (agent_pk, skill) ");
        builder.push_values(chunk, |mut row, (pk, skill)| {
            row.push_bind(*pk).push_bind(*skill);
        });
        builder.build().execute(&mut **tx).await.map_err(storage)?;
    }
    let tags: Vec<(i64, &str)> = terms
        .iter()
        .flat_map(|(pk, t)| t.tags.iter().map(move |s| (*pk, s.as_str())))
        .collect();
    for chunk in tags.chunks(BULK_CHUNK) {
        let mut builder = QueryBuilder::<Postgres>::new("INSERT INTO agent_tags (agent_pk, tag) ");
        builder.push_values(chunk, |mut row, (pk, tag)| {
            row.push_bind(*pk).push_bind(*tag);
        });
        builder.build().execute(&mut **tx).await.map_err(storage)?;
    }
    let modes: Vec<(i64, &str, &str)> = terms
        .iter()
        .flat_map(|(pk, t)| {
            t.input_modes
                .iter()
                .map(move |m| (*pk, "in", m.as_str()))
                .chain(t.output_modes.iter().map(move |m| (*pk, "out", m.as_str())))
        })
        .collect();
    for chunk in modes.chunks(BULK_CHUNK) {
        let mut builder =
            QueryBuilder::<Postgres>::new("INSERT INTO agent_modes (agent_pk, direction, mode) ");
        builder.push_values(chunk, |mut row, (pk, direction, mode)| {
            row.push_bind(*pk).push_bind(*direction).push_bind(*mode);
        });
        builder.build().execute(&mut **tx).await.map_err(storage)?;
    }
    Ok(())
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
fn push_row_filters(builder: &mut QueryBuilder<'_, Postgres>, query: &DiscoveryQuery) {
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
fn push_side_checks(builder: &mut QueryBuilder<'_, Postgres>, filters: &[SideFilter]) {
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
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert(&self, record: &AgentRecord) -> Result<AgentRecord> {
        let values = row_values(record)?;
        let mut tx = self.begin_write().await?;
        let existing = current(&mut tx, &values.id).await?;
        let pk = match existing {
            Some(existing) if !existing.deleted => {
                return Err(RegistryError::AgentExists {
                    agent_id: values.id,
                })
            }
            Some(tombstone) => {
                // Registered again after deregistration: the tombstone goes to
                // history and the registration continues the version sequence.
                copy_to_history(&mut tx, tombstone.pk).await?;
                sqlx::query(
                    "UPDATE agents SET name = $1, org = $2, role = $3, trust = $4, trust_rank = $5, \
                     version = $6, card = $7, upstreams = $8, created_at = $9, updated_at = $10, \
                     deleted_at = NULL, search_name = $11, search_description = $12, \
                     search_skills = $13 WHERE pk = $14",
                )
                .bind(&record.name)
                .bind(&record.org)
                .bind(record.role.as_str())
                .bind(record.trust.as_str())
                .bind(record.trust.rank())
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
                write_terms(&mut tx, &[(tombstone.pk, values.terms)], true).await?;
                tombstone.pk
            }
            None => {
                let pk: i64 = sqlx::query_scalar(
                    "INSERT INTO agents (id, name, org, role, trust, trust_rank, version, card, \
                     upstreams, created_at, updated_at, deleted_at, search_name, \
                     search_description, search_skills) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14) RETURNING pk",
                )
                .bind(&values.id)
                .bind(&record.name)
                .bind(&record.org)
                .bind(record.role.as_str())
                .bind(record.trust.as_str())
                .bind(record.trust.rank())
                .bind(record.version)
                .bind(&values.card)
                .bind(&values.upstreams)
                .bind(ts(&record.created_at))
                .bind(ts(&record.updated_at))
                .bind(&values.terms.search_name)
                .bind(&values.terms.search_description)
                .bind(&values.terms.search_skills)
                .fetch_one(&mut *tx)
                .await
                .map_err(|error| translate(error, &values.id))?;
                write_terms(&mut tx, &[(pk, values.terms)], false).await?;
                pk
            }
        };
        let stored = read_row(&mut tx, pk).await?;
        tx.commit().await.map_err(storage)?;
        Ok(stored)
    }

    async fn get(&self, id: &AgentId, version: Option<i64>) -> Result<AgentRecord> {
        let id_text = id.to_string();
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
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
                    "SELECT {AGENT_COLUMNS} FROM agent_versions WHERE id = $1 AND version = $2"
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
            "UPDATE agents SET role = $1, card = $2, upstreams = $3, version = $4, updated_at = $5, \
             search_name = $6, search_description = $7, search_skills = $8 WHERE pk = $9",
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
        write_terms(&mut tx, &[(live.pk, values.terms)], true).await?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
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
        sqlx::query("UPDATE agents SET card = $1, upstreams = $2 WHERE pk = $3")
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
            "UPDATE agents SET deleted_at = $1, updated_at = $2, version = version + 1 WHERE pk = $3",
        )
        .bind(ts(&at))
        .bind(ts(&at))
        .bind(live.pk)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let stored = read_row(&mut tx, live.pk).await?;
        tx.commit().await.map_err(storage)?;
        Ok(stored)
    }

    async fn list_versions(&self, id: &AgentId) -> Result<Vec<AgentRecord>> {
        let id_text = id.to_string();
        let current = self.get(id, None).await?;
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agent_versions WHERE id = $1 ORDER BY version"
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
            "UPDATE agents SET trust = $1, trust_rank = $2, updated_at = $3, version = version + 1 \
             WHERE pk = $4",
        )
        .bind(change.to.as_str())
        .bind(change.to.rank())
        .bind(ts(&change.at))
        .bind(live.pk)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        sqlx::query(
            "INSERT INTO trust_changes (agent_id, from_level, to_level, actor, is_admin, reason, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        Ok(stored)
    }

    async fn trust_history(&self, id: &AgentId) -> Result<Vec<TrustChange>> {
        // Unknown ids are an error, not an empty history.
        self.get(id, None).await?;
        let rows = sqlx::query(
            "SELECT from_level, to_level, actor, is_admin, reason, at FROM trust_changes \
             WHERE agent_id = $1 ORDER BY seq",
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
                    at: row.try_get("at").map_err(storage)?,
                })
            })
            .collect()
    }

    async fn discover(&self, query: &DiscoveryQuery) -> Result<Page<AgentRecord>> {
        let page_size = query.checked_page_size()?;
        let cursor = query.cursor()?;
        let terms = query.text_terms();
        let mut builder = QueryBuilder::<Postgres>::new("");
        let side_filters = query.side_filters();
        if terms.is_empty() {
            // Unranked listings are in registration order (the row number):
            // rows inserted while a client pages land after its cursor.
            let order = match side_filters.split_first() {
                Some((driver, others)) => {
                    builder.push(format!(
                        "SELECT {AGENT_COLUMNS_A}, a.pk AS pk, NULL::REAL AS rank FROM {} d \
                         JOIN agents a ON a.pk = d.agent_pk WHERE d.{}",
                        driver.table, driver.condition
                    ));
                    builder.push_bind(driver.value.clone());
                    push_side_checks(&mut builder, others);
                    "d.agent_pk"
                }
                None => {
                    builder.push(format!(
                        "SELECT {AGENT_COLUMNS_A}, a.pk AS pk, NULL::REAL AS rank FROM agents a WHERE 1 = 1"
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
        } else {
            // Terms are letters and digits only, so joining them with `&`
            // makes a safe tsquery: all terms must occur.
            let ts_query = terms.join(" & ");
            // Rank and page on narrow rows first; only the page's rows are
            // then joined back for their (large) card columns.
            builder.push(format!(
                "SELECT {AGENT_COLUMNS_A}, top.rank AS rank, a.pk AS pk FROM (\
                 SELECT pk, id, rank FROM (SELECT a.pk AS pk, a.id AS id, \
                 ts_rank(a.search, to_tsquery('simple', "
            ));
            builder.push_bind(ts_query.clone());
            builder.push(")) AS rank FROM agents a WHERE a.search @@ to_tsquery('simple', ");
            builder.push_bind(ts_query);
            builder.push(")");
            push_side_checks(&mut builder, &side_filters);
            push_row_filters(&mut builder, query);
            builder.push(") ranked WHERE 1 = 1");
            if let Some(cursor) = &cursor {
                // The token carries the f32 rank widened to f64: narrowing it
                // back is exact, so the comparison matches the stored order.
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
        }
        let rows = builder
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        let mut ranked = Vec::with_capacity(rows.len());
        for row in &rows {
            let rank: Option<f32> = row.try_get("rank").map_err(storage)?;
            let pk: i64 = row.try_get("pk").map_err(storage)?;
            ranked.push((record_from_row(row)?, rank.map(f64::from), pk));
        }
        let page = make_page(ranked, page_size, |(record, rank, pk)| Cursor {
            rank: *rank,
            key: match rank {
                Some(_) => record.id.to_string(),
                None => pk.to_string(),
            },
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

    async fn put_task_route(&self, route: &TaskRoute) -> Result<()> {
        sqlx::query(
            "INSERT INTO task_routes (task_id, context_id, agent_id, owner, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO UPDATE SET \
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
             FROM task_routes WHERE task_id = $1",
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
        let mut builder = QueryBuilder::<Postgres>::new(
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
                QueryBuilder::<Postgres>::new("SELECT task_id FROM task_routes WHERE owner = ");
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
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM task_routes WHERE owner = $1 AND agent_id = $2",
        )
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
            sqlx::query_scalar::<Postgres, String>(
                "SELECT owner FROM context_routes WHERE agent_id = $1 AND context_id = $2",
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
             VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, context_id) DO NOTHING",
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
            let mut builder = QueryBuilder::<Postgres>::new(
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
                        .push_bind(record.trust.rank())
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
