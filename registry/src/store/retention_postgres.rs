//! Retention on PostgreSQL: batched deletes, and the database's size.
//!
//! Compaction is left to autovacuum: a deleted row's space becomes reusable
//! once autovacuum has visited the table, so under a steady load the tables
//! stop growing once the retention window is full. `VACUUM FULL`, which
//! would give space back to the operating system, rewrites the table under
//! an exclusive lock, which would block traffic, so [`PostgresRetention`]
//! never runs it.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::retention::{DatabaseSize, RetentionStore};
use crate::{RegistryError, Result};

/// The retention store of a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresRetention {
    pool: PgPool,
}

// === impl PostgresRetention ===

impl PostgresRetention {
    /// Opens a small pool on `url` (already migrated by the registry).
    pub async fn connect(url: &str) -> Result<Self> {
        let options =
            sqlx::postgres::PgConnectOptions::from_str(url).map_err(RegistryError::Storage)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl RetentionStore for PostgresRetention {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn prune_task_routes(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64> {
        let done = match before {
            Some(before) => sqlx::query(
                "DELETE FROM task_routes WHERE task_id IN (SELECT task_id FROM task_routes \
                 WHERE updated_at < $1 ORDER BY updated_at LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(limit)),
            None => sqlx::query(
                "DELETE FROM task_routes WHERE task_id IN (SELECT task_id FROM task_routes \
                 ORDER BY updated_at LIMIT $1)",
            )
            .bind(i64::from(limit)),
        }
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected())
    }

    async fn count_task_routes(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM task_routes")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn prune_nonces(&self, expired_before: i64, limit: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM peer_nonces WHERE (peer, nonce) IN (SELECT peer, nonce FROM peer_nonces \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(expired_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected())
    }

    async fn database_size(&self) -> Result<DatabaseSize> {
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(DatabaseSize {
            bytes: u64::try_from(bytes).unwrap_or(0),
            free_bytes: 0,
        })
    }

    async fn compact(&self) -> Result<u64> {
        Ok(0)
    }
}
