//! Model agents' tables (migration 0010, issue 17) on either backend: the
//! registry crate's [`ModelAgentStore`], [`SecretStore`],
//! [`ConversationStore`] and [`UsageStore`], each over the process's one
//! [`Db`]. Every statement is written once with `$N` placeholders; none
//! needs per-backend code.
//!
//! Invariants held here:
//! - a declaration's name is unique across organisations: an upsert by
//!   another organisation matches no row (the `WHERE` of its `DO UPDATE`)
//!   and is answered `AgentExists`, in one statement, so two replicas
//!   cannot both win;
//! - secrets are stored as the caller sealed them (nonce and ciphertext);
//!   this module never sees a value in clear;
//! - a conversation's messages are numbered densely per context, each
//!   append one transaction; two replicas appending to the same context at
//!   the same instant collide on the primary key and one gets a typed
//!   `Conflict` instead of interleaving turns;
//! - usage is added with one upsert, so concurrent calls never lose a count.

use async_trait::async_trait;
use convergio_registry::model_agents::{
    ConversationKey, ConversationStore, ModelAgentRow, ModelAgentStore, SealedSecretRow,
    SecretInfo, SecretStore, UsageStore, UsageTotals,
};
use convergio_registry::{RegistryError, Result};
use serde_json::Value;

use crate::registry::on_pool;
use crate::{Backend, Db, DbResult};

const PUT_AGENT: &str = "INSERT INTO model_agents (name, org, spec, version, updated_at) \
     VALUES ($1, $2, $3, 1, $4) \
     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
     version = model_agents.version + 1, updated_at = excluded.updated_at \
     WHERE model_agents.org = excluded.org \
     RETURNING version";
const GET_AGENT: &str =
    "SELECT org, name, spec, version, updated_at FROM model_agents WHERE name = $1";
const LIST_AGENTS: &str =
    "SELECT org, name, spec, version, updated_at FROM model_agents ORDER BY name";
const LIST_ORG_AGENTS: &str = "SELECT org, name, spec, version, updated_at FROM model_agents \
     WHERE org = $1 ORDER BY name";
const DELETE_AGENT: &str = "DELETE FROM model_agents WHERE org = $1 AND name = $2";

const PUT_SECRET: &str = "INSERT INTO secrets (org, name, nonce, ciphertext, updated_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (org, name) DO UPDATE SET nonce = excluded.nonce, \
     ciphertext = excluded.ciphertext, updated_at = excluded.updated_at";
const GET_SECRET: &str = "SELECT org, name, nonce, ciphertext, updated_at FROM secrets \
     WHERE org = $1 AND name = $2";
const LIST_SECRETS: &str = "SELECT name, updated_at FROM secrets WHERE org = $1 ORDER BY name";
const DELETE_SECRET: &str = "DELETE FROM secrets WHERE org = $1 AND name = $2";

/// The newest `$4` messages of a context, newest first (reversed in code).
const LOAD_MESSAGES: &str = "SELECT message FROM model_conversations \
     WHERE org = $1 AND agent = $2 AND context_id = $3 ORDER BY seq DESC LIMIT $4";
const LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM model_conversations \
     WHERE org = $1 AND agent = $2 AND context_id = $3";
/// PostgreSQL: appenders of one conversation take turns (on every
/// replica) until commit, so two never number their messages alike.
/// SQLite's `BEGIN IMMEDIATE` already makes every writer take its turn.
const LOCK_CONVERSATION: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))";
const INSERT_MESSAGE: &str = "INSERT INTO model_conversations \
     (org, agent, context_id, seq, message) VALUES ($1, $2, $3, $4, $5)";

const ADD_USAGE: &str = "INSERT INTO model_usage (org, day, tokens_in, tokens_out, cost_micros) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (org, day) DO UPDATE SET \
     tokens_in = model_usage.tokens_in + excluded.tokens_in, \
     tokens_out = model_usage.tokens_out + excluded.tokens_out, \
     cost_micros = model_usage.cost_micros + excluded.cost_micros";
const DAY_USAGE: &str =
    "SELECT tokens_in, tokens_out, cost_micros FROM model_usage WHERE org = $1 AND day = $2";
const ALL_USAGE: &str = "SELECT org, tokens_in, tokens_out, cost_micros FROM model_usage \
     WHERE day = $1 ORDER BY org";

/// A `model_agents` row as read.
type AgentRow = (String, String, String, i64, i64);
/// A `secrets` row as read.
type SecretRow = (String, String, Vec<u8>, Vec<u8>, i64);
/// A `model_usage` total as read.
type UsageRow = (i64, i64, i64);

/// Model agent declarations, sealed secrets, conversations and usage in
/// the process's database.
#[derive(Debug, Clone)]
pub struct ModelStore {
    db: Db,
}

// === impl ModelStore ===

impl ModelStore {
    /// The store over `db` (already migrated by [`Db::open`]).
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

fn decode_agent(row: AgentRow) -> Result<ModelAgentRow> {
    let (org, name, spec, version, updated_at) = row;
    let spec = serde_json::from_str(&spec)
        .map_err(|error| RegistryError::corrupt(format!("stored model agent {name}: {error}")))?;
    Ok(ModelAgentRow {
        org,
        name,
        spec,
        version,
        updated_at,
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn decode_usage(row: UsageRow) -> UsageTotals {
    UsageTotals {
        tokens_in: to_u64(row.0),
        tokens_out: to_u64(row.1),
        cost_micros: to_u64(row.2),
    }
}

#[async_trait]
impl ModelAgentStore for ModelStore {
    async fn put(&self, org: &str, name: &str, spec: &Value, at: i64) -> Result<ModelAgentRow> {
        let text = serde_json::to_string(spec)
            .map_err(|error| RegistryError::invalid(format!("declaration: {error}")))?;
        let sql = self.db.backend().sql(PUT_AGENT);
        let version: Option<i64> = on_pool!(self.db, |pool| sqlx::query_scalar(&sql)
            .bind(name)
            .bind(org)
            .bind(&text)
            .bind(at)
            .fetch_optional(pool)
            .await
            .db("storing a model agent")?);
        let Some(version) = version else {
            return Err(RegistryError::AgentExists {
                agent_id: name.to_owned(),
            });
        };
        Ok(ModelAgentRow {
            org: org.to_owned(),
            name: name.to_owned(),
            spec: spec.clone(),
            version,
            updated_at: at,
        })
    }

    async fn get(&self, name: &str) -> Result<Option<ModelAgentRow>> {
        let sql = self.db.backend().sql(GET_AGENT);
        let row: Option<AgentRow> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a model agent")?);
        row.map(decode_agent).transpose()
    }

    async fn list(&self, org: Option<&str>) -> Result<Vec<ModelAgentRow>> {
        let rows: Vec<AgentRow> = match org {
            Some(org) => {
                let sql = self.db.backend().sql(LIST_ORG_AGENTS);
                on_pool!(self.db, |pool| sqlx::query_as(&sql)
                    .bind(org)
                    .fetch_all(pool)
                    .await
                    .db("listing model agents")?)
            }
            None => on_pool!(self.db, |pool| sqlx::query_as(LIST_AGENTS)
                .fetch_all(pool)
                .await
                .db("listing model agents")?),
        };
        rows.into_iter().map(decode_agent).collect()
    }

    async fn delete(&self, org: &str, name: &str) -> Result<bool> {
        let sql = self.db.backend().sql(DELETE_AGENT);
        let deleted = on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(org)
            .bind(name)
            .execute(pool)
            .await
            .db("deleting a model agent")?
            .rows_affected());
        Ok(deleted > 0)
    }
}

#[async_trait]
impl SecretStore for ModelStore {
    async fn put(&self, row: &SealedSecretRow) -> Result<()> {
        let sql = self.db.backend().sql(PUT_SECRET);
        on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(&row.org)
            .bind(&row.name)
            .bind(&row.nonce)
            .bind(&row.ciphertext)
            .bind(row.updated_at)
            .execute(pool)
            .await
            .db("storing a secret")?
            .rows_affected());
        Ok(())
    }

    async fn get(&self, org: &str, name: &str) -> Result<Option<SealedSecretRow>> {
        let sql = self.db.backend().sql(GET_SECRET);
        let row: Option<SecretRow> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(org)
            .bind(name)
            .fetch_optional(pool)
            .await
            .db("reading a secret")?);
        Ok(row.map(
            |(org, name, nonce, ciphertext, updated_at)| SealedSecretRow {
                org,
                name,
                nonce,
                ciphertext,
                updated_at,
            },
        ))
    }

    async fn list(&self, org: &str) -> Result<Vec<SecretInfo>> {
        let sql = self.db.backend().sql(LIST_SECRETS);
        let rows: Vec<(String, i64)> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(org)
            .fetch_all(pool)
            .await
            .db("listing secrets")?);
        Ok(rows
            .into_iter()
            .map(|(name, updated_at)| SecretInfo { name, updated_at })
            .collect())
    }

    async fn delete(&self, org: &str, name: &str) -> Result<bool> {
        let sql = self.db.backend().sql(DELETE_SECRET);
        let deleted = on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(org)
            .bind(name)
            .execute(pool)
            .await
            .db("deleting a secret")?
            .rows_affected());
        Ok(deleted > 0)
    }
}

#[async_trait]
impl ConversationStore for ModelStore {
    async fn load(&self, key: ConversationKey<'_>, limit: u32) -> Result<Vec<Value>> {
        let sql = self.db.backend().sql(LOAD_MESSAGES);
        let rows: Vec<String> = on_pool!(self.db, |pool| sqlx::query_scalar(&sql)
            .bind(key.org)
            .bind(key.agent)
            .bind(key.context_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .db("loading a conversation")?);
        rows.iter()
            .rev()
            .map(|text| {
                serde_json::from_str(text).map_err(|error| {
                    RegistryError::corrupt(format!("stored conversation message: {error}"))
                })
            })
            .collect()
    }

    async fn append(&self, key: ConversationKey<'_>, messages: &[Value]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let texts = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|error| RegistryError::invalid(format!("conversation message: {error}")))?;
        let backend = self.db.backend();
        let last_sql = backend.sql(LAST_SEQ);
        let insert_sql = backend.sql(INSERT_MESSAGE);
        on_pool!(self.db, |pool| {
            let mut transaction = pool
                .begin_with(backend.begin_write())
                .await
                .db("beginning a conversation append")?;
            if backend == Backend::Postgres {
                sqlx::query(LOCK_CONVERSATION)
                    .bind(key.org)
                    .bind(key.agent)
                    .bind(key.context_id)
                    .execute(&mut *transaction)
                    .await
                    .db("taking a conversation's append turn")?;
            }
            let last: i64 = sqlx::query_scalar(&last_sql)
                .bind(key.org)
                .bind(key.agent)
                .bind(key.context_id)
                .fetch_one(&mut *transaction)
                .await
                .db("numbering conversation messages")?;
            for (offset, text) in (1_i64..).zip(&texts) {
                sqlx::query(&insert_sql)
                    .bind(key.org)
                    .bind(key.agent)
                    .bind(key.context_id)
                    .bind(last + offset)
                    .bind(text)
                    .execute(&mut *transaction)
                    .await
                    .db("appending a conversation message")?;
            }
            transaction
                .commit()
                .await
                .db("committing a conversation append")?;
        });
        Ok(())
    }
}

#[async_trait]
impl UsageStore for ModelStore {
    async fn add(&self, org: &str, day: &str, usage: UsageTotals) -> Result<()> {
        let sql = self.db.backend().sql(ADD_USAGE);
        on_pool!(self.db, |pool| sqlx::query(&sql)
            .bind(org)
            .bind(day)
            .bind(to_i64(usage.tokens_in))
            .bind(to_i64(usage.tokens_out))
            .bind(to_i64(usage.cost_micros))
            .execute(pool)
            .await
            .db("recording model usage")?
            .rows_affected());
        Ok(())
    }

    async fn day(&self, org: &str, day: &str) -> Result<UsageTotals> {
        let sql = self.db.backend().sql(DAY_USAGE);
        let row: Option<UsageRow> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(org)
            .bind(day)
            .fetch_optional(pool)
            .await
            .db("reading model usage")?);
        Ok(row.map(decode_usage).unwrap_or_default())
    }

    async fn all_on(&self, day: &str) -> Result<Vec<(String, UsageTotals)>> {
        let sql = self.db.backend().sql(ALL_USAGE);
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(self.db, |pool| sqlx::query_as(&sql)
            .bind(day)
            .fetch_all(pool)
            .await
            .db("reading model usage")?);
        Ok(rows
            .into_iter()
            .map(|(org, tokens_in, tokens_out, cost)| {
                (org, decode_usage((tokens_in, tokens_out, cost)))
            })
            .collect())
    }
}
