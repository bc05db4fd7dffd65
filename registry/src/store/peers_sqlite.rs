//! The `peers` and `peer_nonces` tables on SQLite (migration 0004). Small,
//! keyed by domain: one statement per operation, no transaction needed.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use crate::peers::{keys_from_text, keys_to_text, PeerRow, PeerStore};
use crate::{RegistryError, Result};

const COLUMNS: &str = "domain, base_url, jwks_url, keys, trust, created_at, updated_at";

/// Peers in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqlitePeers {
    pool: SqlitePool,
}

// === impl SqlitePeers ===

impl SqlitePeers {
    /// Opens a small pool on `url` (already migrated by the registry).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(RegistryError::Storage)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            // As for the registry: a power cut may lose the last commits
            // (here: nonces still inside their window), never corrupt the
            // file; an fsync per accepted signed call would cost more than
            // the whole rest of the call.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(Self { pool })
    }
}

fn decode(row: &<sqlx::Sqlite as sqlx::Database>::Row) -> Result<PeerRow> {
    let keys: String = row.try_get("keys").map_err(RegistryError::Storage)?;
    Ok(PeerRow {
        domain: row.try_get("domain").map_err(RegistryError::Storage)?,
        base_url: row.try_get("base_url").map_err(RegistryError::Storage)?,
        jwks_url: row.try_get("jwks_url").map_err(RegistryError::Storage)?,
        keys: keys_from_text(&keys)?,
        trust: row.try_get("trust").map_err(RegistryError::Storage)?,
        created_at: row.try_get("created_at").map_err(RegistryError::Storage)?,
        updated_at: row.try_get("updated_at").map_err(RegistryError::Storage)?,
    })
}

#[async_trait]
impl PeerStore for SqlitePeers {
    async fn insert(&self, row: &PeerRow) -> Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT INTO peers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (domain) DO NOTHING"
        ))
        .bind(&row.domain)
        .bind(&row.base_url)
        .bind(&row.jwks_url)
        .bind(keys_to_text(&row.keys))
        .bind(&row.trust)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected() > 0)
    }

    async fn put(&self, row: &PeerRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO peers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (domain) DO UPDATE SET base_url = excluded.base_url, \
             jwks_url = excluded.jwks_url, keys = excluded.keys, trust = excluded.trust, \
             updated_at = excluded.updated_at"
        ))
        .bind(&row.domain)
        .bind(&row.base_url)
        .bind(&row.jwks_url)
        .bind(keys_to_text(&row.keys))
        .bind(&row.trust)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(())
    }

    async fn get(&self, domain: &str) -> Result<Option<PeerRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM peers WHERE domain = ?1"))
            .bind(domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self) -> Result<Vec<PeerRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM peers ORDER BY domain"))
            .fetch_all(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        rows.iter().map(decode).collect()
    }

    async fn delete(&self, domain: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM peers WHERE domain = ?1")
            .bind(domain)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected() > 0)
    }

    async fn remember_nonce(&self, peer: &str, nonce: &str, expires_at: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO peer_nonces (peer, nonce, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (peer, nonce) DO NOTHING",
        )
        .bind(peer)
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_nonces(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM peer_nonces WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected())
    }
}
