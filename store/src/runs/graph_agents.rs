//! Graphs published as A2A agents (issue 18, migration 0017): table
//! `graph_agents`, one row per published agent. The name is unique across
//! organisations, like every agent's: a write by another organisation
//! matches no row (the `WHERE` of its `DO UPDATE`) and is answered `None`
//! in the same statement, so two replicas cannot both take a name. A spec
//! that is not JSON is a corrupt [`StorageError`], never a default.

use convergio_orchestrator::GraphAgentRow;
use convergio_schemas::StorageError;
use serde_json::Value;

use crate::{Db, DbResult};

const PUT: &str = "INSERT INTO graph_agents (name, org, spec, version, updated_at) \
     VALUES ($1, $2, $3, 1, $4) \
     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
     version = graph_agents.version + 1, updated_at = excluded.updated_at \
     WHERE graph_agents.org = excluded.org \
     RETURNING version";
const GET: &str = "SELECT org, name, spec, version, updated_at FROM graph_agents WHERE name = $1";
const LIST: &str = "SELECT org, name, spec, version, updated_at FROM graph_agents ORDER BY name";
const LIST_ORG: &str = "SELECT org, name, spec, version, updated_at FROM graph_agents \
     WHERE org = $1 ORDER BY name";
const DELETE: &str = "DELETE FROM graph_agents WHERE org = $1 AND name = $2";

/// A `graph_agents` row as read.
type Row = (String, String, String, i64, i64);

fn decode(row: Row) -> Result<GraphAgentRow, StorageError> {
    let (org, name, spec, version, updated_at) = row;
    let spec = serde_json::from_str(&spec)
        .map_err(|error| StorageError::corrupt(format!("stored graph agent {name}: {error}")))?;
    Ok(GraphAgentRow {
        org,
        name,
        spec,
        version,
        updated_at,
    })
}

/// Creates or replaces `org`'s publication `name`; `None` when another
/// organisation holds the name.
pub(super) async fn put(
    db: &Db,
    org: &str,
    name: &str,
    spec: &Value,
    at: i64,
) -> Result<Option<GraphAgentRow>, StorageError> {
    let text = spec.to_string();
    let version: Option<i64> = on_pool!(db, |pool, backend| sqlx::query_scalar(&backend.sql(PUT))
        .bind(name)
        .bind(org)
        .bind(&text)
        .bind(at)
        .fetch_optional(pool)
        .await
        .db("storing a graph agent")?);
    Ok(version.map(|version| GraphAgentRow {
        org: org.to_owned(),
        name: name.to_owned(),
        spec: spec.clone(),
        version,
        updated_at: at,
    }))
}

/// The publication `name`.
pub(super) async fn get(db: &Db, name: &str) -> Result<Option<GraphAgentRow>, StorageError> {
    let row: Option<Row> = on_pool!(db, |pool, backend| sqlx::query_as(&backend.sql(GET))
        .bind(name)
        .fetch_optional(pool)
        .await
        .db("reading a graph agent")?);
    row.map(decode).transpose()
}

/// `org`'s publications, or every one.
pub(super) async fn list(db: &Db, org: Option<&str>) -> Result<Vec<GraphAgentRow>, StorageError> {
    let rows: Vec<Row> = match org {
        Some(org) => on_pool!(db, |pool, backend| sqlx::query_as(&backend.sql(LIST_ORG))
            .bind(org)
            .fetch_all(pool)
            .await
            .db("listing graph agents")?),
        None => on_pool!(db, |pool, backend| sqlx::query_as(&backend.sql(LIST))
            .fetch_all(pool)
            .await
            .db("listing graph agents")?),
    };
    rows.into_iter().map(decode).collect()
}

/// Deletes `org`'s publication `name`; whether it existed.
pub(super) async fn delete(db: &Db, org: &str, name: &str) -> Result<bool, StorageError> {
    let deleted = on_pool!(db, |pool, backend| sqlx::query(&backend.sql(DELETE))
        .bind(org)
        .bind(name)
        .execute(pool)
        .await
        .db("deleting a graph agent")?
        .rows_affected());
    Ok(deleted > 0)
}
