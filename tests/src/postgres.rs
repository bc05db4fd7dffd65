//! A fresh PostgreSQL database per test, dropped when its guard goes out of
//! scope — also when the test fails, since a panic unwinds through the
//! guard's `Drop` (issue #14: the suite left `convergio_*` databases behind).
//!
//! The server is `CONVERGIO_TEST_POSTGRES_URL` (default
//! [`DEFAULT_POSTGRES_URL`]); its database is used only to create and drop
//! the test databases. `Drop` cannot await, and the test's own runtime may be
//! unwinding or single-threaded, so the drop runs on a helper thread with a
//! runtime of its own and `DROP DATABASE … WITH (FORCE)` ends whatever
//! connections the test's pools still hold.

/// The test PostgreSQL server when `CONVERGIO_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("CONVERGIO_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with its database name replaced by `database` (the query is kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

/// A database of its own for one test; dropped with the guard.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

// === impl TestDatabase ===

impl TestDatabase {
    /// Creates `<prefix>_<random>` on the test server. `prefix` must be a
    /// lower-case SQL identifier (`convergio_r`). Panics, saying how to fix
    /// it, when the server is unreachable: every caller is a test.
    pub async fn create(prefix: &str) -> Self {
        assert!(
            !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'),
            "database prefix {prefix:?} is not a plain identifier"
        );
        let admin_url = admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        convergio_store::admin::create_database(&admin_url, &name)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "creating the test database {name} ({error}): start PostgreSQL with \
                     scripts/ensure-postgres.sh or set CONVERGIO_TEST_POSTGRES_URL"
                )
            });
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// [`TestDatabase::create`] for synchronous tests (and from inside a
    /// runtime, where `block_on` is not allowed): runs on a helper thread.
    pub fn create_blocking(prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for creating the test database")
                .block_on(Self::create(&prefix))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// The database's URL (the admin URL with its name swapped in).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(convergio_store::admin::drop_database(&admin_url, &name))
                .map_err(|error| error.to_string())
        })
        .join();
        // Say so rather than leave a database behind silently.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: helper panicked",
                self.name
            ),
        }
    }
}

/// Whether a database named `name` exists on the test server.
pub async fn database_exists(name: &str) -> bool {
    let admin_url = admin_url();
    convergio_store::admin::database_exists(&admin_url, name)
        .await
        .unwrap_or_else(|error| panic!("reading pg_database at {admin_url}: {error}"))
}
