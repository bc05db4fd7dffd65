//! Retention on SQLite: batched deletes by rowid, and compaction.
//!
//! Compaction: a deleted row's page goes to SQLite's free list, and later
//! inserts reuse free pages before growing the file, so under a steady load
//! the file stops growing once the retention window is full. To make it
//! also shrink when the load drops, new databases are created with
//! `auto_vacuum = INCREMENTAL` (the registry store sets it before the first
//! table exists), and [`SqliteRetention::compact`] releases free pages
//! beyond a quarter of the file with `PRAGMA incremental_vacuum(N)`, at most
//! [`MAX_VACUUM_PAGES`] per pass: a bounded write, never the whole-file
//! rewrite (and exclusive lock) of `VACUUM`. The quarter kept is slack the
//! next pass's inserts reuse instead of growing the file again. A database
//! created before this setting keeps `auto_vacuum = NONE` (changing it needs
//! one offline `VACUUM`): its file stops growing but does not shrink.
//! Each pass ends with `PRAGMA wal_checkpoint(TRUNCATE)`, so the write-ahead
//! log, which otherwise keeps its largest size, is cut back to zero; it
//! waits only for the checkpoint itself, a few pages after a pass.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::retention::{DatabaseSize, RetentionStore};
use crate::{RegistryError, Result};

/// Most free pages one compaction releases (16 MiB at 4 KiB pages).
pub const MAX_VACUUM_PAGES: i64 = 4096;

/// The retention store of a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteRetention {
    pool: SqlitePool,
    /// The main file, for the write-ahead log's size (`None` in memory).
    file: Option<PathBuf>,
}

// === impl SqliteRetention ===

impl SqliteRetention {
    /// Opens a small pool on `url` (already migrated by the registry).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(RegistryError::Storage)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RegistryError::Storage)?;
        Ok(Self { pool, file })
    }

    async fn pragma(&self, name: &str) -> Result<i64> {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(&self.pool)
            .await
            .map_err(RegistryError::Storage)
    }

    fn wal_bytes(&self) -> u64 {
        let Some(file) = &self.file else {
            return 0;
        };
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map(|meta| meta.len()).unwrap_or(0)
    }
}

/// The stored form of a task route's time (as `store/sqlite.rs` writes it).
fn ts(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[async_trait]
impl RetentionStore for SqliteRetention {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn prune_task_routes(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64> {
        // Deleting by rowid through the `updated_at` index touches only the
        // rows deleted; every text timestamp is fixed-width, so text order is
        // time order.
        let done = match before {
            Some(before) => sqlx::query(
                "DELETE FROM task_routes WHERE rowid IN (SELECT rowid FROM task_routes \
                 WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
            )
            .bind(ts(&before))
            .bind(i64::from(limit)),
            None => sqlx::query(
                "DELETE FROM task_routes WHERE rowid IN (SELECT rowid FROM task_routes \
                 ORDER BY updated_at LIMIT ?1)",
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
            "DELETE FROM peer_nonces WHERE rowid IN (SELECT rowid FROM peer_nonces \
             WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
        )
        .bind(expired_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::Storage)?;
        Ok(done.rows_affected())
    }

    async fn database_size(&self) -> Result<DatabaseSize> {
        let page_size = self.pragma("page_size").await?;
        let pages = self.pragma("page_count").await?;
        let free = self.pragma("freelist_count").await?;
        let bytes = |pages: i64| u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0);
        Ok(DatabaseSize {
            bytes: bytes(pages) + self.wal_bytes(),
            free_bytes: bytes(free),
        })
    }

    async fn compact(&self) -> Result<u64> {
        let page_size = self.pragma("page_size").await?;
        let pages_before = self.pragma("page_count").await?;
        let free = self.pragma("freelist_count").await?;
        let release = (free - pages_before / 4).min(MAX_VACUUM_PAGES);
        // A no-op unless the file was created with auto_vacuum=INCREMENTAL.
        if release > 0 && self.pragma("auto_vacuum").await? == 2 {
            sqlx::query(&format!("PRAGMA incremental_vacuum({release})"))
                .execute(&self.pool)
                .await
                .map_err(RegistryError::Storage)?;
        }
        // Busy readers only make the checkpoint partial (reported in its
        // row, not as an error); the next pass finishes it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(&self.pool)
            .await
            .map_err(RegistryError::Storage)?;
        let pages_after = self.pragma("page_count").await?;
        Ok(u64::try_from((pages_before - pages_after).max(0) * page_size).unwrap_or(0))
    }
}
