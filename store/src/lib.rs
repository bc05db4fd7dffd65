//! The one storage layer: the only crate that speaks SQL (the tidy test
//! checks that no other workspace member depends on sqlx).
//!
//! [`Db::open`] parses the database URL once, opens one pool for the process
//! (pragmas and sizes set here only) and brings the schema up to date from
//! one migration tree per backend (`migrations/sqlite`, `migrations/postgres`)
//! covering every table of every crate. The domain crates define the storage
//! traits they consume (the registry's `Store`, the policy `Store`, the
//! orchestrator's journal); this crate implements them, writing each
//! statement once with `$N` placeholders ([`dialect`]) and keeping
//! per-backend code only where the behaviour really differs, with a comment
//! saying why.
//!
//! Upgrading in place: migrations 0001–0007 are byte for byte the registry's
//! of earlier releases (sqlx checks their checksums); 0008 (policy and audit)
//! and 0009 (runs and stored graphs) are the DDL the policy and run stores
//! used to apply themselves at every start, idempotent, so a database
//! written by an earlier release gains nothing and loses nothing. 0010
//! adds the model agents' tables (issue 17, [`models`]); 0018 the stored
//! plugins' (issue 21, [`plugins`]); 0019 a memory namespace's agent
//! scope (issue 20, [`memory`]).

pub mod admin;
pub mod dialect;
pub mod error;
pub mod memory;
pub mod models;
pub mod plans;
pub mod plugins;
pub mod policy;
pub mod registry;
pub mod runs;

use std::str::FromStr;
use std::time::Duration;

use convergio_schemas::{StorageError, StorageFailure};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

pub use dialect::Backend;
pub use error::{typed, DbResult};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Connections of a file-backed SQLite pool unless configured.
pub const DEFAULT_SQLITE_CONNECTIONS: u32 = 8;
/// Connections of a PostgreSQL pool unless configured.
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 16;
/// How long a query waits for SQLite's write lock or for a free connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite page cache per connection, in KiB.
const SQLITE_CACHE_KIB: u32 = 32 * 1024;
/// How much of the SQLite file reads may map into memory.
const SQLITE_MMAP_BYTES: u64 = 1 << 30;

/// How to open the database.
#[derive(Debug, Clone, Default)]
pub struct DbConfig {
    /// The pool's size; `None` takes [`DEFAULT_SQLITE_CONNECTIONS`] or
    /// [`DEFAULT_POSTGRES_CONNECTIONS`]. An in-memory SQLite database always
    /// has exactly one connection (each connection would be its own database).
    pub max_connections: Option<u32>,
}

/// The process's one database handle: cheap to clone, shared by every store.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
}

/// How many of the pool's open connections are lent out and how many wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections lent to a query or transaction.
    pub in_use: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
}

/// The pool behind a [`Db`].
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

// === impl Db ===

impl Db {
    /// Opens the database `url` names (`sqlite://path?mode=rwc`,
    /// `sqlite::memory:`, `postgres://…`) and migrates it.
    pub async fn open(url: &str, config: &DbConfig) -> Result<Self, StorageError> {
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => Pool::Sqlite(open_sqlite(url, config).await?),
            Backend::Postgres => Pool::Postgres(open_postgres(url, config).await?),
        };
        let db = Self { pool };
        db.migrate().await?;
        Ok(db)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool's configured size.
    pub fn max_connections(&self) -> u32 {
        match &self.pool {
            Pool::Sqlite(pool) => pool.options().get_max_connections(),
            Pool::Postgres(pool) => pool.options().get_max_connections(),
        }
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// How many migrations this binary ships that the database has not
    /// applied (0 once [`Db::open`] returned, unless the schema was rolled
    /// back under a running replica); an error when the database does not
    /// answer. `/readyz` asks this on every probe: one indexed count.
    pub async fn pending_migrations(&self) -> Result<usize, StorageError> {
        // Written once: `success` is a boolean column on both backends.
        const APPLIED: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE";
        let (applied, shipped): (i64, usize) = match &self.pool {
            Pool::Sqlite(pool) => (
                sqlx::query_scalar(APPLIED)
                    .fetch_one(pool)
                    .await
                    .map_err(|error| typed("counting applied migrations", error))?,
                SQLITE_MIGRATIONS.iter().count(),
            ),
            Pool::Postgres(pool) => (
                sqlx::query_scalar(APPLIED)
                    .fetch_one(pool)
                    .await
                    .map_err(|error| typed("counting applied migrations", error))?,
                POSTGRES_MIGRATIONS.iter().count(),
            ),
        };
        Ok(shipped.saturating_sub(usize::try_from(applied).unwrap_or(0)))
    }

    /// The pool's connections right now, for `/metrics`.
    pub fn pool_usage(&self) -> PoolUsage {
        let (size, idle) = match &self.pool {
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        PoolUsage {
            in_use: size - idle,
            idle,
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        // sqlx's migrator takes an advisory lock on PostgreSQL, so replicas
        // starting together take turns.
        let migrated = match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        migrated.map_err(|error| {
            StorageError::new(StorageFailure::Migration, "migrating the database", error)
        })
    }
}

async fn open_sqlite(url: &str, config: &DbConfig) -> Result<sqlx::SqlitePool, StorageError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|error| typed("parsing the SQLite URL", error))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL in WAL mode loses no committed write to a process crash;
        // the run journal asks for FULL around its own commits when
        // configured to survive power loss.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // Only takes effect on a new file (before its first table): lets
        // retention give pruned pages back.
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        // A negative cache size is in KiB; pages are allocated as used.
        .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
        // Reads map the file instead of copying each page into the cache.
        .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
        // Sorts of ranked matches stay in memory.
        .pragma("temp_store", "memory");
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let pool_options = if in_memory {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(DEFAULT_SQLITE_CONNECTIONS))
    };
    // A connection to a local file cannot go stale: skip the ping sqlx sends
    // on every acquire, a round trip to the connection's worker thread.
    pool_options
        .test_before_acquire(false)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|error| typed("opening the SQLite database", error))
}

async fn open_postgres(url: &str, config: &DbConfig) -> Result<sqlx::PgPool, StorageError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|error| typed("parsing the PostgreSQL URL", error))?;
    PgPoolOptions::new()
        .max_connections(
            config
                .max_connections
                .unwrap_or(DEFAULT_POSTGRES_CONNECTIONS),
        )
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|error| typed("connecting to PostgreSQL", error))
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://data/c.db"), "sqlite://data/c.db");
    }

    #[tokio::test]
    async fn an_in_memory_database_is_migrated_with_one_connection() {
        let db = Db::open("sqlite::memory:", &DbConfig::default())
            .await
            .expect("opens");
        assert_eq!(db.backend(), Backend::Sqlite);
        assert_eq!(db.max_connections(), 1);
        assert_eq!(db.pending_migrations().await.expect("answers"), 0);
        // A connection goes back to the pool asynchronously after a query:
        // the split may lag, the one connection is counted either way.
        let usage = db.pool_usage();
        assert_eq!(usage.in_use + usage.idle, 1, "{usage:?}");
        let Pool::Sqlite(pool) = db.pool() else {
            panic!("sqlite")
        };
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(pool)
                .await
                .expect("lists tables");
        for table in ["agents", "api_keys", "policy_versions", "runs", "graphs"] {
            assert!(
                tables.iter().any(|name| name == table),
                "{table} in {tables:?}"
            );
        }
    }
}
