//! Stored graph documents (issue 14): table `graphs`, one row per version
//! of an organisation's graph. A row that does not decode (another format,
//! a summary that is not JSON, a time that is not RFC 3339) is a corrupt
//! [`StorageError`], never a default.

use chrono::Utc;
use convergio_orchestrator::api::{GraphDocument, GraphSummary};
use convergio_schemas::{StorageError, StorageFailure};
use sqlx::Row;

use super::{encode, parse_time};
use crate::{typed, Db, DbResult};

/// The format of stored graph rows this build writes and reads.
const GRAPH_FORMAT: i64 = 1;

/// How many times a store retries when another store took its version.
const PUT_ATTEMPTS: u32 = 16;

/// A stored graph row's summary; the row's own columns win over the JSON.
fn summary_of(
    org: &str,
    name: &str,
    version: i64,
    format: i64,
    body: &str,
    stored_at: &str,
) -> Result<GraphSummary, StorageError> {
    let what = |problem: String| format!("stored graph {org}/{name} version {version}: {problem}");
    if format != GRAPH_FORMAT {
        return Err(StorageError::corrupt(what(format!(
            "stored in format {format}; this build reads format {GRAPH_FORMAT}"
        ))));
    }
    let mut summary: GraphSummary = serde_json::from_str(body).map_err(|error| {
        StorageError::new(
            StorageFailure::Corrupt,
            what("its summary does not decode".to_owned()),
            error,
        )
    })?;
    summary.org = org.to_owned();
    summary.name = name.to_owned();
    summary.version = u32::try_from(version)
        .map_err(|_| StorageError::corrupt(what("the version is out of range".to_owned())))?;
    summary.stored_at = parse_time(stored_at).ok_or_else(|| {
        StorageError::corrupt(what(format!(
            "its stored_at {stored_at:?} is not an RFC 3339 time"
        )))
    })?;
    Ok(summary)
}

/// Stores a new version of `summary`'s graph.
pub(super) async fn put(
    db: &Db,
    summary: &GraphSummary,
    source: &str,
) -> Result<GraphSummary, StorageError> {
    let body = encode(summary, || {
        format!(
            "encoding the summary of graph {}/{}",
            summary.org, summary.name
        )
    })?;
    on_pool!(db, |pool, backend| {
        // Two stores of one name at once may pick the same version on
        // PostgreSQL; the primary key refuses the second, which tries again
        // with the next number.
        let mut attempts = 0;
        loop {
            // `to_rfc3339` keeps every digit, so the time read back later
            // is this one.
            let stored_at = Utc::now();
            let inserted = sqlx::query_scalar::<_, i64>(&backend.sql(
                "INSERT INTO graphs (org, name, version, format, summary, source, stored_at) \
                 SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6 \
                 FROM graphs WHERE org = $1 AND name = $2 RETURNING version",
            ))
            .bind(&summary.org)
            .bind(&summary.name)
            .bind(GRAPH_FORMAT)
            .bind(&body)
            .bind(source)
            .bind(stored_at.to_rfc3339())
            .fetch_one(pool)
            .await
            .map_err(|error| typed("storing a graph", error));
            match inserted {
                Ok(version) => {
                    let mut stored = summary.clone();
                    stored.version = u32::try_from(version).map_err(|_| {
                        StorageError::corrupt(format!(
                            "stored graph {}/{}: version {version} is out of range",
                            summary.org, summary.name
                        ))
                    })?;
                    stored.stored_at = stored_at;
                    return Ok(stored);
                }
                Err(error)
                    if attempts < PUT_ATTEMPTS && error.failure() == StorageFailure::Conflict =>
                {
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    })
}

/// One version of a graph (the latest for `None`).
pub(super) async fn get(
    db: &Db,
    org: &str,
    name: &str,
    version: Option<u32>,
) -> Result<Option<GraphDocument>, StorageError> {
    on_pool!(db, |pool, backend| {
        let row = sqlx::query(&backend.sql(
            "SELECT version, format, summary, source, stored_at FROM graphs \
             WHERE org = $1 AND name = $2 AND ($3 IS NULL OR version = $3) \
             ORDER BY version DESC LIMIT 1",
        ))
        .bind(org)
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(pool)
        .await
        .db("reading a graph")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = summary_of(
            org,
            name,
            row.try_get("version").db("reading a graph")?,
            row.try_get("format").db("reading a graph")?,
            &row.try_get::<String, _>("summary").db("reading a graph")?,
            &row.try_get::<String, _>("stored_at")
                .db("reading a graph")?,
        )?;
        Ok(Some(GraphDocument {
            summary,
            source: row.try_get("source").db("reading a graph")?,
        }))
    })
}

/// The latest version of each of `org`'s graphs, by name.
pub(super) async fn list(db: &Db, org: &str) -> Result<Vec<GraphSummary>, StorageError> {
    on_pool!(db, |pool, backend| {
        let rows = sqlx::query(&backend.sql(
            "SELECT name, version, format, summary, stored_at FROM graphs AS g \
             WHERE org = $1 AND version = \
             (SELECT MAX(version) FROM graphs WHERE org = g.org AND name = g.name) \
             ORDER BY name",
        ))
        .bind(org)
        .fetch_all(pool)
        .await
        .db("listing graphs")?;
        rows.iter()
            .map(|row| {
                summary_of(
                    org,
                    &row.try_get::<String, _>("name").db("listing graphs")?,
                    row.try_get("version").db("listing graphs")?,
                    row.try_get("format").db("listing graphs")?,
                    &row.try_get::<String, _>("summary").db("listing graphs")?,
                    &row.try_get::<String, _>("stored_at").db("listing graphs")?,
                )
            })
            .collect()
    })
}
