//! Where a storage test keeps its data: a SQLite file in a temporary
//! directory or a PostgreSQL database of its own, removed with the
//! [`TestPlace`]. [`on_both_backends!`](crate::on_both_backends) runs one
//! test body on each.

use crate::postgres::TestDatabase;

/// A fresh database URL and what keeps it alive.
#[derive(Debug)]
pub struct TestPlace {
    url: String,
    // Dropped after the test's pools (fields drop in declaration order
    // after the struct's users are gone).
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

// === impl TestPlace ===

impl TestPlace {
    /// A SQLite file `convergio.db` in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("convergio.db").display()
        );
        Self {
            url,
            _dir: Some(dir),
            _database: None,
        }
    }

    /// A new PostgreSQL database on the test server (see [`TestDatabase`]).
    pub async fn postgres() -> Self {
        let database = TestDatabase::create("convergio_t").await;
        Self {
            url: database.url().to_owned(),
            _dir: None,
            _database: Some(database),
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Runs each named async test body once on SQLite and once on PostgreSQL:
/// `on_both_backends!(open; first_test, second_test)` where `open` is an
/// `async fn(&str) -> T` turning a fresh database URL into what every body
/// takes (`async fn first_test(subject: T)`). Expands to modules
/// `on_sqlite` and `on_postgres` in the calling file.
#[macro_export]
macro_rules! on_both_backends {
    ($open:path; $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let place = $crate::db::TestPlace::sqlite();
                    let subject = $open(place.url()).await;
                    super::$name(subject).await;
                    drop(place);
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let place = $crate::db::TestPlace::postgres().await;
                    let subject = $open(place.url()).await;
                    super::$name(subject).await;
                    drop(place);
                }
            )*
        }
    };
}

/// The database at `url` (opened and migrated) and the agent store on it:
/// what a test or bench needs to build a `Registry`.
pub async fn agent_store(
    url: &str,
) -> (
    convergio_store::Db,
    std::sync::Arc<convergio_store::registry::AgentStore>,
) {
    let db = convergio_store::Db::open(url, &convergio_store::DbConfig::default())
        .await
        .expect("the database opens");
    let agents = convergio_store::registry::AgentStore::open(&db)
        .await
        .expect("the agent store opens");
    (db, std::sync::Arc::new(agents))
}
