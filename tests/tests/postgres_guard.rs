//! The fresh-database guard every crate's PostgreSQL tests use
//! (`convergio_tests::postgres::TestDatabase`) drops its database when the
//! test ends, and also when the test panics (issue #14: the suite left
//! `convergio_*` databases behind).

use convergio_store::{Db, DbConfig};
use convergio_tests::postgres::{database_exists, TestDatabase};

#[tokio::test]
async fn a_finished_test_leaves_no_database_behind() {
    let database = TestDatabase::create("convergio_guard").await;
    let name = database.name().to_owned();
    assert!(database_exists(&name).await, "{name} was created");
    drop(database);
    assert!(!database_exists(&name).await, "{name} is still there");
}

#[tokio::test]
async fn a_panicking_test_leaves_no_database_behind() {
    let (names, name) = std::sync::mpsc::channel();
    // A "test" on a thread of its own: it creates its database, holds an open
    // pool on it (as a test's stores would), and panics.
    let failed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            // Declared first, so it is dropped last: the pool is still open
            // (and the schema migrated) when the guard drops the database.
            let mut held: Option<Db> = None;
            let database = TestDatabase::create("convergio_guard").await;
            let _pool = held.insert(
                Db::open(database.url(), &DbConfig::default())
                    .await
                    .expect("opens and migrates its database"),
            );
            names
                .send(database.name().to_owned())
                .expect("the test is listening");
            panic!("the test under test fails, as tests do");
        })
    })
    .join();
    assert!(failed.is_err(), "the thread panicked");
    let name = name.recv().expect("the database's name");
    assert!(
        !database_exists(&name).await,
        "{name} outlived the panicking test"
    );
}

#[test]
fn a_database_can_be_made_from_synchronous_code() {
    let database = TestDatabase::create_blocking("convergio_guard");
    let name = database.name().to_owned();
    assert!(database.url().ends_with(&name) || database.url().contains(&format!("/{name}?")));
    drop(database);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert!(!runtime.block_on(database_exists(&name)));
}
