//! Raw SQL against a test database, beside the store under test: seeds rows
//! of chosen ages and corrupts rows the store wrote.

use convergio_store::Backend;

/// A pool of its own on the test database.
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

// === impl Raw ===

impl Raw {
    /// Connects to the database at `url`.
    pub async fn connect(url: &str) -> Self {
        match Backend::of_url(url).expect("a test database URL") {
            Backend::Sqlite => Self::Sqlite(sqlx::SqlitePool::connect(url).await.expect("sqlite")),
            Backend::Postgres => {
                Self::Postgres(sqlx::PgPool::connect(url).await.expect("postgres"))
            }
        }
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect("sql runs");
    }

    /// The one integer `sql` selects.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count")
    }
}
