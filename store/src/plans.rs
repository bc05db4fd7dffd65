//! Stored plans (issue 19): the planner's [`PlanStore`] on the process's one
//! [`Db`]. Table `plans` (migration `0012_plans.sql` of each tree): one row
//! per version of a plan — id, version, organisation, owner, status (as
//! columns, for lookups and retention later) and the JSON of the whole
//! [`StoredPlan`], with a format number. A row of another format, or one
//! whose body does not decode, is a corrupt [`StorageError`], never a
//! default. A listing reads one owner's plans by the `plans_owner` index,
//! the latest version of each, newest first by id (plan ids are UUIDv7).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_planner::{PlanFilter, PlanStore, PlannerError, StoredPlan};
use convergio_schemas::{StorageError, StorageFailure};
use sqlx::Row;
use uuid::Uuid;

use crate::{typed, Db, DbResult};

/// The format of plan rows this build writes and reads.
const PLAN_FORMAT: i64 = 1;

/// How many times a put retries when another put took its version.
const PUT_ATTEMPTS: u32 = 16;

/// Runs `$body` with `$pool` bound to the database's pool and `$backend`
/// to its backend: each statement is written once for both sqlx database
/// types (the same macro as the run store's).
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $backend:ident| $body:expr) => {
        match $db.pool() {
            crate::Pool::Sqlite($pool) => {
                let $backend = crate::Backend::Sqlite;
                $body
            }
            crate::Pool::Postgres($pool) => {
                let $backend = crate::Backend::Postgres;
                $body
            }
        }
    };
}

/// Plans in the `plans` table.
#[derive(Debug, Clone)]
pub struct SqlPlanStore {
    db: Db,
}

// === impl SqlPlanStore ===

impl SqlPlanStore {
    /// The store on `db` (already migrated by [`Db::open`]).
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

fn decode(
    plan_id: &str,
    version: i64,
    format: i64,
    body: &str,
    stored_at: &str,
) -> Result<StoredPlan, StorageError> {
    let what = |problem: String| format!("stored plan {plan_id} version {version}: {problem}");
    if format != PLAN_FORMAT {
        return Err(StorageError::corrupt(what(format!(
            "stored in format {format}; this build reads format {PLAN_FORMAT}"
        ))));
    }
    let mut plan: StoredPlan = serde_json::from_str(body).map_err(|error| {
        StorageError::new(
            StorageFailure::Corrupt,
            what("its body does not decode".to_owned()),
            error,
        )
    })?;
    plan.version = u32::try_from(version)
        .map_err(|_| StorageError::corrupt(what("the version is out of range".to_owned())))?;
    plan.stored_at = DateTime::parse_from_rfc3339(stored_at)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            StorageError::new(
                StorageFailure::Corrupt,
                what(format!(
                    "its stored_at {stored_at:?} is not an RFC 3339 time"
                )),
                error,
            )
        })?;
    Ok(plan)
}

#[async_trait]
impl PlanStore for SqlPlanStore {
    async fn put(&self, plan: &StoredPlan) -> Result<StoredPlan, PlannerError> {
        let body = serde_json::to_string(plan).map_err(|error| {
            StorageError::new(StorageFailure::Other, "encoding a plan".to_owned(), error)
        })?;
        let plan_id = plan.plan_id.to_string();
        let stored = on_pool!(self.db, |pool, backend| {
            // Two puts of one plan at once may pick the same version; the
            // primary key refuses the second, which tries the next number.
            let mut attempts = 0;
            loop {
                let stored_at = Utc::now();
                let inserted = sqlx::query_scalar::<_, i64>(&backend.sql(
                    "INSERT INTO plans (plan_id, version, org, owner, status, format, body, stored_at) \
                     SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6, $7 \
                     FROM plans WHERE plan_id = $1 RETURNING version",
                ))
                .bind(&plan_id)
                .bind(&plan.org)
                .bind(&plan.owner)
                .bind(plan.status.as_str())
                .bind(PLAN_FORMAT)
                .bind(&body)
                .bind(stored_at.to_rfc3339())
                .fetch_one(pool)
                .await
                .map_err(|error| typed("storing a plan", error));
                match inserted {
                    Ok(version) => {
                        let mut stored = plan.clone();
                        stored.version = u32::try_from(version).map_err(|_| {
                            StorageError::corrupt(format!(
                                "stored plan {plan_id}: version {version} is out of range"
                            ))
                        })?;
                        stored.stored_at = stored_at;
                        break Ok::<_, StorageError>(stored);
                    }
                    Err(error)
                        if attempts < PUT_ATTEMPTS
                            && error.failure() == StorageFailure::Conflict =>
                    {
                        attempts += 1;
                    }
                    Err(error) => break Err(error),
                }
            }
        })?;
        Ok(stored)
    }

    async fn get(
        &self,
        plan_id: Uuid,
        version: Option<u32>,
    ) -> Result<Option<StoredPlan>, PlannerError> {
        let id = plan_id.to_string();
        let found = on_pool!(self.db, |pool, backend| {
            let row = sqlx::query(&backend.sql(
                "SELECT version, format, body, stored_at FROM plans \
                 WHERE plan_id = $1 AND ($2 IS NULL OR version = $2) \
                 ORDER BY version DESC LIMIT 1",
            ))
            .bind(&id)
            .bind(version.map(i64::from))
            .fetch_optional(pool)
            .await
            .db("reading a plan")?;
            match row {
                None => Ok::<_, StorageError>(None),
                Some(row) => Ok(Some(decode(
                    &id,
                    row.try_get("version").db("reading a plan")?,
                    row.try_get("format").db("reading a plan")?,
                    &row.try_get::<String, _>("body").db("reading a plan")?,
                    &row.try_get::<String, _>("stored_at").db("reading a plan")?,
                )?)),
            }
        })?;
        Ok(found)
    }

    async fn list(&self, filter: &PlanFilter) -> Result<Vec<StoredPlan>, PlannerError> {
        let found = on_pool!(self.db, |pool, backend| {
            // The latest version of each of the owner's plans: the row no
            // later version of the same plan follows.
            let rows = sqlx::query(&backend.sql(
                "SELECT plan_id, version, format, body, stored_at FROM plans AS p \
                 WHERE owner = $1 AND ($2 IS NULL OR plan_id < $2) \
                 AND NOT EXISTS (SELECT 1 FROM plans AS later \
                     WHERE later.plan_id = p.plan_id AND later.version > p.version) \
                 AND ($3 IS NULL OR status = $3) \
                 ORDER BY plan_id DESC LIMIT $4",
            ))
            .bind(&filter.owner)
            .bind(filter.before.map(|id| id.to_string()))
            .bind(filter.status.map(|status| status.as_str()))
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await
            .db("listing plans")?;
            rows.iter()
                .map(|row| {
                    let plan_id: String = row.try_get("plan_id").db("listing plans")?;
                    decode(
                        &plan_id,
                        row.try_get("version").db("listing plans")?,
                        row.try_get("format").db("listing plans")?,
                        &row.try_get::<String, _>("body").db("listing plans")?,
                        &row.try_get::<String, _>("stored_at").db("listing plans")?,
                    )
                })
                .collect::<Result<Vec<_>, StorageError>>()
        })?;
        Ok(found)
    }
}
