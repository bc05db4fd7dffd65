//! What `/readyz` and `/metrics` ask the database (issue #22), on SQLite and
//! PostgreSQL: a migrated database has no pending migration, one whose
//! migration record was removed reports it pending, and the pool's
//! connections are counted.

use convergio_store::{Db, DbConfig};

/// The fresh database at `url`, opened (and so migrated), and its URL.
async fn open(url: &str) -> (Db, String) {
    let db = Db::open(url, &DbConfig::default()).await.expect("opens");
    (db, url.to_owned())
}

async fn a_migrated_database_has_no_pending_migration((db, _): (Db, String)) {
    assert_eq!(db.pending_migrations().await.expect("answers"), 0);
    let usage = db.pool_usage();
    assert!(usage.in_use + usage.idle >= 1, "{usage:?}");
}

async fn a_removed_migration_record_is_pending((db, url): (Db, String)) {
    // What a schema rolled back under a running replica looks like.
    const FORGET: &str =
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connects");
        sqlx::query(FORGET).execute(&pool).await.expect("deletes");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&url).await.expect("connects");
        sqlx::query(FORGET).execute(&pool).await.expect("deletes");
        pool.close().await;
    }
    assert_eq!(db.pending_migrations().await.expect("answers"), 1);
}

convergio_tests::on_both_backends!(
    crate::open;
    a_migrated_database_has_no_pending_migration,
    a_removed_migration_record_is_pending,
);
