//! [`Retention`]: batched deletes of task routes and peer nonces, the
//! database's size and compaction, on either backend.
//!
//! The deletes are one statement set: the oldest `limit` rows by the
//! indexed time column, deleted by primary key. Size and compaction differ
//! because the backends give space back differently:
//! - **SQLite**: a deleted row's page goes to the free list, and later
//!   inserts reuse free pages before growing the file, so under a steady
//!   load the file stops growing once the retention window is full. To make
//!   it also shrink when the load drops, new databases are created with
//!   `auto_vacuum = INCREMENTAL` ([`Db::open`](crate::Db::open) sets it
//!   before the first table exists), and [`Retention::compact`] releases
//!   free pages beyond a quarter of the file with `PRAGMA
//!   incremental_vacuum(N)`, at most [`MAX_VACUUM_PAGES`] per pass: a
//!   bounded write, never the whole-file rewrite (and exclusive lock) of
//!   `VACUUM`. The quarter kept is slack the next pass's inserts reuse
//!   instead of growing the file again. A database created before this
//!   setting keeps `auto_vacuum = NONE` (changing it needs one offline
//!   `VACUUM`): its file stops growing but does not shrink. Each pass ends
//!   with `PRAGMA wal_checkpoint(TRUNCATE)`, so the write-ahead log, which
//!   otherwise keeps its largest size, is cut back to zero; it waits only
//!   for the checkpoint itself, a few pages after a pass.
//! - **PostgreSQL**: compaction is left to autovacuum: a deleted row's
//!   space becomes reusable once autovacuum has visited the table, so the
//!   tables stop growing once the window is full. `VACUUM FULL`, which
//!   would give space back to the operating system, rewrites the table
//!   under an exclusive lock that would block traffic, so it is never run.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use convergio_registry::retention::{DatabaseSize, RetentionStore};
use convergio_registry::Result;

use super::{count, on_pool, Stamps};
use crate::{Db, DbResult, Pool};

/// Most free pages one SQLite compaction releases (16 MiB at 4 KiB pages).
pub const MAX_VACUUM_PAGES: i64 = 4096;

/// Pruning and size of the per-call registry tables.
#[derive(Debug, Clone)]
pub struct Retention {
    db: Db,
    /// SQLite's main file, for the write-ahead log's size (`None` on
    /// PostgreSQL).
    file: Option<PathBuf>,
}

// === impl Retention ===

impl Retention {
    /// The retention store of `db`.
    pub fn new(db: &Db) -> Self {
        let file = match db.pool() {
            // An in-memory database has no log file beside it: its size
            // reads as 0.
            Pool::Sqlite(pool) => Some(pool.connect_options().get_filename().to_path_buf()),
            Pool::Postgres(_) => None,
        };
        Self {
            db: db.clone(),
            file,
        }
    }

    async fn sqlite_pragma(pool: &sqlx::SqlitePool, name: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(pool)
            .await
            .db("reading a pragma")?)
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

#[async_trait]
impl RetentionStore for Retention {
    fn backend(&self) -> &'static str {
        self.db.backend().name()
    }

    async fn prune_task_routes(&self, before: Option<DateTime<Utc>>, limit: u32) -> Result<u64> {
        // Through the `updated_at` index, touching only the rows deleted; on
        // SQLite every text timestamp is fixed-width, so text order is time
        // order.
        let pruned = match before {
            Some(before) => {
                let statement = self.db.backend().sql(
                    "DELETE FROM task_routes WHERE task_id IN (SELECT task_id FROM task_routes \
                     WHERE updated_at < $1 ORDER BY updated_at LIMIT $2)",
                );
                on_pool!(self.db, |pool| sqlx::query(&statement)
                    .bind(stamp_of(pool, &before))
                    .bind(i64::from(limit))
                    .execute(pool)
                    .await
                    .db("pruning task routes")?
                    .rows_affected())
            }
            None => {
                let statement = self.db.backend().sql(
                    "DELETE FROM task_routes WHERE task_id IN (SELECT task_id FROM task_routes \
                     ORDER BY updated_at LIMIT $1)",
                );
                on_pool!(self.db, |pool| sqlx::query(&statement)
                    .bind(i64::from(limit))
                    .execute(pool)
                    .await
                    .db("pruning task routes")?
                    .rows_affected())
            }
        };
        Ok(pruned)
    }

    async fn count_task_routes(&self) -> Result<u64> {
        let routes: i64 = on_pool!(self.db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM task_routes"
        )
        .fetch_one(pool)
        .await
        .db("counting task routes")?);
        Ok(count(routes))
    }

    async fn prune_nonces(&self, expired_before: i64, limit: u32) -> Result<u64> {
        let statement = self.db.backend().sql(
            "DELETE FROM peer_nonces WHERE (peer, nonce) IN (SELECT peer, nonce FROM peer_nonces \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        );
        Ok(on_pool!(self.db, |pool| sqlx::query(&statement)
            .bind(expired_before)
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .db("pruning nonces")?
            .rows_affected()))
    }

    async fn database_size(&self) -> Result<DatabaseSize> {
        match self.db.pool() {
            // SQLite: the main file's pages (and how many are free) plus the
            // write-ahead log beside it.
            Pool::Sqlite(pool) => {
                let page_size = Self::sqlite_pragma(pool, "page_size").await?;
                let pages = Self::sqlite_pragma(pool, "page_count").await?;
                let free = Self::sqlite_pragma(pool, "freelist_count").await?;
                let bytes = |pages: i64| count(pages.saturating_mul(page_size));
                Ok(DatabaseSize {
                    bytes: bytes(pages) + self.wal_bytes(),
                    free_bytes: bytes(free),
                })
            }
            // PostgreSQL exposes the database's size, not its free space.
            Pool::Postgres(pool) => {
                let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await
                    .db("reading the database size")?;
                Ok(DatabaseSize {
                    bytes: count(bytes),
                    free_bytes: 0,
                })
            }
        }
    }

    async fn compact(&self) -> Result<u64> {
        // PostgreSQL: autovacuum's job (see the module docs).
        let Pool::Sqlite(pool) = self.db.pool() else {
            return Ok(0);
        };
        let page_size = Self::sqlite_pragma(pool, "page_size").await?;
        let pages_before = Self::sqlite_pragma(pool, "page_count").await?;
        let free = Self::sqlite_pragma(pool, "freelist_count").await?;
        let release = (free - pages_before / 4).min(MAX_VACUUM_PAGES);
        // A no-op unless the file was created with auto_vacuum=INCREMENTAL.
        if release > 0 && Self::sqlite_pragma(pool, "auto_vacuum").await? == 2 {
            sqlx::query(&format!("PRAGMA incremental_vacuum({release})"))
                .execute(pool)
                .await
                .db("releasing free pages")?;
        }
        // Busy readers only make the checkpoint partial (reported in its
        // row, not as an error); the next pass finishes it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(pool)
            .await
            .db("checkpointing the write-ahead log")?;
        let pages_after = Self::sqlite_pragma(pool, "page_count").await?;
        Ok(count((pages_before - pages_after).max(0) * page_size))
    }
}

/// `at` as the backend of `pool` stores it.
fn stamp_of<DB: Stamps>(_pool: &sqlx::Pool<DB>, at: &DateTime<Utc>) -> DB::Stamp {
    DB::stamp(at)
}
