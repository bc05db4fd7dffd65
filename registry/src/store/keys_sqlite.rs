//! The `api_keys` table on SQLite (migration 0003). Small, keyed by id:
//! one statement per operation, no transaction needed.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use crate::keys::{scopes_from_text, scopes_to_text, ApiKeyRow, ApiKeyStore};
use crate::{RegistryError, Result};

const COLUMNS: &str = "id, secret_sha256, subject, org, scopes, created_at, expires_at, revoked_at";

/// API keys in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteApiKeys {
    pool: SqlitePool,
}

// === impl SqliteApiKeys ===

impl SqliteApiKeys {
    /// Opens a small pool on `url` (already migrated by the registry).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(RegistryError::Storage)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(Self { pool })
    }

    /// Keys over an existing pool.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn decode(row: &<sqlx::Sqlite as sqlx::Database>::Row) -> Result<ApiKeyRow> {
    let scopes: String = row.try_get("scopes").map_err(RegistryError::Storage)?;
    Ok(ApiKeyRow {
        id: row.try_get("id").map_err(RegistryError::Storage)?,
        secret_sha256: row
            .try_get("secret_sha256")
            .map_err(RegistryError::Storage)?,
        subject: row.try_get("subject").map_err(RegistryError::Storage)?,
        org: row.try_get("org").map_err(RegistryError::Storage)?,
        scopes: scopes_from_text(&scopes)?,
        created_at: row.try_get("created_at").map_err(RegistryError::Storage)?,
        expires_at: row.try_get("expires_at").map_err(RegistryError::Storage)?,
        revoked_at: row.try_get("revoked_at").map_err(RegistryError::Storage)?,
    })
}

#[async_trait]
impl ApiKeyStore for SqliteApiKeys {
    async fn insert(&self, row: &ApiKeyRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .bind(&row.id)
        .bind(&row.secret_sha256)
        .bind(&row.subject)
        .bind(&row.org)
        .bind(scopes_to_text(&row.scopes))
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        rows.iter().map(decode).collect()
    }

    async fn revoke(&self, id: &str, at: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected() > 0)
    }
}
